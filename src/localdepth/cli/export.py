"""``localdepth export``: a registry model -> ONNX (dynamic batch/height/width), checked against PyTorch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import registry


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a model to ONNX, checked against PyTorch",
        description="Export a model of the registry to ONNX with dynamic batch, height and width, print its "
                    "parity against PyTorch (max and mean error on one image, relative to the output range) and "
                    "refuse to write it when the parity fails. The export is cached beside the weights, where "
                    "`--backend onnx` finds it. For OpenVINO int8, see `localdepth quantize`.")
    p.add_argument("--model", "-m", default=None,
                   help=f"registry name (default: {registry.DEFAULT_MODEL}, or the model a fine-tuned --weights "
                        "folder was trained from)")
    p.set_defaults(default_model=registry.DEFAULT_MODEL)
    p.add_argument("--weights", metavar="PATH", help="a Hugging Face-format folder to export instead of the cache")
    p.add_argument("--output", "-o", type=Path, help="where to write the .onnx file (default: only the cache)")
    p.add_argument("--quantize", choices=("int8", "fp16"),
                   help="int8: ONNX Runtime dynamic quantization (CPUs); fp16: half precision (GPUs)")
    p.add_argument("--check-image", metavar="PHOTO",
                   help="the photo the parity is measured on (default: a synthetic image)")
    p.add_argument("--input-size", type=int, metavar="N", help="network input size of the parity check")
    p.add_argument("--force", action="store_true", help="export again even when the cache has this model")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..conversion import Settings, Target, convert, copy_to
    from ..weights import resolve

    spec = registry.get(args.model)
    resolved = resolve(spec, args.weights)
    converted = convert(spec, resolved, Target("onnx", args.quantize or "fp32"),
                        settings=Settings(check_image=args.check_image, input_size=args.input_size),
                        force=args.force, log=lambda line: print(f"localdepth: {line}", file=sys.stderr))
    for line in converted.lines():
        print(line)
    print(f"{'reused' if converted.cached else 'cached'}: {converted.path}")
    if args.output is not None:
        print(f"wrote {copy_to(converted, args.output)}")
    return 0
