"""The official Depth Anything V2 code (``../shared/reference/depth-anything-v2``) as a test oracle.

Builds the authors' ``DepthAnythingV2`` (relative, or the ``metric_depth`` variant) at a tiny size
with random weights, and the same weights in the Hugging Face format, so that localdepth's whole
pipeline can be compared with the official ``infer_image`` on the same photo.

Only tests import this; the package never does.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from functools import partial
from pathlib import Path

import pytest

from conftest import SHARED
from localdepth.bench.official import official_to_transformers

REFERENCE = SHARED / "reference" / "depth-anything-v2"
PACKAGES = {"relative": REFERENCE / "depth_anything_v2", "metric": REFERENCE / "metric_depth" / "depth_anything_v2"}

# A tiny ViT with the real block structure: 12 blocks so that the official ViT-S layer indices
# (2, 5, 8, 11) apply unchanged; the DPT head of the real Small model, at a quarter of its width.
EMBED_DIM, DEPTH, HEADS, MLP_RATIO = 32, 12, 2, 4
FEATURES, OUT_CHANNELS = 16, [8, 16, 32, 32]
HEAD_HIDDEN = 32  # fixed in the official head (``head_features_2``)


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    """The official dpt.py imports ``torchvision.transforms.Compose`` and nothing else (the stand-in
    is the benchmark's, which imports the same code from a folder the user names)."""
    from localdepth.bench.official import torchvision_stand_in

    return torchvision_stand_in()


_LOADED: dict[str, types.ModuleType] = {}


def reference_package(kind: str = "relative") -> types.ModuleType:
    """Import the official ``depth_anything_v2`` package (relative or metric) under a private name,
    so that both variants can live in one process. Skips when the reference code is absent."""
    if kind in _LOADED:
        return _LOADED[kind]
    folder = PACKAGES[kind]
    if not (folder / "dpt.py").is_file():
        pytest.skip(f"{folder} is absent (the official Depth Anything V2 code lives in ../shared/reference)")
    name = f"_da2_reference_{kind}"
    spec = importlib.util.spec_from_loader(name, loader=None, is_package=True)
    package = importlib.util.module_from_spec(spec)
    package.__path__ = [str(folder)]
    stand_ins = _torchvision_stand_in()
    sys.modules.update(stand_ins)
    sys.modules[name] = package
    try:
        package.dpt = importlib.import_module(f"{name}.dpt")
        package.dinov2 = importlib.import_module(f"{name}.dinov2")
        package.layers = importlib.import_module(f"{name}.dinov2_layers")
    finally:
        for key in stand_ins:  # nothing else in the process should see a fake torchvision
            sys.modules.pop(key, None)
    _LOADED[kind] = package
    return package


def build_reference(kind: str = "relative", *, seed: int = 0, max_depth: float = 20.0, smooth_pos_embed: bool = False):
    """The official ``DepthAnythingV2`` at the tiny size, random weights, eval mode.

    The last 1x1 convolution is rescaled so that the random network's output spreads over a
    realistic range (otherwise a relative map is mostly ReLU zeros and a metric one a constant
    max_depth / 2). ``smooth_pos_embed`` replaces the random position embedding by a smooth field,
    closer to trained ones (which vary slowly across the patch grid).
    """
    import torch

    package = reference_package(kind)
    layers = package.layers

    def tiny_dinov2(model_name):
        return package.dinov2.DinoVisionTransformer(
            img_size=518, patch_size=14, embed_dim=EMBED_DIM, depth=DEPTH, num_heads=HEADS, mlp_ratio=MLP_RATIO,
            block_fn=partial(layers.NestedTensorBlock, attn_class=layers.MemEffAttention),
            init_values=1.0, ffn_layer="mlp", block_chunks=0, num_register_tokens=0,
            interpolate_antialias=False, interpolate_offset=0.1,
        )

    torch.manual_seed(seed)
    original, package.dpt.DINOv2 = package.dpt.DINOv2, tiny_dinov2
    try:
        kwargs = {"max_depth": max_depth} if kind == "metric" else {}
        model = package.dpt.DepthAnythingV2(encoder="vits", features=FEATURES, out_channels=OUT_CHANNELS, **kwargs)
    finally:
        package.dpt.DINOv2 = original
    model.eval()
    with torch.no_grad():
        if smooth_pos_embed:
            _smooth_position_embedding(model.pretrained.pos_embed)
        _spread_last_layer(model, kind)
    return model


def _smooth_position_embedding(pos_embed) -> None:
    """Low-frequency sinusoids over the 37x37 grid (2 to 4 periods across it), unit amplitude."""
    import torch

    n = int((pos_embed.shape[1] - 1) ** 0.5)
    dim = pos_embed.shape[2]
    g = torch.Generator().manual_seed(1)
    y, x = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
    fy, fx = (torch.rand(2, dim, generator=g) * 3 + 1) * 2 * torch.pi / 2
    phase = torch.rand(dim, generator=g) * 2 * torch.pi
    field = torch.sin(fy[:, None, None] * y + fx[:, None, None] * x + phase[:, None, None])  # (dim, n, n)
    pos_embed[0, 1:] = field.reshape(dim, n * n).T


def _spread_last_layer(model, kind: str) -> None:
    import torch

    conv = model.depth_head.scratch.output_conv2[2]
    captured = {}
    hook = conv.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    model(torch.randn(1, 3, 126, 168, generator=torch.Generator().manual_seed(0)))
    hook.remove()
    out = captured["out"]
    centre = 4.0 if kind == "relative" else 0.0  # ReLU: mostly positive; sigmoid: both halves used
    conv.weight /= out.std()
    conv.bias.copy_((conv.bias - out.mean()) / out.std() + centre)


def to_transformers(model, kind: str = "relative", max_depth: float = 20.0):
    """The same weights as a Transformers ``DepthAnythingForDepthEstimation`` (the renaming of
    Transformers' own conversion script, ``convert_depth_anything_to_hf.py``, with Transformers 5's
    attention names ``q_proj/k_proj/v_proj/o_proj``; the benchmark's copy of that rule)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    layer_idx = model.intermediate_layer_idx[model.encoder]
    backbone = Dinov2Config(
        hidden_size=EMBED_DIM, num_hidden_layers=DEPTH, num_attention_heads=HEADS, mlp_ratio=MLP_RATIO,
        patch_size=14, image_size=518, layerscale_value=1.0, layer_norm_eps=1e-6,
        out_indices=[i + 1 for i in layer_idx], reshape_hidden_states=False, apply_layernorm=True,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=EMBED_DIM, patch_size=14,
        neck_hidden_sizes=OUT_CHANNELS, fusion_hidden_size=FEATURES, head_hidden_size=HEAD_HIDDEN,
        depth_estimation_type=kind,
        max_depth=int(max_depth) if kind == "metric" else 1,  # Transformers types it as int; 1: no scaling
    )
    ours = official_to_transformers(model.state_dict())
    hf = DepthAnythingForDepthEstimation(config).eval()
    missing, unexpected = hf.load_state_dict(ours, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing
    return hf


def save_as_hf(model, folder: Path, kind: str = "relative", max_depth: float = 20.0) -> Path:
    to_transformers(model, kind, max_depth).save_pretrained(folder)
    return folder
