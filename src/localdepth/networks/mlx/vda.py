"""Video Depth Anything in MLX: DINOv2 + the DPT head with the four motion modules (temporal
self-attention across the frames of a clip), as :mod:`localdepth.networks.vda` defines it for
PyTorch, with the official parameter names; streaming keeps the same cached hidden states
under the same rule (:class:`localdepth.networks.vda.StreamState`).

Calling convention (NHWC): ``network(x)`` with ``x`` ``(B, T, h, w, 3)`` clips ->
``{"depth": (B, T, h, w)}``; ``(N, h, w, 3)`` images -> ``{"depth": (N, h, w)}`` (each a clip of
one frame); :meth:`VideoDepthAnything.stream_step` one frame of a stream.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..dinov2 import ViTConfig
from ..vda import TEMPORAL_HEADS, StreamState, VDAConfig
from .dinov2 import DinoVisionTransformer
from .dpt import DPTHead


@dataclass(frozen=True)
class Config:
    vit: dict
    layers: tuple[int, ...]
    features: int
    out_channels: tuple[int, ...]
    num_frames: int

    def as_dict(self) -> dict:
        return {"design": "video-depth-anything", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        d = {k: v for k, v in d.items() if k != "design"}
        return cls(**{**d, "layers": tuple(d["layers"]), "out_channels": tuple(d["out_channels"])})


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.pe = mx.zeros((1, max_len, dim))  # stored in the checkpoints

    def __call__(self, x: mx.array) -> mx.array:
        return x + self.pe[:, : x.shape[1]].astype(x.dtype)


class TemporalAttention(nn.Module):
    """Attention along time, one sequence per pixel (see the PyTorch class)."""

    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = [nn.Linear(dim, dim)]
        self.pos_encoder = PositionalEncoding(dim, max_len)

    def __call__(self, x: mx.array, frames: int, cached: mx.array | None = None):
        bt, pixels, dim = x.shape
        clips = bt // frames
        sequence = x.reshape(clips, frames, pixels, dim).transpose(0, 2, 1, 3).reshape(clips * pixels, frames, dim)
        new = sequence
        if cached is not None:
            sequence = mx.concatenate([cached.astype(sequence.dtype), sequence], axis=1)
        sequence = self.pos_encoder(sequence)
        q = self.to_q(sequence[:, sequence.shape[1] - frames:])
        k, v = self.to_k(sequence), self.to_v(sequence)

        def split(t):
            return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(0, 2, 1, 3)

        out = mx.fast.scaled_dot_product_attention(split(q), split(k), split(v), scale=(dim // self.heads) ** -0.5)
        out = self.to_out[0](out.transpose(0, 2, 1, 3).reshape(clips * pixels, frames, dim))
        return out.reshape(clips, pixels, frames, dim).transpose(0, 2, 1, 3).reshape(bt, pixels, dim), new


class GEGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, hidden * 2)

    def __call__(self, x: mx.array) -> mx.array:
        x, gate = mx.split(self.proj(x), 2, axis=-1)
        return x * nn.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = [GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)]

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.net:
            x = layer(x)
        return x


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, max_len: int, attentions: int = 2):
        super().__init__()
        self.attention_blocks = [TemporalAttention(dim, heads, max_len) for _ in range(attentions)]
        self.norms = [nn.LayerNorm(dim) for _ in range(attentions)]
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def __call__(self, x: mx.array, frames: int, cached: list | None = None):
        states = []
        for i, (attention, norm) in enumerate(zip(self.attention_blocks, self.norms)):
            out, state = attention(norm(x), frames, cached[i] if cached is not None else None)
            x = x + out
            states.append(state)
        return x + self.ff(self.ff_norm(x)), states


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, max_len: int):
        super().__init__()
        self.norm = nn.GroupNorm(32, channels, eps=1e-6, pytorch_compatible=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = [TemporalTransformerBlock(channels, heads, max_len)]
        self.proj_out = nn.Linear(channels, channels)

    def __call__(self, x: mx.array, frames: int, cached: list | None = None):
        bt, height, width, channels = x.shape
        h = self.proj_in(self.norm(x).reshape(bt, height * width, channels))
        states: list = []
        per_block = len(self.transformer_blocks[0].attention_blocks)
        for i, block in enumerate(self.transformer_blocks):
            h, block_states = block(h, frames, cached[i * per_block:(i + 1) * per_block] if cached else None)
            states.extend(block_states)
        return self.proj_out(h).reshape(bt, height, width, channels) + x, states


class TemporalModule(nn.Module):
    def __init__(self, channels: int, max_len: int):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, TEMPORAL_HEADS, max_len)

    def __call__(self, x: mx.array, frames: int, cached: list | None = None):
        return self.temporal_transformer(x, frames, cached)


class TemporalDPTHead(DPTHead):
    """The DPT head with motion modules after reassembly (maps 3 and 4) and after the two
    coarsest fusions; its last convolutions run in float32, as in PyTorch."""

    def __init__(self, in_channels: int, features: int, out_channels: tuple[int, ...], num_frames: int):
        super().__init__(in_channels, features, out_channels, float32_tail=True)
        self.motion_modules = [TemporalModule(c, num_frames)
                               for c in (out_channels[2], out_channels[3], features, features)]

    def __call__(self, features, rows: int, cols: int, frames: int, cached: list | None = None):
        per_module = len(cached) // len(self.motion_modules) if cached else 0
        states: list = []

        def motion(i: int, x: mx.array) -> mx.array:
            x, module_states = self.motion_modules[i](
                x, frames, cached[i * per_module:(i + 1) * per_module] if per_module else None)
            states.extend(module_states)
            return x

        layer_1, layer_2, layer_3, layer_4 = self.reassemble([t for t, _ in features], rows, cols)
        layer_3, layer_4 = motion(0, layer_3), motion(1, layer_4)
        layer_1, layer_2, layer_3, layer_4 = self.refine([layer_1, layer_2, layer_3, layer_4])
        path_4 = motion(2, self.scratch.refinenet4(layer_4, size=layer_3.shape[1:3]))
        path_3 = motion(3, self.scratch.refinenet3(path_4, layer_3, size=layer_2.shape[1:3]))
        return self.finish(path_3, layer_2, layer_1, rows, cols), states


class VideoDepthAnything(nn.Module):
    temporal = True

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        vit = ViTConfig(**config.vit)
        self.pretrained = DinoVisionTransformer(vit)
        self.head = TemporalDPTHead(vit.embed_dim, config.features, config.out_channels, config.num_frames)

    def _depth(self, x: mx.array, frames: int, cached: list | None = None):
        """``(B*T, h, w, 3)`` -> depth ``(B*T, h, w)`` and the temporal states."""
        patch = self.config.vit["patch_size"]
        rows, cols = x.shape[1] // patch, x.shape[2] // patch
        features = self.pretrained.get_intermediate_layers(x, self.config.layers)
        depth, states = self.head(features, rows, cols, frames, cached)
        return nn.relu(depth), states

    def __call__(self, x: mx.array) -> dict:
        if x.ndim == 4:
            return {"depth": self._depth(x, 1)[0]}
        clips, frames = x.shape[:2]
        if frames > self.config.num_frames:
            raise ValueError(f"a clip holds at most {self.config.num_frames} frames, got {frames}")
        depth, _ = self._depth(x.reshape(clips * frames, *x.shape[2:]), frames)
        return {"depth": depth.reshape(clips, frames, *depth.shape[1:])}

    def new_stream(self) -> StreamState:
        return StreamState(self.config.num_frames, concat=lambda states: mx.concatenate(states, axis=1))

    def stream_step(self, x: mx.array, state: StreamState) -> mx.array:
        """One frame ``(1, h, w, 3)`` of a stream -> its depth ``(1, h, w)``; updates ``state``."""
        depth, states = self._depth(x, 1, state.context())
        mx.eval(depth, states)  # the cache holds values, not a growing graph
        state.push(states)
        return depth

    def set_precision(self, dtype) -> None:
        self.set_dtype(dtype)
        self.head.scratch.output_conv2[0].set_dtype(mx.float32)  # the float32 tail, as in PyTorch
        self.head.scratch.output_conv2[2].set_dtype(mx.float32)


def build(config: dict) -> VideoDepthAnything:
    return VideoDepthAnything(Config.from_dict(config))


_UNUSED = ("pretrained.mask_token",)  # training only


def official_state(spec, path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(config, state)`` from a released checkpoint (``.pth``, read with ``weights_only``) or
    its safetensors conversion: already in the official names."""
    from ...checkpoints import read_state_dict

    state = {k: v.float().numpy() for k, v in read_state_dict(path).items() if k not in _UNUSED}
    vda = VDAConfig.from_state_dict(state)
    config = Config(vit=asdict(vda.vit), layers=vda.layers, features=vda.features, out_channels=vda.out_channels,
                    num_frames=vda.num_frames)
    return config.as_dict(), state


