"""The model registry: one table that describes every model localdepth knows.

Everything else (weights resolution, backends, preprocessing, ``localdepth models``,
the README's model table) reads this table; nothing copies it.

Names are canonical with dashes (``depth-anything-v2-small``); lookups also accept
underscores, any case, a few aliases, and the Hugging Face repo id of an entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .errors import ModelNotFoundError

OutputKind = Literal["disparity", "depth"]
ResizeMode = Literal["lower_bound", "minimal", "fixed"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preprocessing:
    """How the reference implementation turns an RGB image into the network input.

    ``resize``:
      * ``lower_bound``: keep aspect ratio, scale so both sides are at least ``input_size``
        (Depth Anything);
      * ``minimal``: keep aspect ratio, scale as little as possible so that one side equals
        ``input_size`` (MiDaS ``minimal``);
      * ``fixed``: resize to exactly ``fixed_hw`` whatever the aspect ratio (PyDNet).
    Sides are rounded to ``multiple_of`` (the ViT patch size, or the decoder stride).
    Pixel values are scaled to [0, 1], then ``(x - mean) / std``.
    """

    resize: ResizeMode
    input_size: int = 518
    multiple_of: int = 14
    fixed_hw: tuple[int, int] | None = None
    interpolation: Literal["bicubic", "bilinear", "area"] = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: Literal["nchw", "nhwc"] = "nchw"

    def as_dict(self) -> dict:
        """The fields that apply to this resize mode: a fixed input has no ``input_size`` or
        ``multiple_of`` (their defaults would read as if it had), the others no ``fixed_hw``."""
        fields = dict(self.__dict__)
        for unused in (("input_size", "multiple_of") if self.resize == "fixed" else ("fixed_hw",)):
            fields.pop(unused)
        return fields


@dataclass(frozen=True)
class WeightFile:
    filename: str
    sha256: str | None = None  # fixed checksum where the source is not content-addressed
    size_bytes: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    description: str
    format: Literal["transformers", "tflite"]
    files: tuple[WeightFile, ...]
    licence: str
    commercial_use: bool
    params_millions: float
    download_mb: float
    output: OutputKind
    preprocessing: Preprocessing
    repo_id: str | None = None  # Hugging Face Hub repository
    revision: str = "main"
    url: str | None = None  # direct download for single-file entries
    max_depth: float | None = None  # metres, for metric models
    aliases: tuple[str, ...] = field(default_factory=tuple)
    paper: str = ""
    #: the raw network output is depth-like (larger = farther): take its reciprocal so the map
    #: is disparity-like, as the ``output`` kind says
    reciprocal_output: bool = False

    @property
    def source(self) -> str:
        if self.repo_id:
            return f"hf://{self.repo_id}"
        return self.url or ""

    @property
    def layout(self) -> str:
        """``"folder"``: a Hugging Face-format folder (``config.json`` + weights), as Hub entries
        ship; ``"file"``: one weights file (TFLite, a ``.pth`` checkpoint)."""
        return "folder" if any(f.filename == "config.json" for f in self.files) else "file"

    @property
    def units(self) -> str:
        return "metres" if self.output == "depth" else "relative inverse depth (affine-invariant)"


_DA = Preprocessing(resize="lower_bound", input_size=518, multiple_of=14)
_MIDAS = Preprocessing(resize="minimal", input_size=384, multiple_of=32, mean=HALF, std=HALF)
_PYDNET = Preprocessing(
    resize="fixed", fixed_hw=(448, 640), multiple_of=1, interpolation="area",
    mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), layout="nhwc",
)
_HF_FILES = (WeightFile("config.json"), WeightFile("model.safetensors"))
_NC = "cc-by-nc-4.0"
_SIZES = {  # params (M), model.safetensors (MB) for the three ViT sizes
    "small": (24.8, 99.2), "base": (97.5, 390.0), "large": (335.3, 1340.0),
}
_DA2_PAPER = "Yang et al., Depth Anything V2, NeurIPS 2024 (arXiv:2406.09414)"


def _depth_anything_entries() -> list[ModelSpec]:
    entries: list[ModelSpec] = []
    for size, (params, mb) in _SIZES.items():
        cap = size.capitalize()
        licence, commercial = ("apache-2.0", True) if size == "small" else (_NC, False)
        entries.append(ModelSpec(
            name=f"depth-anything-v2-{size}", family="depth-anything-v2",
            description=f"Depth Anything V2 {cap}, relative depth (DINOv2 ViT-{size[0].upper()} + DPT head)",
            format="transformers", repo_id=f"depth-anything/Depth-Anything-V2-{cap}-hf",
            files=_HF_FILES, licence=licence, commercial_use=commercial,
            params_millions=params, download_mb=mb, output="disparity", preprocessing=_DA,
            aliases=(f"da2-{size}", f"da-v2-{size}"), paper=_DA2_PAPER,
        ))
        for scene, max_depth, data in (("indoor", 20.0, "Hypersim"), ("outdoor", 80.0, "Virtual KITTI 2")):
            entries.append(ModelSpec(
                name=f"depth-anything-v2-metric-{scene}-{size}", family="depth-anything-v2-metric",
                description=f"Depth Anything V2 {cap} fine-tuned on {data}: metric depth in metres, up to {max_depth:g} m",
                format="transformers",
                repo_id=f"depth-anything/Depth-Anything-V2-Metric-{scene.capitalize()}-{cap}-hf",
                files=_HF_FILES, licence="apache-2.0", commercial_use=True,
                params_millions=params, download_mb=mb, output="depth", max_depth=max_depth,
                preprocessing=_DA, paper=_DA2_PAPER,
            ))
        entries.append(ModelSpec(
            name=f"depth-anything-v1-{size}", family="depth-anything-v1",
            description=f"Depth Anything (V1) {cap}, relative depth",
            format="transformers", repo_id=f"LiheYoung/depth-anything-{size}-hf",
            files=_HF_FILES, licence="apache-2.0", commercial_use=True,
            params_millions=params, download_mb=mb, output="disparity", preprocessing=_DA,
            aliases=(f"depth-anything-{size}",),
            paper="Yang et al., Depth Anything, CVPR 2024 (arXiv:2401.10891)",
        ))
    order = ["depth-anything-v2-", "depth-anything-v2-metric-indoor", "depth-anything-v2-metric-outdoor",
             "depth-anything-v1"]
    return sorted(entries, key=lambda e: max(i for i, p in enumerate(order) if e.name.startswith(p)))


def _build_table() -> dict[str, ModelSpec]:
    entries = _depth_anything_entries()
    midas_paper = "Ranftl et al., Vision Transformers for Dense Prediction, ICCV 2021"
    entries += [
        ModelSpec(
            name="midas-dpt-large", family="midas",
            description="MiDaS 3.0 DPT-Large (ViT-L/16), relative depth",
            format="transformers", repo_id="Intel/dpt-large", files=_HF_FILES,
            licence="apache-2.0", commercial_use=True, params_millions=343.0, download_mb=1370.0,
            output="disparity", preprocessing=_MIDAS, aliases=("dpt-large",), paper=midas_paper,
        ),
        ModelSpec(
            name="midas-dpt-hybrid", family="midas",
            description="MiDaS 3.0 DPT-Hybrid (ResNet-50 + ViT-B/16), relative depth",
            format="transformers", repo_id="Intel/dpt-hybrid-midas", files=_HF_FILES,
            licence="apache-2.0", commercial_use=True, params_millions=123.0, download_mb=490.0,
            output="disparity", preprocessing=_MIDAS, aliases=("dpt-hybrid", "dpt-hybrid-midas"),
            paper=midas_paper,
        ),
        ModelSpec(
            name="pydnet", family="pydnet",
            description="PyDNet++ (mobile), tiny real-time relative depth; weak, indoor-trained; runs anywhere",
            format="tflite",
            url=("https://raw.githubusercontent.com/FilippoAleotti/mobilePydnet/master/"
                 "Android/app/src/main/assets/optimized_pydnet++.tflite"),
            files=(WeightFile(
                "optimized_pydnet++.tflite",
                sha256="ba97991edb4a516096557aedf56e61bf4aa4c30e34d6a38f061ef449ecf16bc7",
                size_bytes=2_020_168,
            ),),
            licence="research-only", commercial_use=False,
            params_millions=0.5, download_mb=2.0, output="disparity", preprocessing=_PYDNET,
            aliases=("pydnet++", "pydnet-pp"),
            # Measured on the shared RGB-D frames: the raw output ranks like depth (Spearman with
            # 1/GT between -0.38 and -0.89 on every frame), so its reciprocal is the disparity.
            reciprocal_output=True,
            paper="Poggi et al., Towards real-time unsupervised monocular depth estimation on CPU, IROS 2018",
        ),
    ]
    return {e.name: e for e in entries}


MODELS: dict[str, ModelSpec] = _build_table()
DEFAULT_MODEL = "depth-anything-v2-small"


def canonical(name: str) -> str:
    """``Depth_Anything_V2_Small`` -> ``depth-anything-v2-small``."""
    return name.strip().lower().replace("_", "-")


def _index() -> dict[str, str]:
    index: dict[str, str] = {}
    for spec in MODELS.values():
        for key in (spec.name, *spec.aliases):
            index[canonical(key)] = spec.name
        if spec.repo_id:
            index[spec.repo_id.lower()] = spec.name
    return index


_INDEX = _index()


def get(name: str) -> ModelSpec:
    """Look a model up by name, alias or Hugging Face repo id."""
    key = canonical(name)
    if key in _INDEX:
        return MODELS[_INDEX[key]]
    if name.strip().lower() in _INDEX:
        return MODELS[_INDEX[name.strip().lower()]]
    import difflib

    close = difflib.get_close_matches(key, list(_INDEX), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ModelNotFoundError(f"unknown model '{name}'{hint}; `localdepth models` lists the known ones")


def names() -> list[str]:
    return list(MODELS)
