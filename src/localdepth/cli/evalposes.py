"""``localdepth eval-poses``: ATE and RPE of predicted camera poses against a ground-truth trajectory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..evaluation.poses import TRAJECTORY_FORMATS


def register(sub) -> None:
    p = sub.add_parser(
        "eval-poses", help="ATE / RPE of predicted camera poses against a ground-truth trajectory",
        description="Align the predicted camera centres to the ground truth's with a similarity (Umeyama: rotation, "
                    "translation, scale), then report the absolute trajectory error (ATE) and the relative pose "
                    "error (RPE). Poses are paired by position. Formats: Redwood/Open3D .log, TUM .txt, "
                    "localdepth cameras.json, COLMAP images.txt (or its folder).")
    p.add_argument("predicted", type=Path, help="predicted trajectory, e.g. scene/cameras.json")
    p.add_argument("truth", type=Path, help="ground-truth trajectory, e.g. trajectory.log")
    p.add_argument("--pred-format", choices=TRAJECTORY_FORMATS, help="format of PREDICTED (default: from its name)")
    p.add_argument("--gt-format", choices=TRAJECTORY_FORMATS, help="format of TRUTH (default: from its name)")
    p.add_argument("--match", choices=("order", "frame"), default="order",
                   help="pair poses by position (order), or each view with the ground-truth pose its image's frame "
                        "number names (frame: frame_000120.jpg -> pose 120; default: order)")
    p.add_argument("--gt-start", type=int, default=0, help="first ground-truth pose to use (default: 0)")
    p.add_argument("--gt-stride", type=int, default=1,
                   help="use every N-th ground-truth pose, e.g. the --stride of the scene (default: 1)")
    p.add_argument("--delta", type=int, default=1, help="RPE over this many frames (default: 1)")
    p.add_argument("--no-scale", action="store_true", help="rigid alignment (scale 1), for metric predictions")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..errors import LocalDepthError
    from ..evaluation.poses import evaluate_trajectory, match_by_frame, read_trajectory

    if args.gt_start < 0 or args.gt_stride < 1 or args.delta < 1:
        raise LocalDepthError("--gt-start must be 0 or more, --gt-stride and --delta 1 or more")
    predicted = read_trajectory(args.predicted, args.pred_format)
    truth = read_trajectory(args.truth, args.gt_format)
    if args.match == "frame":
        predicted, truth = match_by_frame(predicted, truth)
    else:
        truth = truth.subset(args.gt_start, args.gt_stride)
    report = evaluate_trajectory(predicted, truth, delta=args.delta, with_scale=not args.no_scale)
    report = {"predicted": str(args.predicted), "truth": str(args.truth), **report}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    ate, rpe = report["ate"], report["rpe"]
    print(f"{report['poses']} poses, {report['alignment']['method']} (scale {report['alignment']['scale']:.6g})")
    print("| metric | rmse | mean | median | max |\n|---|---|---|---|---|")
    print("| ATE (gt units) | " + " | ".join(f"{ate[k]:.6g}" for k in ("rmse", "mean", "median", "max")) + " |")
    if rpe["pairs"]:
        for label, key in (("RPE translation (gt units)", "translation"), ("RPE rotation (deg)", "rotation_deg")):
            print(f"| {label} | " + " | ".join(f"{rpe[key][k]:.6g}" for k in ("rmse", "mean", "median", "max")) + " |")
    else:
        print(f"(no RPE: fewer than {rpe['delta'] + 1} poses)", file=sys.stderr)
    return 0
