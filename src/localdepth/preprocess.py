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
    if pre.resize == "upper_bound":
        h, w = _upper_bound_size(height, width, input_size or pre.input_size)
        return _nearest_multiple(h, pre.multiple_of), _nearest_multiple(w, pre.multiple_of)
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


def _upper_bound_size(height: int, width: int, target: int) -> tuple[int, int]:
    """Scale so the longer side is ``target`` (Python's rounding, as the Depth Anything 3 reference)."""
    longest = max(height, width)
    if longest == target:
        return height, width
    scale = target / float(longest)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def _nearest_multiple(x: int, multiple: int) -> int:
    """The multiple of ``multiple`` nearest to ``x`` (ties go up), at least one ``multiple``."""
    down = (x // multiple) * multiple
    up = down + multiple
    return max(multiple, up if up - x <= x - down else down)


def _resize_auto(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bicubic when a side grows, area otherwise (the Depth Anything 3 reference's choice)."""
    if image.shape[:2] == (h, w):
        return image
    grows = h > image.shape[0] or w > image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC if grows else cv2.INTER_AREA)


def _resize_upper_bound(rgb: np.ndarray, pre: Preprocessing, input_size: int | None) -> np.ndarray:
    """The Depth Anything 3 input resize: longer side to ``input_size``, then each side to its nearest
    multiple of the patch, two resizes on 8-bit pixels as the reference does (16-bit and float images
    are resized as floats, keeping their precision)."""
    h, w = _upper_bound_size(rgb.shape[0], rgb.shape[1], input_size or pre.input_size)
    x = _resize_auto(rgb, h, w)
    return _resize_auto(x, _nearest_multiple(h, pre.multiple_of), _nearest_multiple(w, pre.multiple_of))


def preprocess(rgb: np.ndarray, pre: Preprocessing, input_size: int | None = None) -> np.ndarray:
    """Decoded RGB image ``(H, W, 3)`` -> one network input.

    Returns ``(3, h, w)`` for ``nchw`` models, ``(h, w, 3)`` for ``nhwc`` ones, float32.
    Scaling to [0, 1] happens before the resize, as in the Depth Anything reference (after it for
    Depth Anything 3, as in its reference).
    """
    if pre.resize == "upper_bound":
        x = to_float(_resize_upper_bound(rgb, pre, input_size))
    else:
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
