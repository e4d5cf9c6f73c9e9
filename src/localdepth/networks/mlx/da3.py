"""Depth Anything 3 Mono and Metric in MLX: the single-view networks, which are a plain DINOv2
(no RoPE, QK-norm, cross-view attention or camera tokens) and the DPT head with a sky map, as
:mod:`localdepth.networks.da3` defines them for PyTorch, with the official parameter names.

The backbone runs in the chosen precision, the head in float32 (as upstream and the PyTorch
network). Sky pixels get the 99th percentile of the other pixels' depth, by the PyTorch
network's own function. The any-view networks (``da3-small`` ... ``da3-giant``) run on PyTorch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ...errors import WeightsError
from ..da3.config import ARCHITECTURES, PATCH_SIZE, POS_EMBED_GRID, Architecture
from ..dinov2 import ViTConfig
from .dinov2 import DinoVisionTransformer
from .dpt import DPTPyramid, FusionBlock
from .layers import resize_bilinear

#: the official model names this design builds (the single-view architectures)
MODEL_NAMES = tuple(name for name, arch in ARCHITECTURES.items() if not arch.multi_view and not arch.camera)
HEAD_HIDDEN = 32  # channels of the last convolutions (localdepth.networks.da3.heads.HEAD_FEATURES_2)


@dataclass(frozen=True)
class Config:
    model_name: str
    arch: Architecture  # the row of ARCHITECTURES the weights were converted for

    def as_dict(self) -> dict:
        return {"design": "depth-anything-3-mono", "model_name": self.model_name, "arch": asdict(self.arch)}

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        arch = d["arch"]
        return cls(d["model_name"], Architecture(**{**arch, "out_layers": tuple(arch["out_layers"]),
                                                    "head_out_channels": tuple(arch["head_out_channels"])}))


def _readout(features: int) -> list:
    return [nn.Conv2d(features // 2, HEAD_HIDDEN, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(HEAD_HIDDEN, 1, kernel_size=1)]


class DPT(DPTPyramid):
    """The single-view head: ``depth`` (``exp``) and ``sky`` (``relu``)."""

    def __init__(self, dim_in: int, features: int, out_channels):
        super().__init__(dim_in, features, out_channels)
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FusionBlock(features, has_residual=i != 4))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        self.scratch.output_conv2 = _readout(features)
        self.scratch.sky_output_conv2 = _readout(features)

    def __call__(self, tokens: list[mx.array], height: int, width: int) -> tuple[mx.array, mx.array]:
        s = self.scratch
        l1, l2, l3, l4 = self.refine(self.reassemble(tokens, height // PATCH_SIZE, width // PATCH_SIZE))
        out = s.refinenet4(l4, size=l3.shape[1:3])
        out = s.refinenet3(out, l3, size=l2.shape[1:3])
        out = s.refinenet2(out, l2, size=l1.shape[1:3])
        fused = resize_bilinear(s.output_conv1(s.refinenet1(out, l1)), (height, width))
        depth, sky = fused, fused
        for layer in s.output_conv2:
            depth = layer(depth)
        for layer in s.sky_output_conv2:
            sky = layer(sky)
        return mx.exp(depth[..., 0]), nn.relu(sky[..., 0])


class Backbone(nn.Module):
    def __init__(self, vit: ViTConfig):
        super().__init__()
        self.pretrained = DinoVisionTransformer(vit, final_norm_eps=1e-5)  # as the PyTorch network's final norm


class DepthAnything3Mono(nn.Module):
    """``network(x)`` with ``x`` NHWC ``(N, h, w, 3)`` -> ``{"depth": (N, h, w)}`` (sky set far per
    image, or over all images with ``same_scene=True``, as the PyTorch network)."""

    takes_same_scene = True

    def __init__(self, config: Config):
        super().__init__()
        arch = config.arch
        if arch.multi_view or arch.camera or arch.rope_start != -1 or arch.qknorm_start != -1 or arch.ffn != "mlp":
            raise ValueError(f"{config.model_name} is not a single-view Depth Anything 3 design")
        self.arch = arch
        vit = ViTConfig(embed_dim=arch.embed_dim, depth=arch.depth, num_heads=arch.num_heads,
                        mlp_hidden=4 * arch.embed_dim, patch_size=PATCH_SIZE, image_size=POS_EMBED_GRID * PATCH_SIZE)
        self.backbone = Backbone(vit)
        self.head = DPT(arch.head_dim_in, arch.head_features, arch.head_out_channels)

    def __call__(self, x: mx.array, same_scene: bool = False) -> dict:
        import torch

        from ..da3.network import _sky_to_far

        n, height, width = x.shape[:3]
        features = self.backbone.pretrained.get_intermediate_layers(x, self.arch.out_layers)
        depth, sky = self.head([t.astype(mx.float32) for t, _ in features], height, width)
        mx.eval(depth, sky)
        depth, sky = torch.from_numpy(np.array(depth)), torch.from_numpy(np.array(sky))
        scenes = [slice(0, n)] if same_scene else [slice(i, i + 1) for i in range(n)]
        far = torch.cat([_sky_to_far(depth[s], sky[s]) for s in scenes])
        return {"depth": mx.array(far.numpy())}

    def set_precision(self, dtype) -> None:
        self.backbone.set_dtype(dtype)  # the head stays float32


def build(config: dict) -> DepthAnything3Mono:
    return DepthAnything3Mono(Config.from_dict(config))


def official_state(spec, path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(config, state)`` from a Hub folder (``config.json`` naming the model, ``model.safetensors``)
    or a weights file with the same keys (the official wrapper's ``model.`` prefix optional)."""
    from safetensors.torch import load_file

    from ..da3 import _SKIPPED_PREFIXES, _WRAPPER_PREFIX, WEIGHTS_NAME, _read_model_name

    path = Path(path)
    model_name = _read_model_name(path, spec.architecture) if path.is_dir() else spec.architecture
    if model_name not in MODEL_NAMES:
        raise WeightsError(f"{path} holds {model_name} weights; the MLX backend runs the single-view Depth Anything 3 "
                           f"networks ({', '.join(MODEL_NAMES)}); use --backend torch")
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    try:
        tensors = load_file(str(weights))
    except Exception as e:  # safetensors raises its own types
        raise WeightsError(f"cannot read {weights}: {str(e).strip().splitlines()[0][:200]}") from None
    if tensors and all(k.startswith(_WRAPPER_PREFIX) for k in tensors):
        tensors = {k[len(_WRAPPER_PREFIX):]: v for k, v in tensors.items()}
    state = {k: v.float().numpy() for k, v in tensors.items() if not k.startswith(_SKIPPED_PREFIXES)}
    return Config(model_name, ARCHITECTURES[model_name]).as_dict(), state
