"""MiDaS DPT (ViT-L/16 and ViT-hybrid) on non-square inputs, as the MiDaS code runs them.

MiDaS scales an image as little as possible and keeps its aspect ratio, so the network sees
grids such as 24x32 patches. Transformers' ``DPTForDepthEstimation`` without a separate backbone
(``Intel/dpt-large``, ``Intel/dpt-hybrid-midas``) reshapes the ViT tokens into a *square* grid
in its neck, which fails on any non-square input, and its hybrid embeddings refuse any size but
384x384 unless asked to resize their position embeddings. MiDaS's own ``forward_vit`` uses the
input's ``h/16 x w/16`` grid and resizes position embeddings (bilinearly, as Transformers does).

:func:`use_input_grid` makes one loaded model do the same; its weights and everything else are
Transformers' own.
"""

from __future__ import annotations

import functools

import torch


def needs_input_grid(model: torch.nn.Module) -> bool:
    """A Transformers DPT whose neck guesses a square token grid: the plain ViT and the ViT-hybrid
    (``DPTForDepthEstimation`` passes the grid only for other backbones, such as ZoeDepth's BEiT)."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", "") != "dpt":
        return False
    return getattr(config, "backbone_config", None) is None or bool(getattr(config, "is_hybrid", False))


def use_input_grid(model: torch.nn.Module) -> None:
    """Give the neck of ``model`` (a ``DPTForDepthEstimation``) the input's patch grid, and let
    hybrid embeddings resize their position embeddings to it."""
    patch = model.config.patch_size
    grid: dict[str, tuple] = {}

    def remember_input(module, args, kwargs):
        pixel_values = kwargs["pixel_values"] if "pixel_values" in kwargs else args[0]
        grid["hw"] = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)

    def neck_on_input_grid(module, args, kwargs):
        given = args[1] if len(args) > 1 else kwargs.get("patch_height")
        if given is not None:
            return None
        rest = {k: v for k, v in kwargs.items() if k not in ("patch_height", "patch_width")}
        return (args[0],), {**rest, "patch_height": grid["hw"][0], "patch_width": grid["hw"][1]}

    model.register_forward_pre_hook(remember_input, with_kwargs=True)
    model.neck.register_forward_pre_hook(neck_on_input_grid, with_kwargs=True)
    embeddings = model.dpt.embeddings
    if "interpolate_pos_encoding" in embeddings.forward.__code__.co_varnames:  # the hybrid's
        embeddings.forward = functools.partial(embeddings.forward, interpolate_pos_encoding=True)
