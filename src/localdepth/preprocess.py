"""Image -> network input, as each model's reference implementation does it.

Kept apart from the networks (as Transformers keeps image processors apart from models):
inputs are decoded RGB arrays (:mod:`localdepth.images`), outputs are float32 arrays in the
layout the backend expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .images import to_float
from .registry import Preprocessing

_INTERPOLATION = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


def _round_to_multiple(x: float, multiple: int, min_val: int) -> int:
    """Nearest multiple of ``multiple``; rounded up instead when that falls below ``min_val``
    (the Depth Anything/MiDaS ``constrain_to_multiple_of``)."""
    y = int(round(x / multiple) * multiple)
    if y < min_val:
        y = int(math.ceil(x / multiple) * multiple)
    return max(y, multiple)


@dataclass(frozen=True)
class NetworkInput:
    """The network input planned for one image: ``(height, width)``, what the model's reference
    resize asked for, and why they differ (``limited_by`` is empty within the budget)."""

    height: int
    width: int
    reference: tuple[int, int]
    limited_by: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def note(self, pre: Preprocessing) -> dict | None:
        """What the sidecar records when the budget changed the input (None otherwise)."""
        if not self.limited_by:
            return None
        return {"height": self.height, "width": self.width, "reference": list(self.reference),
                "limited_by": list(self.limited_by), "max_pixels": pre.max_pixels, "max_aspect": pre.max_aspect,
                "note": "the reference resize would exceed the model's input budget; the input was shrunk "
                        "(long side first), and the map resized back to the image"}


def _reference_size(height: int, width: int, pre: Preprocessing, input_size: int | None) -> tuple[int, int]:
    """The ``(h, w)`` the model's reference implementation would feed the network (unbounded)."""
    if pre.resize == "fixed":
        assert pre.fixed_hw is not None
        if input_size is not None and input_size != pre.fixed_hw[0]:
            raise ValueError(f"this model takes a fixed {pre.fixed_hw[0]}x{pre.fixed_hw[1]} input; --input-size does not apply")
        return pre.fixed_hw
    target = input_size or pre.input_size
    scale_h, scale_w = target / height, target / width
    if pre.resize == "lower_bound":
        scale = max(scale_h, scale_w)
    else:  # minimal: change the image as little as possible
        scale = scale_h if abs(1 - scale_h) < abs(1 - scale_w) else scale_w
    min_side = target if pre.resize == "lower_bound" else 0
    h = _round_to_multiple(scale * height, pre.multiple_of, min_side)
    w = _round_to_multiple(scale * width, pre.multiple_of, min_side)
    return h, w


def _floor_to_multiple(x: float, multiple: int) -> int:
    return max(multiple, int(math.floor(x / multiple)) * multiple)


def plan_network_input(height: int, width: int, pre: Preprocessing, input_size: int | None = None) -> NetworkInput:
    """The network input for an image of ``height x width``: the reference resize, bounded by the
    model's budget (``pre.max_aspect``, ``pre.max_pixels``).

    Beyond the aspect ratio, the long side is shrunk to ``max_aspect`` times the short one (the
    image is squeezed along it; the map is resized back to the image, so only the detail along
    that side is coarser). Beyond the pixel budget, both sides shrink by the same factor. Sides
    stay multiples of ``pre.multiple_of``, as the networks need. Nothing here allocates.
    """
    reference = _reference_size(height, width, pre, input_size)
    h, w = reference
    if pre.resize == "fixed":
        return NetworkInput(h, w, reference)
    limited = []
    m = pre.multiple_of
    if max(h, w) > min(h, w) * pre.max_aspect:
        longest = _floor_to_multiple(min(h, w) * pre.max_aspect, m)
        h, w = (longest, w) if h > w else (h, longest)
        limited.append(f"aspect ratio over {pre.max_aspect:g}:1")
    if h * w > pre.max_pixels:
        factor = math.sqrt(pre.max_pixels / (h * w))
        h, w = _floor_to_multiple(h * factor, m), _floor_to_multiple(w * factor, m)
        longest = _floor_to_multiple(min(h, w) * pre.max_aspect, m)  # rounding must not break the ratio
        h, w = min(h, longest), min(w, longest)
        limited.append(f"over {pre.max_pixels} pixels")
    return NetworkInput(h, w, reference, tuple(limited))


def network_input_note(height: int, width: int, pre: Preprocessing, input_size: int | None = None) -> dict:
    """Sidecar entries for an image of ``height x width``: ``network_input`` when the model's input
    budget changed what the reference resize asked for; empty otherwise."""
    note = plan_network_input(height, width, pre, input_size).note(pre)
    return {"network_input": note} if note else {}


def network_size(height: int, width: int, pre: Preprocessing, input_size: int | None = None) -> tuple[int, int]:
    """The ``(h, w)`` the network sees for an image of ``height x width`` (see :func:`plan_network_input`).

    ``input_size`` overrides the entry's default (``--input-size``); it is rounded to the
    entry's multiple, as the reference does.
    """
    return plan_network_input(height, width, pre, input_size).size


def preprocess(rgb: np.ndarray, pre: Preprocessing, input_size: int | None = None) -> np.ndarray:
    """Decoded RGB image ``(H, W, 3)`` -> one network input.

    Returns ``(3, h, w)`` for ``nchw`` models, ``(h, w, 3)`` for ``nhwc`` ones, float32.
    Scaling to [0, 1] happens before the resize, as in the Depth Anything reference.
    """
    h, w = network_size(rgb.shape[0], rgb.shape[1], pre, input_size)
    x = to_float(rgb)
    if (h, w) != x.shape[:2]:
        x = cv2.resize(x, (w, h), interpolation=_INTERPOLATION[pre.interpolation])
    mean = np.asarray(pre.mean, dtype=np.float32)
    std = np.asarray(pre.std, dtype=np.float32)
    if np.any(mean != 0) or np.any(std != 1):
        x = (x - mean) * (1.0 / std)
    x = x.astype(np.float32, copy=False)
    if pre.layout == "nchw":
        x = np.ascontiguousarray(x.transpose(2, 0, 1))
    return x
