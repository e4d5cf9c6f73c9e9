"""``localdepth scene``: several photos or a video -> one consistent 3D scene with camera poses."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..scene.fuse import DEFAULT_CONF_PERCENTILE, DEFAULT_MAX_POINTS
from ..scene.views import DEFAULT_MAX_VIEWS, MAX_SCENE_PIXELS, MAX_VIEWS
from .common import add_model_args, add_url_args, load_from_args, status_from_args, url_limits_from_args

EXAMPLES = """examples:
  localdepth scene photos/ --model da3-base --output scene/
  localdepth scene walk.mp4 --stride 10 --max-views 32 --output walk/
  localdepth scene a.jpg b.jpg c.jpg --model da3-small --output room/

outputs (under --output): depth/<stem>.npy, conf/<stem>.npy, images/, cameras.json, points.ply,
scene.glb, colmap/{cameras,images,points3D}.txt, scene.json. See docs/scene.md.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "scene", help="several photos or a video -> one 3D scene: depth, cameras, fused points, COLMAP",
        description="Predict every view together with an any-view model (Depth Anything 3): depth, confidence and "
                    "each camera's intrinsics and pose in one world frame. Writes per-view maps, cameras.json, "
                    "a fused point cloud, a GLB with the cameras, and a COLMAP text model.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image files, folders, glob patterns, .txt lists or http(s):// URLs; or one video file")
    p.add_argument("--output", "-o", type=Path, required=True, metavar="DIR", help="output folder")
    g = p.add_argument_group("views")
    g.add_argument("--stride", type=int, default=1, help="use every N-th frame (or image) (default: 1)")
    g.add_argument("--max-views", type=int, default=DEFAULT_MAX_VIEWS, metavar="N",
                   help=f"at most N views, spread evenly over the input (default: {DEFAULT_MAX_VIEWS}, at most "
                        f"{MAX_VIEWS}; a scene also holds at most {MAX_SCENE_PIXELS // 1_000_000} megapixels)")
    g.add_argument("--max-res", type=int, metavar="PX", help="shrink views so the longer side is at most PX")
    f = p.add_argument_group("fused point cloud")
    f.add_argument("--conf-percentile", type=float, default=DEFAULT_CONF_PERCENTILE, metavar="P",
                   help=f"drop points below the P-th percentile of confidence (default: {DEFAULT_CONF_PERCENTILE:g}, "
                        "as the official exports)")
    f.add_argument("--voxel-size", type=float, metavar="S",
                   help="voxel size in the depth's units (default: one sampled pixel's footprint at the median depth)")
    f.add_argument("--max-points", type=int, default=DEFAULT_MAX_POINTS, metavar="N",
                   help=f"at most N fused points (default: {DEFAULT_MAX_POINTS:,})")
    add_url_args(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress of the loading and the scene's stages")
    add_model_args(p, default_model="da3-base")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..errors import LocalDepthError
    from ..scene import SceneSettings, collect_views, reconstruct
    from ..scene.build import takes_views
    from ..safety import check_outdir
    from ..scene.views import check_max_views, drop_off_grid_views

    check_outdir(args.output)
    settings = SceneSettings(conf_percentile=args.conf_percentile, voxel_size=args.voxel_size,
                             max_points=args.max_points).check()
    check_max_views(args.max_views)
    if args.stride < 1:
        raise LocalDepthError("--stride must be 1 or more")
    url_limits = url_limits_from_args(args)
    estimator = load_from_args(args)
    if not takes_views(estimator):
        raise LocalDepthError(f"{estimator.name} sees one image at a time and predicts no camera poses, so it cannot "
                              "build a scene; use a Depth Anything 3 any-view model (da3-small, da3-base, da3-large, "
                              "da3-giant)")
    views, problems, _ = collect_views(list(args.inputs), stride=args.stride, max_views=args.max_views,
                                       max_res=args.max_res, url_limits=url_limits)
    views, off_grid = drop_off_grid_views(estimator, views)
    problems += off_grid
    for line in problems:
        print(f"localdepth: error: {line}", file=sys.stderr)
    if not views:
        print("localdepth: error: no readable views; nothing written", file=sys.stderr)
        return 2 if not problems else 1
    with status_from_args(args) as status:  # the stages on a terminal only: stderr stays for errors in logs
        report = reconstruct(estimator, views, args.output, settings, given_output=str(args.output),
                             progress=status if status.live else None)
    fusion = report["fusion"]
    units = "metres" if report["units"] == "m" else "relative units"
    print(f"{len(views)} views -> {args.output}: {fusion['points']:,} fused points ({units}, voxel "
          f"{fusion['voxel_size']:.4g}), cameras.json, points.ply, scene.glb, colmap/", file=sys.stderr)
    return 1 if problems else 0
