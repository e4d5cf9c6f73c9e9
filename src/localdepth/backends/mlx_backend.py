"""MLX: localdepth's MLX networks (:mod:`localdepth.networks.mlx`) on Apple silicon's GPU, or the CPU.

Takes and returns the arrays every backend does (NCHW float32 batches in, maps out): pre- and
postprocessing are the shared ones. The weights are the MLX conversion of the entry's own files
(:mod:`localdepth.conversion.mlx`, made once and cached); fp16 and bf16 cast them at load. On
Linux, MLX's CPU build (``mlx[cpu]``) runs the same code, slowly but exactly: it is what the tests
compare with PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendError
from ..registry import ModelSpec
from .base import Backend, NetworkOutput, Stream

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def import_mlx():
    """``mlx.core``, or one line saying how to install it (a missing or broken install alike)."""
    try:
        import mlx.core as mx
        import mlx.nn  # noqa: F401 - the networks need it
    except (ImportError, OSError) as e:
        from ..runtimes import install_message

        raise BackendError(f"{install_message('mlx')} ({str(e).strip().splitlines()[0][:120] if str(e) else e!r})") \
            from None
    return mx


def pick_device(device: str = "auto") -> str:
    """``gpu`` (Metal) for ``auto``, ``gpu`` or ``mps`` where MLX has a GPU; ``cpu`` for ``cpu``
    and for ``auto`` elsewhere."""
    mx = import_mlx()
    has_gpu = mx.is_available(mx.gpu)
    if device in ("gpu", "mps"):
        if not has_gpu:
            raise BackendError("MLX has no GPU here (it uses Apple silicon's); use --device cpu")
        return "gpu"
    if device in ("auto", "cpu"):
        return "gpu" if device == "auto" and has_gpu else "cpu"
    raise BackendError(f"the MLX backend runs on Apple silicon's GPU or the CPU, not '{device}'; "
                       "use --device auto, gpu or cpu")


class MLXBackend(Backend):
    name = "mlx"

    def __init__(self, spec: ModelSpec, folder: Path, *, device: str = "auto", dtype: str = "fp32"):
        mx = import_mlx()
        from ..networks.mlx import load

        if dtype not in _DTYPES:
            raise BackendError(f"the mlx backend runs fp32, fp16 or bf16, not {dtype}")
        self.spec = spec
        self.device = pick_device(device)
        self.dtype = dtype
        self._mx = mx
        self._device = mx.gpu if self.device == "gpu" else mx.cpu
        self._mx_dtype = getattr(mx, _DTYPES[dtype])
        #: the MLX network; NHWC inside, NCHW at this backend's edges
        self.model = load(Path(folder).parent if Path(folder).is_file() else Path(folder), dtype=self._mx_dtype)

    def _input(self, batch: np.ndarray):
        layout = (0, 2, 3, 1) if batch.ndim == 4 else (0, 1, 3, 4, 2)  # images, or clips (B, T, 3, h, w)
        return self._mx.array(np.ascontiguousarray(batch.transpose(layout), dtype=np.float32)).astype(self._mx_dtype)

    def _output(self, array) -> np.ndarray:
        return np.array(array.astype(self._mx.float32))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.run(batch).depth

    def run(self, batch: np.ndarray, **conditioning) -> NetworkOutput:
        mx = self._mx
        options = {}
        for key, value in conditioning.items():
            if key == "same_scene" and not isinstance(value, np.ndarray):
                if getattr(self.model, "takes_same_scene", False):
                    options[key] = bool(value)
                    continue
                if not value:
                    continue
            raise BackendError(f"the mlx backend does not take {key}; use --backend torch")
        with mx.stream(self._device):
            out = self.model(self._input(batch), **options)["depth"]
            mx.eval(out)
        return NetworkOutput(depth=self._output(out))

    def open_stream(self) -> Stream:
        if not hasattr(self.model, "stream_step"):
            raise BackendError("this model predicts each frame on its own; it has no streaming state")
        return _MLXStream(self)

    def close(self) -> None:
        self.model = None
        self._mx.clear_cache()


class _MLXStream(Stream):
    """The network's cached temporal states (MLX arrays on the backend's device) and the per-frame step."""

    def __init__(self, backend: MLXBackend):
        self.backend = backend
        self.state = backend.model.new_stream()

    def step(self, frame: np.ndarray) -> np.ndarray:
        mx = self.backend._mx
        with mx.stream(self.backend._device):
            depth = self.backend.model.stream_step(self.backend._input(frame), self.state)
        return self.backend._output(depth)
