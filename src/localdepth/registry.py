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
ResizeMode = Literal["lower_bound", "minimal", "fixed", "upper_bound"]

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
      * ``fixed``: resize to exactly ``fixed_hw`` whatever the aspect ratio (PyDNet);
      * ``upper_bound``: keep aspect ratio, scale so the longer side is ``input_size``, then resize
        each side to its nearest multiple (Depth Anything 3; 8-bit pixels, two resizes).
    Sides are rounded to ``multiple_of`` (the ViT patch size, or the decoder stride).
    ``interpolation="auto"``: bicubic when enlarging, area when shrinking (Depth Anything 3).
    Pixel values are scaled to [0, 1], then ``(x - mean) / std``.
    """

    resize: ResizeMode
    input_size: int = 518
    multiple_of: int = 14
    fixed_hw: tuple[int, int] | None = None
    interpolation: Literal["bicubic", "bilinear", "area", "auto"] = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: Literal["nchw", "nhwc"] = "nchw"


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
    format: Literal["transformers", "tflite", "da3"]
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
    #: the network configuration, for formats whose loader builds the network itself (``da3``:
    #: the official ``model_name``, a row of :data:`localdepth.networks.da3.config.ARCHITECTURES`)
    architecture: str | None = None

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

    #: ``output == "depth"`` known only up to an unknown scale (Depth Anything 3 and its Mono
    #: network), not in metres
    relative_depth: bool = False
    #: metric depth = focal length (pixels of the network input) * raw output / ``metric_focal``
    #: (Depth Anything 3 Metric: 300); the focal comes from the one intrinsics rule
    metric_focal: float | None = None
    #: outputs beyond the map (see :data:`localdepth.networks.OPTIONAL_OUTPUTS`), and ``"views"``
    #: for networks that take several views of one scene together
    predicts: tuple[str, ...] = ()

    @property
    def metric(self) -> bool:
        """The map is in metres (metric depth)."""
        return self.output == "depth" and not self.relative_depth

    @property
    def output_label(self) -> str:
        """What the map holds, in a few words (``models`` tables)."""
        if self.output == "disparity":
            return "relative disparity"
        if self.relative_depth:
            return "relative depth" + (", camera" if "camera_from_world" in self.predicts else "")
        return f"metric depth, ≤{self.max_depth:g} m" if self.max_depth else "metric depth (m)"

    @property
    def units(self) -> str:
        if self.output == "disparity":
            return "relative inverse depth (affine-invariant)"
        return "relative depth (unknown scale)" if self.relative_depth else "metres"


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
_DA3 = Preprocessing(resize="upper_bound", input_size=504, multiple_of=14, interpolation="auto")
_DA3_PAPER = "Lin et al., Depth Anything 3: Recovering the Visual Space from Any Views, 2025"
#: name, official model_name, Hub repository, licence, params (M, counted from the architecture), what it is for
_DA3_ENTRIES = (
    ("da3-small", "da3-small", "depth-anything/DA3-SMALL", "apache-2.0", 34.3,
     "Depth Anything 3 Small: depth, confidence and camera from one or many views (any-view)"),
    ("da3-base", "da3-base", "depth-anything/DA3-BASE", "apache-2.0", 135.4,
     "Depth Anything 3 Base: depth, confidence and camera from one or many views (any-view)"),
    ("da3-large", "da3-large", "depth-anything/DA3-LARGE-1.1", _NC, 410.9,
     "Depth Anything 3 Large (1.1): depth, confidence and camera from one or many views (any-view)"),
    ("da3-giant", "da3-giant", "depth-anything/DA3-GIANT-1.1", _NC, 1320.0,
     "Depth Anything 3 Giant (1.1): depth, confidence and camera from one or many views (any-view)"),
    ("da3-mono-large", "da3mono-large", "depth-anything/DA3MONO-LARGE", "apache-2.0", 334.2,
     "Depth Anything 3 Mono Large: relative depth of a single image"),
    ("da3-metric-large", "da3metric-large", "depth-anything/DA3METRIC-LARGE", "apache-2.0", 334.2,
     "Depth Anything 3 Metric Large: metric depth in metres of a single image (from its focal length)"),
)


def _depth_anything_3_entries() -> list[ModelSpec]:
    entries = []
    for name, model_name, repo, licence, params, description in _DA3_ENTRIES:
        metric = model_name == "da3metric-large"
        any_view = model_name not in ("da3mono-large", "da3metric-large")
        entries.append(ModelSpec(
            name=name, family="depth-anything-3", description=description, format="da3", repo_id=repo,
            files=_HF_FILES, licence=licence, commercial_use=licence != _NC, params_millions=params,
            download_mb=round(params * 4.0, -1),  # fp32 safetensors
            output="depth", relative_depth=not metric, metric_focal=300.0 if metric else None,
            preprocessing=_DA3, architecture=model_name,
            predicts=("confidence", "intrinsics", "camera_from_world", "views") if any_view else (),
            aliases=tuple(sorted({model_name, name.replace("da3-", "depth-anything-3-")} - {name})), paper=_DA3_PAPER,
        ))
    return entries


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
    entries = _depth_anything_entries() + _depth_anything_3_entries()
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
