"""The DPT head in MLX with the official parameter names (``projects``, ``resize_layers``,
``scratch.layerN_rn``, ``scratch.refinenetN`` ...), as :mod:`localdepth.networks.dpt_head`
defines it for PyTorch. :class:`DPTPyramid` is the front every head shares (Depth Anything V1/V2,
Video Depth Anything, Depth Anything 3 Mono and Metric); :class:`DPTHead` splits its forward
pass into the same stages as the PyTorch head, so the temporal head reuses them.

Maps are NHWC; the head returns ``(N, H, W)``.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .layers import resize_bilinear


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def __call__(self, x: mx.array) -> mx.array:
        return self.conv2(nn.relu(self.conv1(nn.relu(x)))) + x


class FusionBlock(nn.Module):
    """``out_conv(upsample(unit2(x + unit1(lateral))))``, bilinear with aligned corners to
    ``size`` or twice the size; ``has_residual=False``: no ``resConfUnit1``."""

    def __init__(self, features: int, has_residual: bool = True):
        super().__init__()
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)  # noqa: N815 - official name
        self.resConfUnit2 = ResidualConvUnit(features)  # noqa: N815 - official name
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def __call__(self, x: mx.array, lateral: mx.array | None = None, size=None) -> mx.array:
        if lateral is not None and "resConfUnit1" in self:
            x = x + self.resConfUnit1(lateral)
        x = self.resConfUnit2(x)
        size = tuple(size) if size is not None else (x.shape[1] * 2, x.shape[2] * 2)
        return self.out_conv(resize_bilinear(x, size, align_corners=True))


class DPTPyramid(nn.Module):
    """Per level: a 1x1 projection (``projects``), a resize to 4x, 2x, 1x and 1/2x the patch
    grid (``resize_layers``) and a 3x3 convolution to the fusion width (``scratch.layerN_rn``)."""

    def __init__(self, in_channels: int, features: int, out_channels: tuple[int, ...]):
        super().__init__()
        self.projects = [nn.Conv2d(in_channels, c, kernel_size=1) for c in out_channels]
        self.resize_layers = [
            nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
        ]
        self.scratch = nn.Module()
        for i, c in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, kernel_size=3, padding=1, bias=False))

    def reassemble(self, tokens: list[mx.array], rows: int, cols: int) -> list[mx.array]:
        """Four levels of patch tokens ``(N, rows * cols, C)`` -> maps at 4x, 2x, 1x and 1/2x the grid."""
        maps = []
        for i, t in enumerate(tokens):
            x = t.reshape(t.shape[0], rows, cols, t.shape[-1])
            maps.append(self.resize_layers[i](self.projects[i](x)))
        return maps

    def refine(self, maps: list[mx.array]) -> list[mx.array]:
        """The four maps at the fusion width (``scratch.layerN_rn``)."""
        return [getattr(self.scratch, f"layer{i}_rn")(x) for i, x in enumerate(maps, start=1)]


class DPTHead(DPTPyramid):
    """Depth Anything's DPT head (V1, V2, Video Depth Anything).

    ``head_hidden``: channels of the last 3x3 convolution (32 in every release);
    ``activation``: ``relu`` (relative) or ``sigmoid`` (Depth Anything V2 Metric), times
    ``max_depth``; ``float32_tail``: the last convolutions run in float32 whatever the weights'
    precision (as the PyTorch Video Depth Anything keeps them), the result in the input's dtype.
    """

    def __init__(self, in_channels: int, features: int, out_channels: tuple[int, ...], *, head_hidden: int = 32,
                 activation: str = "relu", max_depth: float = 1.0, float32_tail: bool = False, patch_size: int = 14):
        super().__init__(in_channels, features, out_channels)
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FusionBlock(features))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        last = {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid()}[activation]
        self.scratch.output_conv2 = [nn.Conv2d(features // 2, head_hidden, kernel_size=3, padding=1), nn.ReLU(),
                                     nn.Conv2d(head_hidden, 1, kernel_size=1), last]
        self.max_depth = float(max_depth)
        self.float32_tail = float32_tail
        self.patch_size = patch_size

    def finish(self, path_3: mx.array, layer_2: mx.array, layer_1: mx.array, rows: int, cols: int) -> mx.array:
        """The two finest fusions and the output convolutions: ``(N, rows * 14, cols * 14)``."""
        path_2 = self.scratch.refinenet2(path_3, layer_2, size=layer_1.shape[1:3])
        path_1 = self.scratch.refinenet1(path_2, layer_1)
        out = resize_bilinear(self.scratch.output_conv1(path_1), (rows * self.patch_size, cols * self.patch_size))
        dtype = out.dtype
        if self.float32_tail:
            out = out.astype(mx.float32)
        for layer in self.scratch.output_conv2:
            out = layer(out)
        if self.max_depth != 1.0:
            out = out * self.max_depth
        return out[..., 0].astype(dtype)

    def __call__(self, features, rows: int, cols: int) -> mx.array:
        layer_1, layer_2, layer_3, layer_4 = self.refine(self.reassemble([t for t, _ in features], rows, cols))
        path_4 = self.scratch.refinenet4(layer_4, size=layer_3.shape[1:3])
        path_3 = self.scratch.refinenet3(path_4, layer_3, size=layer_2.shape[1:3])
        return self.finish(path_3, layer_2, layer_1, rows, cols)
