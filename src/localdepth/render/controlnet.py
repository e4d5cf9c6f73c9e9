"""Conditioning pictures for depth and normal ControlNets.

Pure functions on arrays. The depth picture is what the common preprocessors hand a depth
ControlNet (ControlNet's MiDaS annotator, the Depth Anything preprocessors of ComfyUI's
controlnet_aux, diffusers' SDXL depth example): **inverse depth, normalised per image from its
minimum to its maximum, near = white**, ``uint8(255 * (d - min) / (max - min))`` (truncated, as
they do), the same value in R, G and B. A relative map is a disparity already; a depth map (metres
or relative depth) is inverted first (``d = 1 / z``).

The size is the image's, or ControlNet's own rule (``resize_image`` of its annotators) for a
given resolution ``N``: the short side scaled to ``N``, then both sides rounded to the nearest
multiple of 64 (OpenCV's area interpolation when shrinking, Lanczos when enlarging).
"""

from __future__ import annotations

import cv2
import numpy as np

CONTROLNET_DEPTH_ENCODING = ("inverse depth normalised per image over its min..max, near = 255 (white), far = 0; "
                             "uint8(255 * t) as ControlNet's preprocessors do; the same value in R, G and B")


def controlnet_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """``(height, width)`` by ControlNet's ``resize_image``: short side to ``resolution``, sides
    rounded to multiples of 64 (at least 64)."""
    if resolution % 64 or resolution < 64:
        raise ValueError(f"the ControlNet size must be a positive multiple of 64, got {resolution}")
    k = resolution / min(height, width)
    return (max(64, int(np.round(height * k / 64.0)) * 64), max(64, int(np.round(width * k / 64.0)) * 64))


def resize_for_controlnet(picture: np.ndarray, resolution: int | None) -> np.ndarray:
    """A picture at ControlNet's size for ``resolution`` (see :func:`controlnet_size`); as it is for None."""
    if resolution is None:
        return picture
    h, w = picture.shape[:2]
    th, tw = controlnet_size(h, w, resolution)
    if (th, tw) == (h, w):
        return picture
    enlarge = th * tw > h * w
    return cv2.resize(picture, (tw, th), interpolation=cv2.INTER_LANCZOS4 if enlarge else cv2.INTER_AREA)


def inverse_depth(depth: np.ndarray, kind: str) -> np.ndarray:
    """``(H, W)`` disparity (larger = nearer): the map itself for ``disparity``, ``1 / z`` for ``depth``
    (NaN where there is no valid depth)."""
    d = np.asarray(depth, dtype=np.float64)
    if kind == "depth":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.isfinite(d) & (d > 0), 1.0 / d, np.nan)
    return np.where(np.isfinite(d), d, np.nan)


def normalised_inverse_depth(depth: np.ndarray, kind: str) -> np.ndarray:
    """``(H, W)`` float32 in [0, 1], near = 1: the inverse depth over its min..max (0 where invalid,
    all 0 for a flat map)."""
    inv = inverse_depth(depth, kind)
    valid = np.isfinite(inv)
    if not valid.any():
        return np.zeros(inv.shape, np.float32)
    lo, hi = float(inv[valid].min()), float(inv[valid].max())
    if hi <= lo:
        return np.zeros(inv.shape, np.float32)
    return np.where(valid, (inv - lo) / (hi - lo), 0.0).astype(np.float32)


def controlnet_depth(depth: np.ndarray, kind: str, resolution: int | None = None) -> tuple[np.ndarray, dict]:
    """The depth ControlNet picture: ``(H', W', 3)`` uint8 (see the module docstring) and its sidecar entry.

    ``resolution``: None for the map's own size, else a multiple of 64 (:func:`controlnet_size`).
    The map is normalised at its own resolution, resized, then quantised.
    """
    t = resize_for_controlnet(normalised_inverse_depth(depth, kind), resolution)
    grey = (np.clip(t, 0.0, 1.0) * 255.0).astype(np.uint8)
    h, w = grey.shape
    return np.repeat(grey[..., None], 3, axis=2), {
        "encoding": CONTROLNET_DEPTH_ENCODING, "width": w, "height": h,
        "size_rule": "the image's size" if resolution is None else
                     f"short side {resolution}, sides rounded to multiples of 64 (ControlNet's resize_image)",
        "inverted": kind == "depth"}
