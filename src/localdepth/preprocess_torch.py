"""Pre- and postprocessing as PyTorch ops, for the GPU-resident path (``--device cuda``).

The same rules as :mod:`localdepth.preprocess` and :mod:`localdepth.postprocess`, driven by the same
registry data (:class:`~localdepth.registry.Preprocessing`, :class:`~localdepth.registry.Postprocessing`)
and the same size planning (:func:`~localdepth.preprocess.plan_network_input`,
:func:`~localdepth.preprocess.pad_margins`): only the pixel arithmetic is written again, as tensor ops
that run where the tensor lives. On a GPU the decoded 8-bit image is copied once and resized there,
and only the map at the image's size comes back; the tests run the same functions on CPU tensors and
compare them with the OpenCV/Pillow path (``tests/test_gpu_pipeline.py`` states the measured
differences).

Each interpolation is the reference's:

* ``bicubic``/``bilinear`` (OpenCV, pixel centres aligned, no antialiasing, bicubic a = -0.75, edges
  replicated): ``F.interpolate`` computes the same;
* ``bilinear`` with ``align_corners`` (ZoeDepth in, Depth Anything V2 and Video Depth Anything out):
  ``F.interpolate(..., align_corners=True)``;
* ``area`` (OpenCV's ``INTER_AREA`` when shrinking, Depth Anything 3): each output pixel is the mean
  of the input area it covers, fractional pixels weighted by their overlap (:func:`_area_shrink`);
* ``pil-bicubic`` (Pillow's antialiased bicubic, a = -0.5; Prompt Depth Anything): ``F.interpolate``
  with ``antialias=True``, which follows Pillow's filter; 8-bit inputs are rounded to 8 bits after it
  as Pillow stores them;
* ``auto`` (Depth Anything 3): bicubic when a side grows, area otherwise, twice, rounded to 8 bits
  after each resize for 8-bit images as OpenCV does.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .preprocess import _upper_bound_size, network_size, pad_margins
from .registry import Postprocessing, Preprocessing


def image_tensor(rgb: np.ndarray, *, pin: bool = False) -> torch.Tensor:
    """A decoded image (:mod:`localdepth.images`: ``(H, W, 3)`` uint8, or float32 in [0, 1]) as a host
    tensor of the same dtype, sharing its memory, or copied into page-locked (pinned) memory with
    ``pin`` so that the copy to the GPU can run asynchronously. 8-bit images stay 8-bit: a quarter of
    the bytes of float to copy."""
    x = torch.from_numpy(np.ascontiguousarray(rgb))
    if x.dtype not in (torch.uint8, torch.float32):
        x = x.float()
    return x.pin_memory() if pin else x


def preprocess_image(image: torch.Tensor, pre: Preprocessing, input_size: int | None = None) -> torch.Tensor:
    """One decoded image ``(H, W, 3)`` (uint8, or float32 in [0, 1]) on any device -> the network input
    ``(3, h, w)`` float32 on the same device, as :func:`localdepth.preprocess.preprocess` computes it
    (``nchw`` entries; the NHWC entry, PyDNet++, runs on LiteRT and never here)."""
    if pre.layout != "nchw":
        raise ValueError("the tensor path takes channels-first models only")
    height, width = int(image.shape[0]), int(image.shape[1])
    h, w = network_size(height, width, pre, input_size)
    eight_bit = image.dtype == torch.uint8
    x = image.permute(2, 0, 1)[None].float()  # (1, 3, H, W): a view of the HWC pixels, no copy
    if pre.resize == "upper_bound":
        middle = _upper_bound_size(height, width, input_size or pre.input_size)
        x = _resize_auto(_resize_auto(x, middle, eight_bit), (h, w), eight_bit)
        x = _scale(x, eight_bit)
    elif pre.interpolation == "pil-bicubic":  # Pillow resizes the 8-bit image, then it is scaled
        x = _scale(_pil_bicubic(x, h, w, eight_bit), eight_bit)
    else:
        x = _scale(x, eight_bit)
        pad_h, pad_w = pad_margins(height, width, pre)
        if pad_h or pad_w:
            x = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect")  # numpy's "reflect", OpenCV's REFLECT_101
        x = _resize(x, h, w, pre.interpolation, align_corners=pre.align_corners)
    mean, std = np.asarray(pre.mean, np.float32), np.asarray(pre.std, np.float32)
    if np.any(mean != 0) or np.any(std != 1):  # decided on the host: no device round trip
        x = (x - torch.from_numpy(mean).to(x.device).view(1, 3, 1, 1)) \
            * torch.from_numpy(1.0 / std).to(x.device).view(1, 3, 1, 1)
    return x[0]


def preprocess_batch(images: list[torch.Tensor], pre: Preprocessing, input_size: int | None = None, *,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Images that share a network size -> one batch ``(N, 3, h, w)`` in ``dtype``, channels-last
    (the layout the convolutions of the DPT heads run fastest in on GPUs)."""
    batch = torch.stack([preprocess_image(x, pre, input_size) for x in images])
    return batch.to(dtype=dtype, memory_format=torch.channels_last)


def _scale(x: torch.Tensor, eight_bit: bool) -> torch.Tensor:
    """[0, 255] -> [0, 1] as :func:`localdepth.images.to_float` (times the float32 reciprocal)."""
    return x * np.float32(1.0 / 255.0) if eight_bit else x


def _resize(x: torch.Tensor, h: int, w: int, interpolation: str, *, align_corners: bool = False) -> torch.Tensor:
    """``(N, C, H, W)`` float -> ``(N, C, h, w)`` with one of the registry's interpolations."""
    if tuple(x.shape[-2:]) == (h, w):
        return x
    if align_corners:
        if interpolation != "bilinear":
            raise ValueError("align_corners applies to bilinear resizing only")
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=True)
    if interpolation == "area":
        return _area_shrink(x, h, w)
    if interpolation == "pil-bicubic":
        return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    if interpolation in ("bicubic", "bilinear"):
        return F.interpolate(x, size=(h, w), mode=interpolation, align_corners=False)
    raise ValueError(f"unknown interpolation '{interpolation}'")


def _pil_bicubic(x: torch.Tensor, h: int, w: int, eight_bit: bool) -> torch.Tensor:
    """Pillow's bicubic: antialiased, columns first, then rows; an 8-bit image is stored in 8 bits
    (rounded, saturated) after each pass, as Pillow does (one pass without the rounding in between
    differed by up to 24 levels at sharp edges, where the first pass overshoots)."""
    if not eight_bit:
        return _resize(x, h, w, "pil-bicubic")
    if x.shape[-1] != w:
        x = _resize(x, x.shape[-2], w, "pil-bicubic").round_().clamp_(0, 255)
    if x.shape[-2] != h:
        x = _resize(x, h, w, "pil-bicubic").round_().clamp_(0, 255)
    return x


def _resize_auto(x: torch.Tensor, size: tuple[int, int], eight_bit: bool) -> torch.Tensor:
    """Depth Anything 3's resize: bicubic when a side grows, area otherwise; 8-bit images are
    rounded and saturated to 8 bits after it, as OpenCV's 8-bit resize stores them."""
    h, w = size
    if tuple(x.shape[-2:]) == (h, w):
        return x
    grows = h > x.shape[-2] or w > x.shape[-1]
    x = _resize(x, h, w, "bicubic" if grows else "area")
    return x.round_().clamp_(0, 255) if eight_bit else x


def _area_taps(n_in: int, n_out: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """For each output pixel along one axis, the input pixels its area covers and their weights
    (overlap / area): ``(n_out, k)`` indices and weights, zero-weight padding where fewer are covered."""
    scale = n_in / n_out
    k = int(math.ceil(scale)) + 1
    start = np.arange(n_out, dtype=np.float64) * scale
    first = np.floor(start).astype(np.int64)
    idx = first[:, None] + np.arange(k)[None, :]
    lo = np.maximum(idx, start[:, None])
    hi = np.minimum(idx + 1, start[:, None] + scale)
    weight = np.clip(hi - lo, 0.0, None) / scale
    idx = np.minimum(idx, n_in - 1)
    return (torch.from_numpy(idx).to(device),
            torch.from_numpy(weight.astype(np.float32)).to(device))


def _area_shrink(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """OpenCV's ``INTER_AREA`` for shrinking, separably: rows, then columns, each a sum over the
    few input pixels an output pixel covers (exact float32 arithmetic; no matrix product, which a
    GPU would run in TF32)."""
    if h > x.shape[-2] or w > x.shape[-1]:
        raise ValueError("area resizing here shrinks only (Depth Anything 3 enlarges bicubically)")
    for axis, n_out in ((-2, h), (-1, w)):
        n_in = x.shape[axis]
        if n_in == n_out:
            continue
        idx, weight = _area_taps(n_in, n_out, x.device)
        shape = [1] * x.dim()
        shape[axis] = n_out
        out = None
        for j in range(idx.shape[1]):
            term = x.index_select(axis, idx[:, j]) * weight[:, j].view(shape)
            out = term if out is None else out.add_(term)
        x = out
    return x


# ----------------------------------------------------------------------------- back to the image


def resize_to_image(prediction: torch.Tensor, height: int, width: int, post: Postprocessing | None = None,
                    pre: Preprocessing | None = None) -> torch.Tensor:
    """A network-resolution map ``(h, w)`` -> ``(height, width)`` float32 on the same device, as
    :func:`localdepth.postprocess.resize_to_image` does it (padding margins cut off)."""
    post = post or Postprocessing()
    pad_h, pad_w = pad_margins(height, width, pre) if pre is not None else (0, 0)
    x = prediction.float()[None, None]
    size = (height + 2 * pad_h, width + 2 * pad_w)
    if tuple(x.shape[-2:]) != size:
        if post.align_corners:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=size, mode=post.interpolation, align_corners=False)
    return x[0, 0, pad_h:pad_h + height, pad_w:pad_w + width]


def to_original_size(prediction: torch.Tensor, height: int, width: int, kind: str,
                     post: Postprocessing | None = None, pre: Preprocessing | None = None) -> torch.Tensor:
    """:func:`localdepth.postprocess.to_original_size` on a tensor: resized, inverted where the
    network predicts inverse depth (clamped as its reference does), never negative for depth."""
    pred = resize_to_image(prediction, height, width, post, pre)
    if post is not None and post.inverse_range is not None:
        lo, hi = post.inverse_range
        pred = 1.0 / pred.clamp(lo, hi)
    if kind == "depth":
        pred = pred.clamp_min(0.0)
    return pred


def to_host(tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], object]:
    """Start copying device tensors back to the host; returns the host tensors and something whose
    ``synchronize()`` waits for the copies (a CUDA event; a no-op for CPU tensors). On CUDA the
    copies go to pinned memory without blocking, so the caller can queue more work first."""
    if not tensors or tensors[0].device.type != "cuda":
        return [t.contiguous() for t in tensors], _Done()
    host = []
    for t in tensors:
        buffer = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        buffer.copy_(t, non_blocking=True)
        host.append(buffer)
    event = torch.cuda.Event()
    event.record()
    return host, event


class _Done:
    @staticmethod
    def synchronize() -> None:
        return None
