"""A scene in COLMAP's text format (``cameras.txt``, ``images.txt``, ``points3D.txt``).

Written from COLMAP's documented format (https://colmap.github.io/format.html), so that a scene
continues in COLMAP, Nerfstudio or gsplat:

* ``cameras.txt``: ``CAMERA_ID PINHOLE WIDTH HEIGHT fx fy cx cy``, one camera per view. COLMAP puts
  the centre of the top-left pixel at ``(0.5, 0.5)``, localdepth at ``(0, 0)``: ``cx`` and ``cy``
  (and every 2-D point) are written ``+ 0.5``.
* ``images.txt``: ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME``, then ``X Y POINT3D_ID`` triples.
  ``Q`` (Hamilton, ``w`` first) and ``T`` are the world-to-camera transform (``camera_from_world``)
  in COLMAP's camera axes, which are OpenCV's: x right, y down, z forward.
* ``points3D.txt``: ``POINT3D_ID X Y Z R G B ERROR`` then ``IMAGE_ID POINT2D_IDX`` pairs; ``ERROR``
  is the mean reprojection error of the fused point in the views of its track, in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..geometry import project, rotation_to_quaternion, transform_points
from ..writers import atomic_path
from .fuse import FusedCloud

COLMAP_PIXEL_OFFSET = 0.5  # COLMAP's pixel centres are at half-integers


@dataclass
class Camera:
    K: np.ndarray                  # (3, 3) in pixels of the image (localdepth's convention)
    width: int
    height: int
    camera_from_world: np.ndarray  # (4, 4)


def reprojection_errors(cloud: FusedCloud, cameras: list[Camera]) -> np.ndarray:
    """Mean pixel distance, per fused point, between its projection into each view of its track and
    that view's observed pixel ``(P,)``."""
    dist = np.zeros(len(cloud.obs_point))
    for i, cam in enumerate(cameras):
        sel = cloud.obs_view == i
        if sel.any():
            uv, _ = project(transform_points(cloud.points[cloud.obs_point[sel]], cam.camera_from_world), cam.K)
            dist[sel] = np.linalg.norm(uv - cloud.obs_uv[sel], axis=-1)
    counts = np.bincount(cloud.obs_point, minlength=len(cloud.points))
    total = np.bincount(cloud.obs_point, np.nan_to_num(dist, nan=0.0), minlength=len(cloud.points))
    return total / np.maximum(counts, 1)


def _by_track_length(cloud: FusedCloud) -> FusedCloud:
    """The same cloud with its points renumbered by track length (then by their old order), so that
    ``points3D.txt`` can be written in id order a block of equal-length tracks at a time."""
    import dataclasses

    lengths = np.bincount(cloud.obs_point, minlength=len(cloud.points))
    order = np.argsort(lengths, kind="stable")
    new_id = np.empty_like(order)
    new_id[order] = np.arange(len(order))
    obs_point = new_id[cloud.obs_point]
    obs_order = np.argsort(obs_point, kind="stable")
    return dataclasses.replace(cloud, points=cloud.points[order], colors=cloud.colors[order],
                               obs_point=obs_point[obs_order], obs_view=cloud.obs_view[obs_order],
                               obs_uv=cloud.obs_uv[obs_order])


def write_colmap_text(folder: Path, cameras: list[Camera], names: list[str], cloud: FusedCloud) -> dict:
    """Write the three files into ``folder``; ``names``: each view's image path relative to the
    image folder (COLMAP's ``NAME``). Returns what was written."""
    folder = Path(folder)
    cloud = _by_track_length(cloud)
    n_points = len(cloud.points)
    # each observation's index in its image's list of 2-D points (images list them in point order)
    obs_index = np.zeros(len(cloud.obs_point), np.int64)
    per_view = []
    for i in range(len(cameras)):
        sel = np.flatnonzero(cloud.obs_view == i)
        obs_index[sel] = np.arange(len(sel))
        per_view.append(sel)

    with atomic_path(folder / "cameras.txt") as tmp, open(tmp, "w") as f:
        f.write("# Camera list with one line of data per camera:\n"
                "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                f"# Number of cameras: {len(cameras)}\n")
        for i, cam in enumerate(cameras, 1):
            fx, fy = cam.K[0, 0], cam.K[1, 1]
            cx, cy = cam.K[0, 2] + COLMAP_PIXEL_OFFSET, cam.K[1, 2] + COLMAP_PIXEL_OFFSET
            f.write(f"{i} PINHOLE {cam.width} {cam.height} {fx:.10g} {fy:.10g} {cx:.10g} {cy:.10g}\n")

    with atomic_path(folder / "images.txt") as tmp, open(tmp, "w") as f:
        f.write("# Image list with two lines of data per image:\n"
                "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
                "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
                f"# Number of images: {len(cameras)}, mean observations per image: "
                f"{len(cloud.obs_point) / max(1, len(cameras)):.1f}\n")
        for i, (cam, name, sel) in enumerate(zip(cameras, names, per_view), 1):
            q = rotation_to_quaternion(cam.camera_from_world[:3, :3])
            t = cam.camera_from_world[:3, 3]
            f.write(f"{i} {' '.join(f'{v:.12g}' for v in (*q, *t))} {i} {name}\n")
            triples = zip((cloud.obs_uv[sel, 0] + COLMAP_PIXEL_OFFSET).tolist(),
                          (cloud.obs_uv[sel, 1] + COLMAP_PIXEL_OFFSET).tolist(), (cloud.obs_point[sel] + 1).tolist())
            f.write(" ".join(map("%.2f %.2f %d".__mod__, triples)) + "\n")

    errors = reprojection_errors(cloud, cameras)
    lengths = np.bincount(cloud.obs_point, minlength=n_points)
    track = np.stack([cloud.obs_view + 1, obs_index], axis=-1)  # (IMAGE_ID, POINT2D_IDX) per observation
    with atomic_path(folder / "points3D.txt") as tmp, open(tmp, "w") as f:
        f.write("# 3D point list with one line of data per point:\n"
                "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
                f"# Number of points: {n_points}, mean track length: "
                f"{len(cloud.obs_point) / max(1, n_points):.2f}\n")
        first = 0
        for length in np.unique(lengths).tolist():  # points come sorted by track length
            count = int((lengths == length).sum())
            ids = np.arange(first, first + count)
            obs = np.flatnonzero((cloud.obs_point >= first) & (cloud.obs_point < first + count))
            columns = [(ids + 1)[:, None], cloud.points[ids], cloud.colors[ids].astype(np.float64),
                       errors[ids][:, None], track[obs].reshape(count, 2 * length)]
            rows = np.concatenate([c.astype(object) for c in columns], axis=1).tolist()
            fmt = "%d %.8g %.8g %.8g %d %d %d %.4f" + " %d %d" * length + "\n"
            f.write("".join(map(fmt.__mod__, map(tuple, rows))))
            first += count
    return {"folder": str(folder), "cameras": len(cameras), "images": len(cameras), "points3D": n_points,
            "observations": int(len(cloud.obs_point)), "model": "PINHOLE",
            "pixel_convention": "COLMAP: top-left pixel centre at (0.5, 0.5); cx, cy and 2-D points written + 0.5"}
