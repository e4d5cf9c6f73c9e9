"""The DPT depth head (Ranftl et al., 2021) as Depth Anything's official code writes it, with
its parameter names (``projects``, ``resize_layers``, ``scratch.layerN_rn``,
``scratch.refinenetN`` …), so official checkpoints load with ``strict=True``.

Reads four intermediate layers of a ViT (:mod:`localdepth.networks.dinov2`), reassembles them
into feature maps at 4x, 2x, 1x and 1/2x the patch grid, fuses them coarse to fine and
predicts one channel at the input resolution. :class:`DPTPyramid` is the front every such head
shares (Depth Anything 3's heads build on it too, :mod:`localdepth.networks.da3.heads`);
:class:`DPTHead` splits its forward pass into stages so that a head that adds layers between
them (the temporal head of Video Depth Anything) reuses the rest unchanged.

(:mod:`localdepth.networks.dpt` is another thing: MiDaS's DPT run through Transformers.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FusionBlock(nn.Module):
    """``out_conv(upsample(unit2(x + unit1(lateral))))``; the upsampling is bilinear with
    ``align_corners=True`` to ``size``, or to twice the size when none is given.
    ``has_residual=False``: no ``resConfUnit1`` (Depth Anything 3's deepest level; the
    Depth Anything V2 checkpoints hold an unused one there)."""

    def __init__(self, features: int, has_residual: bool = True):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features) if has_residual else None  # noqa: N815 - official name
        self.resConfUnit2 = ResidualConvUnit(features)  # noqa: N815 - official name
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def forward(self, x: torch.Tensor, lateral: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if lateral is not None and self.resConfUnit1 is not None:
            x = x + self.resConfUnit1(lateral)
        x = self.resConfUnit2(x)
        size = tuple(size) if size is not None else (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        return self.out_conv(F.interpolate(x, size=size, mode="bilinear", align_corners=True))


class DPTPyramid(nn.Module):
    """The front of a DPT head: for each of four levels, a 1x1 projection of the ViT's
    ``in_channels`` to ``out_channels[i]`` (``projects``), a resize to 4x, 2x, 1x and 1/2x the
    patch grid (``resize_layers``), and a 3x3 convolution to the fusion width ``features``
    (``scratch.layerN_rn``)."""

    def __init__(self, in_channels: int, features: int, out_channels: tuple[int, ...]):
        super().__init__()
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, c, kernel_size=1) for c in out_channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = nn.Module()
        for i, c in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, kernel_size=3, padding=1, bias=False))


class DPTHead(DPTPyramid):
    """Depth Anything's DPT head: ``in_channels`` ViT width, ``features`` fusion width,
    ``out_channels`` the widths of the four reassembled maps. ``use_clstoken`` adds the class
    token as a readout (no released Depth Anything checkpoint uses it)."""

    #: micro-batch of the two finest fusion stages (memory, not results: same output)
    micro_batch = 4

    def __init__(self, in_channels: int, features: int, out_channels: tuple[int, ...], use_clstoken: bool = False):
        super().__init__(in_channels, features, out_channels)
        self.use_clstoken = use_clstoken
        if use_clstoken:
            self.readout_projects = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * in_channels, in_channels), nn.GELU()) for _ in out_channels)
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FusionBlock(features))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 1, kernel_size=1), nn.ReLU(), nn.Identity(),
        )

    def reassemble(self, features, patch_h: int, patch_w: int) -> list[torch.Tensor]:
        """Four ``(patch tokens, class token)`` pairs -> four maps at 4x, 2x, 1x and 1/2x the grid."""
        maps = []
        for i, (tokens, cls_token) in enumerate(features):
            if self.use_clstoken:
                tokens = self.readout_projects[i](torch.cat((tokens, cls_token.unsqueeze(1).expand_as(tokens)), -1))
            x = tokens.permute(0, 2, 1).reshape(tokens.shape[0], tokens.shape[-1], patch_h, patch_w)
            maps.append(self.resize_layers[i](self.projects[i](x)))
        return maps

    def refine(self, layers: list[torch.Tensor]) -> list[torch.Tensor]:
        """The four maps -> the same at the fusion width (``scratch.layerN_rn``)."""
        return [getattr(self.scratch, f"layer{i}_rn")(x) for i, x in enumerate(layers, start=1)]

    def finish(self, path_3: torch.Tensor, layer_2: torch.Tensor, layer_1: torch.Tensor,
               patch_h: int, patch_w: int) -> torch.Tensor:
        """The two finest fusions and the output convolutions: ``(N, 1, 14 h, 14 w)``.

        Runs in micro-batches when the batch divides into them (the official memory saving);
        the last convolutions run in float32 whatever the model's precision, as the official
        code keeps them out of autocast.
        """
        n = path_3.shape[0]
        step = self.micro_batch if n > self.micro_batch and n % self.micro_batch == 0 else n
        outputs = []
        for i in range(0, n, step):
            path_2 = self.scratch.refinenet2(path_3[i:i + step], layer_2[i:i + step], size=layer_1.shape[2:])
            path_1 = self.scratch.refinenet1(path_2, layer_1[i:i + step])
            out = self.scratch.output_conv1(path_1)
            out = F.interpolate(out, (patch_h * 14, patch_w * 14), mode="bilinear", align_corners=True)
            head = self.scratch.output_conv2
            outputs.append(head(out.to(head[0].weight.dtype)).to(out.dtype))
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    def forward(self, features, patch_h: int, patch_w: int) -> torch.Tensor:
        layer_1, layer_2, layer_3, layer_4 = self.refine(self.reassemble(features, patch_h, patch_w))
        path_4 = self.scratch.refinenet4(layer_4, size=layer_3.shape[2:])
        path_3 = self.scratch.refinenet3(path_4, layer_3, size=layer_2.shape[2:])
        return self.finish(path_3, layer_2, layer_1, patch_h, patch_w)
