"""The official Depth Anything 3 code as a test oracle (../shared/reference/depth-anything-3).

``official()`` imports it (skipping the test when it is absent) after putting small stand-ins
in ``sys.modules`` for what it imports but never uses on these paths: ``torchvision.transforms``
(the input processor uses ``ToTensor``, ``Normalize``, ``CenterCrop``; the stand-ins do the same
arithmetic), and ``moviepy``, ``evo``, ``pycolmap``, ``trimesh``, ``plyfile`` (export and pose
alignment only). Nothing here is imported by the package.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED

REFERENCE = SHARED / "reference" / "depth-anything-3" / "src"


def _module(name: str, **attrs) -> types.ModuleType:
    module = sys.modules.get(name) or types.ModuleType(name)
    for k, v in attrs.items():
        setattr(module, k, v)
    sys.modules[name] = module
    return module


def _missing(name: str) -> bool:
    """Stand in only for a package that is not installed: a real one (trimesh, pycolmap in the test
    extra) must stay importable for the tests that use it after this oracle was loaded."""
    import importlib.util

    if name in sys.modules:
        return False
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def _install_standins() -> list[str]:
    """Install the stand-ins; returns the names of those that must leave ``sys.modules`` again once
    the reference is imported (a fake torchvision would mislead Transformers' availability checks)."""
    import torch

    class ToTensor:
        def __call__(self, pic):
            return torch.from_numpy(np.asarray(pic, dtype=np.float32).transpose(2, 0, 1) / 255.0)

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

        def __call__(self, t):
            return (t - self.mean) / self.std

    class CenterCrop:
        def __init__(self, size):
            self.size = size

        def __call__(self, t):  # torchvision's rounding of the corner
            (h, w), (th, tw) = t.shape[-2:], self.size
            top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
            return t[..., top:top + th, left:left + tw]

    transient = []
    if _missing("torchvision"):
        tv = _module("torchvision")
        tv.transforms = _module("torchvision.transforms", ToTensor=ToTensor, Normalize=Normalize, CenterCrop=CenterCrop)
        transient = ["torchvision", "torchvision.transforms"]
    if _missing("moviepy"):
        _module("moviepy.editor")
        _module("moviepy", editor=sys.modules["moviepy.editor"])
    for name in ("pycolmap", "trimesh"):
        if _missing(name):
            _module(name)
    if _missing("plyfile"):
        _module("plyfile", PlyData=object, PlyElement=object)
    if _missing("evo"):
        _module("evo.core.trajectory", PosePath3D=object)
        _module("evo.core", trajectory=sys.modules["evo.core.trajectory"])
        _module("evo", core=sys.modules["evo.core"])
    return transient


def official():
    """The ``depth_anything_3`` package, or skip."""
    if not REFERENCE.is_dir():
        pytest.skip(f"{REFERENCE} is absent (the official Depth Anything 3 code, a test oracle)")
    for dep in ("einops", "addict", "omegaconf", "imageio", "cv2"):
        pytest.importorskip(dep, reason=f"the official Depth Anything 3 code needs {dep}")
    transient = _install_standins()
    if str(REFERENCE) not in sys.path:
        sys.path.insert(0, str(REFERENCE))
    try:
        import depth_anything_3.api  # noqa: F401
    finally:
        for name in transient:  # the reference keeps its own reference to the stand-in
            sys.modules.pop(name, None)
    from depth_anything_3.utils.logger import logger

    logger.level = 100  # quiet: the reference logs every step at INFO
    return sys.modules["depth_anything_3"]


def randomize_(model, seed: int = 0) -> None:
    """Give every constant-initialised parameter random values, so no parameter is a no-op in a test:
    DINOv2 starts position embedding, class token and biases at 0 and LayerNorm/LayerScale at 1,
    where mixing them up would go unnoticed. Also lifts the camera decoder's readouts so the random
    network predicts a usable camera (a positive field of view near 1 rad, a rotation near identity)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("pos_embed", "cls_token", "camera_token")):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif p.numel() > 1 and float(p.std()) == 0.0 or p.numel() == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        for name, m in model.named_modules():
            if name.endswith("cam_dec"):
                m.fc_fov[0].weight.mul_(0.05)
                m.fc_fov[0].bias.copy_(torch.tensor([1.0, 1.2]))
                m.fc_qvec.weight.mul_(0.05)
                m.fc_qvec.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))


def official_model(model_name: str, seed: int = 0):
    """``DepthAnything3(model_name)`` with seeded random weights (see :func:`randomize_`), in eval mode."""
    import torch

    da3 = official()
    torch.manual_seed(seed)
    model = da3.api.DepthAnything3(model_name=model_name).eval()
    randomize_(model, seed)
    return model


def save_official(model, folder: Path) -> Path:
    """The official ``save_pretrained``: the Hub format (``config.json`` with ``model_name``, ``model.safetensors``)."""
    model.save_pretrained(str(folder))
    return folder


def official_tiny(arch, seed: int = 0):
    """The official network classes at a tiny size (``arch``: a localdepth ``Architecture`` row)."""
    import torch

    da3 = official()
    from depth_anything_3.model.cam_dec import CameraDec
    from depth_anything_3.model.cam_enc import CameraEnc
    from depth_anything_3.model.da3 import DepthAnything3Net
    from depth_anything_3.model.dinov2.dinov2 import DinoV2
    from depth_anything_3.model.dinov2.vision_transformer import DinoVisionTransformer
    from depth_anything_3.model.dpt import DPT
    from depth_anything_3.model.dualdpt import DualDPT

    assert da3
    torch.manual_seed(seed)
    backbone = DinoV2("vits", out_layers=list(arch.out_layers), alt_start=arch.alt_start,
                      qknorm_start=arch.qknorm_start, rope_start=arch.rope_start, cat_token=arch.cat_token)
    backbone.pretrained = DinoVisionTransformer(
        img_size=518, patch_size=14, embed_dim=arch.embed_dim, depth=arch.depth, num_heads=arch.num_heads,
        mlp_ratio=4, ffn_layer="swiglufused" if arch.ffn == "swiglu" else "mlp", alt_start=arch.alt_start,
        qknorm_start=arch.qknorm_start, rope_start=arch.rope_start, cat_token=arch.cat_token)
    if arch.head == "dualdpt":
        head = DualDPT(arch.head_dim_in, output_dim=2, features=arch.head_features,
                       out_channels=list(arch.head_out_channels))
    else:
        head = DPT(arch.head_dim_in, output_dim=1, features=arch.head_features,
                   out_channels=list(arch.head_out_channels))
    cameras = (CameraDec(dim_in=arch.head_dim_in), CameraEnc(dim_out=arch.embed_dim)) if arch.camera else (None, None)
    net = DepthAnything3Net(backbone, head, *cameras).eval()
    randomize_(net, seed)
    return net


def no_autocast():
    """A stand-in for ``torch.autocast`` that does nothing: runs the official ``inference()`` in fp32
    (it asks for fp16 autocast on a CPU without bf16 CUDA)."""
    import contextlib

    def autocast(*args, **kwargs):
        return contextlib.nullcontext()

    return autocast
