"""Image -> network input, as each model's reference implementation does it.

Kept apart from the networks (as Transformers keeps image processors apart from models):
inputs are decoded RGB arrays (:mod:`localdepth.images`), outputs are float32 arrays in the
layout the backend expects.
"""

from __future__ import annotations

import math

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


def network_size(height: int, width: int, pre: Preprocessing, input_size: int | None = None) -> tuple[int, int]:
    """The ``(h, w)`` the network sees for an image of ``height x width``.

    ``input_size`` overrides the entry's default (``--input-size``); it is rounded to the
    entry's multiple, as the reference does.
    """
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
