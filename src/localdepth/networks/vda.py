"""Video Depth Anything (Chen et al., CVPR 2025): Depth Anything V2 with a temporal DPT head.

The encoder is DINOv2 (:mod:`.dinov2`) and the head is the DPT head (:mod:`.dpt_head`) with four
*motion modules* added: temporal self-attention across the frames of a clip, at the two
coarsest reassembled maps and after the two coarsest fusions. Parameter names are the
official ones (``pretrained.*``, ``head.*``, ``head.motion_modules.N.temporal_transformer.*``),
so the released ``.pth`` checkpoints load with ``strict=True``.

Calling convention (see :mod:`localdepth.networks`):

* ``network(x)`` with ``x`` of ``(B, T, 3, h, w)``: ``B`` clips of ``T`` consecutive frames
  (``T`` at most 32, the temporal positional encoding's length) -> ``{"depth": (B, T, h, w)}``;
* ``x`` of ``(N, 3, h, w)``: ``N`` independent images (each a clip of one frame) ->
  ``{"depth": (N, h, w)}``, so the model is safe wherever images are batched;
* :meth:`VideoDepthAnything.stream_step`: one frame of a stream, attending to the cached
  hidden states of earlier frames (:class:`StreamState`), as the official streaming mode.

The output is relative disparity (larger = closer) for the relative checkpoints and metres for
the metric ones; ReLU keeps it non-negative. Clip-level inference (windows, keyframes,
alignment between windows) lives in :mod:`localdepth.video.temporal`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from ..registry import MODELS, ModelSpec
from .dinov2 import VIT_SIZES, DinoVisionTransformer, ViTConfig
from .dpt_head import DPTHead

#: frames the temporal attention was trained on (length of its positional encoding)
NUM_FRAMES = 32
#: heads of every temporal attention
TEMPORAL_HEADS = 8
#: ViT blocks whose outputs the head reads, by encoder depth
LAYERS_BY_DEPTH = {12: (2, 5, 8, 11), 24: (4, 11, 17, 23)}


@dataclass(frozen=True)
class VDAConfig:
    vit: ViTConfig
    features: int
    out_channels: tuple[int, int, int, int]
    layers: tuple[int, int, int, int]
    num_frames: int = NUM_FRAMES

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> VDAConfig:
        """The architecture a checkpoint describes (its tensor shapes are its config).

        DINOv2 keeps 64 channels per attention head in every size, so the head count follows
        from the width; the block count picks the layers the head reads.
        """
        try:
            dim = state["pretrained.pos_embed"].shape[-1]
            grid = int(math.isqrt(state["pretrained.pos_embed"].shape[1] - 1))
            patch = state["pretrained.patch_embed.proj.weight"].shape[-1]
            depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"pretrained\.blocks\.(\d+)\.", k)))
            mlp_hidden = state["pretrained.blocks.0.mlp.fc1.weight"].shape[0]
            features = state["head.scratch.refinenet1.out_conv.weight"].shape[0]
            out_channels = tuple(state[f"head.projects.{i}.weight"].shape[0] for i in range(4))
            num_frames = state["head.motion_modules.0.temporal_transformer.transformer_blocks.0."
                               "attention_blocks.0.pos_encoder.pe"].shape[1]
        except (KeyError, ValueError, IndexError) as e:
            raise WeightsError(f"not a Video Depth Anything checkpoint (no tensor {e})") from None
        if depth not in LAYERS_BY_DEPTH or dim % 64:
            raise WeightsError(f"not a Video Depth Anything checkpoint: a {depth}-block, {dim}-wide encoder")
        vit = ViTConfig(embed_dim=dim, depth=depth, num_heads=dim // 64, mlp_hidden=mlp_hidden, patch_size=patch,
                        image_size=grid * patch)
        return cls(vit=vit, features=features, out_channels=out_channels,  # type: ignore[arg-type]
                   layers=LAYERS_BY_DEPTH[depth], num_frames=num_frames)


#: the released sizes: one row each (encoder, fusion width, reassembled widths)
SIZES: dict[str, VDAConfig] = {
    "vits": VDAConfig(VIT_SIZES["vits"], 64, (48, 96, 192, 384), LAYERS_BY_DEPTH[12]),
    "vitb": VDAConfig(VIT_SIZES["vitb"], 128, (96, 192, 384, 768), LAYERS_BY_DEPTH[12]),
    "vitl": VDAConfig(VIT_SIZES["vitl"], 256, (256, 512, 1024, 1024), LAYERS_BY_DEPTH[24]),
}


# ----------------------------------------------------------------------------- temporal attention

class PositionalEncoding(nn.Module):
    """Sinusoidal encoding of the frame index (a buffer: it is stored in the checkpoints)."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        frequency = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(position * frequency)
        pe[0, :, 1::2] = torch.cos(position * frequency)
        self.register_buffer("pe", pe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class TemporalAttention(nn.Module):
    """Self-attention along time, one sequence per pixel: ``(B*T, P, C)`` tokens (``P`` pixels
    of each frame) attend over the ``T`` frames (plus ``cached`` earlier ones when streaming).

    Returns the output and the layer's input sequence, which is what a stream caches.
    """

    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Identity()])  # index 1: dropout in training
        self.pos_encoder = PositionalEncoding(dim, max_len)

    def forward(self, x: torch.Tensor, frames: int, cached: torch.Tensor | None = None):
        bt, pixels, dim = x.shape
        clips = bt // frames
        sequence = x.reshape(clips, frames, pixels, dim).transpose(1, 2).reshape(clips * pixels, frames, dim)
        new = sequence
        if cached is not None:
            sequence = torch.cat((cached, sequence), dim=1)
        sequence = self.pos_encoder(sequence)
        q = self.to_q(sequence[:, sequence.shape[1] - frames:])
        k, v = self.to_k(sequence), self.to_v(sequence)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        out = self.to_out[0](out.transpose(1, 2).reshape(clips * pixels, frames, dim))
        return out.reshape(clips, pixels, frames, dim).transpose(1, 2).reshape(bt, pixels, dim), new


class GEGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, hidden * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TemporalTransformerBlock(nn.Module):
    """Two pre-norm temporal attentions, then a GEGLU feed-forward, each residual."""

    def __init__(self, dim: int, heads: int, max_len: int, attentions: int = 2):
        super().__init__()
        self.attention_blocks = nn.ModuleList(TemporalAttention(dim, heads, max_len) for _ in range(attentions))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(attentions))
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, frames: int, cached: list | None = None):
        states = []
        for i, (attention, norm) in enumerate(zip(self.attention_blocks, self.norms)):
            out, state = attention(norm(x), frames, cached[i] if cached is not None else None)
            x = x + out
            states.append(state)
        return x + self.ff(self.ff_norm(x)), states


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, max_len: int, blocks: int = 1):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(channels, heads, max_len) for _ in range(blocks))
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, frames: int, cached: list | None = None):
        bt, channels, height, width = x.shape
        h = self.norm(x).permute(0, 2, 3, 1).reshape(bt, height * width, channels)
        h = self.proj_in(h)
        states: list[torch.Tensor] = []
        per_block = len(self.transformer_blocks[0].attention_blocks)
        for i, block in enumerate(self.transformer_blocks):
            h, block_states = block(h, frames, cached[i * per_block:(i + 1) * per_block] if cached else None)
            states.extend(block_states)
        h = self.proj_out(h).reshape(bt, height, width, channels).permute(0, 3, 1, 2)
        return h + x, states


class TemporalModule(nn.Module):
    """A motion module: ``(B*T, C, H, W)`` frames of ``B`` clips -> the same, mixed over time."""

    def __init__(self, channels: int, max_len: int):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, TEMPORAL_HEADS, max_len)

    def forward(self, x: torch.Tensor, frames: int, cached: list | None = None):
        return self.temporal_transformer(x, frames, cached)


class TemporalDPTHead(DPTHead):
    """The DPT head with motion modules after reassembly (maps 3 and 4) and after the two
    coarsest fusions. ``cached``: the hidden states of earlier frames, in the order the
    modules return them (streaming)."""

    def __init__(self, in_channels: int, features: int, out_channels: tuple[int, ...], num_frames: int):
        super().__init__(in_channels, features, out_channels)
        self.motion_modules = nn.ModuleList(
            TemporalModule(c, num_frames) for c in (out_channels[2], out_channels[3], features, features))

    def forward(self, features, patch_h: int, patch_w: int, frames: int, cached: list | None = None):
        per_module = len(cached) // len(self.motion_modules) if cached else 0
        states: list[torch.Tensor] = []

        def motion(i: int, x: torch.Tensor) -> torch.Tensor:
            x, module_states = self.motion_modules[i](
                x, frames, cached[i * per_module:(i + 1) * per_module] if per_module else None)
            states.extend(module_states)
            return x

        layer_1, layer_2, layer_3, layer_4 = self.reassemble(features, patch_h, patch_w)
        layer_3, layer_4 = motion(0, layer_3), motion(1, layer_4)
        layer_1, layer_2, layer_3, layer_4 = self.refine([layer_1, layer_2, layer_3, layer_4])
        path_4 = motion(2, self.scratch.refinenet4(layer_4, size=layer_3.shape[2:]))
        path_3 = motion(3, self.scratch.refinenet3(path_4, layer_3, size=layer_2.shape[2:]))
        return self.finish(path_3, layer_2, layer_1, patch_h, patch_w), states


# ----------------------------------------------------------------------------- the network

class StreamState:
    """The cached temporal hidden states of a stream, kept as the official streaming mode does.

    After the first frame its cache fills the whole window (as if the clip had started with
    ``window`` copies of it). Every later frame attends to the caches of the first two entries
    and the latest ``window - 3``, then appends its own; once the list holds
    ``2 * (window - overlap) - (overlap - interp)`` entries (42 for 32/10/8), the second entry
    is dropped before each append, so the list (and the memory) stays bounded.
    """

    def __init__(self, window: int = NUM_FRAMES, overlap: int = 10, interp: int = 8, concat=None):
        self.window = window
        self.limit = 2 * (window - overlap) - (overlap - interp)
        self.frames = 0
        self.entries: list[list[torch.Tensor]] = []
        #: joins states along the frame axis (``torch.cat(..., dim=1)``; the MLX network passes its own)
        self.concat = concat or (lambda states: torch.cat(states, dim=1))

    def context(self) -> list[torch.Tensor] | None:
        """The hidden states the next frame attends to, one tensor per temporal attention
        (``(pixels, window - 1, C)``), or None before the first frame."""
        if not self.entries:
            return None
        chosen = self.entries[:2] + self.entries[-(self.window - 3):]
        return [self.concat([entry[i] for entry in chosen]) for i in range(len(chosen[0]))]

    def push(self, states: list[torch.Tensor]) -> None:
        if not self.entries:
            self.entries = [states] * self.window
        else:
            self.entries.append(states)
        if self.frames + self.window > self.limit:
            del self.entries[1]
        self.frames += 1


class VideoDepthAnything(nn.Module):
    """DINOv2 + the temporal DPT head; see the module docstring for the calling convention."""

    extra_outputs = False
    #: clip-level inference applies (:mod:`localdepth.video.temporal`)
    temporal = True

    def __init__(self, config: VDAConfig):
        super().__init__()
        self.config = config
        self.pretrained = DinoVisionTransformer(config.vit)
        self.head = TemporalDPTHead(config.vit.embed_dim, config.features, config.out_channels, config.num_frames)

    def encode(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The encoder's features of frames ``(N, 3, h, w)`` (the DINOv2 layers the head reads)."""
        return self.pretrained.get_intermediate_layers(x, self.config.layers)

    def _depth(self, x: torch.Tensor, frames: int, cached: list | None = None, encoder=None):
        """``(B*T, 3, h, w)`` -> depth ``(B*T, h, w)`` and the temporal states. ``encoder``: what
        computes :meth:`encode` (a CUDA graph replay of it when streaming with CUDA graphs)."""
        height, width = x.shape[-2:]
        patch = self.config.vit.patch_size
        features = (encoder or self.encode)(x)
        depth, states = self.head(features, height // patch, width // patch, frames, cached)
        depth = F.interpolate(depth, size=(height, width), mode="bilinear", align_corners=True)
        return F.relu(depth).squeeze(1), states

    def forward(self, pixel_values: torch.Tensor, **conditioning) -> dict[str, torch.Tensor]:
        if pixel_values.dim() == 4:
            return {"depth": self._depth(pixel_values, 1)[0]}
        clips, frames = pixel_values.shape[:2]
        if frames > self.config.num_frames:
            raise ValueError(f"a clip holds at most {self.config.num_frames} frames, got {frames}")
        depth, _ = self._depth(pixel_values.flatten(0, 1), frames)
        return {"depth": depth.unflatten(0, (clips, frames))}

    def new_stream(self) -> StreamState:
        return StreamState(self.config.num_frames)

    def stream_step(self, pixel_values: torch.Tensor, state: StreamState, encoder=None) -> torch.Tensor:
        """One frame ``(1, 3, h, w)`` of a stream -> its depth ``(1, h, w)``; updates ``state``.
        ``encoder``: as for :meth:`_depth`."""
        depth, states = self._depth(pixel_values, 1, state.context(), encoder)
        state.push(states)
        return depth


# ----------------------------------------------------------------------------- loading

def _matching_size(config: VDAConfig) -> str | None:
    return next((name for name, row in SIZES.items() if replace(row, num_frames=config.num_frames) == config), None)


def load(spec: ModelSpec, path: Path, *, device: str = "cpu", dtype=torch.float32) -> VideoDepthAnything:
    """Build the network a checkpoint describes and load it strictly.

    ``path``: the released ``.pth`` (read with ``weights_only=True``) or its safetensors
    conversion. The network is first built on the meta device (no memory) and checked
    (:mod:`.checks`): its size against the entry and the ceiling, then every tensor's name and
    shape, so a small file of empty tensors that describes a huge network allocates nothing. A
    checkpoint of a released size other than the entry's is refused (the entry's licence and name
    would be wrong); other shapes (small test models) are built as described.
    """
    from ..checkpoints import read_state_dict
    from . import checks

    state = read_state_dict(path)
    try:
        config = VDAConfig.from_state_dict(state)
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None
    size = _matching_size(config)
    if size is not None and spec.architecture and size != spec.architecture:
        right = [s.name for s in MODELS.values() if s.family == spec.family and s.architecture == size]
        hint = f"use --model {right[0]}" if right else "use the entry of that size"
        raise WeightsError(f"{path} holds a {size} checkpoint, not the {spec.architecture} of {spec.name}; {hint}")
    with torch.device("meta"):
        network = VideoDepthAnything(config)
    checks.check_size(spec, checks.count_parameters(network), str(path))
    expected = network.state_dict()
    checks.check_weights(spec, str(path), expected, missing=set(expected) - set(state),
                         unexpected=set(state) - set(expected),
                         mismatched=[(k, state[k].shape, v.shape) for k, v in expected.items()
                                     if k in state and state[k].shape != v.shape])
    network = network.to_empty(device="cpu")
    network.load_state_dict(state, strict=True)
    network = network.to(device=device, dtype=dtype)
    network.head.scratch.output_conv2.float()  # the last convolutions stay float32 (see DPTHead.finish)
    return network
