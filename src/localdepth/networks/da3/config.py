"""The Depth Anything 3 architectures: one table, one row per released network.

Rows are keyed by the official model name, the ``model_name`` that the official
``DepthAnything3(model_name=...)`` takes and that a Hub folder's ``config.json`` records.
Every size shares one design (see :mod:`localdepth.networks.da3`); a row says only what differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PATCH_SIZE = 14
#: the DINOv2 position embedding is learnt on a 518 x 518 grid (37 x 37 patches) and resized per input
POS_EMBED_GRID = 518 // PATCH_SIZE


@dataclass(frozen=True)
class Architecture:
    """One Depth Anything 3 network.

    Backbone (DINOv2 ViT): ``embed_dim``, ``depth`` blocks, ``num_heads``; ``ffn`` is ``"mlp"``
    (GELU) or ``"swiglu"`` (Giant). ``out_layers`` are the four blocks the head reads.
    From block ``alt_start`` on, the odd blocks attend across all views (global) and the others
    within each view (local), and a camera token replaces the class token; blocks from
    ``qknorm_start`` normalise queries and keys, blocks from ``rope_start`` rotate them by the
    tokens' 2-D positions (RoPE). ``-1`` disables a feature (the single-view Mono and Metric
    networks). ``cat_token``: the head reads ``[last local output, output]`` (twice the width).

    Head: ``"dualdpt"`` (depth + confidence, and a ray map + confidence) or ``"dpt"`` (depth and
    a sky map), with ``head_features`` channels and ``head_out_channels`` per pyramid level.
    ``camera``: the network has the camera encoder and decoder (pose and field of view).
    """

    embed_dim: int
    depth: int
    num_heads: int
    out_layers: tuple[int, int, int, int]
    alt_start: int
    qknorm_start: int
    rope_start: int
    cat_token: bool
    head: Literal["dualdpt", "dpt"]
    head_features: int
    head_out_channels: tuple[int, int, int, int]
    camera: bool
    ffn: Literal["mlp", "swiglu"] = "mlp"

    @property
    def head_dim_in(self) -> int:
        return self.embed_dim * (2 if self.cat_token else 1)

    @property
    def multi_view(self) -> bool:
        return self.alt_start != -1


_WIDE = (256, 512, 1024, 1024)
_SINGLE_VIEW_LARGE = Architecture(1024, 24, 16, (4, 11, 17, 23), -1, -1, -1, False, "dpt", 256, _WIDE, camera=False)

#: official model name -> architecture (the released checkpoints' configurations)
ARCHITECTURES: dict[str, Architecture] = {
    "da3-small": Architecture(384, 12, 6, (5, 7, 9, 11), 4, 4, 4, True, "dualdpt", 64, (48, 96, 192, 384), True),
    "da3-base": Architecture(768, 12, 12, (5, 7, 9, 11), 4, 4, 4, True, "dualdpt", 128, (96, 192, 384, 768), True),
    "da3-large": Architecture(1024, 24, 16, (11, 15, 19, 23), 8, 8, 8, True, "dualdpt", 256, _WIDE, True),
    "da3-giant": Architecture(1536, 40, 24, (19, 27, 33, 39), 13, 13, 13, True, "dualdpt", 256, _WIDE, True,
                              ffn="swiglu"),
    "da3mono-large": _SINGLE_VIEW_LARGE,
    "da3metric-large": _SINGLE_VIEW_LARGE,
}


def architecture(model_name: str) -> Architecture:
    """The row for an official model name (``da3-small``, ``da3metric-large``...)."""
    try:
        return ARCHITECTURES[model_name]
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise KeyError(f"unknown Depth Anything 3 model_name '{model_name}'; known: {known}") from None
