"""Operations every MLX network shares: PyTorch's bilinear resize, and the position-embedding rule.

Feature maps are NHWC (``(N, H, W, C)``), MLX's layout for convolutions.
"""

from __future__ import annotations

import functools

import mlx.core as mx
import numpy as np


@functools.lru_cache(maxsize=512)
def _taps(n_in: int, n_out: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two source cells and the weight of the second, per output cell, as PyTorch's
    ``interpolate(mode="bilinear")`` samples: ``src = dst * (in - 1) / (out - 1)`` with aligned
    corners, else ``(dst + 0.5) * in / out - 0.5`` clamped at 0."""
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = np.maximum((dst + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int32), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(x: mx.array, size: tuple[int, int], align_corners: bool = True) -> mx.array:
    """``(N, H, W, C)`` -> ``(N, size[0], size[1], C)``, bilinear as PyTorch's ``F.interpolate``
    (no antialiasing), one axis after the other, in ``x``'s dtype."""
    for axis, n_out in ((1, int(size[0])), (2, int(size[1]))):
        n_in = x.shape[axis]
        if n_in == n_out:
            continue
        i0, i1, t = _taps(n_in, n_out, align_corners)
        shape = [1] * x.ndim
        shape[axis] = n_out
        weight = mx.array(t).reshape(shape).astype(x.dtype)
        x = mx.take(x, mx.array(i0), axis=axis) * (1 - weight) + mx.take(x, mx.array(i1), axis=axis) * weight
    return x


def resized_position_embedding(pos_embed: mx.array, rows: int, cols: int) -> mx.array:
    """Position embeddings ``(1, 1 + side * side, dim)`` -> the same for a ``rows x cols`` patch
    grid, by the official DINOv2 rule, in ``pos_embed``'s dtype.

    The PyTorch networks' own function computes it
    (:func:`localdepth.networks.dinov2.resize_position_embedding`: one bicubic resize of a 37 x 37
    table in float32), so both backends sample the table at the same positions.
    """
    import torch

    from ..dinov2 import resize_position_embedding

    table = torch.from_numpy(np.array(pos_embed.astype(mx.float32)))
    resized = resize_position_embedding(table, rows, cols).numpy()
    return mx.array(resized).astype(pos_embed.dtype)


class Memo:
    """A small cache of computed arrays that is not part of a module's parameters (an MLX module
    treats dict and array attributes as parameters)."""

    def __init__(self, limit: int = 32):
        self.limit = limit
        self._items: dict = {}

    def get(self, key):
        return self._items.get(key)

    def put(self, key, value):
        if len(self._items) >= self.limit:
            self._items.pop(next(iter(self._items)))
        self._items[key] = value
        return value
