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


#: a depth-like output below this fraction of its map's median is a network failure, not a near
#: point (see :func:`depth_like_to_disparity`)
FAILURE_FRACTION = 0.1


def depth_like_to_disparity(raw: np.ndarray) -> np.ndarray:
    """Disparity (``1 / raw``) from a network whose raw output ranks like depth (PyDNet++).

    ``raw``: ``(h, w)`` or ``(N, h, w)``. The reciprocal is only meaningful where the network
    gives a plausible depth. Measured on the 6 shared photos and 9 RGB-D frames, PyDNet++'s output
    is positive and compressed, at least 0.19 of its median everywhere except in two places where
    the network fails: a dip through zero along the top row of some photos (down to -0.07 of the
    median) and the ring around a fixed artefact near the top-left corner (a 3x3 peak at row 10,
    column 12 of the 448x640 output). A floor turned those pixels into the closest points of the
    picture (1000x the typical disparity). Instead, pixels under ``FAILURE_FRACTION`` of the
    median, and their 8 neighbours (the slope into the dip), are filled from the valid pixels
    around them (OpenCV's Navier-Stokes inpainting, which continues a smooth field within 0.4 %
    in tests/test_postprocess.py where Telea's method was 15 % off) before the reciprocal.
    """
    import cv2

    raw = np.asarray(raw, dtype=np.float32)
    maps = raw.reshape(-1, *raw.shape[-2:])
    out = np.empty_like(maps)
    for i, depth_like in enumerate(maps):
        finite = np.isfinite(depth_like)
        typical = float(np.median(depth_like[finite])) if finite.any() else 0.0
        failed = ~finite | (depth_like < FAILURE_FRACTION * typical)
        if failed.any():
            failed = cv2.dilate(failed.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        if typical <= 0 or failed.all():  # nothing plausible to fill from: no depth anywhere
            out[i] = 0.0
            continue
        if failed.any():
            filled = np.where(failed, typical, depth_like).astype(np.float32)
            depth_like = cv2.inpaint(filled, failed.astype(np.uint8), 3, cv2.INPAINT_NS)
        out[i] = 1.0 / depth_like
    return out.reshape(raw.shape)


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
    so the camera is built for the image, not for that grid. Any angle is accepted (a prediction is
    checked only where it is used: :attr:`Intrinsics.problem`)."""
    return from_fov(float(fov_deg), width, height, source=f"model (horizontal field of view {float(fov_deg):.4g} deg)",
                    check=False)
