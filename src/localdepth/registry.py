"""The model registry: one table that describes every model localdepth knows.

Everything else (weights resolution, backends, preprocessing, ``localdepth models``,
the README's model table) reads this table; nothing copies it.

Names are canonical with dashes (``depth-anything-v2-small``); lookups also accept
underscores, any case, a few aliases, and the Hugging Face repo id of an entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from .errors import ModelNotFoundError, WeightsError
from .limits import NETWORK_MAX_ASPECT, NETWORK_MAX_PIXELS

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
      * ``minimal``: keep aspect ratio, scale as little as possible so that one side reaches its
        target, ``input_size`` (MiDaS ``minimal``) or ``target_hw`` (ZoeDepth: 384 x 512);
      * ``fixed``: resize to exactly ``fixed_hw`` whatever the aspect ratio (PyDNet, Depth Pro);
      * ``upper_bound``: keep aspect ratio, scale so the longer side is ``input_size``, then resize
        each side to its nearest multiple (Depth Anything 3; 8-bit pixels, two resizes).
    Sides are rounded to ``multiple_of`` (the ViT patch size, or the decoder stride).

    ``interpolation``: ``bicubic``/``bilinear``/``area`` are OpenCV's (``bicubic`` as the Depth
    Anything reference; ``bilinear`` equals PyTorch's ``interpolate`` without antialiasing);
    ``pil-bicubic`` is Pillow's antialiased bicubic on the 8-bit image, as Transformers' PIL image
    processors resize. ``align_corners`` (bilinear only) maps corner pixel centres onto each other,
    as ZoeDepth's ``interpolate(..., align_corners=True)``. ``auto``: bicubic when enlarging, area
    when shrinking (Depth Anything 3).

    ``reflect_pad_factor``: ZoeDepth pads each side of the image, before the resize, by
    ``int(sqrt(side / 2) * factor)`` pixels of reflection (factor 3) against border artefacts;
    postprocessing cuts the same margin off the prediction. 0 = no padding.

    Pixel values are scaled to [0, 1], then ``(x - mean) / std``.

    The network input is bounded whatever the image (:func:`localdepth.preprocess.plan_network_input`):
    at most ``max_pixels`` pixels, and a long side at most ``max_aspect`` times the short side;
    beyond them the input is shrunk (defaults and the measurements behind them:
    :mod:`localdepth.limits`).
    """

    resize: ResizeMode
    input_size: int = 518
    multiple_of: int = 14
    fixed_hw: tuple[int, int] | None = None
    target_hw: tuple[int, int] | None = None  # minimal resize towards (h, w) instead of input_size
    interpolation: Literal["bicubic", "bilinear", "area", "pil-bicubic", "auto"] = "bicubic"
    align_corners: bool = False
    reflect_pad_factor: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: Literal["nchw", "nhwc"] = "nchw"
    max_pixels: int = NETWORK_MAX_PIXELS
    max_aspect: float = NETWORK_MAX_ASPECT

    def as_dict(self) -> dict:
        """The fields that apply to this resize mode: a fixed input has no ``input_size`` or
        ``multiple_of`` (their defaults would read as if it had), the others no ``fixed_hw``."""
        fields = dict(self.__dict__)
        for unused in (("input_size", "multiple_of") if self.resize == "fixed" else ("fixed_hw",)):
            fields.pop(unused)
        return fields


@dataclass(frozen=True)
class Postprocessing:
    """How the reference brings the network output back to a map at the image's resolution.

    ``interpolation``: how the map is resized to the image (``bilinear`` with pixel-centre
    alignment, or ``bicubic`` as MiDaS's run.py and Transformers' ``post_process_depth_estimation``
    for ZoeDepth and Prompt Depth Anything); ``align_corners`` as in PyTorch (bilinear only; the
    official Depth Anything V2 ``infer_image`` aligns corners).

    ``inverse_range``: the network predicts *inverse* depth (Depth Pro): the inverse map is resized,
    clamped to this range (1/m) and inverted at the image's resolution, as its reference does.

    ``flip_average``: the prediction is averaged with the mirrored prediction of the mirrored image
    (ZoeDepth's test-time augmentation, as Transformers' post-processing takes ``outputs_flipped``).
    """

    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    align_corners: bool = False
    inverse_range: tuple[float, float] | None = None
    flip_average: bool = False


@dataclass(frozen=True)
class PromptDepthInput:
    """A metric depth map that a model takes beside the image (Prompt Depth Anything: a phone's LiDAR).

    The prompt goes to the network at its own resolution (the network resizes it to each decoder
    level); larger than ``max_pixels`` it is first shrunk (area averaging) to bound the work.
    ``units``: what the network expects (metres; ``--prompt-scale`` converts). ``normalisation``
    says what the network does with it (for the sidecar and docs).
    """

    required: bool = True
    units: str = "metres"
    max_pixels: int = 1536 * 2048
    normalisation: str = ("min-max per image inside the network (prompt -> [0, 1]); the prediction is mapped back "
                          "to the prompt's [min, max] in metres")


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
    format: Literal["transformers", "tflite", "da3", "vda"]
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
    #: is disparity-like, as the ``output`` kind says (:func:`localdepth.postprocess.depth_like_to_disparity`)
    reciprocal_output: bool = False
    postprocessing: Postprocessing = field(default_factory=Postprocessing)
    #: the extra depth input the model takes (None: the image only)
    prompt: PromptDepthInput | None = None
    #: the network predicts the camera too (Depth Pro: the field of view); geometry uses it when the
    #: user gives no intrinsics and the photo's EXIF has none
    predicts_camera: bool = False
    #: the network configuration, for formats whose loader builds the network itself (``da3``:
    #: the official ``model_name``, a row of :data:`localdepth.networks.da3.config.ARCHITECTURES`;
    #: ``vda``: ``vits``, ``vitb`` or ``vitl``, a row of :data:`localdepth.networks.vda.SIZES`)
    architecture: str | None = None
    #: ``output == "depth"`` known only up to an unknown scale (Depth Anything 3 and its Mono
    #: network), not in metres
    relative_depth: bool = False
    #: metric depth = focal length (pixels of the network input) * raw output / ``metric_focal``
    #: (Depth Anything 3 Metric: 300); the focal comes from the one intrinsics rule
    metric_focal: float | None = None
    #: more outputs: ``"confidence"`` (a per-pixel confidence map), ``"views"`` (the network takes
    #: several views of one scene together)
    predicts: tuple[str, ...] = ()
    #: how the ViT's position embeddings are resized to the patch grid: ``transformers`` (the
    #: model's own Transformers code), or ``dinov2`` (the official DINOv2 rule the Depth Anything
    #: code runs: bicubic with scale factor ``(n + 0.1) / N``; :mod:`localdepth.networks.dinov2`)
    position_embedding: Literal["transformers", "dinov2"] = "transformers"
    #: the ``model_type`` a Transformers checkpoint of this entry names in its config.json (the
    #: loader refuses another one, :mod:`localdepth.networks.checks`); None for other formats
    config_type: str | None = None
    #: the half precision ``--dtype auto`` runs on CUDA: fp16, or bf16 where the reference runs in
    #: bf16 for its range (Depth Anything 3's ``autocast``: bf16 where the card has it, else fp16)
    half_precision: Literal["fp16", "bf16"] = "fp16"

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
    def temporal(self) -> bool:
        """A video model: it predicts clips of frames together (``localdepth video``)."""
        return self.format == "vda"

    @property
    def metric(self) -> bool:
        """The map is in metres (metric depth)."""
        return self.output == "depth" and not self.relative_depth

    @property
    def focal_dependent(self) -> bool:
        """The metres depend on the camera's focal length: Depth Anything 3 Metric (``metric_focal``) and
        metric models that predict their camera (Depth Pro: its field of view scales its inverse depth).
        A camera the user gives (or the photo's EXIF) then changes the map, as the official code does."""
        return self.metric_focal is not None or (self.predicts_camera and self.metric)

    @property
    def units(self) -> str:
        if self.output == "disparity":
            return "relative inverse depth (affine-invariant)"
        return "relative depth (unknown scale)" if self.relative_depth else "metres"


_DA = Preprocessing(resize="lower_bound", input_size=518, multiple_of=14)
_MIDAS = Preprocessing(resize="minimal", input_size=384, multiple_of=32, mean=HALF, std=HALF)
_MIDAS_POST = Postprocessing(interpolation="bicubic")  # MiDaS run.py: interpolate(..., "bicubic", align_corners=False)
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
# What the official code does beyond Transformers' port: ``DepthAnythingV2.infer_image`` resizes
# with ``align_corners=True`` (relative and metric_depth alike), and its DINOv2 resizes position
# embeddings with the 0.1 offset. Checked against that code in tests/test_reference_fidelity.py.
_DA2_REFERENCE = {"postprocessing": Postprocessing(interpolation="bilinear", align_corners=True),
                  "position_embedding": "dinov2"}


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
            aliases=(f"da2-{size}", f"da-v2-{size}"), paper=_DA2_PAPER, config_type="depth_anything", **_DA2_REFERENCE,
        ))
        for scene, max_depth, data in (("indoor", 20.0, "Hypersim"), ("outdoor", 80.0, "Virtual KITTI 2")):
            entries.append(ModelSpec(
                name=f"depth-anything-v2-metric-{scene}-{size}", family="depth-anything-v2-metric",
                description=f"Depth Anything V2 {cap} fine-tuned on {data}: metric depth in metres, up to {max_depth:g} m",
                format="transformers",
                repo_id=f"depth-anything/Depth-Anything-V2-Metric-{scene.capitalize()}-{cap}-hf",
                files=_HF_FILES, licence="apache-2.0", commercial_use=True,
                params_millions=params, download_mb=mb, output="depth", max_depth=max_depth,
                preprocessing=_DA, paper=_DA2_PAPER, config_type="depth_anything", **_DA2_REFERENCE,
            ))
        entries.append(ModelSpec(
            name=f"depth-anything-v1-{size}", family="depth-anything-v1",
            description=f"Depth Anything (V1) {cap}, relative depth",
            format="transformers", repo_id=f"LiheYoung/depth-anything-{size}-hf",
            files=_HF_FILES, licence="apache-2.0", commercial_use=True,
            params_millions=params, download_mb=mb, output="disparity", preprocessing=_DA,
            aliases=(f"depth-anything-{size}",),
            paper="Yang et al., Depth Anything, CVPR 2024 (arXiv:2401.10891)",
            # run.py of the V1 repository resizes with align_corners=False; its DINOv2 is the official one
            position_embedding="dinov2", config_type="depth_anything",
        ))
    order = ["depth-anything-v2-", "depth-anything-v2-metric-indoor", "depth-anything-v2-metric-outdoor",
             "depth-anything-v1"]
    return sorted(entries, key=lambda e: max(i for i, p in enumerate(order) if e.name.startswith(p)))


_VDA_PAPER = ("Chen et al., Video Depth Anything: Consistent Depth Estimation for Super-Long Videos, CVPR 2025 "
              "(arXiv:2501.12375)")
#: size -> (encoder, params (M) as the upstream README states them, checkpoint MB: fp32 tensors
#: of the architecture, an estimate; the Hub's content address is what is verified)
_VDA_SIZES = {"small": ("vits", 28.4, 116.3), "base": ("vitb", 113.1, 458.1), "large": ("vitl", 381.8, 1538.2)}


#: Video Depth Anything's reference resizes its maps back with ``align_corners=True``
_VDA_POST = Postprocessing(interpolation="bilinear", align_corners=True)


def _video_depth_anything_entries() -> list[ModelSpec]:
    entries: list[ModelSpec] = []
    for size, (arch, params, mb) in _VDA_SIZES.items():
        cap = size.capitalize()
        licence, commercial = ("apache-2.0", True) if size == "small" else (_NC, False)
        entries.append(ModelSpec(
            name=f"video-depth-anything-{size}", family="video-depth-anything",
            description=f"Video Depth Anything {cap}: Depth Anything V2 with a temporal head over 32-frame "
                        "windows; consistent relative depth for videos",
            format="vda", repo_id=f"depth-anything/Video-Depth-Anything-{cap}",
            files=(WeightFile(f"video_depth_anything_{arch}.pth"),), licence=licence, commercial_use=commercial,
            params_millions=params, download_mb=mb, output="disparity", preprocessing=_DA,
            aliases=(f"vda-{size}", f"video-depth-anything-{arch}"), paper=_VDA_PAPER, architecture=arch,
            postprocessing=_VDA_POST,
        ))
    for size, (arch, params, mb) in _VDA_SIZES.items():
        cap = size.capitalize()
        # the Small card's metadata says apache-2.0 (read from a stored copy of the Hub page); the Base
        # and Large cards could not be read from here: treated as not for commercial use until checked
        verified = size == "small"
        entries.append(ModelSpec(
            name=f"metric-video-depth-anything-{size}", family="metric-video-depth-anything",
            description=f"Video Depth Anything {cap} fine-tuned on Virtual KITTI and IRS: metric depth in metres "
                        "for videos" + ("" if verified else ". Licence not verified (its model card could not be "
                                        "read when this entry was written): treated as not for commercial use"),
            format="vda", repo_id=f"depth-anything/Metric-Video-Depth-Anything-{cap}",
            files=(WeightFile(f"metric_video_depth_anything_{arch}.pth"),),
            licence="apache-2.0" if verified else "unverified", commercial_use=verified,
            params_millions=params, download_mb=mb, output="depth", preprocessing=_DA,
            aliases=(f"metric-vda-{size}", f"metric-video-depth-anything-{arch}"), paper=_VDA_PAPER,
            architecture=arch, postprocessing=_VDA_POST,
        ))
    return entries


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
            preprocessing=_DA3, architecture=model_name, half_precision="bf16",
            predicts_camera=any_view, predicts=("confidence", "views") if any_view else (),
            aliases=tuple(sorted({model_name, name.replace("da3-", "depth-anything-3-")} - {name})), paper=_DA3_PAPER,
        ))
    return entries


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
            postprocessing=_MIDAS_POST, config_type="dpt",
        ),
        ModelSpec(
            name="midas-dpt-hybrid", family="midas",
            description="MiDaS 3.0 DPT-Hybrid (ResNet-50 + ViT-B/16), relative depth",
            format="transformers", repo_id="Intel/dpt-hybrid-midas", files=_HF_FILES,
            licence="apache-2.0", commercial_use=True, params_millions=123.0, download_mb=490.0,
            output="disparity", preprocessing=_MIDAS, aliases=("dpt-hybrid", "dpt-hybrid-midas"),
            paper=midas_paper, postprocessing=_MIDAS_POST, config_type="dpt",
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
    entries += _depth_pro_entries() + _zoedepth_entries() + _prompt_depth_anything_entries()
    entries += _video_depth_anything_entries()
    return {e.name: e for e in entries}


# Depth Pro (Transformers' DepthProImageProcessor): a fixed 1536 x 1536 input whatever the aspect ratio,
# mean/std 0.5, bilinear without antialiasing. The network predicts canonical inverse depth and the
# horizontal field of view; metric inverse depth = canonical * width / focal (resolution-free:
# 2 tan(fov / 2)), resized bilinearly to the image, clamped to [1e-4, 1e4] and inverted.
_DEPTH_PRO = Preprocessing(resize="fixed", fixed_hw=(1536, 1536), input_size=1536, multiple_of=1,
                           interpolation="bilinear", mean=HALF, std=HALF)
# ZoeDepth (Transformers' ZoeDepthImageProcessor): reflect padding of int(sqrt(side / 2) * 3), then the
# aspect-preserving resize that changes the image least towards 384 x 512, sides multiples of 32,
# bilinear with align_corners=True; mean/std 0.5. After the network: the flip-averaged prediction is
# resized bicubically to the padded size and the padding cut off.
_ZOEDEPTH = Preprocessing(resize="minimal", input_size=384, target_hw=(384, 512), multiple_of=32,
                          interpolation="bilinear", align_corners=True, reflect_pad_factor=3.0, mean=HALF, std=HALF)
# Prompt Depth Anything (its Transformers processor, as converted from the official code): the
# aspect-preserving resize that changes the image least towards 756 x 756, multiples of 14,
# bicubic, ImageNet mean/std; the prompt depth goes in metres at its own resolution.
_PROMPT_DA = Preprocessing(resize="minimal", input_size=756, multiple_of=14, interpolation="pil-bicubic")


def _depth_pro_entries() -> list[ModelSpec]:
    return [ModelSpec(
        name="depth-pro", family="depth-pro",
        description="Apple Depth Pro: metric depth in metres and the camera's field of view from one photo, "
                    "no calibration needed (three DINOv2 ViT-L/16 encoders, 1536 x 1536 input)",
        format="transformers", repo_id="apple/DepthPro-hf", files=_HF_FILES,
        # the model card's licence tag (Apple Machine Learning Research Model licence: research only)
        licence="apple-amlr", commercial_use=False, params_millions=952.0, download_mb=1904.0,
        output="depth", max_depth=1e4, preprocessing=_DEPTH_PRO,
        postprocessing=Postprocessing(interpolation="bilinear", inverse_range=(1e-4, 1e4)), predicts_camera=True,
        aliases=("depthpro", "apple-depth-pro"), config_type="depth_pro",
        paper="Bochkovskii et al., Depth Pro: Sharp Monocular Metric Depth in Less Than a Second, ICLR 2025 "
              "(arXiv:2410.02073)",
    )]


def _zoedepth_entries() -> list[ModelSpec]:
    paper = "Bhat et al., ZoeDepth: Zero-shot Transfer by Combining Relative and Metric Depth (arXiv:2302.12288)"
    post = Postprocessing(interpolation="bicubic", flip_average=True)
    rows = (("nyu", "NYU Depth v2 (indoor)", 10.0, 343.8, 1375.0),
            ("kitti", "KITTI (driving)", 80.0, 343.8, 1375.0),
            ("nyu-kitti", "NYU and KITTI, each image routed to the indoor or the outdoor head", 80.0, 345.1, 1380.0))
    return [ModelSpec(
        name=f"zoedepth-{data}", family="zoedepth",
        description=f"ZoeDepth (BEiT-L/16 + metric bins) fine-tuned on {what}: metric depth in metres, up to {top:g} m",
        format="transformers", repo_id=f"Intel/zoedepth-{data}", files=_HF_FILES,
        licence="mit", commercial_use=True, params_millions=params, download_mb=mb,
        output="depth", max_depth=top, preprocessing=_ZOEDEPTH, postprocessing=post,
        aliases=(f"zoe-{data}", f"zoed-{''.join(w[0] for w in data.split('-'))}"), paper=paper, config_type="zoedepth",
    ) for data, what, top, params, mb in rows]


def _prompt_depth_anything_entries() -> list[ModelSpec]:
    paper = ("Lin et al., Prompting Depth Anything for 4K Resolution Accurate Metric Depth Estimation, CVPR 2025 "
             "(arXiv:2412.14015)")
    rows = (("vits", "ViT-S", "", 25.1, 100.0),
            ("vits-transparent", "ViT-S", ", fine-tuned for transparent and reflective objects", 25.1, 100.0),
            ("vitl", "ViT-L", "", 340.0, 1360.0))
    return [ModelSpec(
        name=f"prompt-depth-anything-{size}", family="prompt-depth-anything",
        description=f"Prompt Depth Anything {vit}{extra}: metric depth in metres from the image and a low-resolution "
                    "depth prompt (a phone's LiDAR, any sparse depth) given with --prompt-depth",
        format="transformers", repo_id=f"depth-anything/prompt-depth-anything-{size}-hf", files=_HF_FILES,
        licence="apache-2.0", commercial_use=True, params_millions=params, download_mb=mb,
        output="depth", max_depth=None, preprocessing=_PROMPT_DA,
        postprocessing=Postprocessing(interpolation="bicubic"), prompt=PromptDepthInput(),
        aliases=(f"promptda-{size}",), paper=paper, config_type="prompt_depth_anything",
    ) for size, vit, extra, params, mb in rows]


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


def as_fine_tuned(spec: ModelSpec, record: dict, where: str) -> ModelSpec:
    """``spec`` running weights that ``localdepth finetune`` trained from ``record["model"]``.

    The weights keep their base model's licence: a fine-tune of a model that is not for commercial
    use is not for commercial use either, whichever entry runs it (the stricter of the two wins).
    Weights whose output differs from ``spec``'s (a metric fine-tune run as a relative model) are
    refused in one line that names the entry to use.
    """
    base = get(record["model"])
    if (base.output, base.metric) != (spec.output, spec.metric):
        raise WeightsError(f"{where} holds a fine-tune of {base.name} ({base.units}), not weights for {spec.name} "
                           f"({spec.units}); use --model {base.name} or leave --model out")
    recorded = (str(record.get("licence") or base.licence), bool(record.get("commercial_use", base.commercial_use)))
    terms = [recorded, (base.licence, base.commercial_use), (spec.licence, spec.commercial_use)]
    restricted = [licence for licence, commercial in terms if not commercial]
    if restricted:
        return replace(spec, licence=restricted[0], commercial_use=False)
    return replace(spec, licence=recorded[0], commercial_use=True)


def names() -> list[str]:
    return list(MODELS)
