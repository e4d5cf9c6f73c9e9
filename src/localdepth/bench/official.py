"""The official Depth Anything V2 code as a benchmark baseline, from a folder the user names.

``localdepth bench --reference-code PATH`` (a checkout of the official repository: PATH holds the
``depth_anything_v2`` package) measures the authors' ``DepthAnythingV2.infer_image`` on the same
random weights as every other row. localdepth never looks for that code by itself: it is imported
from the given folder only, under a private module name, and its one import of torchvision (for
``Compose``) is served by a small stand-in when torchvision is not installed.

The weights are converted between the official names and Transformers' with the renaming of
Transformers' own conversion script (``convert_depth_anything_to_hf.py``, with Transformers 5's
``q_proj/k_proj/v_proj/o_proj`` attention names): :func:`official_to_transformers` and its inverse.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

from ..errors import LocalDepthError

#: the official constructor's arguments for the released sizes (its run.py's ``model_configs``)
OFFICIAL_CONFIGS = {
    "small": {"encoder": "vits", "features": 64, "out_channels": [48, 96, 192, 384]},
    "base": {"encoder": "vitb", "features": 128, "out_channels": [96, 192, 384, 768]},
    "large": {"encoder": "vitl", "features": 256, "out_channels": [256, 512, 1024, 1024]},
}

_SIMPLE = [
    ("pretrained.cls_token", "backbone.embeddings.cls_token"),
    ("pretrained.mask_token", "backbone.embeddings.mask_token"),
    ("pretrained.pos_embed", "backbone.embeddings.position_embeddings"),
    ("pretrained.patch_embed.proj.", "backbone.embeddings.patch_embeddings.projection."),
    ("pretrained.norm.", "backbone.layernorm."),
    ("depth_head.scratch.output_conv1.", "head.conv1."),
    ("depth_head.scratch.output_conv2.0.", "head.conv2."),
    ("depth_head.scratch.output_conv2.2.", "head.conv3."),
]
_BLOCK = {"ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1",
          "attn.proj.weight": "attention.o_proj.weight", "attn.proj.bias": "attention.o_proj.bias"}
_FUSION = (("out_conv", "projection"), ("resConfUnit1.conv1", "residual_layer1.convolution1"),
           ("resConfUnit1.conv2", "residual_layer1.convolution2"),
           ("resConfUnit2.conv1", "residual_layer2.convolution1"),
           ("resConfUnit2.conv2", "residual_layer2.convolution2"))


def transformers_names(key: str) -> list[str]:
    """The Transformers name(s) of one official parameter: one name, or three for a fused ``qkv``
    (split into ``q_proj``, ``k_proj``, ``v_proj`` along the output dimension)."""
    for old, new in _SIMPLE:
        if key.startswith(old):
            return [new + key[len(old):]]
    parts = key.split(".")
    if key.startswith("pretrained.blocks."):
        i, rest = parts[2], ".".join(parts[3:])
        prefix = f"backbone.encoder.layer.{i}."
        if rest.startswith("attn.qkv."):
            return [f"{prefix}attention.{n}.{parts[-1]}" for n in ("q_proj", "k_proj", "v_proj")]
        return [prefix + _BLOCK.get(rest, rest)]
    if key.startswith("depth_head.projects."):
        return [f"neck.reassemble_stage.layers.{parts[2]}.projection.{parts[3]}"]
    if key.startswith("depth_head.resize_layers."):
        return [f"neck.reassemble_stage.layers.{parts[2]}.resize.{parts[3]}"]
    if key.startswith("depth_head.scratch.layer") and "_rn" in key:
        i = int(parts[2][len("layer"):-len("_rn")]) - 1
        return [f"neck.convs.{i}.{parts[3]}"]
    if key.startswith("depth_head.scratch.refinenet"):
        j = 4 - int(parts[2][len("refinenet"):])  # refinenet1..4 -> fusion layers 3..0
        rest = ".".join(parts[3:])
        for old, new in _FUSION:
            if rest.startswith(old):
                return [f"neck.fusion_stage.layers.{j}.{new}{rest[len(old):]}"]
    raise KeyError(f"no Transformers name for {key}")


def official_to_transformers(state: dict) -> dict:
    """An official state dict -> the same tensors under Transformers' names."""
    out = {}
    for key, value in state.items():
        names = transformers_names(key)
        out.update(zip(names, value.chunk(len(names), dim=0)) if len(names) > 1 else {names[0]: value})
    return out


def transformers_to_official(official_keys, hf_state: dict) -> dict:
    """Transformers' tensors -> a state dict with the official names ``official_keys`` (a fused
    ``qkv`` is the concatenation of ``q_proj``, ``k_proj``, ``v_proj``)."""
    import torch

    out = {}
    for key in official_keys:
        names = transformers_names(key)
        missing = [n for n in names if n not in hf_state]
        if missing:
            raise LocalDepthError(f"the weights have no tensor {missing[0]} for the official {key}")
        out[key] = torch.cat([hf_state[n] for n in names]) if len(names) > 1 else hf_state[names[0]]
    return out


def torchvision_stand_in() -> dict[str, types.ModuleType]:
    """Modules standing in for torchvision where it is not installed: the official dpt.py imports
    ``torchvision.transforms.Compose`` (a list of callables applied in turn) and nothing else."""
    if importlib.util.find_spec("torchvision") is not None:
        return {}

    class Compose:
        def __init__(self, transforms):
            self.transforms = transforms

        def __call__(self, sample):
            for t in self.transforms:
                sample = t(sample)
            return sample

    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    transforms.Compose = Compose
    tv.transforms = transforms
    return {"torchvision": tv, "torchvision.transforms": transforms}


def import_official(root: str | Path) -> types.ModuleType:
    """The official ``depth_anything_v2.dpt`` module from a checkout at ``root`` (imported under a
    private name; the torchvision stand-in is removed again afterwards)."""
    folder = Path(root) / "depth_anything_v2"
    if not (folder / "dpt.py").is_file():
        raise LocalDepthError(f"{root} does not hold the official Depth Anything V2 code "
                              "(depth_anything_v2/dpt.py); give the repository's folder")
    name = "_localdepth_official_da2"
    if f"{name}.dpt" in sys.modules:
        return sys.modules[f"{name}.dpt"]
    spec = importlib.util.spec_from_loader(name, loader=None, is_package=True)
    package = importlib.util.module_from_spec(spec)
    package.__path__ = [str(folder)]
    stand_ins = torchvision_stand_in()
    sys.modules.update(stand_ins)
    sys.modules[name] = package
    try:
        return importlib.import_module(f"{name}.dpt")
    except ImportError as e:
        raise LocalDepthError(f"the official code at {root} cannot be imported: {e}") from None
    finally:
        for key in stand_ins:  # nothing else should see a fake torchvision
            sys.modules.pop(key, None)


def official_model(root: str | Path, size: str, hf_folder: Path, device: str = "cpu"):
    """The official ``DepthAnythingV2`` of a released ``size`` with the weights of a Transformers
    folder (the same random weights the other rows run), fp32 as ``infer_image`` runs, in eval mode."""
    import torch
    from transformers import AutoModelForDepthEstimation

    dpt = import_official(root)
    model = dpt.DepthAnythingV2(**OFFICIAL_CONFIGS[size])
    # Transformers' in-memory names (its files may keep older ones, converted on loading)
    hf_state = AutoModelForDepthEstimation.from_pretrained(str(hf_folder)).state_dict()
    state = transformers_to_official(model.state_dict().keys(), hf_state)
    model.load_state_dict(state, strict=True)
    return model.to(device=device, dtype=torch.float32).eval()
