"""Depth Anything V1 and V2 (relative and metric) in MLX: DINOv2 + the DPT head.

The weights are the Hub folders' Transformers ``model.safetensors``; :func:`official_state`
renames them to the official parameter names the MLX modules carry (the PyTorch path runs
Transformers' own model; the architecture is the same). The configuration comes from the
folder's ``config.json`` through Transformers' ``AutoConfig``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ...errors import WeightsError
from ..dinov2 import NORM_EPS, ViTConfig
from .dinov2 import DinoVisionTransformer
from .dpt import DPTHead


@dataclass(frozen=True)
class Config:
    vit: dict  # ViTConfig's fields
    layers: tuple[int, ...]  # blocks the head reads (0-based)
    features: int
    out_channels: tuple[int, ...]
    head_hidden: int
    activation: str  # "relu" (relative) or "sigmoid" (metric)
    max_depth: float
    norm_eps: float = NORM_EPS

    def as_dict(self) -> dict:
        return {"design": "depth-anything", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        d = {k: v for k, v in d.items() if k != "design"}
        return cls(**{**d, "layers": tuple(d["layers"]), "out_channels": tuple(d["out_channels"])})


class DepthAnything(nn.Module):
    """``network(x)`` with ``x`` NHWC ``(N, h, w, 3)`` -> ``{"depth": (N, h, w)}``."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        vit = ViTConfig(**config.vit)
        self.pretrained = DinoVisionTransformer(vit, final_norm_eps=config.norm_eps)
        self.head = DPTHead(vit.embed_dim, config.features, config.out_channels, head_hidden=config.head_hidden,
                            activation=config.activation, max_depth=config.max_depth, patch_size=vit.patch_size)

    def __call__(self, x: mx.array) -> dict:
        patch = self.config.vit["patch_size"]
        rows, cols = x.shape[1] // patch, x.shape[2] // patch
        features = self.pretrained.get_intermediate_layers(x, self.config.layers)
        return {"depth": self.head(features, rows, cols)}

    def set_precision(self, dtype) -> None:
        self.set_dtype(dtype)


def build(config: dict) -> DepthAnything:
    return DepthAnything(Config.from_dict(config))


# ----------------------------------------------------------------------------- from Transformers' weights

_RENAMES = (  # Transformers' name -> the official one (after the layer index is substituted)
    (r"backbone\.embeddings\.cls_token", "pretrained.cls_token"),
    (r"backbone\.embeddings\.position_embeddings", "pretrained.pos_embed"),
    (r"backbone\.embeddings\.patch_embeddings\.projection\.(weight|bias)", r"pretrained.patch_embed.proj.\1"),
    (r"backbone\.encoder\.layer\.(\d+)\.norm([12])\.(weight|bias)", r"pretrained.blocks.\1.norm\2.\3"),
    (r"backbone\.encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"pretrained.blocks.\1.attn.proj.\2"),
    (r"backbone\.encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1", r"pretrained.blocks.\1.ls\2.gamma"),
    (r"backbone\.encoder\.layer\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"pretrained.blocks.\1.mlp.\2.\3"),
    (r"backbone\.layernorm\.(weight|bias)", r"pretrained.norm.\1"),
    (r"neck\.reassemble_stage\.layers\.(\d)\.projection\.(weight|bias)", r"head.projects.\1.\2"),
    (r"neck\.reassemble_stage\.layers\.(\d)\.resize\.(weight|bias)", r"head.resize_layers.\1.\2"),
    (r"head\.conv1\.(weight|bias)", r"head.scratch.output_conv1.\1"),
    (r"head\.conv2\.(weight|bias)", r"head.scratch.output_conv2.0.\1"),
    (r"head\.conv3\.(weight|bias)", r"head.scratch.output_conv2.2.\1"),
)
_UNUSED = ("backbone.embeddings.mask_token",)  # training only


def _rename(key: str) -> str | None:
    for pattern, target in _RENAMES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, target, key)
    if m := re.fullmatch(r"neck\.convs\.(\d)\.weight", key):
        return f"head.scratch.layer{int(m.group(1)) + 1}_rn.weight"
    # the fusion stage runs coarse to fine: its layer j is the official refinenet 4 - j
    if m := re.fullmatch(r"neck\.fusion_stage\.layers\.(\d)\.(.+)", key):
        block, rest = f"head.scratch.refinenet{4 - int(m.group(1))}", m.group(2)
        if r := re.fullmatch(r"projection\.(weight|bias)", rest):
            return f"{block}.out_conv.{r.group(1)}"
        if r := re.fullmatch(r"residual_layer([12])\.convolution([12])\.(weight|bias)", rest):
            return f"{block}.resConfUnit{r.group(1)}.conv{r.group(2)}.{r.group(3)}"
    return None


def official_state(spec, path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(config, state)`` from a Transformers Depth Anything folder: the MLX configuration and
    the weights in float32 under the official names (PyTorch layouts)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    path = Path(path)
    weights = path / "model.safetensors"
    if not path.is_dir() or not weights.is_file():
        raise WeightsError(f"{path}: the MLX backend reads a Hugging Face folder with model.safetensors")
    try:
        hf = AutoConfig.from_pretrained(str(path))
        tensors = load_file(str(weights))
    except Exception as e:  # Transformers and safetensors raise their own types
        raise WeightsError(f"cannot read {path}: {str(e).strip().splitlines()[0][:200]}") from None
    backbone = getattr(hf, "backbone_config", None)
    if getattr(hf, "model_type", "") != "depth_anything" or getattr(backbone, "model_type", "") != "dinov2":
        raise WeightsError(f"{path} is not a Depth Anything model with a DINOv2 backbone")
    if getattr(backbone, "use_swiglu_ffn", False) or getattr(backbone, "hidden_act", "gelu") != "gelu" \
            or list(hf.reassemble_factors) != [4, 2, 1, 0.5] or getattr(hf, "head_in_index", -1) != -1 \
            or any(i < 1 for i in backbone.out_indices):
        raise WeightsError(f"{path}: a Depth Anything variant the MLX network does not build; use --backend torch")
    state: dict[str, np.ndarray] = {}
    blocks: dict[int, dict[str, np.ndarray]] = {}
    for key, tensor in tensors.items():
        array = tensor.float().numpy()
        if m := re.fullmatch(r"backbone\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)",
                             key):
            blocks.setdefault(int(m.group(1)), {})[f"{m.group(2)}.{m.group(3)}"] = array
            continue
        if key in _UNUSED:
            continue
        name = _rename(key)
        if name is None:
            raise WeightsError(f"{weights}: unexpected tensor '{key}' for a Depth Anything model")
        state[name] = array
    for i, parts in blocks.items():  # the official attention projects q, k and v with one matrix
        for kind in ("weight", "bias"):
            try:
                state[f"pretrained.blocks.{i}.attn.qkv.{kind}"] = np.concatenate(
                    [parts[f"{p}.{kind}"] for p in ("query", "key", "value")])
            except KeyError as e:
                raise WeightsError(f"{weights}: layer {i} has no attention {e}") from None
    dim = backbone.hidden_size
    vit = ViTConfig(embed_dim=dim, depth=backbone.num_hidden_layers, num_heads=backbone.num_attention_heads,
                    mlp_hidden=state["pretrained.blocks.0.mlp.fc1.weight"].shape[0], patch_size=backbone.patch_size,
                    image_size=backbone.image_size)
    config = Config(
        vit=asdict(vit), layers=tuple(int(i) - 1 for i in backbone.out_indices), features=hf.fusion_hidden_size,
        out_channels=tuple(hf.neck_hidden_sizes), head_hidden=hf.head_hidden_size,
        activation="sigmoid" if hf.depth_estimation_type == "metric" else "relu",
        max_depth=float(hf.max_depth if hf.max_depth is not None else 1.0),
        norm_eps=float(backbone.layer_norm_eps))
    return config.as_dict(), state
