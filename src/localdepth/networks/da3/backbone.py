"""The Depth Anything 3 backbone: a DINOv2 ViT that attends within and across views.

Input ``(B, S, 3, H, W)``: ``B`` scenes of ``S`` views each, ``H`` and ``W`` multiples of 14.
Tokens per view: one class token, then the ``H/14 x W/14`` patches in row-major order.

* Blocks before ``alt_start`` attend within each view (plain DINOv2).
* Just before block ``alt_start - 1``, with three or more views and no given cameras, one view
  is chosen as the reference (see :func:`reference_view`) and moved first; outputs are put
  back in the caller's order.
* At block ``alt_start`` the class token of every view becomes a camera token (a learnt
  reference-view token for view 0, another for the rest) or, when cameras are given, the
  camera encoder's token.
* From ``alt_start`` on, odd blocks attend across all tokens of all views of a scene (global),
  even ones within each view (local).
* RoPE from ``rope_start``: local blocks rotate queries and keys by each token's (row, column)
  (patches at 1-based grid positions, the camera token at 0); global blocks give every patch
  the same position (1, 1), so attention across views carries no image position.

Parameter names and shapes are those of the official checkpoints (``backbone.pretrained.*``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import PATCH_SIZE, POS_EMBED_GRID, Architecture

ROPE_BASE = 100.0
BLOCK_NORM_EPS = 1e-6  # DINOv2 blocks; the final norm and the QK-norms keep LayerNorm's 1e-5
#: a few views or more: choose the reference view (the official THRESH_FOR_REF_SELECTION)
MIN_VIEWS_FOR_REFERENCE_CHOICE = 3
REFERENCE_STRATEGIES = ("saddle_balanced", "saddle_sim_range", "first", "middle")


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """DINOv2 Giant's feed-forward: ``w3(silu(a) * b)`` with ``[a, b] = w12(x)``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8  # as DINOv2 sizes its fused SwiGLU
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x):
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class Rotation:
    """2-D rotary position embedding for one token layout: positions ``(N, 2)`` (row, column).

    The first half of each head's channels rotates with the row, the second half with the
    column; within a half, channel ``j`` and ``j + D/4`` form a pair turned by
    ``position * ROPE_BASE ** (-2j / (D/2))``.
    """

    def __init__(self, positions: torch.Tensor, head_dim: int, dtype: torch.dtype):
        half = head_dim // 2
        inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, half, 2, device=positions.device).float() / half))
        angles = positions.float()[..., None] * inv_freq  # (N, 2, half/2)
        angles = torch.cat([angles, angles], dim=-1).to(dtype)  # (N, 2, half)
        self.cos, self.sin = angles.cos(), angles.sin()

    @staticmethod
    def _turn(x, cos, sin):
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(batch, heads, N, head_dim)``."""
        rows, cols = x.chunk(2, dim=-1)
        return torch.cat([self._turn(rows, self.cos[:, 0], self.sin[:, 0]),
                          self._turn(cols, self.cos[:, 1], self.sin[:, 1])], dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention through PyTorch SDPA, with optional QK-norm and RoPE."""

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
    """Pre-norm transformer block with layer scale (DINOv2's, and the camera encoder's)."""

    def __init__(self, dim: int, num_heads: int, *, ffn: str = "mlp", qk_norm: bool = False,
                 norm_eps: float = BLOCK_NORM_EPS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = SwiGLU(dim, 4 * dim) if ffn == "swiglu" else Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rotation: Rotation | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rotation))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def reference_view(class_tokens: torch.Tensor, strategy: str = "saddle_balanced") -> torch.Tensor:
    """Index ``(B,)`` of the reference view of each scene, from the views' class tokens ``(B, S, C)``.

    ``saddle_balanced`` (the official default): the view whose mean cosine similarity to the
    others, token norm and token variance are each closest to the middle of their range over the
    scene. ``saddle_sim_range``: the widest range of similarities to the others. ``first``,
    ``middle``: by position.
    """
    b, s, _ = class_tokens.shape
    if strategy not in REFERENCE_STRATEGIES:
        raise ValueError(f"unknown reference view strategy '{strategy}'; "
                         f"choose one of {', '.join(REFERENCE_STRATEGIES)}")
    if s <= 1 or strategy == "first":
        return torch.zeros(b, dtype=torch.long, device=class_tokens.device)
    if strategy == "middle":
        return torch.full((b,), s // 2, dtype=torch.long, device=class_tokens.device)
    unit = class_tokens / class_tokens.norm(dim=-1, keepdim=True)
    similarity = unit @ unit.transpose(1, 2) - torch.eye(s, device=unit.device)  # self-similarity zeroed
    if strategy == "saddle_sim_range":
        return (similarity.max(dim=-1).values - similarity.min(dim=-1).values).argmax(dim=1)

    def spread(metric):  # to [0, 1] over the scene's views
        lo, hi = metric.min(dim=1, keepdim=True).values, metric.max(dim=1, keepdim=True).values
        return (metric - lo) / (hi - lo + 1e-8)

    mean_similarity = similarity.sum(dim=-1) / (s - 1)
    score = sum((spread(m) - 0.5).abs() for m in (mean_similarity, class_tokens.norm(dim=-1), unit.var(dim=-1)))
    return score.argmin(dim=1)


def reference_first(reference: torch.Tensor, views: int) -> torch.Tensor:
    """View order ``(B, S)`` that puts each scene's reference view first, the others in order."""
    position = torch.arange(views, device=reference.device).expand(len(reference), -1)
    ref = reference[:, None]
    order = torch.where((position > 0) & (position <= ref), position - 1, position)
    order[:, 0] = reference
    return order


def _take_views(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    return x[torch.arange(len(order), device=x.device)[:, None], order]


class VisionTransformer(nn.Module):
    """DINOv2 with RoPE, QK-norm, alternating local/global attention and camera tokens."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        dim = arch.embed_dim
        self.embed_dim = dim
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if arch.multi_view:
            self.camera_token = nn.Parameter(torch.zeros(1, 2, dim))  # [reference view, other views]
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + POS_EMBED_GRID**2, dim))
        self.blocks = nn.ModuleList([
            Block(dim, arch.num_heads, ffn=arch.ffn, qk_norm=arch.qknorm_start != -1 and i >= arch.qknorm_start)
            for i in range(arch.depth)
        ])
        self.norm = nn.LayerNorm(dim)

    def _position_embedding(self, rows: int, cols: int, dtype) -> torch.Tensor:
        """The learnt 37 x 37 embedding resized (bicubic) to ``rows x cols`` patches, class token first."""
        pos = self.pos_embed.float()
        if rows == cols == POS_EMBED_GRID:
            return self.pos_embed
        grid = pos[:, 1:].reshape(1, POS_EMBED_GRID, POS_EMBED_GRID, -1).permute(0, 3, 1, 2)
        # DINOv2 resizes by a scale factor nudged by 0.1 (a historical fix kept for its checkpoints)
        scale = ((rows + 0.1) / POS_EMBED_GRID, (cols + 0.1) / POS_EMBED_GRID)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat([pos[:, :1], grid], dim=1).to(dtype)

    def _rotations(self, rows: int, cols: int, views: int, device, dtype) -> tuple[Rotation, Rotation]:
        """RoPE for local blocks (one view) and global blocks (all views of a scene)."""
        r, c = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
        grid = torch.stack([r.flatten(), c.flatten()], dim=-1) + 1
        special = torch.zeros(1, 2, dtype=grid.dtype, device=device)
        local = torch.cat([special, grid])
        global_ = torch.cat([special, torch.ones_like(grid)]).repeat(views, 1)
        head_dim = self.embed_dim // self.arch.num_heads
        return Rotation(local, head_dim, dtype), Rotation(global_, head_dim, dtype)

    def forward(self, images: torch.Tensor, camera_tokens: torch.Tensor | None = None,
                reference_strategy: str = "saddle_balanced") -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``images (B, S, 3, H, W)`` -> for each of ``out_layers``: ``(patch features (B, S, h*w, C'),
        camera token (B, S, C'))``, ``C'`` twice the width with ``cat_token``. ``camera_tokens``:
        ``(B, S, C)`` from the camera encoder when the cameras are given."""
        arch = self.arch
        b, s, _, height, width = images.shape
        rows, cols = height // PATCH_SIZE, width // PATCH_SIZE
        x = self.patch_embed(images.flatten(0, 1))
        x = torch.cat([self.cls_token.expand(b * s, -1, -1), x], dim=1)
        x = x + self._position_embedding(rows, cols, x.dtype)
        n, dim = x.shape[1:]
        x = x.view(b, s, n, dim)
        local_rot = global_rot = None
        if arch.rope_start != -1:
            local_rot, global_rot = self._rotations(rows, cols, s, x.device, x.dtype)

        local = x
        order = None
        outputs = []
        for i, block in enumerate(self.blocks):
            if (arch.multi_view and i == arch.alt_start - 1 and s >= MIN_VIEWS_FOR_REFERENCE_CHOICE
                    and camera_tokens is None):
                order = reference_first(reference_view(x[:, :, 0], reference_strategy), s)
                x, local = _take_views(x, order), _take_views(local, order)
            if arch.multi_view and i == arch.alt_start:
                if camera_tokens is None:
                    camera_tokens = torch.cat([self.camera_token[:, :1].expand(b, 1, -1),
                                               self.camera_token[:, 1:].expand(b, s - 1, -1)], dim=1)
                x[:, :, 0] = camera_tokens  # in place: `local` may be this very tensor, as upstream
            rotate = arch.rope_start != -1 and i >= arch.rope_start
            if arch.multi_view and i >= arch.alt_start and i % 2 == 1:
                x = block(x.reshape(b, s * n, dim), global_rot if rotate else None).view(b, s, n, dim)
            else:
                x = block(x.reshape(b * s, n, dim), local_rot if rotate else None).view(b, s, n, dim)
                local = x
            if i in arch.out_layers:
                out = torch.cat([local, x], dim=-1) if arch.cat_token else x
                if order is not None:
                    out = _take_views(out, torch.argsort(order, dim=1))
                outputs.append(out)

        features = []
        for out in outputs:
            camera = out[:, :, 0]
            if arch.cat_token:  # the local half is read as is, the global half normalised
                out = torch.cat([out[..., :dim], self.norm(out[..., dim:])], dim=-1)
            else:
                out = self.norm(out)
            features.append((out[:, :, 1:], camera))
        return features


class Backbone(nn.Module):
    """Holds the ViT under the checkpoints' name (``backbone.pretrained``)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.pretrained = VisionTransformer(arch)

    def forward(self, images, camera_tokens=None, reference_strategy: str = "saddle_balanced"):
        return self.pretrained(images, camera_tokens, reference_strategy)
