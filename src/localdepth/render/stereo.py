"""Stereo pairs and red-cyan anaglyphs from one photo and its depth.

Pure functions on arrays, the conventions of :mod:`localdepth.geometry`. The two eyes are
parallel cameras (the photo's orientation and intrinsics) at ``-B/2`` and ``+B/2`` along x, so a
point at depth ``z`` has the disparity ``d = B f / z`` pixels between the left and the right view
(zero at infinity, everything else in front of the screen). The baseline ``B`` comes from the
**disparity budget**: the nearest depth of the scene (its 1st percentile, ``near``) gets
``budget`` percent of the image width, ``B = budget / 100 * W * near / f``. Holes are filled as
for 3D photos (:mod:`localdepth.render.scene`, :mod:`localdepth.render.warp`).

The anaglyph is Dubois' least-squares projection for red-cyan glasses (E. Dubois, "Conversion of
a stereo pair to anaglyph with the least-squares projection method", 2009), applied in linear
light: ``rgb = clip(L @ left + R @ right)`` on linearised sRGB values, then encoded back to sRGB.
"""

from __future__ import annotations

import numpy as np

from .paths import disocclusion_width
from .scene import build_scene, depth_percentiles
from .warp import Rendered, View, render_view

#: disparity budget when none is given: percent of the image width for the nearest depth
DEFAULT_BUDGET = 3.0

#: Dubois (2009), red-cyan: the left eye's and the right eye's 3x3 matrices (rows: output R, G, B)
DUBOIS_RED_CYAN_LEFT = np.array([[0.437, 0.449, 0.164],
                                 [-0.062, -0.062, -0.024],
                                 [-0.048, -0.050, -0.017]])
DUBOIS_RED_CYAN_RIGHT = np.array([[-0.011, -0.032, -0.007],
                                  [0.377, 0.761, 0.009],
                                  [-0.026, -0.093, 1.234]])


def baseline_for_budget(budget: float, width: int, fx: float, near: float) -> float:
    """The baseline (depth units) that gives the depth ``near`` a disparity of ``budget`` percent of ``width``."""
    return budget / 100.0 * width * near / fx


def stereo_views(image: np.ndarray, z: np.ndarray, K: np.ndarray, *, budget: float = DEFAULT_BUDGET,
                 near: float | None = None, baseline: float | None = None) -> tuple[Rendered, Rendered, dict]:
    """``(left, right, info)``: the two eyes' views of a photo ``(H, W, 3)`` uint8 with z-depth ``(H, W)``.

    ``K``: ``(3, 3)`` intrinsics. ``budget``: percent of the width for the disparity of ``near``
    (default: the depth's 1st percentile). ``baseline``: give it directly instead (depth units).
    ``info``: the baseline, the disparities at the near and far depths and the budget.
    """
    h, w = z.shape
    fx = float(K[0, 0])
    lo, hi = depth_percentiles(z)
    near = lo if near is None else near
    B = baseline_for_budget(budget, w, fx, near) if baseline is None else float(baseline)
    parallax = B * fx / 2  # each eye moves by half the baseline
    band = min(disocclusion_width(parallax, float(np.min(z)), float(np.max(z))), max(h, w) // 4)
    scene = build_scene(image, z, K, band=band, parallax=parallax)
    left = render_view(scene, View((-B / 2, 0.0, 0.0), K, w, h))
    right = render_view(scene, View((B / 2, 0.0, 0.0), K, w, h))
    info = {"baseline": B, "budget_percent": budget, "near": near, "far": hi,
            "disparity_near_px": B * fx / near, "disparity_far_px": B * fx / hi,
            "cameras": "parallel, at -baseline/2 (left) and +baseline/2 (right) along x; disparity = baseline * f / z",
            "filled_pixels": int(left.filled.sum() + right.filled.sum()), **scene.info}
    return left, right, info


def side_by_side_pair(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Full side-by-side: ``left | right`` ``(H, 2W, 3)`` (parallel viewing, VR players, 3D TVs)."""
    return np.concatenate([left, right], axis=1)


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 1] -> linear light (IEC 61966-2-1)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] -> sRGB values (IEC 61966-2-1)."""
    lin = np.clip(np.asarray(lin, dtype=np.float64), 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)


def anaglyph(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Red-cyan anaglyph of two ``(H, W, 3)`` uint8 views (Dubois 2009, in linear light): ``(H, W, 3)`` uint8."""
    lin_left = srgb_to_linear(np.asarray(left, dtype=np.float64) / 255.0)
    lin_right = srgb_to_linear(np.asarray(right, dtype=np.float64) / 255.0)
    mixed = lin_left @ DUBOIS_RED_CYAN_LEFT.T + lin_right @ DUBOIS_RED_CYAN_RIGHT.T
    return np.rint(linear_to_srgb(mixed) * 255.0).astype(np.uint8)
