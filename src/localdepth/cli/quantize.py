"""``localdepth quantize``: int8 for OpenVINO with NNCF, calibrated on images, its accuracy cost measured."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import registry


def register(sub) -> None:
    p = sub.add_parser(
        "quantize", help="quantize a model to int8 for OpenVINO (NNCF), with its accuracy cost",
        description="Quantize a model to int8 with NNCF post-training quantization, calibrated on a folder of "
                    "images (default: a built-in set of synthetic scenes; photos like the ones you will run are "
                    "better). Prints and stores beside the model its deviation from fp32 on the calibration and "
                    "on held-out check images, and with --eval-dataset the AbsRel and δ1 of fp32 and int8 on "
                    "that dataset. The result replaces the cached int8 model of these weights, which "
                    "`--backend openvino --dtype int8` then runs. Needs `pip install 'localdepth[openvino]'`.")
    p.add_argument("--model", "-m", default=None,
                   help=f"registry name (default: {registry.DEFAULT_MODEL}, or the model a fine-tuned --weights "
                        "folder was trained from)")
    p.set_defaults(default_model=registry.DEFAULT_MODEL)
    p.add_argument("--weights", metavar="PATH", help="weights to quantize instead of the cache")
    p.add_argument("--calibration", metavar="FOLDER", help="calibration images (default: built-in synthetic scenes)")
    p.add_argument("--count", type=int, metavar="N",
                   help="calibration images to use, at most (default: 16; NNCF suggests up to 300)")
    p.add_argument("--check-images", metavar="FOLDER",
                   help="held-out images for the deviation (default: 4 synthetic scenes not used to calibrate)")
    p.add_argument("--input-size", type=int, metavar="N", help="network input size to calibrate at (default: the model's)")
    p.add_argument("--model-type", choices=("default", "transformer"), default="default",
                   help="NNCF model type: transformer adds SmoothQuant (default: default, which deviated less "
                        "on the Depth Anything V2 architecture here)")
    p.add_argument("--eval-dataset", metavar="KIND:PATH",
                   help="also evaluate fp32 and int8 on this dataset (as `localdepth eval --dataset`)")
    p.add_argument("--eval-limit", type=int, metavar="N", help="evaluate only the first N frames")
    p.add_argument("--output", "-o", type=Path,
                   help="also copy the int8 model (model.xml/.bin, report.json) to this folder, as one set: it "
                        "replaces the folder whole (a new or empty folder, or one holding such a set)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress of the conversion, calibration and checks")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..conversion import Settings, Target, check_copy_target, convert, copy_to, update_report
    from ..weights import resolve

    spec = registry.get(args.model)
    resolved = resolve(spec, args.weights)
    inputs = [("--weights", resolved.path), ("--calibration", args.calibration), ("--check-images", args.check_images)]
    if args.output is not None:  # before an hour of calibration, not after it
        check_copy_target(args.output, Target("openvino", "int8"), inputs)
    settings = Settings(calibration=args.calibration, calibration_count=args.count, check_images=args.check_images,
                        input_size=args.input_size,
                        model_type=None if args.model_type == "default" else args.model_type)
    from .common import status_from_args

    with status_from_args(args) as status:
        converted = convert(spec, resolved, Target("openvino", "int8"), settings=settings, force=True, log=status)
    for line in converted.lines():
        print(line)
    if args.eval_dataset:
        result = evaluate_change(spec.name, str(resolved.path), args.eval_dataset, args.eval_limit, args.input_size)
        update_report(converted, eval=result, lines=[*converted.lines(), result["line"]])
        print(result["line"])
    print(f"cached: {converted.path}")
    if args.output is not None:
        print(f"wrote {copy_to(converted, args.output, inputs=inputs)}")
    return 0


def evaluate_change(model: str, weights: str, dataset: str, limit: int | None, input_size: int | None) -> dict:
    """AbsRel and δ1 of OpenVINO fp32 and int8 on ``dataset`` (default alignment of `localdepth eval`)."""
    from ..estimator import load
    from ..evaluation import EvalSettings, estimator_predictor, evaluate, open_dataset

    data = open_dataset(dataset, limit=limit)
    predictors = [estimator_predictor(load(model, weights=weights, backend="openvino", device="cpu", dtype=dtype,
                                           input_size=input_size), dtype) for dtype in ("fp32", "int8")]
    report = evaluate(predictors, data, EvalSettings())
    fp32, int8 = (report["models"][k]["mean"] for k in ("fp32", "int8"))
    change = {k: int8[k] - fp32[k] for k in ("abs_rel", "d1")}
    line = (f"eval on {report['dataset']} ({report['samples']} frames, {report['alignment']}): AbsRel fp32 "
            f"{fp32['abs_rel']:.4f} -> int8 {int8['abs_rel']:.4f} ({change['abs_rel']:+.4f}), δ1 {fp32['d1']:.4f} -> "
            f"{int8['d1']:.4f} ({change['d1']:+.4f})")
    return {"dataset": dataset, "frames": report["samples"], "alignment": report["alignment"],
            "fp32": {k: fp32[k] for k in ("abs_rel", "d1")}, "int8": {k: int8[k] for k in ("abs_rel", "d1")},
            "change": change, "line": line}
