"""DINOv2 in MLX with the official parameter names (``patch_embed.proj``, ``blocks.N.attn.qkv``,
``blocks.N.ls1.gamma`` ...), as :mod:`localdepth.networks.dinov2` defines it for PyTorch.

Images are NHWC ``(N, H, W, 3)``, ``H`` and ``W`` multiples of the patch size; tokens
``(N, 1 + h * w, C)``, the class token first and the patches row-major, as in PyTorch.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..dinov2 import NORM_EPS, ViTConfig
from .layers import Memo, resized_position_embedding


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def __call__(self, x: mx.array) -> mx.array:
        x = self.proj(x)
        return x.reshape(x.shape[0], -1, x.shape[-1])


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = mx.ones((dim,))

    def __call__(self, x: mx.array) -> mx.array:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc2(nn.gelu(self.fc1(x)))  # the exact (erf) GELU, as nn.GELU in PyTorch


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def __call__(self, x: mx.array) -> mx.array:
        b, n, c = x.shape
        head_dim = c // self.num_heads
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, head_dim).transpose(2, 0, 3, 1, 4)
        out = mx.fast.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=head_dim**-0.5)
        return self.proj(out.transpose(0, 2, 1, 3).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block with layer scale (GELU feed-forward)."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, norm_eps: float = NORM_EPS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_hidden)
        self.ls2 = LayerScale(dim)

    def __call__(self, x: mx.array) -> mx.array:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """The DINOv2 encoder; :meth:`get_intermediate_layers` is what DPT heads read.

    ``final_norm_eps``: the encoder's last LayerNorm (1e-6 in DINOv2; Depth Anything 3 keeps 1e-5).
    """

    def __init__(self, config: ViTConfig, final_norm_eps: float = NORM_EPS):
        super().__init__()
        dim, grid = config.embed_dim, config.image_size // config.patch_size
        self.patch_size = config.patch_size
        self.patch_embed = PatchEmbed(dim, config.patch_size)
        self.cls_token = mx.zeros((1, 1, dim))
        self.pos_embed = mx.zeros((1, 1 + grid * grid, dim))
        self.blocks = [Block(dim, config.num_heads, config.mlp_hidden) for _ in range(config.depth)]
        self.norm = nn.LayerNorm(dim, eps=final_norm_eps)
        self._positions = Memo()

    def positions(self, rows: int, cols: int) -> mx.array:
        """The position embeddings of a ``rows x cols`` grid, resized once per grid and weights."""
        key = (rows, cols, id(self.pos_embed), self.pos_embed.dtype)
        found = self._positions.get(key)
        if found is None:
            side = round((self.pos_embed.shape[1] - 1) ** 0.5)
            found = self._positions.put(key, self.pos_embed if (rows, cols) == (side, side)
                                        else resized_position_embedding(self.pos_embed, rows, cols))
        return found

    def tokens(self, x: mx.array) -> mx.array:
        """Images ``(N, H, W, 3)`` -> input tokens ``(N, 1 + h*w, C)`` with positions added."""
        rows, cols = x.shape[1] // self.patch_size, x.shape[2] // self.patch_size
        patches = self.patch_embed(x)
        cls = mx.broadcast_to(self.cls_token, (patches.shape[0], 1, patches.shape[-1])).astype(patches.dtype)
        tokens = mx.concatenate([cls, patches], axis=1)
        return tokens + self.positions(rows, cols).astype(tokens.dtype)

    def get_intermediate_layers(self, x: mx.array, layers: tuple[int, ...]) -> list[tuple[mx.array, mx.array]]:
        """The outputs of the blocks numbered ``layers`` (0-based), each layer-normed and split
        into ``(patch tokens (N, h*w, C), class token (N, C))``."""
        if x.shape[1] % self.patch_size or x.shape[2] % self.patch_size:
            raise ValueError(f"image sides {tuple(x.shape[1:3])} must be multiples of {self.patch_size}")
        wanted = set(layers)
        outputs = []
        hidden = self.tokens(x)
        for i, block in enumerate(self.blocks[: max(layers) + 1]):
            hidden = block(hidden)
            if i in wanted:
                normed = self.norm(hidden)
                outputs.append((normed[:, 1:], normed[:, 0]))
        return outputs
