"""``localdepth photo3d``: a photo (and its depth) -> a short video of a virtual camera moving in front of it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .common import add_model_args, load_from_args
from .geomopts import camera_from_args

EXAMPLES = """examples:
  localdepth photo3d photo.jpg --path circle --seconds 4 -o photo_3d.mp4     parallax video (also .gif, .webp)
  localdepth photo3d photo.jpg --path dolly-zoom -o dolly.mp4                the subject keeps its size
  localdepth photo3d photo.jpg --depth depth_out/photo.npy -o photo_3d.gif   a depth map you have (its sidecar read)
"""


def register(sub) -> None:
    from ..render.paths import DEFAULT_AMPLITUDE, PATHS
    from ..render.photo3d import DEFAULT_FPS, DEFAULT_SECONDS, DEFAULT_SIZE, OUTPUT_SUFFIXES

    amplitudes = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_AMPLITUDE.items())
    p = sub.add_parser(
        "photo3d", help="photo -> 3D photo video: a virtual camera moving in front of it (MP4, GIF, WebP)",
        description="Render a short video of a virtual camera moving in front of a photo, from its depth (predicted, "
                    "or --depth): near things hide far things, the background uncovered behind them is inpainted, "
                    "and depth edges are cut. See docs/photo3d.md.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photo", type=Path, metavar="PHOTO", help="the photo")
    p.add_argument("--output", "-o", type=Path, metavar="FILE",
                   help=f"the video: {', '.join(OUTPUT_SUFFIXES)} (default: PHOTO_3d.mp4 in the current folder)")
    p.add_argument("--depth", type=Path, metavar="MAP",
                   help="use this depth map instead of predicting one: .npy, .npz, .pfm, or a png16 with its "
                        "localdepth sidecar (which says its kind and units)")
    p.add_argument("--depth-kind", choices=("disparity", "depth"),
                   help="what --depth holds when it has no sidecar (default: disparity, as relative models give)")
    g = p.add_argument_group("the camera's path")
    g.add_argument("--path", default="circle", choices=PATHS, help="camera path (default: circle)")
    g.add_argument("--amplitude", type=float, metavar="A",
                   help=f"largest camera movement, as a fraction of the focus depth (defaults: {amplitudes})")
    g.add_argument("--focus", type=float, metavar="Z",
                   help="the depth that stays still, in the depth's units (relative maps: 1 = nearest, 10 = farthest; "
                        "default: the median depth, the 10th percentile for dolly-zoom)")
    g.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help=f"length (default {DEFAULT_SECONDS:g})")
    g.add_argument("--fps", type=float, default=DEFAULT_FPS, help=f"frames per second (default {DEFAULT_FPS:g})")
    g.add_argument("--size", type=int, default=DEFAULT_SIZE, metavar="PX",
                   help=f"short side of the video in pixels, never above the photo's (default {DEFAULT_SIZE}: 720p)")
    c = p.add_argument_group("the photo's camera (default: its EXIF, the model's camera, else a 60 degree field of view)")
    c.add_argument("--intrinsics", metavar="FX,FY,CX,CY",
                   help="pinhole intrinsics in pixels of the photo (pixel centres at integer coordinates)")
    c.add_argument("--fov", type=float, metavar="DEG", help="horizontal field of view in degrees")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_model_args(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from .. import registry
    from ..depthfile import is_metric, read_depth_map
    from ..errors import LocalDepthError
    from ..geometry import camera_from_dict
    from ..images import load_image
    from ..render.photo3d import OUTPUT_SUFFIXES, Photo3DOptions, prepare, render_to_file
    from ..safety import quoted
    from ..writers import atomic_write_bytes

    output = args.output or Path(f"{args.photo.stem}_3d.mp4")
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise LocalDepthError(f"{quoted(output)}: write a 3D photo as {', '.join(OUTPUT_SUFFIXES)}")
    if args.depth is None:
        registry.get(args.model)  # an unknown name is a usage error, said before the photo is read
    if output.resolve() == args.photo.resolve():
        raise LocalDepthError(f"{quoted(output)}: the output would overwrite the photo; choose another --output")
    image = load_image(args.photo)
    h, w = image.shape[:2]
    timings: dict = {}
    predicted = None
    t0 = time.perf_counter()
    if args.depth is not None:
        depth, kind, meta = read_depth_map(args.depth, args.depth_kind)
        metric = is_metric(kind, meta)
        if meta.get("predicted_intrinsics"):
            predicted = camera_from_dict(meta["predicted_intrinsics"], w, h)
        source = {"depth_file": str(args.depth), "kind": kind, "units": "m" if metric else "relative",
                  "model": (meta.get("model") or {}).get("model")}
        timings["depth_read_s"] = round(time.perf_counter() - t0, 3)
    else:
        estimator = load_from_args(args)
        result = estimator.predict_decoded([image], sources=[str(args.photo)])[0]
        depth, kind, metric, predicted = result.map, result.kind, result.metric, result.intrinsics
        source = {"model": estimator.name, "kind": kind, "units": result.units,
                  "backend": f"{estimator.backend.name} {estimator.backend.dtype} on {estimator.backend.device}"}
        timings["depth_s"] = round(time.perf_counter() - t0, 3)
    camera = camera_from_args(args, w, h, image_path=args.photo, predicted=predicted)
    options = Photo3DOptions(path=args.path, seconds=args.seconds, fps=args.fps, size=args.size,
                             amplitude=args.amplitude, focus=args.focus)
    t0 = time.perf_counter()
    try:
        photo = prepare(image, depth, kind, camera, options, metric=metric)
    except ValueError as e:
        raise LocalDepthError(str(e)) from None
    timings["prepare_s"] = round(time.perf_counter() - t0, 3)
    written = render_to_file(photo, output, progress=not args.quiet)
    timings.update(render_s=written["render_s"], encode_s=written["encode_s"])
    info = {**photo.info, "output": written, "photo": str(args.photo), "source": source, "timings_s": timings}
    # the sidecar last: "photo_3d.json" beside "photo_3d.mp4"
    atomic_write_bytes(output.with_suffix(".json"), (json.dumps(info, indent=2, default=float) + "\n").encode())
    what = timings.get("depth_s")
    depth_part = f"depth {what:.1f} s, " if what is not None else ""
    print(f"localdepth: wrote {output} ({written['frames']} frames, {photo.info['width']}x{photo.info['height']}, "
          f"{args.fps:g} fps, {args.path}): {depth_part}render {written['render_s']:.1f} s, "
          f"encode {written['encode_s']:.1f} s", file=sys.stderr)
    return 0
