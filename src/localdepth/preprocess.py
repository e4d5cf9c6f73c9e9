"""Image -> network input, as each model's reference implementation does it.

Kept apart from the networks (as Transformers keeps image processors apart from models):
inputs are decoded RGB arrays (:mod:`localdepth.images`), outputs are float32 arrays in the
layout the backend expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .registry import Preprocessing, PromptDepthInput


def _interpolation(name: str) -> int:
    import cv2  # imported where pixels are resized: size planning needs no OpenCV

    return {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}[name]


def to_float(rgb: np.ndarray) -> np.ndarray:
    from .images import to_float as images_to_float

    return images_to_float(rgb)


def _round_to_multiple(x: float, multiple: int, min_val: int) -> int:
    """Nearest multiple of ``multiple``; rounded up instead when that falls below ``min_val``
    (the Depth Anything/MiDaS ``constrain_to_multiple_of``)."""
    y = int(round(x / multiple) * multiple)
    if y < min_val:
        y = int(math.ceil(x / multiple) * multiple)
    return max(y, multiple)


def pad_margins(height: int, width: int, pre: Preprocessing) -> tuple[int, int]:
    """``(top/bottom, left/right)`` reflection margins the entry adds before resizing (ZoeDepth's
    ``int(sqrt(side / 2) * factor)``); ``(0, 0)`` for entries without padding."""
    if pre.reflect_pad_factor <= 0:
        return 0, 0
    return (int(math.sqrt(height / 2) * pre.reflect_pad_factor), int(math.sqrt(width / 2) * pre.reflect_pad_factor))


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
    """The ``(h, w)`` the model's reference implementation would feed the network (unbounded).

    ``input_size`` overrides the entry's default (``--input-size``); it is rounded to the
    entry's multiple, as the reference does. With reflection padding, the padded image is what
    gets resized.
    """
    if pre.resize == "fixed":
        assert pre.fixed_hw is not None
        if input_size is not None and input_size != pre.fixed_hw[0]:
            raise ValueError(f"this model takes a fixed {pre.fixed_hw[0]}x{pre.fixed_hw[1]} input; --input-size does not apply")
        return pre.fixed_hw
    if pre.resize == "upper_bound":
        h, w = _upper_bound_size(height, width, input_size or pre.input_size)
        return _nearest_multiple(h, pre.multiple_of), _nearest_multiple(w, pre.multiple_of)
    pad_h, pad_w = pad_margins(height, width, pre)
    height, width = height + 2 * pad_h, width + 2 * pad_w
    target_h, target_w = pre.target_hw or (pre.input_size, pre.input_size)
    if input_size is not None:  # the short target becomes input_size, the other keeps its proportion
        target_h, target_w = input_size, round(input_size * target_w / target_h)
    scale_h, scale_w = target_h / height, target_w / width
    if pre.resize == "lower_bound":
        scale = max(scale_h, scale_w)
    else:  # minimal: change the image as little as possible
        scale = scale_h if abs(1 - scale_h) < abs(1 - scale_w) else scale_w
    min_h, min_w = (target_h, target_w) if pre.resize == "lower_bound" else (0, 0)
    h = _round_to_multiple(scale * height, pre.multiple_of, min_h)
    w = _round_to_multiple(scale * width, pre.multiple_of, min_w)
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
    import cv2

    if image.shape[:2] == (h, w):
        return image
    grows = h > image.shape[0] or w > image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC if grows else cv2.INTER_AREA)


def _resize_upper_bound(rgb: np.ndarray, pre: Preprocessing, input_size: int | None,
                        size: tuple[int, int]) -> np.ndarray:
    """The Depth Anything 3 input resize: longer side to ``input_size``, then to ``size`` (each side
    at its nearest multiple of the patch, or less where the input budget says so): two resizes on
    8-bit pixels as the reference does (16-bit and float images are resized as floats)."""
    x = _resize_auto(rgb, *_upper_bound_size(rgb.shape[0], rgb.shape[1], input_size or pre.input_size))
    return _resize_auto(x, *size)


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
    """The ``(h, w)`` the network sees for an image of ``height x width`` (see :func:`plan_network_input`)."""
    return plan_network_input(height, width, pre, input_size).size


def resize(x: np.ndarray, height: int, width: int, interpolation: str = "bilinear", *,
           align_corners: bool = False) -> np.ndarray:
    """Resize an ``(H, W)`` or ``(H, W, C)`` array to ``(height, width)``.

    ``bilinear``/``bicubic``/``area`` are OpenCV's (pixel centres aligned, as PyTorch's
    ``interpolate(..., align_corners=False)`` without antialiasing; bicubic with a = -0.75 like
    PyTorch). ``align_corners=True`` (bilinear) maps the corner pixel centres of both grids onto each
    other, as PyTorch's ``align_corners=True``. ``pil-bicubic`` is Pillow's bicubic (antialiased when
    shrinking) on 8-bit data, per channel in float mode otherwise.
    """
    if x.shape[:2] == (height, width):
        return x
    if interpolation == "pil-bicubic":
        return _pil_bicubic(x, height, width)
    if align_corners:
        if interpolation != "bilinear":
            raise ValueError("align_corners applies to bilinear resizing only")
        return _bilinear_align_corners(x, height, width)
    import cv2

    return cv2.resize(x, (width, height), interpolation=_interpolation(interpolation))


def _bilinear_align_corners(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Separable linear interpolation with ``src = dst * (in - 1) / (out - 1)`` on both axes
    (OpenCV's warps quantise coordinates to 1/32 pixel; this is exact)."""
    def taps(n_in: int, n_out: int):
        pos = np.arange(n_out, dtype=np.float64) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        i0 = np.minimum(np.floor(pos).astype(np.intp), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (pos - i0).astype(np.float32)

    y = np.asarray(x, dtype=np.float32)
    r0, r1, fr = taps(y.shape[0], height)
    fr = fr.reshape((-1,) + (1,) * (y.ndim - 1))
    y = y[r0] * (1 - fr) + y[r1] * fr
    c0, c1, fc = taps(y.shape[1], width)
    fc = fc.reshape((1, -1) + (1,) * (y.ndim - 2))
    return y[:, c0] * (1 - fc) + y[:, c1] * fc


def _pil_bicubic(x: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3:
        return np.asarray(Image.fromarray(x).resize((width, height), Image.Resampling.BICUBIC))
    channels = x[:, :, None] if x.ndim == 2 else x
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(channels[:, :, c], dtype=np.float32), mode="F")
                      .resize((width, height), Image.Resampling.BICUBIC)) for c in range(channels.shape[2])]
    return np.stack(out, axis=2).reshape((height, width) + x.shape[2:])


def preprocess(rgb: np.ndarray, pre: Preprocessing, input_size: int | None = None) -> np.ndarray:
    """Decoded RGB image ``(H, W, 3)`` -> one network input.

    Returns ``(3, h, w)`` for ``nchw`` models, ``(h, w, 3)`` for ``nhwc`` ones, float32.
    Scaling to [0, 1] happens before the resize, as in the Depth Anything reference (linear
    resizing commutes with the normalisation, so its place does not matter for bilinear entries);
    Pillow's resize works on the 8-bit image, as Transformers' PIL processors do. Depth Anything 3
    resizes the 8-bit image twice, then scales to [0, 1], as its reference does.
    """
    import cv2

    h, w = network_size(rgb.shape[0], rgb.shape[1], pre, input_size)
    if pre.resize == "upper_bound":
        x = to_float(_resize_upper_bound(rgb, pre, input_size, (h, w)))
    else:
        x = rgb if pre.interpolation == "pil-bicubic" else to_float(rgb)
        pad_h, pad_w = pad_margins(rgb.shape[0], rgb.shape[1], pre)
        if pad_h or pad_w:
            x = cv2.copyMakeBorder(x, pad_h, pad_h, pad_w, pad_w, cv2.BORDER_REFLECT_101)  # numpy's "reflect"
        x = to_float(resize(x, h, w, pre.interpolation, align_corners=pre.align_corners))
    mean = np.asarray(pre.mean, dtype=np.float32)
    std = np.asarray(pre.std, dtype=np.float32)
    if np.any(mean != 0) or np.any(std != 1):
        x = (x - mean) * (1.0 / std)
    x = x.astype(np.float32, copy=False)
    if pre.layout == "nchw":
        x = np.ascontiguousarray(x.transpose(2, 0, 1))
    return x


def preprocess_prompt(depth_m: np.ndarray, prompt: PromptDepthInput) -> np.ndarray:
    """A prompt depth map in metres ``(H, W)`` -> the network's ``prompt_depth`` ``(1, H', W')`` float32.

    The map keeps its resolution (the network resizes it per decoder level) unless it is over the
    entry's pixel budget, then it is shrunk by area averaging. Non-finite values become 0 (no
    depth). A constant map gets 1e-6 added to its first pixel, as the reference processor does, so
    that the network's min-max normalisation does not divide by zero.
    """
    d = np.asarray(depth_m, dtype=np.float32)
    if d.ndim != 2 or min(d.shape) < 1:
        raise ValueError(f"a prompt depth map must be 2-D (H, W), got shape {d.shape}")
    d = np.where(np.isfinite(d), d, 0.0).astype(np.float32)
    h, w = d.shape
    if h * w > prompt.max_pixels:
        scale = math.sqrt(prompt.max_pixels / (h * w))
        d = resize(d, max(1, int(h * scale)), max(1, int(w * scale)), "area")
    else:
        d = d.copy()
    if d.min() == d.max():
        d[0, 0] += 1e-6
    return d[None]
