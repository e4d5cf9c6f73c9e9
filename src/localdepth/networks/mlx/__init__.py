"""The networks MLX runs (Apple silicon's GPU, or the CPU), written with ``mlx.core`` and
``mlx.nn``: one DINOv2 (:mod:`.dinov2`) and one DPT front (:mod:`.dpt`), shared by every design
as on the PyTorch side, with the official parameter names:

* ``depth-anything``: Depth Anything V1 and V2, relative and metric (:mod:`.depth_anything`);
* ``video-depth-anything``: Video Depth Anything, relative and metric, clips and streaming (:mod:`.vda`);
* ``depth-anything-3-mono``: Depth Anything 3 Mono and Metric, the single-view networks (:mod:`.da3`).

Weights are the files the PyTorch path reads; :func:`convert` turns them into MLX arrays once
(the conversion cache, :mod:`localdepth.conversion.mlx`): renamed to the official names,
convolutions in MLX's layout (``(out, kh, kw, in)``), float32, with a ``config.json`` naming the
design. :func:`load` builds the network from that folder.

Nothing here imports MLX until a network is built, so that :func:`design_of` (which models run
on MLX) serves the backend choice on machines without it.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from ...errors import WeightsError
from ...registry import ModelSpec

#: design -> module that builds it (``build(config)``) and reads its weights (``official_state(spec, path)``)
DESIGNS = {
    "depth-anything": "localdepth.networks.mlx.depth_anything",
    "video-depth-anything": "localdepth.networks.mlx.vda",
    "depth-anything-3-mono": "localdepth.networks.mlx.da3",
}
_DEPTH_ANYTHING_FAMILIES = ("depth-anything-v2", "depth-anything-v2-metric", "depth-anything-v1")
_DA3_SINGLE_VIEW = ("da3mono-large", "da3metric-large")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def design_of(spec: ModelSpec) -> str | None:
    """The MLX design that runs ``spec``, or None when MLX does not run it."""
    if spec.format == "transformers" and spec.family in _DEPTH_ANYTHING_FAMILIES:
        return "depth-anything"
    if spec.format == "vda":
        return "video-depth-anything"
    if spec.format == "da3" and spec.architecture in _DA3_SINGLE_VIEW:
        return "depth-anything-3-mono"
    return None


#: what MLX runs, for messages and docs
RUNS = ("Depth Anything V1 and V2 (relative and metric), Video Depth Anything (relative and metric) and "
        "Depth Anything 3 Mono and Metric")


def convert(spec: ModelSpec, path: Path, folder: Path) -> Path:
    """Write the MLX weights and configuration of ``spec``'s weights at ``path`` into ``folder``;
    returns the weights file. Strict: every tensor of the network present with its shape, no other."""
    import mlx.core as mx

    design = design_of(spec)
    if design is None:
        raise WeightsError(f"{spec.name} does not run on MLX; MLX runs {RUNS}")
    module = importlib.import_module(DESIGNS[design])
    config, state = module.official_state(spec, Path(path))
    arrays = mlx_arrays(module.build(config), state, f"{path} does not match the {design} network")
    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    mx.save_safetensors(str(weights), arrays)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return weights


def mlx_arrays(network, state: dict, label: str = "the weights do not match the network") -> dict:
    """``state`` (official names, PyTorch layouts, NumPy arrays) as the MLX arrays of ``network``'s
    parameters: every parameter present with its shape and no other tensor, or a
    :class:`WeightsError` naming the first differing key."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    expected = dict(tree_flatten(network.parameters()))
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    if missing or unknown:
        raise WeightsError(f"{label}: first differing key "
                           + (f"'{missing[0]}' is missing" if missing else f"'{unknown[0]}' is unexpected"))
    transposed = {name for name, m in network.named_modules() if isinstance(m, nn.ConvTranspose2d)}
    arrays = {}
    for key, value in state.items():
        value = np.asarray(value, dtype=np.float32)
        if value.ndim == 4:  # PyTorch (out, in, kh, kw), transposed convolutions (in, out, kh, kw)
            value = value.transpose(1, 2, 3, 0) if key.rsplit(".", 1)[0] in transposed else value.transpose(0, 2, 3, 1)
        if tuple(value.shape) != tuple(expected[key].shape):
            raise WeightsError(f"{label}: '{key}' has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
        arrays[key] = mx.array(np.ascontiguousarray(value))
    return arrays


def load(folder: Path, dtype=None):
    """The network saved by :func:`convert` in ``folder``, its weights cast to ``dtype``
    (an ``mlx.core`` dtype; default float32) where its design computes in that precision."""
    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
        module = importlib.import_module(DESIGNS[config["design"]])
    except (OSError, ValueError, KeyError) as e:
        raise WeightsError(f"{folder} is not an MLX conversion of localdepth ({e}); convert it again") from None
    network = module.build(config)
    network.load_weights(str(folder / WEIGHTS_FILE), strict=True)
    if dtype is not None:
        network.set_precision(dtype)
    network.eval()
    return network


__all__ = ["DESIGNS", "RUNS", "convert", "design_of", "load", "mlx_arrays"]
