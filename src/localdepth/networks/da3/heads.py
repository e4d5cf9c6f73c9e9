"""Depth Anything 3 dense heads: DPT pyramids from four backbone levels to full-resolution maps.

* :class:`DualDPT` (the any-view networks): depth (``exp``) and its confidence (``1 + exp``) at
  the input resolution, and a ray map (6 channels: origin and direction) with its confidence
  at 8/14 of it, from two independent fusion chains over the same projected features.
* :class:`DPT` (Mono and Metric): depth (``exp``) and a sky map (``relu``).

Both: each level's patch tokens become a feature map (1x1 projection), resized to 4x, 2x, 1x
and 1/2 of the patch grid, fused top-down (residual conv units, bilinear upsampling with
aligned corners) and read out by small conv stacks. The any-view head adds a sinusoidal UV
position embedding (scaled by 0.1) to its maps. Parameter names match the official checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import PATCH_SIZE

#: views whose maps are decoded at once; bounds the head's memory whatever the number of views
HEAD_CHUNK = 8
HEAD_FEATURES_2 = 32  # channels of the last conv stacks
RAY_CHANNELS = 6
POS_EMBED_RATIO = 0.1


def _upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FusionBlock(nn.Module):
    """``out_conv(upsample(unit2(x + unit1(lateral))))``; the deepest level has no lateral input."""

    def __init__(self, features: int, has_residual: bool = True):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features) if has_residual else None
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1, 1, 0)

    def forward(self, x, lateral=None, size: tuple[int, int] | None = None):
        if lateral is not None and self.resConfUnit1 is not None:
            x = x + self.resConfUnit1(lateral)
        x = self.resConfUnit2(x)
        size = size or (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        return self.out_conv(_upsample(x, size))


class ChannelsLast(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1)


class ChannelsFirst(nn.Module):
    def forward(self, x):
        return x.permute(0, 3, 1, 2)


def uv_embedding(channels: int, rows: int, cols: int, aspect: float, dtype, device) -> torch.Tensor:
    """``(channels, rows, cols)`` sinusoidal embedding of each cell's UV coordinates.

    UV spans ``±aspect/diag`` horizontally and ``±1/diag`` vertically (``diag = sqrt(aspect^2 + 1)``,
    cell centres); half the channels encode u, half v, each as ``[sin(p w), cos(p w)]`` with
    ``w = 100 ** (-k / (channels/4))``.
    """
    diag = (aspect**2 + 1.0) ** 0.5
    span_u, span_v = aspect / diag, 1.0 / diag
    u = torch.linspace(-span_u * (cols - 1) / cols, span_u * (cols - 1) / cols, cols, dtype=dtype, device=device)
    v = torch.linspace(-span_v * (rows - 1) / rows, span_v * (rows - 1) / rows, rows, dtype=dtype, device=device)
    uu, vv = torch.meshgrid(u, v, indexing="xy")  # (rows, cols)

    def sincos(p, dim):
        omega = torch.arange(dim // 2, dtype=torch.float32, device=device) / (dim / 2.0)
        angles = p.reshape(-1, 1).float() * (1.0 / 100.0**omega)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    emb = torch.cat([sincos(uu, channels // 2), sincos(vv, channels // 2)], dim=-1)
    return emb.view(rows, cols, channels).permute(2, 0, 1)


class _Pyramid(nn.Module):
    """Shared front of both heads: token projection, resizing and the fusion convolutions."""

    def __init__(self, dim_in: int, features: int, out_channels, pos_embed: bool):
        super().__init__()
        self.pos_embed = pos_embed
        self.projects = nn.ModuleList([nn.Conv2d(dim_in, oc, 1) for oc in out_channels])
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = nn.Module()
        for i, oc in enumerate(out_channels, 1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(oc, features, 3, 1, 1, bias=False))

    def _with_position(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if not self.pos_embed:
            return x
        return x + POS_EMBED_RATIO * uv_embedding(x.shape[1], x.shape[2], x.shape[3], width / height, x.dtype, x.device)

    def _levels(self, tokens: list[torch.Tensor], height: int, width: int) -> list[torch.Tensor]:
        """Four levels of ``(V, N, C)`` patch tokens -> the four ``layerN_rn`` maps."""
        rows, cols = height // PATCH_SIZE, width // PATCH_SIZE
        maps = []
        for i, t in enumerate(tokens):
            x = self.norm(t).transpose(1, 2).reshape(t.shape[0], t.shape[2], rows, cols)
            x = self._with_position(self.projects[i](x), height, width)
            x = self.resize_layers[i](x)
            maps.append(getattr(self.scratch, f"layer{i + 1}_rn")(x))
        return maps

    @staticmethod
    def _fuse(blocks, maps):
        l1, l2, l3, l4 = maps
        out = blocks[3](l4, size=l3.shape[2:])
        out = blocks[2](out, l3, size=l2.shape[2:])
        out = blocks[1](out, l2, size=l1.shape[2:])
        return blocks[0](out, l1)

    def forward(self, tokens: list[torch.Tensor], height: int, width: int) -> dict[str, torch.Tensor]:
        """``tokens``: four ``(V, N, C)`` levels of ``V`` views -> maps of ``V`` views, in chunks of
        :data:`HEAD_CHUNK` views so that memory does not grow with the number of views."""
        chunks = [self._decode([t[i:i + HEAD_CHUNK] for t in tokens], height, width)
                  for i in range(0, tokens[0].shape[0], HEAD_CHUNK)]
        return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}


def _conv_readout(features: int, out: int, norm: nn.LayerNorm | None = None) -> nn.Sequential:
    channel_norm = [ChannelsLast(), norm, ChannelsFirst()] if norm is not None else []
    return nn.Sequential(nn.Conv2d(features // 2, HEAD_FEATURES_2, 3, 1, 1), *channel_norm, nn.ReLU(inplace=True),
                         nn.Conv2d(HEAD_FEATURES_2, out, 1, 1, 0))


class DualDPT(_Pyramid):
    """The any-view head: ``depth``, ``confidence``, ``rays`` and ``ray_confidence``."""

    AUX_LEVELS = 4  # the checkpoints hold an auxiliary readout per level; only the finest is used

    def __init__(self, dim_in: int, features: int, out_channels):
        super().__init__(dim_in, features, out_channels, pos_embed=True)
        self.norm = nn.LayerNorm(dim_in)
        s = self.scratch
        for suffix in ("", "_aux"):
            for i in range(1, 5):
                setattr(s, f"refinenet{i}{suffix}", FusionBlock(features, has_residual=i != 4))
        s.output_conv1 = nn.Conv2d(features, features // 2, 3, 1, 1)
        s.output_conv2 = _conv_readout(features, 2)
        half = features // 2
        s.output_conv1_aux = nn.ModuleList([
            nn.Sequential(nn.Conv2d(features, half, 3, 1, 1), nn.Conv2d(half, features, 3, 1, 1),
                          nn.Conv2d(features, half, 3, 1, 1), nn.Conv2d(half, features, 3, 1, 1),
                          nn.Conv2d(features, half, 3, 1, 1))
            for _ in range(self.AUX_LEVELS)])
        shared_norm = nn.LayerNorm(HEAD_FEATURES_2)  # one LayerNorm in every level's readout, as released
        s.output_conv2_aux = nn.ModuleList([_conv_readout(features, RAY_CHANNELS + 1, shared_norm)
                                            for _ in range(self.AUX_LEVELS)])

    def _decode(self, tokens, height, width):
        s = self.scratch
        maps = self._levels(tokens, height, width)
        main = self._fuse([s.refinenet1, s.refinenet2, s.refinenet3, s.refinenet4], maps)
        aux = self._fuse([s.refinenet1_aux, s.refinenet2_aux, s.refinenet3_aux, s.refinenet4_aux], maps)

        main = _upsample(s.output_conv1(main), (height, width))
        main = s.output_conv2(self._with_position(main, height, width))
        aux = self._with_position(s.output_conv1_aux[-1](aux), height, width)
        aux = s.output_conv2_aux[-1](aux)
        return {
            "depth": torch.exp(main[:, 0]),
            "confidence": torch.exp(main[:, 1]) + 1.0,
            "rays": aux[:, :RAY_CHANNELS].permute(0, 2, 3, 1),
            "ray_confidence": torch.exp(aux[:, RAY_CHANNELS]) + 1.0,
        }


class DPT(_Pyramid):
    """The single-view head (Mono, Metric): ``depth`` and ``sky``."""

    def __init__(self, dim_in: int, features: int, out_channels):
        super().__init__(dim_in, features, out_channels, pos_embed=False)
        self.norm = nn.Identity()
        s = self.scratch
        for i in range(1, 5):
            setattr(s, f"refinenet{i}", FusionBlock(features, has_residual=i != 4))
        s.output_conv1 = nn.Conv2d(features, features // 2, 3, 1, 1)
        s.output_conv2 = _conv_readout(features, 1)
        s.sky_output_conv2 = _conv_readout(features, 1)

    def _decode(self, tokens, height, width):
        s = self.scratch
        fused = self._fuse([s.refinenet1, s.refinenet2, s.refinenet3, s.refinenet4],
                           self._levels(tokens, height, width))
        fused = _upsample(s.output_conv1(fused), (height, width))
        return {"depth": torch.exp(s.output_conv2(fused)[:, 0]), "sky": F.relu(s.sky_output_conv2(fused)[:, 0])}
