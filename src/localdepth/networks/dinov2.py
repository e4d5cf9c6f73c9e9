"""DINOv2 vision transformer (Oquab et al., 2023) with the official parameter names.

The official checkpoints of Depth Anything V2 and Video Depth Anything store their encoder
under these names (``patch_embed.proj``, ``blocks.N.attn.qkv``, ``blocks.N.ls1.gamma`` …), so a
state dict loads here with ``strict=True`` and no renaming. Attention runs through PyTorch's
``scaled_dot_product_attention``.

Shapes: images ``(N, 3, H, W)`` with ``H`` and ``W`` multiples of the patch size (14); tokens
``(N, 1 + h * w, C)`` with the class token first and the patches row-major (``h = H / 14``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ViTConfig:
    """One DINOv2 size. ``num_heads`` is ``embed_dim / 64`` for every released size."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int
    patch_size: int = 14
    #: the positional embedding's grid is ``image_size / patch_size`` square (37 x 37)
    image_size: int = 518
    #: added to the target grid before bicubic resizing of the positional embedding, as the
    #: official code does (DINOv2 issue #8: it avoids an off-by-one from float rounding)
    interpolate_offset: float = 0.1


#: the released DINOv2 sizes used by Depth Anything (ViT-S/B/L with 14-pixel patches)
VIT_SIZES: dict[str, ViTConfig] = {
    "vits": ViTConfig(embed_dim=384, depth=12, num_heads=6, mlp_hidden=1536),
    "vitb": ViTConfig(embed_dim=768, depth=12, num_heads=12, mlp_hidden=3072),
    "vitl": ViTConfig(embed_dim=1024, depth=24, num_heads=16, mlp_hidden=4096),
}


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (N, h*w, C), row-major


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(n, length, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, config.num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, config.mlp_hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """The DINOv2 encoder; :meth:`get_intermediate_layers` is what DPT heads read."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        dim, grid = config.embed_dim, config.image_size // config.patch_size
        self.embed_dim = dim
        self.patch_size = config.patch_size
        self.patch_embed = PatchEmbed(config.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # training only; kept for strict loading
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def interpolate_pos_encoding(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """The positional embedding for a ``rows x cols`` patch grid: the stored square grid,
        resized bicubically by the factors ``(rows + offset) / side`` and ``(cols + offset) / side``
        (the official rule; the offset keeps the output size exact)."""
        pos = self.pos_embed
        side = int(math.sqrt(pos.shape[1] - 1))
        if rows == side and cols == side:
            return pos
        pos = pos.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        offset = self.config.interpolate_offset
        patch_pos = F.interpolate(
            patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2),
            scale_factor=((rows + offset) / side, (cols + offset) / side), mode="bicubic", antialias=False,
        )
        if patch_pos.shape[-2:] != (rows, cols):  # cannot happen with the offset; say so if it does
            raise RuntimeError(f"positional embedding resized to {tuple(patch_pos.shape[-2:])}, not {(rows, cols)}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((cls_pos, patch_pos), dim=1).to(dtype)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` -> input tokens ``(N, 1 + h*w, C)`` with positions added."""
        _, _, height, width = x.shape
        rows, cols = height // self.patch_size, width // self.patch_size
        patches = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(patches.shape[0], -1, -1).to(patches.dtype), patches), dim=1)
        return tokens + self.interpolate_pos_encoding(rows, cols, tokens.dtype)

    def get_intermediate_layers(self, x: torch.Tensor,
                                layers: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The outputs of the blocks numbered ``layers`` (0-based), each layer-normed and split
        into ``(patch tokens (N, h*w, C), class token (N, C))``."""
        if x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size:
            raise ValueError(f"image sides {tuple(x.shape[-2:])} must be multiples of {self.patch_size}")
        wanted = set(layers)
        outputs = []
        hidden = self.tokens(x)
        for i, block in enumerate(self.blocks[: max(layers) + 1]):
            hidden = block(hidden)
            if i in wanted:
                normed = self.norm(hidden)
                outputs.append((normed[:, 1:], normed[:, 0]))
        return outputs
