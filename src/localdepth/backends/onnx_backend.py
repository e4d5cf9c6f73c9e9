"""ONNX Runtime: exported models (see :mod:`localdepth.conversion.onnx`) on the CPU or a CUDA GPU.

The session is configured by :func:`localdepth.runtimes.onnx_session`. On CUDA
(``onnxruntime-gpu``), inputs and outputs go through I/O binding, so the output stays on the GPU
until the one copy back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runtimes import onnx_session
from .base import Backend


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, model_path: Path, *, device: str = "auto", dtype: str = "fp32",
                 threads: int | None = None):
        self.session = onnx_session(model_path, device=device, threads=threads)
        self.device = self.session.localdepth_device
        self.threads = self.session.localdepth_threads
        self.dtype = dtype
        self.model_path = Path(model_path)
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name
        self._device_index = int(self.device.split(":")[1]) if self.device.startswith("cuda") else 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if not self.device.startswith("cuda"):
            out = self.session.run([self._output], {self._input: x})[0]
        else:
            import onnxruntime as ort

            binding = self.session.io_binding()
            binding.bind_ortvalue_input(self._input, ort.OrtValue.ortvalue_from_numpy(x, "cuda", self._device_index))
            binding.bind_output(self._output, "cuda", self._device_index)
            self.session.run_with_iobinding(binding)
            out = binding.copy_outputs_to_cpu()[0]
        if out.ndim == 4:  # (N, 1, h, w) graphs
            out = out[:, 0]
        return np.asarray(out, dtype=np.float32)

    def describe(self) -> dict:
        return {**super().describe(), "onnx_model": self.model_path.name, "threads": self.threads}

    def close(self) -> None:
        self.session = None
