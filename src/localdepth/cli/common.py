"""Options shared by the subcommands that load a model."""

from __future__ import annotations

import argparse
import sys

from .. import registry
from ..backends import BACKENDS, DTYPES
from ..errors import LocalDepthError
from ..limits import MAX_IMAGE_PIXELS
from ..writers import FORMATS, colormap_lut, parse_formats


def add_model_args(parser: argparse.ArgumentParser, *, default_model: str | None = registry.DEFAULT_MODEL) -> None:
    g = parser.add_argument_group("model")
    # None until check_args: a fine-tuned --weights folder names its own model (model_from_args)
    g.add_argument("--model", "-m", default=None,
                   help=f"registry name, '-' or '_' (default: {default_model}, or the model a fine-tuned --weights "
                        "folder was trained from); see `localdepth models`")
    parser.set_defaults(default_model=default_model)
    g.add_argument("--weights", metavar="PATH",
                   help="weights to use instead of the cache: a Hugging Face-format folder, a weights file, "
                        "or a converted model (.onnx, OpenVINO model.xml or its folder)")
    g.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="inference backend (default: auto = OpenVINO on x86 CPUs where it is installed, MLX on "
                        "Apple silicon for the models it runs, PyTorch on GPUs and elsewhere, LiteRT for TFLite "
                        "models)")
    g.add_argument("--device", default="auto",
                   help="auto, cpu, cuda, cuda:N or mps; MLX: auto, gpu (mps) or cpu (default: auto)")
    g.add_argument("--dtype", default="auto", choices=DTYPES,
                   help="precision (default: auto = fp16 on CUDA and on MLX's Apple GPU, bf16 on OpenVINO where "
                        "the CPU has it, else fp32; int8: OpenVINO/ONNX Runtime, quantized once and cached)")
    g.add_argument("--compile", action="store_true", help="PyTorch: torch.compile the model (slow first batch)")
    g.add_argument("--cuda-graphs", action="store_true", help="PyTorch on CUDA: replay a CUDA graph per input shape")
    g.add_argument("--input-size", type=int, metavar="N",
                   help="network input size (short side for Depth Anything V1/V2, long side for Depth Anything 3; "
                        "default: the model's)")


def model_from_args(args: argparse.Namespace) -> str | None:
    """``--model``, else the registry entry a fine-tuned ``--weights`` folder was trained from
    (its ``finetune.json``), else the command's default."""
    from ..weights import model_for_weights

    return args.model or model_for_weights(getattr(args, "weights", None)) or getattr(args, "default_model", None)


def loading_line(args: argparse.Namespace):
    """Where ``load(on_loading=)`` says "loading NAME (cpu, fp32)…": stderr, on a terminal only
    (logs and pipes stay clean), never with ``--quiet``."""
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        return None
    return lambda line: print(f"localdepth: {line}", file=sys.stderr, flush=True)


def status_from_args(args: argparse.Namespace):
    """The status line of a command's long steps (:class:`localdepth.progress.Status`): live on a
    terminal, a line per step in logs, nothing with ``--quiet``."""
    from ..progress import Status

    return Status.for_command(quiet=getattr(args, "quiet", False))


def load_from_args(args: argparse.Namespace, name: str | None = None, *, performance: str = "latency"):
    """The model the arguments name; ``performance="throughput"`` for many inputs (OpenVINO keeps
    several requests in flight). Its loading, and a first conversion step by step, show on the
    status line (:func:`status_from_args`)."""
    from ..estimator import load

    with status_from_args(args) as status:
        estimator = load(name or args.model, weights=args.weights, backend=args.backend, device=args.device,
                         dtype=args.dtype, input_size=args.input_size, compile=getattr(args, "compile", False),
                         cuda_graphs=getattr(args, "cuda_graphs", False), performance=performance,
                         on_loading=status if status.live else None, progress=status)
    # a camera the user gave also sets the metres of focal-dependent models (Depth Anything 3 Metric)
    estimator.camera = {k: getattr(args, k) for k in ("intrinsics", "fov") if getattr(args, k, None) is not None}
    wanted = [f.strip().lower() for f in str(getattr(args, "format", None) or "").split(",")]
    if "conf" in wanted and "confidence" not in estimator.spec.predicts:
        raise LocalDepthError(f"{estimator.name} predicts no confidence; drop 'conf' from --format "
                              "(Depth Anything 3 models have one, e.g. da3-small)")
    return estimator


class _OldOutdirSpelling(argparse.Action):
    """``-o DIR`` where ``--outdir DIR`` is meant: still works, with a one-line warning."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"localdepth: warning: `{parser.prog} -o DIR` is deprecated: use --outdir DIR "
              "(-o/--output names one output file, in every command)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_outdir_arg(parser: argparse.ArgumentParser, *, help: str, **kwargs) -> None:
    """``--outdir`` for commands that write a folder of files (run, batch, eval). ``-o`` means
    ``--output FILE`` everywhere (align, pointcloud, video, export); here it is the old spelling
    of ``--outdir``, kept working (hidden) with a deprecation warning."""
    # a (required) group of the two, as argparse checks `required` per option, not per destination
    both = parser.add_mutually_exclusive_group(required=kwargs.pop("required", False))
    both.add_argument("--outdir", help=help, **kwargs)
    kwargs.pop("default", None)
    both.add_argument("-o", dest="outdir", action=_OldOutdirSpelling, help=argparse.SUPPRESS, **kwargs)


def add_format_args(parser: argparse.ArgumentParser) -> None:
    """--format, --cmap and --grayscale, as `run` and `batch` take them."""
    parser.add_argument("--format", "-f", default="npy,color", metavar="LIST",
                        help=f"comma-separated: {', '.join(FORMATS)} (default: npy,color; the .json sidecar is always written)")
    parser.add_argument("--cmap", default="Spectral_r", help="Matplotlib colour map for color/side (default: Spectral_r)")
    parser.add_argument("--grayscale", action="store_true", help="grey colour map: closer = brighter")
    add_stereo_args(parser)
    parser.add_argument("--controlnet-size", type=int, metavar="N",
                        help="controlnet and normals pictures: short side N, both sides rounded to multiples of 64 "
                             "(ControlNet's own rule; N a multiple of 64, e.g. 512 or 1024; default: the image's size)")


def add_stereo_args(parser: argparse.ArgumentParser) -> None:
    from ..render.stereo import DEFAULT_BUDGET

    parser.add_argument("--stereo-budget", type=float, default=DEFAULT_BUDGET, metavar="PCT",
                        help=f"stereo and anaglyph: disparity of the nearest depth between the two views, percent of "
                             f"the width (default {DEFAULT_BUDGET:g}); the baseline follows and is in the sidecar")


def formats_from_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The validated --format list (and --cmap); a bad value is a one-line usage error."""
    try:
        formats = parse_formats(args.format)
        if not args.grayscale:
            colormap_lut(args.cmap)
        if getattr(args, "controlnet_size", None) is not None and args.controlnet_size % 64:
            raise ValueError(f"--controlnet-size must be a multiple of 64 (512, 768, 1024...), got {args.controlnet_size}")
    except ValueError as e:
        raise LocalDepthError(str(e)) from None
    return formats


def add_limit_args(parser: argparse.ArgumentParser) -> None:
    """--max-pixels, as `run` and `batch` take it (the budgets themselves: localdepth.limits)."""
    parser.add_argument("--max-pixels", type=int, default=MAX_IMAGE_PIXELS, metavar="N",
                        help=f"refuse images larger than N pixels (width x height, read before decoding; "
                             f"default: {MAX_IMAGE_PIXELS} = 8192x8192)")


# ----------------------------------------------------------------------------- prompt depth, URLs

PROMPT_SUFFIXES = (".png", ".npy", ".npz", ".pfm", ".tif", ".tiff")


def add_prompt_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("prompt depth (models that take one, e.g. prompt-depth-anything-vits)")
    g.add_argument("--prompt-depth", metavar="PATH",
                   help="a low-resolution metric depth map to guide the model (a phone's LiDAR): 16-bit PNG, .npy or "
                        ".pfm; for several images, a folder with one map per image (same relative path and stem)")
    g.add_argument("--prompt-scale", type=float, metavar="S",
                   help="metres per stored unit of the prompt (0.001 for millimetre PNGs; required for integer "
                        "images; default 1 for .npy/.pfm in metres)")


def add_url_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("http(s):// inputs")
    g.add_argument("--url-timeout", type=float, default=30.0, metavar="S",
                   help="seconds a URL's whole download may take (default 30)")
    g.add_argument("--url-max-mb", type=float, default=50.0, metavar="MB",
                   help="largest download accepted from a URL, MiB (default 50)")


def url_limits_from_args(args: argparse.Namespace):
    from ..fetch import FetchLimits

    mb, timeout = args.url_max_mb, args.url_timeout
    if not (0 < mb <= 4096) or not (0 < timeout <= 3600):  # NaN fails both comparisons
        raise LocalDepthError("--url-max-mb must be in (0, 4096] and --url-timeout in (0, 3600] seconds")
    return FetchLimits(max_bytes=int(mb * 2**20), timeout_s=float(timeout))


def prompt_source(args: argparse.Namespace, model: str, n_inputs: int):
    """``prompt_for(item) -> (metres, label)`` from --prompt-depth/--prompt-scale, or None.

    Checked against the registry before any weights load: a prompt for a model that takes none, or
    none for a model that needs one, is a one-line usage error. A file applies to a single input;
    a folder holds one map per input, found by the input's relative path and stem.
    """
    from pathlib import Path

    from ..depthfile import read_prompt_depth
    from ..errors import PromptDepthError
    from ..limits import MAX_IMAGE_PIXELS
    from ..estimator import check_prompt

    spec = registry.get(model)
    given = getattr(args, "prompt_depth", None)
    check_prompt(spec, given is not None)
    if given is None:
        if args.prompt_scale is not None:
            raise PromptDepthError("--prompt-scale needs --prompt-depth")
        return None
    root = Path(given)
    scale = args.prompt_scale
    max_pixels = getattr(args, "max_pixels", None) or MAX_IMAGE_PIXELS  # prompt files pass the same gate as images
    if scale is not None and not (scale > 0 and scale < float("inf")):
        raise PromptDepthError(f"--prompt-scale must be a positive number of metres per unit, got {scale}")
    if root.is_file():
        if n_inputs > 1:
            raise PromptDepthError(f"--prompt-depth {given} is one map for {n_inputs} images; give a folder with one "
                                   "map per image (same relative path and stem)")
        metres = read_prompt_depth(root, scale, max_pixels)  # read once, now: a bad file is a usage error before any loading
        return lambda item: (metres, str(root))
    if not root.is_dir():
        raise PromptDepthError(f"--prompt-depth {given}: no such file or folder")

    def from_folder(item):
        stem = item.rel.with_suffix("") if item.rel.suffix else item.rel
        for suffix in PROMPT_SUFFIXES:
            candidate = root / stem.parent / (stem.name + suffix)
            if candidate.is_file():
                return read_prompt_depth(candidate, scale, max_pixels), str(candidate)
        raise PromptDepthError(f"{item.label}: no prompt depth {root / stem}.(png|npy|pfm) for it")

    return from_folder
