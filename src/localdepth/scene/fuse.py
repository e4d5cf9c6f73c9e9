"""Fusing the views of a scene into one coloured point cloud.

Each view is sampled on a regular grid of its pixels (every ``step``-th row and column, so that a
view gives at most :data:`MAX_SAMPLES_PER_VIEW` points: about the network's own grid; the points
are exact back-projections of those pixels, not of a resized map), back-projected with its
intrinsics and moved to the world frame by its pose. Points whose confidence is below the
``conf_percentile``-th percentile of all sampled confidences are dropped (40 as the official Depth
Anything 3 exports do). The rest are averaged per voxel (position and colour); each voxel keeps,
per view that saw it, one observation (the view and the pixel), which become COLMAP tracks.

The voxel grid is done here in NumPy rather than with Open3D's ``voxel_down_sample`` because the
tracks need to know which samples fell into which voxel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..geometry import invert_pose, pixel_grid, transform_points, unproject

MAX_SAMPLES_PER_VIEW = 1 << 18  # 262,144 points: 592 x 444 for a 4:3 photo
DEFAULT_CONF_PERCENTILE = 40.0
DEFAULT_MAX_POINTS = 1_000_000


@dataclass
class ViewSamples:
    """The sampled pixels of one view that have a valid depth."""

    points: np.ndarray      # (M, 3) float32, world frame
    colors: np.ndarray      # (M, 3) uint8 RGB
    uv: np.ndarray          # (M, 2) float32 pixel coordinates in the view's image (centres at integers)
    confidence: np.ndarray  # (M,) float32 (ones when the model gives none)
    footprint: float        # size of one sampled pixel at the view's median depth (map units)


def sample_view(depth: np.ndarray, K: np.ndarray, camera_from_world: np.ndarray, image: np.ndarray | None = None,
                confidence: np.ndarray | None = None, max_samples: int = MAX_SAMPLES_PER_VIEW) -> ViewSamples:
    """Back-project every ``step``-th pixel of a ``(H, W)`` z-depth map to world points.

    ``K``: intrinsics in pixels of the map; ``camera_from_world``: the view's ``(4, 4)`` pose;
    ``image``: ``(H, W, 3)`` uint8 RGB of the same size; ``confidence``: ``(H, W)``.
    Taking every ``step``-th pixel is a grid whose pixel ``(i, j)`` is the map's ``(step i, step j)``,
    so its intrinsics are ``K`` with ``fx, fy, cx, cy`` divided by ``step`` (exact, no resampling).
    """
    h, w = depth.shape
    step = max(1, math.ceil(math.sqrt(h * w / max_samples)))
    K_grid = np.array(K, dtype=np.float64)
    K_grid[:2] /= step
    cam = unproject(depth[::step, ::step], K_grid)
    valid = np.isfinite(cam[..., 2])
    u, v = pixel_grid(*valid.shape)
    z = cam[..., 2][valid]
    world = transform_points(cam[valid], invert_pose(camera_from_world))
    colors = (image[::step, ::step][valid] if image is not None
              else np.full((int(valid.sum()), 3), 200, np.uint8))
    conf = (confidence[::step, ::step][valid] if confidence is not None
            else np.ones(int(valid.sum()), np.float32))
    footprint = float(np.median(z) * step / K[0, 0]) if z.size else 0.0
    return ViewSamples(world.astype(np.float32), np.asarray(colors, np.uint8),
                       np.stack([u[valid] * step, v[valid] * step], axis=-1).astype(np.float32),
                       np.asarray(conf, np.float32), footprint)


@dataclass
class FusedCloud:
    points: np.ndarray       # (P, 3) float64, world frame
    colors: np.ndarray       # (P, 3) uint8
    obs_point: np.ndarray    # (O,) int64 point index of each observation, ascending
    obs_view: np.ndarray     # (O,) int64 view index
    obs_uv: np.ndarray       # (O, 2) float32 pixel in that view (centres at integer coordinates)
    voxel_size: float
    confidence_threshold: float | None
    sampled: int             # valid samples over all views
    confident: int           # of those, at or above the confidence threshold

    def as_dict(self) -> dict:
        return {"points": len(self.points), "observations": len(self.obs_point), "voxel_size": self.voxel_size,
                "confidence_threshold": self.confidence_threshold, "sampled": self.sampled,
                "confident": self.confident}


def _voxel_ids(points: np.ndarray, voxel: float) -> np.ndarray:
    """Index of each point's voxel (``0..V-1``), voxels of edge ``voxel`` aligned at the minimum."""
    cells = np.floor((points - points.min(axis=0)) / voxel).astype(np.int64)
    span = cells.max(axis=0) + 1
    if float(span[0]) * float(span[1]) * float(span[2]) < 2.0 ** 62:
        flat = (cells[:, 0] * span[1] + cells[:, 1]) * span[2] + cells[:, 2]
        return np.unique(flat, return_inverse=True)[1].ravel()
    return np.unique(cells, axis=0, return_inverse=True)[1].ravel()  # far outliers: slower, never overflows


def fuse(views: list[ViewSamples], *, conf_percentile: float = DEFAULT_CONF_PERCENTILE,
         voxel_size: float | None = None, max_points: int = DEFAULT_MAX_POINTS, seed: int = 0) -> FusedCloud:
    """One point cloud from the samples of every view (see the module's description).

    ``voxel_size`` (map units): ``None`` picks the median footprint of one sampled pixel at each
    view's median depth, so overlapping views merge and detail is kept. Beyond ``max_points``
    voxels, a random subset (fixed ``seed``) is kept.
    """
    view_of = np.concatenate([np.full(len(s.points), i, np.int64) for i, s in enumerate(views)])
    points = np.concatenate([s.points for s in views]).astype(np.float64)
    sampled = len(points)
    conf = np.concatenate([s.confidence for s in views])
    threshold = float(np.percentile(conf, conf_percentile)) if sampled and conf_percentile > 0 else None
    keep = conf >= threshold if threshold is not None else np.ones(sampled, bool)
    footprints = [s.footprint for s in views if s.footprint > 0]
    voxel = float(voxel_size) if voxel_size else float(np.median(footprints)) if footprints else 1.0
    if not keep.any():
        empty = np.empty(0, np.int64)
        return FusedCloud(np.empty((0, 3)), np.empty((0, 3), np.uint8), empty, empty, np.empty((0, 2), np.float32),
                          voxel, threshold, sampled, 0)
    points, view_of = points[keep], view_of[keep]
    colors = np.concatenate([s.colors for s in views])[keep]
    uv = np.concatenate([s.uv for s in views])[keep]
    voxel_of = _voxel_ids(points, voxel)
    n_voxels = int(voxel_of.max()) + 1
    if n_voxels > max_points:
        chosen = np.zeros(n_voxels, bool)
        chosen[np.random.default_rng(seed).choice(n_voxels, max_points, replace=False)] = True
        renumber = np.cumsum(chosen) - 1
        inside = chosen[voxel_of]
        points, view_of, colors, uv = points[inside], view_of[inside], colors[inside], uv[inside]
        voxel_of, n_voxels = renumber[voxel_of[inside]], max_points
    counts = np.bincount(voxel_of, minlength=n_voxels).astype(np.float64)
    mean = np.stack([np.bincount(voxel_of, points[:, k], n_voxels) for k in range(3)], axis=-1) / counts[:, None]
    rgb = np.stack([np.bincount(voxel_of, colors[:, k].astype(np.float64), n_voxels) for k in range(3)], axis=-1)
    rgb = np.clip(np.rint(rgb / counts[:, None]), 0, 255).astype(np.uint8)
    # one observation per (voxel, view): the first sample of that view in the voxel
    order = np.lexsort((view_of, voxel_of))
    pairs = np.stack([voxel_of[order], view_of[order]], axis=-1)
    first = np.ones(len(order), bool)
    first[1:] = (pairs[1:] != pairs[:-1]).any(axis=1)
    pick = order[first]
    return FusedCloud(mean, rgb, voxel_of[pick], view_of[pick], uv[pick], voxel, threshold, sampled, int(keep.sum()))
