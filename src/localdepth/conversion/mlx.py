"""MLX: the weights the PyTorch path reads -> MLX arrays for localdepth's MLX networks.

One conversion, ``fp32``: the tensors renamed to the official parameter names, convolutions
laid out as MLX takes them, saved as ``model.safetensors`` with the network's ``config.json``
(:func:`localdepth.networks.mlx.convert`). fp16 and bf16 are casts of it when the backend
loads (as OpenVINO's bf16 is a compile option of its fp32 model).

The result is compared with PyTorch fp32 before it is cached, at a small network input by
default (:data:`CHECK_SIZE`): the check is of the weights' names and layouts, which do not
depend on the size, and MLX's Linux CPU build is slow. ``--input-size`` checks at another.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runtimes import require as _require
from . import ConversionError
from .calibration import Parity
from .source import first_line

PRECISIONS = ("fp32",)
MODEL_FILE = "model.safetensors"
OPTIONS = {"fp32": {"converter": "localdepth.networks.mlx", "names": "official", "layout": "NHWC", "version": 1}}
#: relative to the output range, as the other fp32 conversions
TOLERANCES = {"fp32": {"max": 1e-3, "mean": 1e-4}}
#: default network input (long side about this) of the parity check
CHECK_SIZE = 140


def require() -> None:
    _require("mlx")


def run(network, x: np.ndarray, *, device=None) -> np.ndarray:
    """An MLX network's depth for ``x`` (NCHW float32, or clips ``(B, T, 3, h, w)``), as float32."""
    import mlx.core as mx

    layout = (0, 2, 3, 1) if x.ndim == 4 else (0, 1, 3, 4, 2)
    with mx.stream(device if device is not None else mx.default_device()):
        out = network(mx.array(np.ascontiguousarray(x.transpose(layout))))["depth"]
        mx.eval(out)
    return np.array(out.astype(mx.float32))


def make(job, folder: Path) -> dict:
    """Convert ``job`` into ``folder`` (``model.safetensors``, ``config.json``); returns the report."""
    import mlx.core as mx
    import torch

    from ..networks.mlx import convert, load

    spec = job.spec
    job.log(f"converting {spec.name} to MLX arrays ...")
    convert(spec, Path(job.weights.path), folder)  # strict: the first differing tensor is named
    _ = job.source.network  # the reference; a checkpoint PyTorch refuses is refused with its own line
    x, label = job.source.check_input(job.settings.input_size or CHECK_SIZE)
    reference = job.source.reference(x)["depth"]
    try:
        out = run(load(folder), x)
    except Exception as e:  # MLX raises its own types
        raise ConversionError(f"MLX cannot run {spec.name} on the check input {tuple(x.shape)}: "
                              f"{first_line(e)[:200]}") from None
    p = Parity.of("mlx fp32 vs PyTorch fp32", label, x, out, reference, TOLERANCES["fp32"])
    if not p.ok:
        raise ConversionError(f"refusing to cache the MLX conversion: {p.line()}")
    return {"outputs": ["depth"], "parity": p.as_dict(), "lines": [p.line()],
            "versions": {"torch": torch.__version__, "mlx": mx.__version__}}
