"""Temporal stability of per-frame depth: alignment to the previous frames, one mapping
for the whole clip, and a flicker measure.

Why video pulses: relative models predict disparity up to an unknown scale and shift that
drift from frame to frame (exposure, new objects entering), and normalising each frame to
its own range adds more. The remedies here:

* :class:`Stabilizer` (``--stabilize``):

  - ``off``: the model's maps as predicted;
  - ``align``: each frame's map is fitted (scale and shift, robust least squares in both
    directions, :func:`symmetric_fit` over :func:`localdepth.align.fit_to_previous`) onto
    the previous *output* frame, so the whole clip shares the first frame's units; the fit is
    constrained so that a frame's values stay positive (:func:`positive_floor`);
  - ``align+ema``: as ``align``, then an exponential moving average of the aligned maps,
    ``out_t = a * aligned_t + (1 - a) * out_{t-1}`` (``--ema a``, default 0.5). Smoother,
    but moving edges leave a short trail.

* :class:`ClipMapping`: one mapping for every frame (8-bit colour range, 16-bit PNG
  scale and offset), from the whole clip (two passes) or from a warm-up (running).

* :class:`FlickerMeter`: the flicker measure reported after every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..align import fit_to_previous
from ..writers import METRIC_PNG16_SCALE, PNG16_MAX, ROBUST_PERCENTILES

STABILIZE_MODES = ("off", "align", "align+ema")
#: samples per frame for the fit: plenty for two parameters, and fast
FIT_SAMPLES = 4_000
#: samples per frame for the robust colour range
RANGE_SAMPLES = 20_000
#: an aligned frame stays above this fraction of the previous frame's median (see :func:`positive_floor`)
FLOOR_FRACTION = 1e-3


def symmetric_fit(current: np.ndarray, previous: np.ndarray, robust: str | None = "irls",
                  max_samples: int = FIT_SAMPLES, floor: float | None = None) -> tuple[float, float, float]:
    """``(scale, shift, r2)`` with ``scale * current + shift ≈ previous``, treating both maps
    as noisy: the geometric mean of the forward fit and the inverted backward fit
    (reduced-major-axis regression), each from :func:`localdepth.align.fit_to_previous`.

    Why not the forward fit alone: least squares of ``previous`` on ``current`` shrinks the
    scale by the squared correlation of the two maps (regression dilution). Chained frame
    after frame, that collapses a clip to a flat map: measured with PyDNet++ on a panning
    clip, the forward scale fell to 0.0004 after 15 frames, which a flicker measure would
    wrongly call perfectly stable. ``r2`` (forward scale x backward scale, the squared
    correlation for plain least squares) says how well the frames agree. The shift puts
    the medians of the two maps on top of each other.

    ``floor``: the lowest value the aligned map may take (a positive disparity or depth). The
    fit is made on the values the two frames share, pixel by pixel; when the camera moves or far
    content enters (sky), the pairs disagree, and the fitted line, extrapolated to this frame's
    lowest value, can go below zero (negative disparity: behind the camera). Then the fit is
    constrained: this frame's lowest value is pinned to ``floor`` and only the scale about it is
    fitted (the same reduced-major-axis fit, scale only, of ``current - low`` onto
    ``previous - floor``), the least-squares solution with that constraint active.
    """
    try:
        forward = fit_to_previous(current, previous, robust=robust, max_samples=max_samples)
        backward = fit_to_previous(previous, current, robust=robust, max_samples=max_samples)
    except ValueError:
        return math.nan, math.nan, 0.0
    if not (forward.scale > 0 and backward.scale > 0):
        return math.nan, math.nan, 0.0
    scale = math.sqrt(forward.scale / backward.scale)
    both = np.isfinite(current) & np.isfinite(previous)
    step = max(1, int(both.sum()) // (4 * max_samples))
    shift = float(np.median(previous[both][::step])) - scale * float(np.median(current[both][::step]))
    r2 = forward.scale * backward.scale
    if floor is None:
        return scale, shift, r2
    low = float(np.min(current[both]))
    if scale * low + shift >= floor:
        return scale, shift, r2
    x = np.asarray(current, dtype=np.float64) - low
    y = np.asarray(previous, dtype=np.float64) - floor
    try:
        forward = fit_to_previous(x, y, robust=robust, max_samples=max_samples, scale_only=True)
        backward = fit_to_previous(y, x, robust=robust, max_samples=max_samples, scale_only=True)
    except ValueError:
        return math.nan, math.nan, 0.0
    if not (forward.scale > 0 and backward.scale > 0):
        return math.nan, math.nan, 0.0
    scale = math.sqrt(forward.scale / backward.scale)
    return scale, floor - scale * low, forward.scale * backward.scale


def positive_floor(previous: np.ndarray) -> float | None:
    """The lowest value an aligned frame may take: :data:`FLOOR_FRACTION` of the previous aligned
    frame's median (a point 1000 times farther than the median, for disparity; scale-free, so the
    same for any model's units). None when the previous frame has no positive median."""
    finite = previous[np.isfinite(previous)]
    median = float(np.median(finite[:: max(1, finite.size // RANGE_SAMPLES)])) if finite.size else 0.0
    return FLOOR_FRACTION * median if median > 0 else None


class Stabilizer:
    """Turns the model's per-frame maps into temporally consistent ones (see module docs).

    Call it with each frame's map in order; it returns the map to write. Alignment always
    targets the previous *aligned* map, never the smoothed one: averaging lowers a moving
    scene's contrast, and fitting to that would shrink the clip frame after frame.
    """

    def __init__(self, mode: str = "align", ema: float = 0.5, robust: str | None = "irls"):
        if mode not in STABILIZE_MODES:
            raise ValueError(f"unknown --stabilize '{mode}'; choose from {', '.join(STABILIZE_MODES)}")
        if not 0.0 < ema <= 1.0:
            raise ValueError("--ema must be in (0, 1]: the weight of the newest frame")
        self.mode = mode
        self.ema = ema
        self.robust = robust
        self._previous: np.ndarray | None = None  # last aligned map: the reference of the next fit
        self._smoothed: np.ndarray | None = None  # last output (align+ema)
        self.scales: list[float] = []
        self.r2: list[float] = []
        self.rejected = 0  # fits that were degenerate (kept the previous frame's mapping)
        self._last = (1.0, 0.0)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float32)
        if self.mode == "off":
            return raw
        prev = self._previous
        if prev is None or prev.shape != raw.shape:  # the first frame sets the clip's units
            aligned = raw
            self._last = (1.0, 0.0)
        else:
            floor = positive_floor(prev)
            scale, shift, r2 = symmetric_fit(raw, prev, self.robust, FIT_SAMPLES, floor)
            if math.isfinite(scale) and math.isfinite(shift) and scale > 0:
                self._last = (scale, shift)
                self.r2.append(r2)
            else:  # a flat or empty frame: keep the last good mapping rather than invert the clip
                self.rejected += 1
                finite = raw[np.isfinite(raw)]
                scale, shift = self._last
                if floor is not None and finite.size and scale * float(finite.min()) + shift < floor:
                    self._last = (scale, floor - scale * float(finite.min()))  # that mapping, kept above the floor
            scale, shift = self._last
            aligned = (scale * raw.astype(np.float64) + shift).astype(np.float32)
        out = aligned
        smoothed = self._smoothed
        if self.mode == "align+ema" and smoothed is not None and smoothed.shape == aligned.shape:
            out = (self.ema * aligned + (1.0 - self.ema) * smoothed).astype(np.float32)
        self.scales.append(self._last[0])
        self._previous, self._smoothed = aligned, out
        return out

    def describe(self) -> dict:
        info = {"mode": self.mode}
        if self.mode != "off":
            s = np.asarray(self.scales or [1.0])
            info.update({"method": "scale and shift to the previous aligned frame: reduced-major-axis of two fit_to_previous fits",
                         "robust": self.robust, "rejected_fits": self.rejected,
                         "scale_min": float(s.min()), "scale_max": float(s.max()),
                         "mean_r2": float(np.mean(self.r2)) if self.r2 else None})
        if self.mode == "align+ema":
            info["ema"] = self.ema
        return info


@dataclass
class RangeTracker:
    """Running range of a clip's maps, in bounded memory: exact min/max, and the robust
    colour range (lowest 1st and highest 99th percentile of any frame)."""

    lo: float = math.inf
    hi: float = -math.inf
    p_lo: float = math.inf
    p_hi: float = -math.inf
    frames: int = 0

    def update(self, depth: np.ndarray, kind: str) -> None:
        finite = depth[np.isfinite(depth)]
        if kind == "depth":
            finite = finite[finite > 0]
        if not finite.size:
            return
        self.frames += 1
        self.lo, self.hi = min(self.lo, float(finite.min())), max(self.hi, float(finite.max()))
        sample = finite[:: max(1, finite.size // RANGE_SAMPLES)]
        a, b = np.percentile(sample, ROBUST_PERCENTILES)
        self.p_lo, self.p_hi = min(self.p_lo, float(a)), max(self.p_hi, float(b))

    def mapping(self, kind: str, *, margin: float = 0.0, how: str = "clip", metric: bool | None = None) -> ClipMapping:
        """The clip's mapping; ``margin`` widens the range by that fraction of its span on
        each side (running normalisation leaves room for frames after the warm-up)."""
        if self.frames == 0:
            lo = hi = p_lo = p_hi = 0.0
        else:
            lo, hi, p_lo, p_hi = self.lo, self.hi, self.p_lo, self.p_hi
        pad, ppad = (hi - lo) * margin, (p_hi - p_lo) * margin
        return ClipMapping(kind=kind, lo=lo - pad, hi=hi + pad, vmin=p_lo - ppad, vmax=p_hi + ppad, how=how,
                           metric=metric)


@dataclass
class ClipMapping:
    """One mapping from map values to files for every frame of a clip.

    * 16-bit PNG: relative maps (disparity, or depth of unknown scale) ``value = offset + scale * png``
      with ``offset = lo`` and ``scale = (hi - lo) / 65535`` (``lo``/``hi``: the clip's min and max);
      metric depth (``metric``, by default ``kind == "depth"``) in millimetres, as for single images.
    * 8-bit colour/grey video: ``vmin``..``vmax`` (the clip's robust range) spans the
      colour map; closer is the high end.
    """

    kind: str
    lo: float
    hi: float
    vmin: float
    vmax: float
    how: str = "clip"  # "clip" (two passes) | "running" (after a warm-up)
    clipped_pixels: int = field(default=0)
    metric: bool | None = None

    def __post_init__(self):
        if self.metric is None:
            self.metric = self.kind == "depth"

    @property
    def png16_scale(self) -> float:
        if self.metric:
            return METRIC_PNG16_SCALE
        return (self.hi - self.lo) / PNG16_MAX if self.hi > self.lo else 0.0

    @property
    def png16_offset(self) -> float:
        return 0.0 if self.metric else self.lo

    def to_png16(self, depth: np.ndarray) -> np.ndarray:
        finite = np.isfinite(depth)
        scale = self.png16_scale
        if scale <= 0:
            return np.zeros(depth.shape, np.uint16)
        q = (np.where(finite, depth, self.png16_offset) - self.png16_offset) / scale
        out_of_range = (q < -0.5) | (q > PNG16_MAX + 0.5)
        self.clipped_pixels += int(np.count_nonzero(out_of_range & finite))
        return np.clip(np.rint(q), 0, PNG16_MAX).astype(np.uint16)

    def from_png16(self, png: np.ndarray) -> np.ndarray:
        return (self.png16_offset + self.png16_scale * png.astype(np.float64)).astype(np.float32)

    def as_dict(self) -> dict:
        return {
            "how": self.how,
            "png16": {"scale": self.png16_scale, "offset": self.png16_offset,
                      "units": "m" if self.metric else "relative",
                      "note": ("millimetres; 0 = no depth" if self.metric else
                               "value = offset + scale * png, the same for every frame")},
            "color": {"vmin": self.vmin, "vmax": self.vmax,
                      "closer": "high end of the colour map (brighter in gray)"},
            "range": {"min": self.lo, "max": self.hi},
            "clipped_pixels": self.clipped_pixels,
        }


class FlickerMeter:
    """Flicker: the mean absolute frame-to-frame change of the written (stabilised) map,
    relative to the clip's range, in percent.

    ``flicker = 100 * mean_t mean_pixels |n_t - n_{t-1}|`` with
    ``n = clip((d - vmin) / (vmax - vmin), 0, 1)``, where ``d`` is the map as written
    (aligned disparity, or metric depth) and ``vmin``/``vmax`` the clip's robust range (the
    colour range of the depth video). 0 = a still picture; it includes real motion, so
    compare it between settings on the same clip: a lower value with the same input means
    less pulsing. For a map normalised frame by frame a pure brightness pulse shows up here
    directly.
    """

    def __init__(self, vmin: float, vmax: float):
        self.vmin = vmin
        self.span = vmax - vmin if vmax > vmin else 1.0
        self._previous: np.ndarray | None = None
        self._sum = 0.0
        self.pairs = 0

    def update(self, depth: np.ndarray) -> None:
        n = np.clip((np.nan_to_num(depth, nan=self.vmin, posinf=self.vmin, neginf=self.vmin) - self.vmin)
                    / self.span, 0.0, 1.0).astype(np.float32)
        if self._previous is not None and self._previous.shape == n.shape:
            self._sum += float(np.mean(np.abs(n - self._previous)))
            self.pairs += 1
        self._previous = n

    @property
    def value(self) -> float | None:
        """Flicker in percent of the range (None with fewer than two frames)."""
        return 100.0 * self._sum / self.pairs if self.pairs else None


FLICKER_DEFINITION = ("mean absolute frame-to-frame change of the written map, normalised by the clip's "
                      "robust range (1st-99th percentile), in percent")
