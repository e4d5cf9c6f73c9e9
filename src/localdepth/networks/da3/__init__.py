"""Depth Anything 3 (Lin et al., 2025), written for localdepth and loading the released checkpoints unchanged.

One design in several sizes (rows of :data:`~localdepth.networks.da3.config.ARCHITECTURES`):

* :mod:`.backbone`: DINOv2 with 2-D RoPE, QK-norm and, from a configured block on, attention
  alternating within each view and across all views, with a camera token per view;
* :mod:`.heads`: the DualDPT head (depth + confidence, rays + confidence) or, for Mono and
  Metric, the DPT head (depth + sky);
* :mod:`.camera`: the camera decoder (token -> pose and field of view) and encoder (known
  cameras -> tokens);
* :mod:`.network`: all of it in localdepth's calling convention.

Checkpoints: the Hub folder format that the official ``DepthAnything3.from_pretrained`` reads
(``config.json`` with ``model_name``, ``model.safetensors``), or a ``.safetensors`` file with
the same keys (the official wrapper's ``model.`` prefix optional). Loading is strict:
a file whose keys or shapes differ is refused with one line naming the first differing key. The
Gaussian-splatting head that the Giant checkpoint carries (``gs_head.*``) is out of scope and
skipped. No xformers, torchvision or upstream helpers: attention is PyTorch SDPA.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ...errors import BackendError
from ...registry import ModelSpec
from .config import ARCHITECTURES, architecture
from .network import DepthAnything3Network

__all__ = ["ARCHITECTURES", "DepthAnything3Network", "build", "load", "load_checkpoint"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_WRAPPER_PREFIX = "model."  # the official DepthAnything3 holds the network as `.model`
_SKIPPED_PREFIXES = ("gs_head.", "gs_adapter.")  # 3D Gaussian splatting: not built here


def build(model_name: str, *, device: str | torch.device = "cpu") -> DepthAnything3Network:
    """A randomly initialised network of an official ``model_name`` (``da3-small``...)."""
    return DepthAnything3Network(architecture(model_name), model_name).to(device)


def _aliases(network: torch.nn.Module) -> dict[str, list[str]]:
    """Each state-dict key -> the other keys of the same tensor (modules shared between places)."""
    groups: dict[int, list[str]] = {}
    for name, tensor in {**dict(network.named_parameters(remove_duplicate=False)),
                         **dict(network.named_buffers(remove_duplicate=False))}.items():
        groups.setdefault(id(tensor), []).append(name)
    return {name: [n for n in names if n != name] for names in groups.values() for name in names}


def load_checkpoint(network: DepthAnything3Network, state: dict[str, torch.Tensor], label: str = "checkpoint") -> None:
    """Load ``state`` into ``network`` strictly: every key present with its shape, no other key.

    The official wrapper's ``model.`` prefix is dropped, ``gs_head.*`` is skipped, and a tensor
    saved once for several places (safetensors keeps shared tensors once) fills all of them.
    Raises :class:`BackendError` naming the first differing key.
    """
    if state and all(k.startswith(_WRAPPER_PREFIX) for k in state):
        state = {k[len(_WRAPPER_PREFIX):]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(_SKIPPED_PREFIXES)}
    expected = network.state_dict()
    aliases = _aliases(network)
    for key in expected:
        if key not in state:
            twin = next((a for a in aliases.get(key, ()) if a in state), None)
            if twin is None:
                raise BackendError(f"{label} does not match {network.model_name or 'the architecture'}: "
                                   f"first differing key '{key}' is missing")
            state[key] = state[twin]
        if tuple(state[key].shape) != tuple(expected[key].shape):
            got, want = tuple(state[key].shape), tuple(expected[key].shape)
            raise BackendError(f"{label} does not match {network.model_name or 'the architecture'}: first differing "
                               f"key '{key}' has shape {got}, expected {want}")
    extra = next((k for k in state if k not in expected), None)
    if extra is not None:
        raise BackendError(f"{label} does not match {network.model_name or 'the architecture'}: "
                           f"first differing key '{extra}' is unexpected")
    network.load_state_dict(state, strict=True)


def _read_model_name(folder: Path, default: str | None) -> str:
    config = folder / CONFIG_NAME
    if not config.is_file():
        if default is None:
            raise BackendError(f"{folder} has no {CONFIG_NAME} naming its model_name")
        return default
    try:
        name = json.loads(config.read_text()).get("model_name")
    except (OSError, ValueError, AttributeError) as e:
        raise BackendError(f"{config} is not a Depth Anything 3 config ({e})") from None
    if name not in ARCHITECTURES:
        raise BackendError(f"{config} names model_name '{name}', not one of {', '.join(ARCHITECTURES)}")
    return name


def load(spec: ModelSpec, path: Path, *, device: str = "cpu", dtype=torch.float32) -> DepthAnything3Network:
    """Load ``spec``'s network from a Hub-format folder or a weights file.

    The backbone runs in ``dtype``; the heads and the camera decoder stay in fp32 (upstream runs
    them with autocast off).
    """
    from safetensors.torch import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    model_name = _read_model_name(folder, spec.architecture) if path.is_dir() else spec.architecture
    if spec.architecture and model_name != spec.architecture:
        entry = next((n for n, a in ((s.name, s.architecture) for s in _registry_specs()) if a == model_name), None)
        hint = f"; use --model {entry}" if entry else ""
        raise BackendError(f"{path} holds {model_name} weights, not {spec.architecture} ({spec.name}){hint}")
    if not weights.is_file():
        raise BackendError(f"{folder} has no {WEIGHTS_NAME}")
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors and torch raise their own types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError(f"cannot read {weights}: {first[:200]}") from None
    with torch.device("meta"):
        network = DepthAnything3Network(architecture(model_name), model_name)
    from ..checks import check_size, count_parameters

    check_size(spec, count_parameters(network), str(weights))  # a row of the table: the entry's own size
    network = network.to_empty(device="cpu")
    load_checkpoint(network, state, label=str(weights))
    network.backbone.to(dtype)
    return network.to(device).eval()


def _registry_specs():
    from ... import registry

    return registry.MODELS.values()
