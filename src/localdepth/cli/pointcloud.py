"""``localdepth pointcloud``: a depth map (+ image, camera) -> coloured point cloud and/or mesh."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_url_args
from .geomopts import (add_alignment_args, add_camera_args, add_cloud_args, align_from_args, export_geometry,
                       wants_alignment)


def register(sub) -> None:
    p = sub.add_parser(
        "pointcloud", help="depth map -> coloured point cloud (PLY/PCD) and/or mesh (PLY/OBJ/GLB)",
        description="Back-project a depth map through a pinhole camera (--intrinsics, --fov, the image's EXIF, "
                    "the camera the model predicted (in the map's sidecar), or a 60 degree default) with Open3D. "
                    "Relative maps need alignment (--points/--reference) "
                    "or --relative (arbitrary units), but for a scene's own maps with its --cameras (the scene's "
                    "units).")
    p.add_argument("map", type=Path, metavar="MAP", help="depth map (.npy, .pfm, or .png with sidecar)")
    p.add_argument("--image", help="RGB image for colours and EXIF: a file or an http(s):// URL (default: the "
                                   "photo the map's sidecar names, relative to the sidecar's folder)")
    p.add_argument("--output", "-o", type=Path, help="point cloud file: .ply or .pcd")
    p.add_argument("--mesh", type=Path, help="mesh file: .ply, .obj or .glb")
    p.add_argument("--kind", choices=("disparity", "depth"),
                   help="what MAP holds when it has no sidecar (default: disparity)")
    p.add_argument("--cameras", type=Path, metavar="JSON",
                   help="a scene's cameras.json (localdepth scene): use that view's intrinsics and pose, so the "
                        "points land in the scene's world frame")
    p.add_argument("--view", metavar="N|NAME",
                   help="which view of --cameras (index or image name; default: the map's own, from its sidecar "
                        "or its name)")
    add_camera_args(p)
    add_cloud_args(p)
    add_alignment_args(p)
    add_url_args(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..depthfile import is_metric, read_depth_map, sidecar_image
    from ..errors import LocalDepthError
    from ..fetch import is_url
    from ..images import load_image
    from ..safety import check_outputs
    from ..writers import atomic_write_bytes
    from .common import url_limits_from_args

    if not args.output and not args.mesh:
        raise LocalDepthError("nothing to write: give --output cloud.ply and/or --mesh mesh.ply")
    target = args.output or args.mesh
    report_path = target.with_name(target.name + ".json")  # never "cloud.json": a map of that stem's sidecar
    check_outputs([("--output", args.output), ("--mesh", args.mesh), ("the report", report_path)],
                  [("the map", args.map), ("the map's sidecar", args.map.with_suffix(".json")),
                   ("--image", None if is_url(args.image) else args.image), ("--cameras", args.cameras),
                   ("--points", args.points), ("--reference", args.reference), ("--mask", args.mask)])
    depth, kind, meta = read_depth_map(args.map, args.kind)
    if args.image is not None:  # a file, or a URL fetched within --url-timeout/--url-max-mb
        image_path = None if is_url(args.image) else Path(args.image)
        image = load_image(args.image if image_path is None else image_path, url_limits=url_limits_from_args(args))
    else:
        image_path, missing = sidecar_image(args.map, meta)
        if missing:  # colours were meant to come from the photo: say that they will not, in one line
            print(f"localdepth: warning: {args.map}: {missing}; the geometry has no colours (give --image PATH)",
                  file=sys.stderr)
        image = load_image(image_path) if image_path else None
    report: dict = {}
    aligned = False
    if wants_alignment(args):
        depth, report["alignment"] = align_from_args(args, depth, kind)
        aligned = True
    from ..geometry import camera_from_dict

    predicted = camera = pose = None
    in_scene = False
    if meta.get("predicted_intrinsics"):  # the camera the model predicted (Depth Pro's field of view...)
        try:  # kept as predicted: checked only if it is the camera used (a given one wins)
            predicted = camera_from_dict(meta["predicted_intrinsics"], depth.shape[1], depth.shape[0], check=False)
        except (ValueError, KeyError, TypeError) as e:
            raise LocalDepthError(f"{args.map}'s sidecar: predicted_intrinsics is incomplete ({e})") from None
    made_with = (meta.get("metric_scale") or {}).get("camera")
    if args.cameras:
        if args.intrinsics or args.fov is not None:
            raise LocalDepthError("give either --cameras or --intrinsics/--fov, not both")
        camera, pose, report["view"] = scene_view(args.cameras, args.view, args.map, meta, depth.shape)
        in_scene = is_view_of(args.cameras, args.map, meta)
        if not (in_scene or aligned or args.relative or is_metric(kind, meta)):
            named = (meta.get("scene") or {}).get("cameras")
            raise LocalDepthError(
                f"{args.map} is a relative map but not a view of {args.cameras} ("
                + (f"its sidecar names {named}" if named else "no `localdepth scene` sidecar")
                + "), so its scale is not the scene's: align it first (--points/--reference), "
                  "or pass --relative to accept arbitrary units")
    elif made_with and not (args.intrinsics or args.fov is not None) and not wants_alignment(args):
        # the metres of this map were made with this camera (Depth Pro, DA3 Metric: given, EXIF, the model's):
        # the points use it too, unless the user gives another
        camera = camera_from_dict(made_with, depth.shape[1], depth.shape[0])
    report.update(export_geometry(args, depth, kind, image, image_path, aligned=aligned, pointcloud=args.output,
                                  mesh=args.mesh, predicted=predicted, camera=camera, camera_from_world=pose,
                                  metric=is_metric(kind, meta), scene=in_scene))
    report["source"] = str(args.map)
    report["image"] = str(args.image or image_path) if (args.image or image_path) else None
    atomic_write_bytes(report_path, (json.dumps(report, indent=2) + "\n").encode())
    geo = report["geometry"]
    units = {"m": "metres", "scene": "the scene's units (relative; its cameras' scale)"}.get(
        geo["units"], "ARBITRARY UNITS (relative map, no scale)")
    parts = []
    if "pointcloud" in geo:
        parts.append(f"{geo['pointcloud']['points']} points -> {args.output}")
    if "mesh" in geo:
        parts.append(f"{geo['mesh']['triangles']} triangles -> {args.mesh}")
    cam = report["intrinsics"]
    print(f"{'; '.join(parts)} ({units}; camera fx={cam['fx']:.1f} fy={cam['fy']:.1f} cx={cam['cx']:.1f} "
          f"cy={cam['cy']:.1f} from {cam['source']})", file=sys.stderr)
    return 0


def is_view_of(cameras_json: Path, map_path: Path, meta: dict) -> bool:
    """Is the map one of the views of the scene ``cameras_json`` describes? ``localdepth scene``
    names its ``cameras.json`` in each map's sidecar (``scene.cameras``, relative to the map), so a
    map of that scene shares the scale of its cameras even when the scale is relative."""
    import os

    named = (meta.get("scene") or {}).get("cameras")
    if not named:
        return False
    try:
        return os.path.samefile(Path(map_path).parent / named, cameras_json)
    except OSError:
        return False


def scene_view(cameras_json: Path, which: str | None, map_path: Path, meta: dict, shape: tuple[int, int]):
    """``(Intrinsics at the map's size, camera_from_world, sidecar entry)`` of one view of a cameras.json.

    The view is ``which`` (an index or an image name), else the one the map's sidecar names
    (``localdepth scene`` writes it), else the one whose image has the map's stem.
    """
    import numpy as np

    from ..errors import LocalDepthError
    from ..geometry import checked, from_matrix
    from ..safety import check_pose

    try:
        views = json.loads(Path(cameras_json).read_text())["views"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LocalDepthError(f"{cameras_json}: not a localdepth cameras.json ({e})") from None
    stems = [Path(str(v.get("image", ""))).stem for v in views]
    if which is not None:
        index = int(which) if which.isdigit() else next(
            (i for i, v in enumerate(views) if which in (str(v.get("image")), Path(str(v.get("image"))).name, stems[i])),
            None)
    elif isinstance((meta.get("scene") or {}).get("view"), int):
        index = meta["scene"]["view"]
    else:
        matches = [i for i, s in enumerate(stems) if s == Path(map_path).stem]
        index = matches[0] if len(matches) == 1 else None
    if index is None or not 0 <= index < len(views):
        raise LocalDepthError(f"{cameras_json}: cannot tell which view {map_path} is; pass --view N (0 to "
                              f"{len(views) - 1}) or --view IMAGE_NAME")
    view = views[index]
    h, w = shape
    try:
        cam = from_matrix(np.asarray(view["intrinsics"], dtype=np.float64), int(view["width"]), int(view["height"]),
                          source=f"cameras.json view {index}")
        pose = np.asarray(view["camera_from_world"], dtype=np.float64)
    except (KeyError, ValueError, TypeError, OverflowError) as e:
        raise LocalDepthError(f"{cameras_json}: view {index} is incomplete ({e})") from None
    try:
        checked(cam, f"{cameras_json}: view {index}")
    except ValueError as e:
        raise LocalDepthError(str(e)) from None
    pose = check_pose(pose, f"{cameras_json}: view {index}: camera_from_world")
    if (cam.width, cam.height) != (w, h):
        cam = cam.scaled(w, h)
    return cam, pose, {"cameras": str(cameras_json), "index": index, "image": view.get("image")}
