"""``localdepth export``: a registry model -> ONNX (dynamic batch/height/width) or a Core ML package,
checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import registry
from ..errors import LocalDepthError


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a model to ONNX or Core ML, checked against PyTorch",
        description="Export a model of the registry to ONNX with dynamic batch, height and width, print its "
                    "parity against PyTorch (max and mean error on one image, relative to the output range) and "
                    "refuse to write it when the parity fails; or (--format coreml) to a Core ML ML Program "
                    "(.mlpackage, fp16 by default) for apps, with the image normalisation inside, the network sizes "
                    "of the common aspect ratios as its input sizes and a JSON file beside it (sizes, "
                    "normalisation, output kind and units). The export is cached (`localdepth models cache`), where "
                    "`--backend onnx` finds it. For OpenVINO int8, see `localdepth quantize`.")
    p.add_argument("--model", "-m", default=None,
                   help=f"registry name (default: {registry.DEFAULT_MODEL}, or the model a fine-tuned --weights "
                        "folder was trained from)")
    p.set_defaults(default_model=registry.DEFAULT_MODEL)
    p.add_argument("--weights", metavar="PATH", help="a Hugging Face-format folder to export instead of the cache")
    p.add_argument("--format", choices=("onnx", "coreml"), default="onnx",
                   help="onnx (default) or coreml (an .mlpackage; running it needs macOS)")
    p.add_argument("--output", "-o", type=Path,
                   help="where to write the .onnx file or the .mlpackage (and its .json) (default: only the cache)")
    p.add_argument("--quantize", choices=("int8", "fp16"),
                   help="ONNX: int8 (ONNX Runtime dynamic quantization, CPUs) or fp16 (half precision, GPUs)")
    p.add_argument("--precision", choices=("fp16", "fp32"),
                   help="Core ML: the package's precision (default: fp16, what the Neural Engine computes)")
    p.add_argument("--check-image", metavar="PHOTO",
                   help="the photo the parity is measured on (default: a synthetic image)")
    p.add_argument("--input-size", type=int, metavar="N", help="ONNX: network input size of the parity check")
    p.add_argument("--force", action="store_true", help="export again even when the cache has this model")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress of the export and its checks")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..conversion import Settings, Target, check_copy_target, convert, copy_to
    from ..weights import resolve
    from .common import status_from_args

    if args.format == "coreml" and (args.quantize or args.input_size):
        raise LocalDepthError("--quantize and --input-size apply to ONNX; a Core ML package is fp16 (or "
                              "--precision fp32) at the model's own network sizes")
    if args.format == "onnx" and args.precision:
        raise LocalDepthError("--precision applies to --format coreml; ONNX takes --quantize fp16 or int8")
    spec = registry.get(args.model)
    if args.format == "coreml":
        from ..conversion.coreml import check_exportable

        check_exportable(spec)  # before the weights are looked for (or downloaded)
    resolved = resolve(spec, args.weights)
    target = Target("coreml", args.precision or "fp16") if args.format == "coreml" else \
        Target("onnx", args.quantize or "fp32")
    inputs = [("--weights", resolved.path), ("--check-image", args.check_image)]
    if args.output is not None:  # before the export, not after it
        if args.format == "coreml":
            from ..conversion.coreml import package_paths
            from ..safety import check_outputs

            check_outputs([("--output", path) for path in package_paths(args.output)], inputs)
        else:
            check_copy_target(args.output, target, inputs)
    with status_from_args(args) as status:
        converted = convert(spec, resolved, target,
                            settings=Settings(check_image=args.check_image, input_size=args.input_size),
                            force=args.force, log=status)
    for line in converted.lines():
        print(line)
    print(f"{'reused' if converted.cached else 'cached'}: {converted.path}")
    if args.output is not None:
        if args.format == "coreml":
            from ..conversion.coreml import write

            package, info = write(converted, args.output)
            print(f"wrote {package} and {info}")
        else:
            print(f"wrote {copy_to(converted, args.output, inputs=inputs)}")
    return 0
