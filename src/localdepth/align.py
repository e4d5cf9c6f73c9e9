"""Aligning a relative prediction to metric references: scale (and shift) by least squares.

Relative models predict affine-invariant inverse depth ``d``: true inverse depth is
``s * d + t`` for unknown ``s, t``. Fitting them against reference depths gives metres.

Spaces:

* ``disparity``: fit ``s * pred + t ≈ 1 / depth_ref`` (the Depth Anything / MiDaS convention;
  the result is ``1 / (s * pred + t)`` in metres);
* ``depth``: fit ``s * pred + t ≈ depth_ref`` (for maps that are already depth-like).

All functions take flat or 2-D arrays of the same shape, and an optional boolean mask of
the samples to use (finite, positive references are always required).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

Space = Literal["disparity", "depth"]


@dataclass
class AlignmentFit:
    """``target ≈ scale * source + shift`` in ``space``; residual statistics over used samples."""

    scale: float
    shift: float
    space: Space
    scale_only: bool
    n_samples: int
    n_inliers: int
    rmse: float  # root mean squared residual, in the fit space's units
    robust: str | None = None

    def apply(self, source: np.ndarray, *, min_depth: float = 1e-3) -> np.ndarray:
        """Metric depth in metres from the aligned source map.

        In disparity space, non-positive aligned disparities (points the fit puts at or beyond
        infinity) become ``inf``; callers that need finite values mask them.
        """
        aligned = self.scale * np.asarray(source, dtype=np.float64) + self.shift
        if self.space == "disparity":
            with np.errstate(divide="ignore"):
                depth = np.where(aligned > 0, 1.0 / np.maximum(aligned, 1e-12), np.inf)
        else:
            depth = aligned
        return np.maximum(depth, min_depth).astype(np.float32)

    def aligned(self, source: np.ndarray) -> np.ndarray:
        """The source mapped into the fit space (aligned disparity or depth)."""
        return (self.scale * np.asarray(source, dtype=np.float64) + self.shift).astype(np.float32)

    def as_dict(self) -> dict:
        return asdict(self)


def _target(reference_depth: np.ndarray, space: Space) -> np.ndarray:
    ref = np.asarray(reference_depth, dtype=np.float64)
    if space == "disparity":
        with np.errstate(divide="ignore"):
            return 1.0 / ref
    return ref


def _solve(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, scale_only: bool) -> tuple[float, float]:
    """Weighted least squares for ``y ≈ s x + t`` (or ``y ≈ s x``)."""
    if w is None:
        w = np.ones_like(x)
    if scale_only:
        denom = float(np.sum(w * x * x))
        return (float(np.sum(w * x * y)) / denom if denom > 0 else 0.0), 0.0
    sw, sx, sy = w.sum(), (w * x).sum(), (w * y).sum()
    sxx, sxy = (w * x * x).sum(), (w * x * y).sum()
    det = sw * sxx - sx * sx
    if abs(det) < 1e-20 * max(1.0, sw * sxx):
        s = sy / sx if sx != 0 else 0.0
        return float(s), 0.0
    s = (sw * sxy - sx * sy) / det
    t = (sy - s * sx) / sw
    return float(s), float(t)


def fit_scale_shift(source: np.ndarray, reference_depth: np.ndarray, mask: np.ndarray | None = None, *,
                    space: Space = "disparity", scale_only: bool = False,
                    robust: Literal["irls", "ransac"] | None = None, iterations: int = 20,
                    inlier_threshold: float | None = None, seed: int = 0) -> AlignmentFit:
    """Fit ``scale * source + shift`` to the reference in ``space`` (see module docstring).

    ``reference_depth`` is metric z-depth (metres); ``source`` is the prediction (disparity
    for relative models). ``robust``: ``"irls"`` (iteratively reweighted, Huber weights) or
    ``"ransac"`` (minimal 2-point samples, then a least-squares refit on the inliers).
    ``inlier_threshold`` is in fit-space units (default: 2.5 x the median absolute residual).
    """
    src = np.asarray(source, dtype=np.float64).ravel()
    ref = np.asarray(reference_depth, dtype=np.float64).ravel()
    if src.shape != ref.shape:
        raise ValueError(f"source and reference differ in size: {src.shape} vs {ref.shape}")
    valid = np.isfinite(ref) & (ref > 0)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool).ravel()
    with np.errstate(divide="ignore"):
        target = np.where(valid, _target(ref, space), np.nan)
    return fit_affine(src, target, valid, space=space, scale_only=scale_only, robust=robust,
                      iterations=iterations, inlier_threshold=inlier_threshold, seed=seed)


def fit_affine(source: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None, *,
               space: Space = "depth", scale_only: bool = False,
               robust: Literal["irls", "ransac"] | None = None, iterations: int = 20,
               inlier_threshold: float | None = None, seed: int = 0) -> AlignmentFit:
    """Fit ``target ≈ scale * source + shift`` over finite, masked samples (any sign).

    The shared solver behind :func:`fit_scale_shift` and :func:`fit_to_previous`;
    ``space`` only labels the result.
    """
    src = np.asarray(source, dtype=np.float64).ravel()
    tgt = np.asarray(target, dtype=np.float64).ravel()
    valid = np.isfinite(src) & np.isfinite(tgt)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool).ravel()
    need = 1 if scale_only else 2
    if valid.sum() < need:
        raise ValueError(f"alignment needs at least {need} valid reference samples, got {int(valid.sum())}")
    x, y = src[valid], tgt[valid]

    inliers = np.ones_like(x, dtype=bool)
    if robust == "ransac":
        s, t, inliers = _ransac(x, y, scale_only, iterations * 10, inlier_threshold, seed)
    elif robust == "irls":
        s, t, _ = _lmeds(x, y, scale_only, iterations * 10, seed)
        for _ in range(iterations):  # Tukey biweight: far outliers get zero weight
            r = y - (s * x + t)
            c = inlier_threshold or 4.685 * _sigma(r, y)
            u = np.clip(np.abs(r) / c, 0.0, 1.0)
            w = (1.0 - u * u) ** 2
            if w.sum() <= 0:
                break
            s, t = _solve(x, y, w, scale_only)
        r = np.abs(y - (s * x + t))
        inliers = r <= (inlier_threshold or 2.5 * _sigma(r, y))
    elif robust is None:
        s, t = _solve(x, y, None, scale_only)
    else:
        raise ValueError(f"unknown robust method '{robust}'; use irls or ransac")
    residual = y[inliers] - (s * x[inliers] + t)
    return AlignmentFit(scale=s, shift=t, space=space, scale_only=scale_only, n_samples=int(x.size),
                        n_inliers=int(inliers.sum()), rmse=float(np.sqrt(np.mean(residual ** 2))) if residual.size else 0.0,
                        robust=robust)


def _sigma(residual: np.ndarray, y: np.ndarray) -> float:
    """Robust residual scale (1.4826 x median absolute residual), floored to stay positive."""
    floor = 1e-9 * max(float(np.median(np.abs(y))), 1e-12)
    return max(1.4826 * float(np.median(np.abs(residual))), floor)


def _lmeds(x: np.ndarray, y: np.ndarray, scale_only: bool, trials: int, seed: int) -> tuple[float, float, float]:
    """Least median of squares over minimal samples: right with up to half the samples wrong."""
    rng = np.random.default_rng(seed)
    k = 1 if scale_only else 2
    sub = rng.choice(x.size, size=min(x.size, 5000), replace=False)  # scoring sample
    best = (*_solve(x, y, None, scale_only), np.inf)
    for _ in range(trials):
        idx = rng.choice(x.size, size=k, replace=False)
        s, t = _solve(x[idx], y[idx], None, scale_only)
        if not np.isfinite(s) or s == 0:
            continue
        med = float(np.median(np.abs(y[sub] - (s * x[sub] + t))))
        if med < best[2]:
            best = (s, t, med)
    return best


def _ransac(x: np.ndarray, y: np.ndarray, scale_only: bool, trials: int, threshold: float | None,
            seed: int) -> tuple[float, float, np.ndarray]:
    """Minimal-sample hypotheses scored by their median residual, then least squares on inliers."""
    s, t, _ = _lmeds(x, y, scale_only, trials, seed)
    k = 1 if scale_only else 2
    inliers = np.ones(x.size, dtype=bool)
    for _ in range(3):
        r = np.abs(y - (s * x + t))
        inliers = r <= (threshold or 2.5 * _sigma(r, y))
        if inliers.sum() < k:
            break
        s, t = _solve(x[inliers], y[inliers], None, scale_only)
    return s, t, inliers


def fit_to_previous(current: np.ndarray, previous: np.ndarray, mask: np.ndarray | None = None, *,
                    robust: Literal["irls", "ransac"] | None = "irls", max_samples: int = 50_000,
                    seed: int = 0, scale_only: bool = False) -> AlignmentFit:
    """Scale and shift that map one relative map onto another of the same size, in their own
    units (``scale * current + shift ≈ previous``), from an evenly spread subsample
    (``scale_only``: ``scale * current ≈ previous``).

    Used for temporal stability of video: aligning each frame's disparity to the previous ones.
    """
    cur = np.asarray(current, dtype=np.float64).ravel()
    prev = np.asarray(previous, dtype=np.float64).ravel()
    valid = np.isfinite(cur) & np.isfinite(prev)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool).ravel()
    idx = np.flatnonzero(valid)
    if idx.size > max_samples:
        idx = idx[:: idx.size // max_samples][:max_samples]
    return fit_affine(cur[idx], prev[idx], space="disparity", robust=robust, seed=seed, scale_only=scale_only)


# ----------------------------------------------------------------------------- references on disk
#
# Sparse points: CSV rows ``u,v,depth_m`` (a header line is optional; ``#`` starts a comment).
# ``u`` is the column, ``v`` the row, in pixels of the map being aligned, with pixel centres
# at integer coordinates (pixel (0, 0) is the top-left pixel's centre, as in OpenCV/Open3D).
# Non-integer coordinates are sampled bilinearly from the map. ``depth_m`` is z-depth in metres.

def read_points_csv(path) -> np.ndarray:
    """``(N, 3)`` float64 rows ``(u, v, depth_m)`` from a CSV file (see the section comment).

    Raises ``ValueError`` with the offending line for malformed rows.
    """
    import csv
    from pathlib import Path

    rows = []
    with Path(path).open(newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            try:
                values = [float(c) for c in cells[:3]]
            except ValueError:
                if not rows and lineno == 1:  # a header line
                    continue
                raise ValueError(f"{path}:{lineno}: expected u,v,depth_m numbers, got {','.join(cells)}") from None
            if len(values) != 3:
                raise ValueError(f"{path}:{lineno}: expected 3 columns u,v,depth_m, got {len(cells)}")
            if not all(np.isfinite(values)):
                raise ValueError(f"{path}:{lineno}: u,v,depth_m must be finite numbers, got {','.join(cells[:3])}")
            rows.append(values)
    if not rows:
        raise ValueError(f"{path}: no u,v,depth_m rows")
    return np.asarray(rows, dtype=np.float64)


def sample_map(source: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear samples of an ``(H, W)`` map at ``(N, 2)`` pixel coordinates ``(u, v)``
    (pixel-centre convention); NaN outside ``[0, W-1] x [0, H-1]``."""
    src = np.asarray(source, dtype=np.float64)
    h, w = src.shape
    u, v = uv[:, 0], uv[:, 1]
    inside = (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)  # False for NaN coordinates too
    if not inside.any():  # an empty map included: nothing to index
        return np.full(u.shape, np.nan)
    uc, vc = np.clip(np.where(inside, u, 0), 0, w - 1), np.clip(np.where(inside, v, 0), 0, h - 1)
    u0, v0 = np.minimum(np.floor(uc).astype(int), w - 2 if w > 1 else 0), np.minimum(np.floor(vc).astype(int), h - 2 if h > 1 else 0)
    u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
    a, b = uc - u0, vc - v0
    val = ((1 - a) * (1 - b) * src[v0, u0] + a * (1 - b) * src[v0, u1]
           + (1 - a) * b * src[v1, u0] + a * b * src[v1, u1])
    return np.where(inside, val, np.nan)


def read_reference(path, *, scale: float | None = None, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A reference depth map in metres, ``(H, W)`` float32; 0 or non-finite = no reference.

    ``.npy``/``.npz``: metres as stored (``scale`` multiplies if given). Images (16-bit PNG,
    TIFF…): ``metres = value / scale`` (e.g. 256 for KITTI, 5000 for TUM, 1000 for millimetres);
    ``scale`` is required for them. With ``shape``, the map is resized (nearest neighbour,
    so that missing samples stay missing) to that ``(H, W)``.
    """
    import cv2
    from pathlib import Path

    from .depthfile import load_depth_values
    from .safety import NUMERIC_OPTIONS

    if scale is not None:  # 0 would divide by zero, NaN would give a NaN reference
        NUMERIC_OPTIONS["reference_scale"].check("--reference-scale", scale)
    p = Path(path)
    values, kind = load_depth_values(p)
    if kind == "array":
        ref = values * scale if scale else values
    else:
        if not scale:
            raise ValueError(f"{p.name}: an image reference needs --reference-scale (units per metre: "
                             "256 for KITTI, 5000 for TUM, 1000 for millimetres)")
        ref = values / scale
    if ref.ndim != 2:
        raise ValueError(f"{p}: a reference depth map must be 2-D, got shape {ref.shape}")
    if shape is not None and ref.shape != tuple(shape):
        ref = cv2.resize(ref, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return np.where(np.isfinite(ref) & (ref > 0), ref, 0.0).astype(np.float32)


def read_mask(path, shape: tuple[int, int]) -> np.ndarray:
    """A boolean ``(H, W)`` mask from an image (non-zero = use) or ``.npy``; resized (nearest) to ``shape``."""
    import cv2
    from pathlib import Path

    from .depthfile import load_depth_values

    p = Path(path)
    m = load_depth_values(p, grayscale=True)[0].astype(np.float32)  # the gate every decoded file passes
    if m.shape != tuple(shape):
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return m > 0


def fit_to_points(source: np.ndarray, points: np.ndarray, *, space: Space = "disparity", scale_only: bool = False,
                  robust: Literal["irls", "ransac"] | None = None, seed: int = 0) -> AlignmentFit:
    """Fit a map ``(H, W)`` to sparse ``(N, 3)`` ``(u, v, depth_m)`` points (see :func:`read_points_csv`)."""
    pts = np.asarray(points, dtype=np.float64)
    values = sample_map(source, pts[:, :2])
    inside = np.isfinite(values)
    if not inside.all():
        h, w = np.asarray(source).shape
        if not inside.any():
            raise ValueError(f"no point lies inside the {w}x{h} map (u is the column, v the row, in pixels)")
    return fit_scale_shift(values[inside], pts[inside, 2], space=space, scale_only=scale_only, robust=robust, seed=seed)


def fit_report(fit: AlignmentFit, reference: str) -> dict:
    """The sidecar's ``alignment`` entry: the fit, what it was fitted to, and the formula."""
    formula = ("depth_m = 1 / (scale * pred + shift)" if fit.space == "disparity" else "depth_m = scale * pred + shift")
    return {**fit.as_dict(), "reference": reference, "formula": formula,
            "rmse_units": "1/m" if fit.space == "disparity" else "m"}
