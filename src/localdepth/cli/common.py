"""Options shared by the subcommands that load a model."""

from __future__ import annotations

import argparse
import sys

from .. import registry
from ..backends import BACKENDS
from ..errors import LocalDepthError
from ..writers import FORMATS, colormap_lut, parse_formats


def add_model_args(parser: argparse.ArgumentParser, *, default_model: str | None = registry.DEFAULT_MODEL) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", "-m", default=default_model,
                   help=f"registry name, '-' or '_' (default: {default_model}); see `localdepth models`")
    g.add_argument("--weights", metavar="PATH",
                   help="weights to use instead of the cache: a Hugging Face-format folder or a weights file")
    g.add_argument("--backend", default="auto", choices=BACKENDS, help="inference backend (default: auto)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    g.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16", "int8"),
                   help="precision (default: auto = fp16 on CUDA, fp32 elsewhere; int8: ONNX Runtime)")
    g.add_argument("--compile", action="store_true", help="PyTorch: torch.compile the model (slow first batch)")
    g.add_argument("--cuda-graphs", action="store_true", help="PyTorch on CUDA: replay a CUDA graph per input shape")
    g.add_argument("--input-size", type=int, metavar="N",
                   help="network input size (short side for Depth Anything; default: the model's)")


def loading_line(args: argparse.Namespace):
    """Where ``load(on_loading=)`` says "loading NAME (cpu, fp32)…": stderr, on a terminal only
    (logs and pipes stay clean), never with ``--quiet``."""
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        return None
    return lambda line: print(f"localdepth: {line}", file=sys.stderr, flush=True)


def load_from_args(args: argparse.Namespace, name: str | None = None):
    from ..estimator import load

    return load(name or args.model, weights=args.weights, backend=args.backend, device=args.device,
                dtype=args.dtype, input_size=args.input_size, compile=getattr(args, "compile", False),
                cuda_graphs=getattr(args, "cuda_graphs", False), on_loading=loading_line(args))


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


def formats_from_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The validated --format list (and --cmap); a bad value is a one-line usage error."""
    try:
        formats = parse_formats(args.format)
        if not args.grayscale:
            colormap_lut(args.cmap)
    except ValueError as e:
        raise LocalDepthError(str(e)) from None
    return formats
