"""Network output -> a depth result at the input image's resolution."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .registry import OutputKind


@dataclass
class DepthResult:
    """One image's prediction.

    ``map`` is ``(H, W)`` float32 at the input image's resolution (after EXIF orientation).
    ``kind`` says what it holds:

    * ``"disparity"``: relative inverse depth, affine-invariant (larger = closer; unknown
      scale and shift), as Depth Anything, MiDaS and PyDNet predict;
    * ``"depth"``: metric z-depth in metres (distance along the optical axis).
    """

    map: np.ndarray
    kind: OutputKind
    model: str
    input_size: tuple[int, int]  # (h, w) the network saw
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds per stage
    source: str | None = None
    image: np.ndarray | None = None  # the decoded RGB input, kept for side-by-side and point clouds
    max_depth: float | None = None

    @property
    def units(self) -> str:
        return "m" if self.kind == "depth" else "relative"

    @property
    def shape(self) -> tuple[int, int]:
        return self.map.shape  # type: ignore[return-value]

    def __repr__(self) -> str:
        t = ", ".join(f"{k}={v:.1f}ms" for k, v in self.timings.items())
        return (f"DepthResult(model={self.model!r}, kind={self.kind!r}, shape={self.map.shape}, "
                f"range=[{float(self.map.min()):.4g}, {float(self.map.max()):.4g}] {self.units}, {t})")


def to_original_size(prediction: np.ndarray, height: int, width: int, kind: OutputKind) -> np.ndarray:
    """Resize a network-resolution map ``(h, w)`` back to ``(height, width)``.

    Bilinear with pixel-centre alignment (``align_corners=False``); bilinear never
    overshoots, so a non-negative map stays non-negative.
    """
    pred = np.asarray(prediction, dtype=np.float32)
    if pred.shape != (height, width):
        pred = cv2.resize(pred, (width, height), interpolation=cv2.INTER_LINEAR)
    if kind == "depth":
        pred = np.maximum(pred, 0.0)
    return np.ascontiguousarray(pred, dtype=np.float32)
