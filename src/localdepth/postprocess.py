"""Network output -> a depth result at the input image's resolution."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .geometry import Intrinsics, from_matrix
from .registry import OutputKind


@dataclass
class DepthResult:
    """One image's prediction.

    ``map`` is ``(H, W)`` float32 at the input image's resolution (after EXIF orientation).
    ``kind`` says what it holds:

    * ``"disparity"``: relative inverse depth, affine-invariant (larger = closer; unknown
      scale and shift), as Depth Anything, MiDaS and PyDNet predict;
    * ``"depth"``: z-depth (distance along the optical axis, larger = farther): in metres when
      ``metric`` (metric models), else up to an unknown scale (Depth Anything 3, its Mono network).
    """

    map: np.ndarray
    kind: OutputKind
    model: str
    input_size: tuple[int, int]  # (h, w) the network saw
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds per stage
    source: str | None = None
    image: np.ndarray | None = None  # the decoded RGB input, kept for side-by-side and point clouds
    max_depth: float | None = None
    #: ``(H, W)`` float32 per-pixel confidence (larger = more confident), for models that predict one
    confidence: np.ndarray | None = None
    #: the camera the model predicted (``source="model"``), in pixels of this image; None when the
    #: model predicts none. Which camera a command then uses: :func:`localdepth.geometry.resolve_intrinsics`
    intrinsics: Intrinsics | None = None
    #: ``(4, 4)`` predicted pose, world -> camera, OpenCV axes; None when the model predicts none
    camera_from_world: np.ndarray | None = None
    #: model-specific facts for the sidecar (e.g. which focal turned a metric model's output into metres)
    notes: dict = field(default_factory=dict)
    #: the map is in metres; None: as ``kind`` says by default (``depth`` = metres)
    metric: bool | None = None

    def __post_init__(self):
        if self.metric is None:
            self.metric = self.kind == "depth"

    @property
    def units(self) -> str:
        return "m" if self.metric else "relative"

    @property
    def convention(self) -> str:
        return describe_map(self.kind, self.metric)

    @property
    def shape(self) -> tuple[int, int]:
        return self.map.shape  # type: ignore[return-value]

    def __repr__(self) -> str:
        t = ", ".join(f"{k}={v:.1f}ms" for k, v in self.timings.items())
        return (f"DepthResult(model={self.model!r}, kind={self.kind!r}, shape={self.map.shape}, "
                f"range=[{float(self.map.min()):.4g}, {float(self.map.max()):.4g}] {self.units}, {t})")


def describe_map(kind: OutputKind, metric: bool) -> str:
    """The ``convention`` line of sidecars and headers for a map of ``kind`` (metric or not)."""
    if kind == "disparity":
        return "relative inverse depth: larger = closer, unknown scale and shift"
    if metric:
        return "z-depth along the optical axis, metres"
    return "z-depth along the optical axis, relative units: larger = farther, unknown scale"


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


def intrinsics_to_original(K_network: np.ndarray, network_hw: tuple[int, int], height: int, width: int) -> Intrinsics:
    """A camera predicted on the network's ``(h, w)`` input grid -> the same camera in pixels of the
    ``height x width`` image that was resized to that grid (plain resize, no crop or padding).

    Pixel centres at integer coordinates on both grids (see :meth:`Intrinsics.scaled`).
    """
    h, w = network_hw
    return from_matrix(K_network, int(w), int(h), source="model").scaled(width, height)
