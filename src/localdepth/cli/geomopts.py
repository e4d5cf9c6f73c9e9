"""Options shared by the commands that need a camera or an alignment (run, align, pointcloud).

Not a subcommand: helpers for ``run.py``, ``align.py`` and ``pointcloud.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import CameraError, LocalDepthError
from ..limits import MAX_IMAGE_PIXELS
from ..safety import check_outputs, one_line, quoted, under_root


def add_camera_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("camera (point clouds, meshes, normals)")
    g.add_argument("--intrinsics", metavar="FX,FY,CX,CY",
                   help="pinhole intrinsics in pixels of the image (pixel centres at integer coordinates)")
    g.add_argument("--fov", type=float, metavar="DEG",
                   help="horizontal field of view in degrees (square pixels, centred principal point)")
    g.add_argument("--relative", action="store_true",
                   help="allow point clouds from a relative map without scale (arbitrary units)")


def add_cloud_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("point cloud and mesh")
    g.add_argument("--voxel-size", type=float, metavar="M", help="voxel downsampling of the point cloud (map units)")
    g.add_argument("--normals", action="store_true", help="estimate point normals (oriented to the camera)")
    g.add_argument("--max-depth", type=float, metavar="M", help="drop points farther than this")
    g.add_argument("--edge-threshold", type=float, default=0.05, metavar="R",
                   help="mesh: drop triangles across relative depth jumps over R (default 0.05 = 5%%)")


def add_alignment_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    g = p.add_argument_group("alignment to metric references")
    ref = g.add_mutually_exclusive_group(required=required)
    ref.add_argument("--points", metavar="CSV",
                     help="sparse references: rows u,v,depth_m (pixels of the map, centres at integer coordinates)")
    ref.add_argument("--reference", metavar="PATH", help="reference depth map: 16-bit PNG (see --reference-scale) or .npy in metres")
    g.add_argument("--reference-scale", type=float, metavar="S",
                   help="units per metre of a PNG reference (256 KITTI, 5000 TUM, 1000 millimetres)")
    g.add_argument("--mask", metavar="PATH", help="use only the pixels where this image/.npy is non-zero")
    g.add_argument("--space", choices=("disparity", "depth"), default=None,
                   help="fit space (default: disparity for relative maps, depth for metric ones)")
    g.add_argument("--scale-only", action="store_true", help="fit a scale only (no shift)")
    g.add_argument("--robust", choices=("none", "irls", "ransac"), default="none",
                   help="robust fit for noisy references (default: none = least squares)")


def camera_from_args(args: argparse.Namespace, width: int, height: int, image_path=None, predicted=None):
    """The camera by :func:`localdepth.geometry.resolve_intrinsics` (``predicted``: the model's own)."""
    from ..geometry import resolve_intrinsics

    try:
        return resolve_intrinsics(width, height, intrinsics=args.intrinsics, fov=args.fov, image_path=image_path,
                                  predicted=predicted)
    except ValueError as e:
        raise CameraError(str(e)) from None


def wants_alignment(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "points", None) or getattr(args, "reference", None))


def align_from_args(args: argparse.Namespace, source: np.ndarray, kind: str):
    """Fit the map to ``--points`` or ``--reference``: ``(metric depth, sidecar report)``."""
    from .. import align

    space = args.space or ("disparity" if kind == "disparity" else "depth")
    robust = None if args.robust == "none" else args.robust
    try:
        if args.points:
            fit = align.fit_to_points(source, align.read_points_csv(args.points), space=space,
                                      scale_only=args.scale_only, robust=robust)
            reference = f"points {args.points}"
        else:
            ref = align.read_reference(args.reference, scale=args.reference_scale, shape=source.shape)
            mask = align.read_mask(args.mask, source.shape) if args.mask else None
            fit = align.fit_scale_shift(source, ref, mask, space=space, scale_only=args.scale_only, robust=robust)
            reference = f"depth map {args.reference}" + (f" / {args.reference_scale:g}" if args.reference_scale else "")
    except (ValueError, OSError) as e:
        raise LocalDepthError(str(e).splitlines()[0]) from None
    if fit.space == "disparity" and fit.scale <= 0:
        raise LocalDepthError(f"the fit gives a non-positive scale ({fit.scale:.4g}): the references disagree with the "
                              "map (is it disparity? try --space depth, or --robust ransac)")
    metric = fit.apply(source)
    return np.where(np.isfinite(metric), metric, 0.0).astype(np.float32), align.fit_report(fit, reference)


def export_geometry(args: argparse.Namespace, depth: np.ndarray, kind: str, image: np.ndarray | None,
                    image_path=None, *, aligned: bool = False, pointcloud: Path | None = None,
                    mesh: Path | None = None, predicted=None, camera=None, camera_from_world=None,
                    metric: bool | None = None, scene: bool = False) -> dict:
    """Write ``pointcloud``/``mesh`` for one map; returns the sidecar entries (intrinsics included).

    ``predicted``: the camera the model predicted, used when the user gave none and EXIF has none.
    ``camera``: a camera to use as given (e.g. a scene's ``cameras.json``), with its pose
    ``camera_from_world``: the geometry is then in that world frame.
    ``metric``: the map is in metres (default: ``kind == "depth"``).
    ``scene``: the map is a view of the scene ``camera_from_world`` comes from: in the scene's units.
    """
    from ..pointcloud import export

    h, w = depth.shape
    cam = camera or camera_from_args(args, w, h, image_path, predicted)
    report = export(depth, kind, cam.K, image, pointcloud=pointcloud, mesh=mesh, relative=args.relative,
                    aligned=aligned, voxel_size=getattr(args, "voxel_size", None),
                    estimate_normals=getattr(args, "normals", False), max_depth=getattr(args, "max_depth", None),
                    edge_threshold=getattr(args, "edge_threshold", 0.05), metric=metric,
                    camera_from_world=camera_from_world, scene=scene)
    return {"intrinsics": cam.as_dict(), "intrinsics_source": cam.origin, "geometry": report}


def camera_sidecar(args: argparse.Namespace) -> dict:
    """What ``--intrinsics``/``--fov`` say, for the ``normals`` format and sidecars (sized per image later)."""
    if getattr(args, "intrinsics", None):
        from ..geometry import parse_intrinsics

        try:
            cam = parse_intrinsics(args.intrinsics, 0, 0)
        except ValueError as e:
            raise LocalDepthError(str(e)) from None
        return {"intrinsics": {"fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy, "source": "intrinsics"}}
    if getattr(args, "fov", None) is not None:
        if not 0 < args.fov < 180:
            raise LocalDepthError(f"--fov is the horizontal field of view in degrees, in (0, 180); got {args.fov}")
        return {"intrinsics": {"fov": args.fov, "source": "fov"}}
    return {}


def geometry_paths(args: argparse.Namespace, item, outdir: Path, several: bool) -> tuple[Path | None, Path | None]:
    """``--pointcloud``/``--mesh`` targets: the paths themselves for one input; for several inputs,
    ``<outdir>/<rel>_points<suffix>`` and ``<outdir>/<rel>_mesh<suffix>`` (suffix taken from the option)."""
    def one(option: Path | None, tag: str) -> Path | None:
        if option is None:
            return None
        if not several:
            return option
        stem = item.rel.stem if item.rel.suffix else item.rel.name
        return under_root(outdir, item.rel.parent / f"{stem}_{tag}{option.suffix or '.ply'}")

    return one(args.pointcloud, "points"), one(args.mesh, "mesh")


def run_with_geometry(args: argparse.Namespace, items, load_estimator, options, *, url_limits=None,
                      prompt_for=None) -> int:
    """``localdepth run --pointcloud/--mesh``: predict, write the usual outputs, then the geometry.

    A metric model's map is used in metres; a relative one needs ``--relative``. One bad input
    costs its own result only. ``load_estimator()`` is called only when some input is usable.
    """
    import dataclasses
    import sys

    from ..registry import get as registry_entry
    from ..runner import _short, plan
    from ..writers import write_result

    ok = failed = 0
    several = len(items) > 1
    spec = registry_entry(args.model)
    if not spec.metric and not args.relative:
        what = ("relative depth (no scale), so its point cloud would be in arbitrary units" if spec.output == "depth"
                else "relative inverse depth (no scale), so its point cloud would be distorted")
        raise LocalDepthError(f"{spec.name} predicts {what}; use a metric model (e.g. da3-metric-large or "
                              "depth-anything-v2-metric-indoor-small), `localdepth align` then `localdepth pointcloud`, "
                              "or pass --relative (arbitrary units)")
    estimator = load_estimator() if any(not item.error for item in items) else None
    model_info = estimator.describe() if estimator is not None else {}
    for item in items:
        try:
            if item.error:
                raise LocalDepthError(item.error)
            paths = plan(item, args.outdir, options)
            cloud, mesh = geometry_paths(args, item, args.outdir, several)  # refused before any work
            check_outputs([("--pointcloud", cloud), ("--mesh", mesh), *((f"the {fmt} output", path)
                                                                         for fmt, path in paths.items())],
                          [("the input", item.path)])
            image = item.load(max_pixels=getattr(args, "max_pixels", MAX_IMAGE_PIXELS), url_limits=url_limits)
            prompt, prompt_label = prompt_for(item) if prompt_for else (None, None)
            result = estimator.predict_decoded([image], sources=[item.label], keep_image=True,
                                               prompt_depths=None if prompt is None else [prompt])[0]
            result.notes["input"] = item.record()
            if prompt_label:
                result.notes["prompt_depth"]["file"] = prompt_label
            extra = export_geometry(args, result.map, result.kind, image, None if item.url else item.path,
                                    pointcloud=cloud, mesh=mesh, predicted=result.intrinsics, metric=result.metric)
            opts = dataclasses.replace(options, extra_sidecar={**options.extra_sidecar, **extra})
            write_result(result, paths, opts, model_info)
            ok += 1
            units = "metres" if extra["geometry"]["units"] == "m" else "arbitrary units"
            print(f"{quoted(item.label)}: " + ", ".join(str(p) for p in (cloud, mesh) if p) + f" ({units})", file=sys.stderr)
        except Exception as e:  # one bad input must not stop the others
            failed += 1
            print(f"localdepth: error: {one_line(_short(e))}", file=sys.stderr)
    print(f"done: {ok} ok, {failed} failed -> {args.outdir}", file=sys.stderr)
    return 1 if failed else 0
