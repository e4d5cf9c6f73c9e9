"""DINOv2 position embeddings resized as the official DINOv2 code does it.

A ViT trained at 518x518 (37x37 patches) runs on other grids by resizing its position
embeddings. The official DINOv2 code, which Depth Anything V1 and V2 run, resizes with
``F.interpolate(scale_factor=((n_h + 0.1) / 37, (n_w + 0.1) / 37), mode="bicubic")``: the output
has ``n_h x n_w`` cells, but the sampling positions follow the scale factor, not the grid
sizes. Transformers' port resizes to ``size=(n_h, n_w)``, which samples the embedding table at
slightly different positions; with the same weights the two disagree by about 1% of the depth
map (measured in tests/test_reference_fidelity.py). Both rules cost one bicubic resize of a
37x37 table per forward pass.

:func:`use_reference_interpolation` swaps the rule on one loaded model; the registry entry's
``position_embedding = "dinov2"`` asks for it.
"""

from __future__ import annotations

import math
import types

import torch
import torch.nn.functional as F

#: the official code's ``interpolate_offset``: "a small number to avoid floating point error in
#: the interpolation" (facebookresearch/dino#8); it also sets the sampling positions
OFFSET = 0.1


def reference_interpolate_pos_encoding(self, embeddings: torch.Tensor, height, width) -> torch.Tensor:
    """Drop-in for ``Dinov2Embeddings.interpolate_pos_encoding`` (``self`` is the embeddings module):
    position embeddings ``(1, 1 + n_h * n_w, dim)`` for a ``height x width`` input."""
    num_patches = embeddings.shape[1] - 1
    num_positions = self.position_embeddings.shape[1] - 1
    if not torch.jit.is_tracing() and num_patches == num_positions and height == width:
        return self.position_embeddings
    class_pos_embed = self.position_embeddings[:, :1]
    patch_pos_embed = self.position_embeddings[:, 1:]
    dim = embeddings.shape[-1]
    patch_h, patch_w = self.patch_embeddings.patch_size
    side = math.isqrt(num_positions)
    # in float32 as the official code does (bicubic in half precision shifts the embeddings)
    table = patch_pos_embed.reshape(side, side, dim).float()
    n_h, n_w = height // patch_h, width // patch_w
    if torch.compiler.is_compiling():  # torch.export / torch.compile: keep the grid size symbolic
        grid = torch.einsum("ia,abd,jb->ijd", bicubic_matrix(n_h, side, table.device), table,
                            bicubic_matrix(n_w, side, table.device))
    else:  # the official call itself (the matrices do 8x the arithmetic of its 4-tap kernel)
        scale = ((n_h + OFFSET) / side, (n_w + OFFSET) / side)
        # the same memory layout as Transformers' own call (a channels-last view): the same kernel, the same cost
        grid = F.interpolate(table[None].permute(0, 3, 1, 2), scale_factor=scale, mode="bicubic",
                             align_corners=False, antialias=False)[0].permute(1, 2, 0)
    return torch.cat((class_pos_embed, grid.reshape(1, -1, dim).to(patch_pos_embed.dtype)), dim=1)


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
