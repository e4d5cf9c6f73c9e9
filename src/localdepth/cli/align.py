"""``localdepth align``: a relative (or metric) map + metric references -> metric depth."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from .geomopts import add_alignment_args, align_from_args

OUTPUT_FORMATS = {".npy": "npy", ".png": "png16", ".pfm": "pfm"}


def register(sub) -> None:
    p = sub.add_parser(
        "align", help="scale (and shift) a depth map to metres from known points or a reference depth map",
        description="Fit scale and shift of a map (relative inverse depth by default) to sparse points "
                    "(CSV rows u,v,depth_m) or a reference depth map, and write metric depth. The fit "
                    "(scale, shift, residual RMSE, inliers) goes into the output's .json sidecar.")
    p.add_argument("map", type=Path, metavar="MAP", help="depth map from `localdepth run` (.npy, .pfm, or .png with sidecar)")
    p.add_argument("--output", "-o", type=Path, required=True,
                   help="metric depth to write: .npy (float32 metres), .png (uint16 millimetres) or .pfm")
    p.add_argument("--kind", choices=("disparity", "depth"),
                   help="what MAP holds when it has no sidecar (default: disparity = relative inverse depth)")
    add_alignment_args(p, required=True)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..depthfile import image_reference, read_depth_map, sidecar_image
    from ..errors import LocalDepthError
    from ..postprocess import DepthResult
    from ..safety import check_outputs
    from ..writers import FORMATS, WriteOptions, atomic_write_bytes

    fmt = OUTPUT_FORMATS.get(args.output.suffix.lower())
    if fmt is None:
        raise LocalDepthError(f"{args.output}: --output must end in {', '.join(OUTPUT_FORMATS)}")
    check_outputs([("--output", args.output), ("the sidecar of --output", args.output.with_suffix(".json"))],
                  [("the map", args.map), ("the map's sidecar", args.map.with_suffix(".json")),
                   ("--points", args.points), ("--reference", args.reference), ("--mask", args.mask)])
    source, kind, meta = read_depth_map(args.map, args.kind)
    metric, report = align_from_args(args, source, kind)
    photo, _ = sidecar_image(args.map, meta)
    result = DepthResult(map=metric, kind="depth", model=str((meta.get("model") or {}).get("model", "unknown")),
                         input_size=tuple(meta.get("input_size") or source.shape), source=str(args.map))
    data, info = FORMATS[fmt][1](result, WriteOptions(formats=(fmt,)))
    atomic_write_bytes(args.output, data)
    valid = metric[metric > 0]
    sidecar_path = args.output.with_suffix(".json")
    sidecar = {
        # the photo stays the image of the aligned map (colours, EXIF); the map it was fitted from is derived_from,
        # both relative to this sidecar's folder
        "source": meta.get("source") if photo is not None else None,
        "image": image_reference(photo, sidecar_path),
        "derived_from": image_reference(args.map, sidecar_path),
        "source_kind": kind, "kind": "depth", "units": "m",
        "convention": "z-depth along the optical axis, metres",
        "height": int(metric.shape[0]), "width": int(metric.shape[1]),
        "range": {"min": float(valid.min()) if valid.size else None, "max": float(valid.max()) if valid.size else None},
        "alignment": report, "model": meta.get("model"),
        "outputs": {fmt: {"file": args.output.name, **info}},
    }
    atomic_write_bytes(sidecar_path, (json.dumps(sidecar, indent=2) + "\n").encode())
    print(f"aligned in {report['space']} space: scale {report['scale']:.6g}, shift {report['shift']:.6g}, "
          f"rmse {report['rmse']:.4g} {report['rmse_units']}, {report['n_inliers']}/{report['n_samples']} inliers "
          f"-> {args.output} (metres)", file=sys.stderr)
    return 0
