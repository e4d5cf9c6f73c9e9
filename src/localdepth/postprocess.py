"""Network output -> a depth result at the input image's resolution."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import Intrinsics, from_fov, from_matrix
from .preprocess import pad_margins, resize
from .registry import OutputKind, Postprocessing, Preprocessing


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
    #: ``(H, W)`` float32 per-pixel confidence (larger = more confident), for models that predict one
    confidence: np.ndarray | None = None
    #: the camera the model predicted (``source="model"``), in pixels of this image; None when the
    #: model predicts none. Which camera a command then uses: :func:`localdepth.geometry.resolve_intrinsics`
    intrinsics: Intrinsics | None = None
    #: ``(4, 4)`` predicted pose, world -> camera, OpenCV axes; None when the model predicts none
    camera_from_world: np.ndarray | None = None
    #: model-specific facts for the sidecar (e.g. which focal turned a metric model's output into metres)
    notes: dict = field(default_factory=dict)

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


def resize_to_image(prediction: np.ndarray, height: int, width: int, post: Postprocessing | None = None,
                    pre: Preprocessing | None = None) -> np.ndarray:
    """A network-resolution map ``(h, w)`` -> ``(height, width)`` float32, as the entry's reference does.

    The map is resized with ``post.interpolation`` (default: bilinear, pixel centres aligned). When
    the preprocessing padded the image (``pre.reflect_pad_factor``), the map covers the padded image:
    it is resized to that size and the margins are cut off.
    """
    post = post or Postprocessing()
    pad_h, pad_w = pad_margins(height, width, pre) if pre is not None else (0, 0)
    pred = resize(np.asarray(prediction, dtype=np.float32), height + 2 * pad_h, width + 2 * pad_w,
                  post.interpolation, align_corners=post.align_corners)
    return np.ascontiguousarray(pred[pad_h:pad_h + height, pad_w:pad_w + width], dtype=np.float32)


def to_original_size(prediction: np.ndarray, height: int, width: int, kind: OutputKind,
                     post: Postprocessing | None = None, pre: Preprocessing | None = None) -> np.ndarray:
    """The raw network map ``(h, w)`` -> the result's map ``(height, width)`` (see :func:`resize_to_image`).

    Entries whose network predicts inverse depth (``post.inverse_range``) are inverted after the
    resize, clamped as their reference clamps. Metric depth is never negative (bicubic resizing can
    overshoot below 0 near steps; bilinear never does).
    """
    pred = resize_to_image(prediction, height, width, post, pre)
    if post is not None and post.inverse_range is not None:
        lo, hi = post.inverse_range
        pred = 1.0 / np.clip(pred, lo, hi)
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


def fov_to_intrinsics(fov_deg: float, height: int, width: int) -> Intrinsics:
    """A predicted horizontal field of view (degrees, edge to edge of the image) -> the camera of a
    ``width x height`` image: square pixels, centred principal point, ``f = W / (2 tan(fov / 2))``
    (Depth Pro's convention). The network's input grid may be stretched (Depth Pro sees 1536 x 1536),
    so the camera is built for the image, not for that grid."""
    return from_fov(float(fov_deg), width, height, source=f"model (horizontal field of view {float(fov_deg):.4g} deg)")
