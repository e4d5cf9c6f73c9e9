"""The official Video Depth Anything code as a test oracle (../shared/reference/video-depth-anything).

Imported by the tests only, never by the package. The reference imports
``torchvision.transforms.Compose`` (a list of callables applied in turn) and prints a line when
xFormers is absent; a small stand-in module replaces torchvision while the reference is
imported (then it is removed again: other libraries probe for torchvision), so that it need not
be installed (it pulls CUDA wheels).

Random weights: the official initialisation zeroes the motion modules' output projections, so
a freshly built model ignores time entirely; :func:`randomize` gives them random weights too,
and standardises the last two convolutions so the random network's depth is positive with a
visible spread (ReLU would otherwise zero most or all of it), as tests/conftest.py does for
Depth Anything.
"""

from __future__ import annotations

import contextlib
import io
import sys
from functools import partial

import pytest
from conftest import SHARED
from da2_reference import _torchvision_stand_in

REFERENCE = SHARED / "reference" / "video-depth-anything"

#: a tiny architecture of the same family: a 12-block, 64-wide DINOv2 (one 64-channel head, as
#: every DINOv2 size has) and a narrow head; the real sizes are rows of localdepth's table
TINY = {"embed_dim": 64, "features": 32, "out_channels": [32, 32, 64, 64]}
SMALL = {"encoder": "vits", "features": 64, "out_channels": [48, 96, 192, 384]}


def reference():
    """``(offline module, streaming module)`` of the official code; skips when it is absent."""
    if not (REFERENCE / "video_depth_anything" / "video_depth.py").is_file():
        pytest.skip(f"{REFERENCE} is absent (the official code lives in ../shared/reference)")
    pytest.importorskip("einops")
    pytest.importorskip("easydict")
    stand_ins = _torchvision_stand_in()  # only when torchvision is not installed
    sys.modules.update(stand_ins)
    if str(REFERENCE) not in sys.path:
        sys.path.insert(0, str(REFERENCE))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "xFormers not available"
            import video_depth_anything.video_depth as offline
            import video_depth_anything.video_depth_stream as stream
    finally:
        for key in stand_ins:  # the reference holds Compose now; other code must not see a fake torchvision
            sys.modules.pop(key, None)
    return offline, stream


def build(kind: str = "small", *, streaming: bool = False, metric: bool = False, seed: int = 0, lift_size=(42, 56)):
    """An official model (``small``: the real ViT-S architecture; ``tiny``: :data:`TINY`) with
    random weights everywhere (see the module docstring), in eval mode."""
    import torch

    offline, stream = reference()
    torch.manual_seed(seed)
    cls = stream.VideoDepthAnything if streaming else offline.VideoDepthAnything
    extra = {} if streaming else {"metric": metric}
    if kind == "small":
        model = cls(**SMALL, **extra)
    else:
        from video_depth_anything.dinov2 import DinoVisionTransformer
        from video_depth_anything.dinov2_layers import MemEffAttention, NestedTensorBlock
        from video_depth_anything.dpt_temporal import DPTHeadTemporal

        model = cls(encoder="vits", features=TINY["features"], out_channels=TINY["out_channels"], **extra)
        model.pretrained = DinoVisionTransformer(
            img_size=518, patch_size=14, embed_dim=TINY["embed_dim"], depth=12, num_heads=TINY["embed_dim"] // 64,
            mlp_ratio=4, block_fn=partial(NestedTensorBlock, attn_class=MemEffAttention), init_values=1.0,
            ffn_layer="mlp", block_chunks=0, num_register_tokens=0, interpolate_antialias=False,
            interpolate_offset=0.1)
        model.head = DPTHeadTemporal(TINY["embed_dim"], TINY["features"], False, out_channels=TINY["out_channels"],
                                     use_clstoken=False, num_frames=32, pe="ape")
    randomize(model, seed, lift_size)
    return model.eval()


def randomize(model, seed: int, lift_size=(42, 56)) -> None:
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "proj_out" in name:  # zero-initialised by the official code
                bound = 1.0 / p.shape[-1] ** 0.5
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    # the head's last two convolutions, standardised per channel on a random clip: the hidden
    # one to mean 0.5 (ReLU keeps most of it), the output to mean 4 and spread 1
    head = model.head.scratch.output_conv2
    for conv, centre in ((head[0], 0.5), (head[2], 4.0)):
        captured = {}
        hook = conv.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
        with torch.no_grad():
            model(torch.randn(1, 4, 3, *lift_size, generator=g))
        hook.remove()
        out = captured["out"].transpose(0, 1).flatten(1)  # (channels, samples)
        mean, std = out.mean(dim=1), out.std(dim=1)
        std = std.clamp_min(0.1 * float(std.max()) + 1e-12)  # a near-constant channel is not blown up
        with torch.no_grad():
            conv.weight /= std[:, None, None, None]
            conv.bias.copy_((conv.bias - mean) / std + centre)


def save_checkpoint(model, path):
    """The model's state dict as a ``.pth``, the way the released checkpoints are stored."""
    import torch

    torch.save(model.state_dict(), path)
    return path
