"""DINOv2 (Oquab et al., 2023) as the official code runs it: its layers in the official
parameter names, the plain encoder, and the official rule for resizing position embeddings.

**Layers and encoder.** The official checkpoints of Depth Anything V2, Video Depth Anything and
Depth Anything 3 store their encoder under these names (``patch_embed.proj``,
``blocks.N.attn.qkv``, ``blocks.N.ls1.gamma`` …), so a state dict loads with ``strict=True`` and
no renaming. :class:`Block` and :class:`Attention` also carry the options Depth Anything 3 adds
(QK-norm, a rotary position hook, DINOv2 Giant's SwiGLU feed-forward); off by default, they add
no parameters. Attention runs through PyTorch's ``scaled_dot_product_attention``.
:class:`DinoVisionTransformer` is the plain encoder (Video Depth Anything's); Depth Anything 3
builds its own from the same layers (:mod:`localdepth.networks.da3.backbone`).

Shapes: images ``(N, 3, H, W)`` with ``H`` and ``W`` multiples of the patch size (14); tokens
``(N, 1 + h * w, C)`` with the class token first and the patches row-major (``h = H / 14``).

**Position embeddings.** A ViT trained at 518x518 (37x37 patches) runs on other grids by
resizing its position embeddings. The official DINOv2 code resizes with
``F.interpolate(scale_factor=((n_h + 0.1) / 37, (n_w + 0.1) / 37), mode="bicubic")``: the output
has ``n_h x n_w`` cells, but the sampling positions follow the scale factor, not the grid
sizes (:func:`resize_position_embedding`). Transformers' port resizes to ``size=(n_h, n_w)``,
which samples the embedding table at slightly different positions; with the same weights the
two disagree by about 1% of the depth map (measured in tests/test_reference_fidelity.py). Both
rules cost one bicubic resize of a 37x37 table per forward pass. On the table's own 37x37 grid
(a 518x518 input) the official code uses the table as it is, and so does every graph exported
from here (tests/test_conversion_grids.py).
:func:`use_reference_interpolation` swaps the rule on one loaded Transformers model; the
registry entry's ``position_embedding = "dinov2"`` asks for it.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: the official code's ``interpolate_offset``: "a small number to avoid floating point error in
#: the interpolation" (facebookresearch/dino#8); it also sets the sampling positions
OFFSET = 0.1
#: DINOv2 blocks' LayerNorm epsilon (the encoder's final norm too)
NORM_EPS = 1e-6


# ----------------------------------------------------------------------------- position embeddings

def resize_position_embedding(pos_embed: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Position embeddings ``(1, 1 + side * side, dim)`` (class token first) -> the same for a
    ``rows x cols`` patch grid, by the official rule, in ``pos_embed``'s dtype.

    On the table's own grid the official code returns the table as is: the resize is not the
    identity there (its sampling positions follow the scale factor ``(side + 0.1) / side``), so
    a graph that always resized would disagree with it at 518 x 518 (37 x 37 patches) by up to
    3 % of the depth map's range at its worst pixel. Eager runs test the grid in Python; traced
    and exported graphs, whose grid is symbolic, select the identity with a tensor condition
    (:func:`grid_matrices`). The resize runs in float32 as the official code does (bicubic in
    half precision shifts the embeddings).
    """
    side = math.isqrt(pos_embed.shape[1] - 1)
    dim = pos_embed.shape[-1]
    table = pos_embed[0, 1:].reshape(side, side, dim).float()
    if torch.compiler.is_compiling() or torch.jit.is_tracing():  # torch.export / compile / trace: grid symbolic
        row_weights, col_weights = grid_matrices(rows, cols, side, table.device)
        grid = torch.einsum("ia,abd,jb->ijd", row_weights, table, col_weights)
    else:  # the official code itself (the matrices do 8x the arithmetic of its 4-tap kernel)
        if rows == side and cols == side:
            return pos_embed
        scale = ((rows + OFFSET) / side, (cols + OFFSET) / side)
        # the same memory layout as Transformers' own call (a channels-last view): the same kernel, the same cost
        grid = F.interpolate(table[None].permute(0, 3, 1, 2), scale_factor=scale, mode="bicubic",
                             align_corners=False, antialias=False)[0].permute(1, 2, 0)
    return torch.cat((pos_embed[:, :1], grid.reshape(1, -1, dim).to(pos_embed.dtype)), dim=1)


def reference_interpolate_pos_encoding(self, embeddings: torch.Tensor, height, width) -> torch.Tensor:
    """Drop-in for ``Dinov2Embeddings.interpolate_pos_encoding`` (``self`` is the embeddings module):
    position embeddings ``(1, 1 + n_h * n_w, dim)`` for a ``height x width`` input."""
    patch_h, patch_w = self.patch_embeddings.patch_size
    return resize_position_embedding(self.position_embeddings, height // patch_h, width // patch_w)


def grid_matrices(rows, cols, side: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, side)`` and ``(cols, side)`` weights such that ``R @ table @ C.T`` is the official
    rule for a ``rows x cols`` grid: :func:`bicubic_matrix` on each axis, or identities (the
    table unchanged, exactly) when the grid is the table's own ``side x side``. The condition is
    a tensor, not a Python ``if``, so that an export keeps both cases for every grid."""
    row_weights, col_weights = bicubic_matrix(rows, side, device), bicubic_matrix(cols, side, device)
    cells = torch.arange(side, dtype=torch.float32, device=device)
    row_steps = torch.arange(row_weights.shape[0], dtype=torch.float32, device=device)
    col_steps = torch.arange(col_weights.shape[0], dtype=torch.float32, device=device)
    # (1,): rows == cols == side, written as arithmetic and one comparison (Core ML's converter
    # has no boolean `and`)
    own_grid = (row_steps[-1:] + 1.0 - side).abs() + (col_steps[-1:] + 1.0 - side).abs() == 0
    row_identity = (row_steps[:, None] == cells).float()
    col_identity = (col_steps[:, None] == cells).float()
    return (torch.where(own_grid, row_identity, row_weights),
            torch.where(own_grid, col_identity, col_weights))


def bicubic_matrix(count, side: int, device=None) -> torch.Tensor:
    """``(count, side)`` weights that resample ``side`` cells to ``count`` cells as
    ``F.interpolate(scale_factor=(count + OFFSET) / side, mode="bicubic", align_corners=False)``
    does: source position ``(i + 0.5) * side / (count + OFFSET) - 0.5``, Keys' cubic with
    ``a = -0.75``, taps beyond the edges clamped to the edge cell.

    Written with tensor operations on ``count`` rather than with ``F.interpolate`` so that an
    ONNX export keeps ``count`` (the input's patch grid) dynamic: ``F.interpolate`` computes its
    output size from the scale factor in Python, which freezes it at the example's size. Eager
    runs use ``F.interpolate`` itself; tests/test_onnx.py checks that both agree.
    """
    steps = torch.arange(count, dtype=torch.float64, device=device)
    total = steps[-1:] + 1.0  # count as a tensor, so that nothing here is specialised to one size
    # PyTorch's kernel: the inverse scale in double, rounded to float, positions in float
    inverse_scale = (side / (total + OFFSET)).float()
    source = inverse_scale * (steps.float() + 0.5) - 0.5
    base = torch.floor(source)
    t = (source - base)[:, None]
    a = -0.75
    distance = torch.cat((t + 1.0, t, 1.0 - t, 2.0 - t), dim=1)  # to the 4 taps base-1 .. base+2
    near = ((a + 2.0) * distance - (a + 3.0)) * distance * distance + 1.0  # |x| <= 1
    far = ((a * distance - 5.0 * a) * distance + 8.0 * a) * distance - 4.0 * a  # 1 < |x| < 2
    weights = torch.where(distance <= 1.0, near, far)
    taps = (base[:, None] + torch.arange(-1, 3, device=device)).clamp(0, side - 1)
    cells = torch.arange(side, dtype=torch.float32, device=device)
    return (weights[:, :, None] * (taps[:, :, None] == cells)).sum(dim=1)


def use_reference_interpolation(model: torch.nn.Module) -> int:
    """Make every DINOv2 embeddings module inside ``model`` resize its position embeddings by the
    official rule (this model only; Transformers itself is not patched). Returns how many."""
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

    count = 0
    for module in model.modules():
        if isinstance(module, Dinov2Embeddings):
            module.interpolate_pos_encoding = types.MethodType(reference_interpolate_pos_encoding, module)
            count += 1
    return count


# ----------------------------------------------------------------------------- layers

class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, patch_size: int = 14):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (N, h*w, C), row-major


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """DINOv2 Giant's feed-forward: ``w3(silu(a) * b)`` with ``[a, b] = w12(x)``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8  # as DINOv2 sizes its fused SwiGLU
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


#: turns queries or keys ``(batch, heads, N, head_dim)`` by the tokens' positions (RoPE)
Rotation = Callable[[torch.Tensor], torch.Tensor]


class Attention(nn.Module):
    """Multi-head self-attention through PyTorch SDPA, with optional QK-norm and rotation."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rotation: Rotation | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rotation is not None:
            q, k = rotation(q), rotation(k)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block with layer scale. ``mlp_hidden``: the feed-forward's width
    (``4 * dim`` in every released size); ``ffn``: ``"mlp"`` (GELU) or ``"swiglu"``."""

    def __init__(self, dim: int, num_heads: int, *, mlp_hidden: int | None = None, ffn: str = "mlp",
                 qk_norm: bool = False, norm_eps: float = NORM_EPS):
        super().__init__()
        hidden = mlp_hidden or 4 * dim
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = SwiGLU(dim, hidden) if ffn == "swiglu" else Mlp(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rotation: Rotation | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rotation))
        return x + self.ls2(self.mlp(self.norm2(x)))


# ----------------------------------------------------------------------------- the plain encoder

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


#: the released DINOv2 sizes used by Depth Anything (ViT-S/B/L with 14-pixel patches)
VIT_SIZES: dict[str, ViTConfig] = {
    "vits": ViTConfig(embed_dim=384, depth=12, num_heads=6, mlp_hidden=1536),
    "vitb": ViTConfig(embed_dim=768, depth=12, num_heads=12, mlp_hidden=3072),
    "vitl": ViTConfig(embed_dim=1024, depth=24, num_heads=16, mlp_hidden=4096),
}


class DinoVisionTransformer(nn.Module):
    """The DINOv2 encoder; :meth:`get_intermediate_layers` is what DPT heads read."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        dim, grid = config.embed_dim, config.image_size // config.patch_size
        self.embed_dim = dim
        self.patch_size = config.patch_size
        self.patch_embed = PatchEmbed(dim, config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # training only; kept for strict loading
        self.blocks = nn.ModuleList(Block(dim, config.num_heads, mlp_hidden=config.mlp_hidden)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=NORM_EPS)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` -> input tokens ``(N, 1 + h*w, C)`` with positions added."""
        _, _, height, width = x.shape
        rows, cols = height // self.patch_size, width // self.patch_size
        patches = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(patches.shape[0], -1, -1).to(patches.dtype), patches), dim=1)
        return tokens + resize_position_embedding(self.pos_embed, rows, cols).to(tokens.dtype)

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
