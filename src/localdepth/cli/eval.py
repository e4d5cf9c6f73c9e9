"""``localdepth eval``: models x dataset -> AbsRel, RMSE, δ1… as a Markdown/JSON table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..backends import BACKENDS, DTYPES
from .common import add_outdir_arg, loading_line


def register(sub) -> None:
    from ..evaluation import ALIGNMENTS, CROPS
    from ..evaluation.datasets import folder_layouts_text

    p = sub.add_parser(
        "eval", help="evaluate models against ground-truth depth (AbsRel, RMSE, δ1…)",
        description="Evaluate one or more models on RGB-D data. Datasets: folder:PATH (the layouts below, in the "
                    "folder or any folder under it), manifest:FILE.csv, nyu:FILE.mat, kitti:SPLIT.txt, diode:ROOT, "
                    "stray:CAPTURE (a Stray Scanner phone capture). "
                    "Table figures are means over images of per-image metrics (pooled figures are in the JSON).",
        epilog="folder:PATH layouts (--depth-scale, --crop and --max-depth override theirs):\n"
               + folder_layouts_text()
               + "\nRGB and depth files pair by stem, or by the key their names share without prefixes such as "
                 "rgb_, image_,\ncolor_, depth_, sync_depth_ (rgb_00005.jpg with sync_depth_00005.png).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", action="append", required=True, metavar="NAME[=WEIGHTS]",
                   help="registry name, optionally =weights path; repeat to compare; 'gt' = the ground truth "
                        "itself (a perfect model, to check the pipeline)")
    p.add_argument("--dataset", "-d", required=True, metavar="KIND:PATH", help="the data (see above)")
    p.add_argument("--align", default="scale-shift-disparity", choices=ALIGNMENTS,
                   help="alignment of each prediction to the ground truth (default: scale-shift-disparity; "
                        "use none for metric models as they are)")
    p.add_argument("--robust", choices=("none", "irls", "ransac"), default="none", help="robust alignment fit")
    p.add_argument("--min-depth", type=float, help="evaluate ground truth >= this (default: the dataset's)")
    p.add_argument("--max-depth", type=float, help="evaluate ground truth <= this; predictions are clamped to it "
                                                    "(default: the dataset's: NYU 10, KITTI 80, DIODE 350 m)")
    p.add_argument("--crop", choices=(*CROPS, "none"), help="evaluation crop (default: the dataset's: eigen for "
                                                           "NYU, garg for KITTI)")
    p.add_argument("--depth-scale", type=float, help="folder datasets: PNG units per metre (overrides detection)")
    p.add_argument("--split", type=Path, help="NYU: indices file or splits.mat (testNdxs)")
    p.add_argument("--data-root", type=Path, help="KITTI: folder the split file's paths are relative to")
    p.add_argument("--limit", type=int, help="evaluate only the first N frames")
    p.add_argument("--prompt-downsample", type=int, default=8, metavar="N",
                   help="models that take a prompt depth (prompt-depth-anything-*) get the ground truth averaged over "
                        "N x N blocks, a simulated low-resolution LiDAR (default 8)")
    add_outdir_arg(p, type=Path, help="write eval.json, eval.md (and error maps) here")
    p.add_argument("--error-maps", action="store_true",
                   help="write image | GT | prediction | AbsRel pictures to OUTDIR/error_maps/MODEL/")
    p.add_argument("--pooled", action="store_true", help="print pixel-pooled figures instead of per-image means")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-frame progress")
    g = p.add_argument_group("model loading")
    g.add_argument("--backend", default="auto", choices=BACKENDS, help="inference backend (default: auto)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    g.add_argument("--dtype", default="auto", choices=DTYPES, help="precision (see `localdepth run --help`)")
    g.add_argument("--input-size", type=int, metavar="N", help="network input size")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..errors import LocalDepthError
    from ..estimator import load
    from ..evaluation import EvalSettings, estimator_predictor, evaluate, open_dataset, oracle, to_markdown
    from ..evaluation.evaluate import ORACLE
    from ..safety import check_outputs
    from ..writers import atomic_write_bytes

    if args.error_maps and not args.outdir:
        raise LocalDepthError("--error-maps needs --outdir")
    if args.outdir:
        _, _, data_path = args.dataset.partition(":")
        check_outputs([("--outdir's eval.json", args.outdir / "eval.json"),
                       ("--outdir's eval.md", args.outdir / "eval.md")],
                      [("--dataset", data_path or None), ("--split", args.split)])
    if not 1 <= args.prompt_downsample <= 256:
        raise LocalDepthError("--prompt-downsample must be between 1 and 256")
    dataset = open_dataset(args.dataset, depth_scale=args.depth_scale, split=args.split, data_root=args.data_root,
                           limit=args.limit)
    predictors = []
    for spec in args.model:
        name, _, weights = spec.partition("=")
        if name == ORACLE:
            predictors.append(oracle())
            continue
        est = load(name, weights=weights or None, backend=args.backend, device=args.device, dtype=args.dtype,
                   input_size=args.input_size, on_loading=loading_line(args))
        label = name if sum(s.partition("=")[0] == name for s in args.model) == 1 else spec
        predictors.append(estimator_predictor(est, label, prompt_downsample=args.prompt_downsample))
    settings = EvalSettings(alignment=args.align, robust=None if args.robust == "none" else args.robust,
                            min_depth=args.min_depth, max_depth=args.max_depth, crop=args.crop,
                            error_maps=args.outdir / "error_maps" if args.error_maps else None)
    report = evaluate(predictors, dataset, settings,
                      progress=None if args.quiet else (lambda line: print(line, file=sys.stderr)))
    which = "pooled" if args.pooled else "mean"
    table = to_markdown(report, which)
    if args.outdir:
        atomic_write_bytes(args.outdir / "eval.json", (json.dumps(report, indent=2) + "\n").encode())
        atomic_write_bytes(args.outdir / "eval.md", table.encode())
        print(f"wrote {args.outdir / 'eval.json'} and {args.outdir / 'eval.md'}", file=sys.stderr)
    sys.stdout.write(table)
    for f in report["skipped"]:
        print(f"localdepth: warning: {f['name']}: skipped, {f['reason']}", file=sys.stderr)
    for f in report["failed"]:
        print(f"localdepth: error: {f['name']}: {f['error']}", file=sys.stderr)
    if not any(res["images"] for res in report["models"].values()):
        print(f"localdepth: error: no frame has valid ground truth ({len(report['skipped'])} skipped, "
              f"{len(report['failed'])} unreadable); check --depth-scale, --min-depth, --max-depth and --crop",
              file=sys.stderr)
        return 1
    return 1 if report["failed"] else 0
