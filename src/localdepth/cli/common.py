"""Options shared by the subcommands that load a model."""

from __future__ import annotations

import argparse

from .. import registry
from ..backends import BACKENDS, DTYPES
from ..errors import LocalDepthError
from ..writers import FORMATS, colormap_lut, parse_formats


def add_model_args(parser: argparse.ArgumentParser, *, default_model: str | None = registry.DEFAULT_MODEL) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", "-m", default=default_model,
                   help=f"registry name, '-' or '_' (default: {default_model}); see `localdepth models`")
    g.add_argument("--weights", metavar="PATH",
                   help="weights to use instead of the cache: a Hugging Face-format folder or a weights file")
    g.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="inference backend (default: auto = OpenVINO on x86 CPUs where it is installed, "
                        "PyTorch on GPUs and elsewhere, LiteRT for TFLite models)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    g.add_argument("--dtype", default="auto", choices=DTYPES,
                   help="precision (default: auto = fp16 on CUDA, bf16 on OpenVINO where the CPU has it, else fp32; "
                        "int8: OpenVINO/ONNX Runtime, quantized once and cached)")
    g.add_argument("--compile", action="store_true", help="PyTorch: torch.compile the model (slow first batch)")
    g.add_argument("--cuda-graphs", action="store_true", help="PyTorch on CUDA: replay a CUDA graph per input shape")
    g.add_argument("--input-size", type=int, metavar="N",
                   help="network input size (short side for Depth Anything; default: the model's)")


def load_from_args(args: argparse.Namespace, name: str | None = None, *, performance: str = "latency"):
    """The model the arguments name; ``performance="throughput"`` for many inputs (OpenVINO keeps
    several requests in flight)."""
    from ..estimator import load

    return load(name or args.model, weights=args.weights, backend=args.backend, device=args.device,
                dtype=args.dtype, input_size=args.input_size, compile=getattr(args, "compile", False),
                cuda_graphs=getattr(args, "cuda_graphs", False), performance=performance)


def add_format_args(parser: argparse.ArgumentParser) -> None:
    """--format, --cmap and --grayscale, as `run` and `batch` take them."""
    parser.add_argument("--format", "-f", default="npy,color", metavar="LIST",
                        help=f"comma-separated: {', '.join(FORMATS)} (default: npy,color; the .json sidecar is always written)")
    parser.add_argument("--cmap", default="Spectral_r", help="Matplotlib colour map for color/side (default: Spectral_r)")
    parser.add_argument("--grayscale", action="store_true", help="grey colour map: closer = brighter")


def formats_from_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The validated --format list (and --cmap); a bad value is a one-line usage error."""
    try:
        formats = parse_formats(args.format)
        if not args.grayscale:
            colormap_lut(args.cmap)
    except ValueError as e:
        raise LocalDepthError(str(e)) from None
    return formats
