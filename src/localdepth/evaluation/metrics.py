"""Depth error metrics, crops and the evaluation mask.

Standard definitions (Eigen et al. 2014; SILog as in the KITTI depth benchmark), over the
valid pixels ``i = 1..n`` of one image, prediction ``p`` and ground truth ``g`` in metres:

==========  =====================================================================
abs_rel     mean(|p - g| / g)
sq_rel      mean((p - g)^2 / g)
rmse        sqrt(mean((p - g)^2))                               (metres)
rmse_log    sqrt(mean((ln p - ln g)^2))
log10       mean(|log10 p - log10 g|)
silog       100 * sqrt(mean(e^2) - mean(e)^2), e = ln p - ln g
d1, d2, d3  fraction of pixels with max(p / g, g / p) < 1.25, 1.25^2, 1.25^3
==========  =====================================================================

Aggregates: ``mean`` is the mean over images of the per-image figures (the convention of
the Eigen/BTS/Depth Anything evaluation code, and what tables show); ``pooled`` treats all
valid pixels of all images as one set (large images weigh more).
"""

from __future__ import annotations

import numpy as np

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")
LOWER_IS_BETTER = {"abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"}


def _sums(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Sufficient statistics of the metrics (sums over pixels), so images can be pooled."""
    p, g = pred.astype(np.float64), gt.astype(np.float64)
    ratio = np.maximum(p / g, g / p)
    e = np.log(p) - np.log(g)
    diff = p - g
    return {
        "n": float(p.size),
        "abs_rel": float(np.sum(np.abs(diff) / g)),
        "sq_rel": float(np.sum(diff * diff / g)),
        "se": float(np.sum(diff * diff)),
        "se_log": float(np.sum(e * e)),
        "log10": float(np.sum(np.abs(np.log10(p) - np.log10(g)))),
        "e": float(np.sum(e)),
        "d1": float(np.sum(ratio < 1.25)),
        "d2": float(np.sum(ratio < 1.25 ** 2)),
        "d3": float(np.sum(ratio < 1.25 ** 3)),
    }


def _from_sums(s: dict[str, float]) -> dict[str, float]:
    n = s["n"]
    if n == 0:
        return {k: float("nan") for k in METRICS}
    mean_e2, mean_e = s["se_log"] / n, s["e"] / n
    return {
        "abs_rel": s["abs_rel"] / n,
        "sq_rel": s["sq_rel"] / n,
        "rmse": float(np.sqrt(s["se"] / n)),
        "rmse_log": float(np.sqrt(mean_e2)),
        "log10": s["log10"] / n,
        "silog": float(100.0 * np.sqrt(max(mean_e2 - mean_e * mean_e, 0.0))),
        "d1": s["d1"] / n, "d2": s["d2"] / n, "d3": s["d3"] / n,
    }


def compute_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """All :data:`METRICS` of one image over ``mask & gt > 0 & pred > 0`` (both finite).

    ``pred`` and ``gt``: ``(H, W)`` metric depth. Also returns ``n`` (pixels used).
    """
    valid = valid_mask(gt, mask) & np.isfinite(pred) & (pred > 0)
    s = _sums(pred[valid], gt[valid])
    return {**_from_sums(s), "n": int(s["n"])}


def valid_mask(gt: np.ndarray, mask: np.ndarray | None = None, *, min_depth: float | None = None,
               max_depth: float | None = None, crop: str | None = None) -> np.ndarray:
    """Pixels with finite, positive ground truth inside ``[min_depth, max_depth]`` and the crop."""
    g = np.asarray(gt)
    valid = np.isfinite(g) & (g > 0)
    if min_depth is not None:
        valid &= g >= min_depth
    if max_depth is not None:
        valid &= g <= max_depth
    if crop:
        valid &= crop_mask(g.shape, crop)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    return valid


#: crops as fractions of (height, width): (top, bottom, left, right)
CROPS = {
    # Eigen et al. 2014 on NYU Depth v2: rows 45..470, columns 41..600 of 480x640 (the area
    # with valid Kinect depth after the dataset's border fill)
    "eigen": (45 / 480, 471 / 480, 41 / 640, 601 / 640),
    # Garg et al. 2016 on KITTI (also called the "Garg crop" in monodepth2, BTS)
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    # Eigen et al. 2014's KITTI crop
    "eigen-kitti": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}


def crop_mask(shape: tuple[int, int], crop: str) -> np.ndarray:
    """Boolean ``(H, W)``: ``True`` inside the named crop (see :data:`CROPS`), scaled to ``shape``."""
    if crop not in CROPS:
        raise ValueError(f"unknown crop '{crop}'; choose from {', '.join(CROPS)}")
    h, w = shape
    top, bottom, left, right = CROPS[crop]
    m = np.zeros((h, w), dtype=bool)
    m[int(top * h):int(bottom * h), int(left * w):int(right * w)] = True
    return m


class Aggregate:
    """Collects per-image metrics; :meth:`result` gives the per-image mean and the pixel-pooled figures."""

    def __init__(self) -> None:
        self.per_image: list[dict[str, float]] = []
        self._pooled = {k: 0.0 for k in ("n", "abs_rel", "sq_rel", "se", "se_log", "log10", "e", "d1", "d2", "d3")}

    def add(self, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> dict[str, float]:
        valid = valid & np.isfinite(pred) & (pred > 0)
        s = _sums(pred[valid], gt[valid])
        for k, v in s.items():
            self._pooled[k] += v
        m = {**_from_sums(s), "n": int(s["n"])}
        self.per_image.append(m)
        return m

    def result(self) -> dict:
        rows = [m for m in self.per_image if m["n"] > 0]
        mean = {k: float(np.mean([m[k] for m in rows])) if rows else float("nan") for k in METRICS}
        return {"mean": mean, "pooled": _from_sums(self._pooled), "images": len(rows),
                "pixels": int(self._pooled["n"])}
