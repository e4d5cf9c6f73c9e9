"""ONNX Runtime: exported models (see :mod:`localdepth.conversion.onnx`) on the CPU or a CUDA GPU.

The session is configured by :func:`localdepth.runtimes.onnx_session`. On CUDA
(``onnxruntime-gpu``), inputs and outputs go through I/O binding, so the output stays on the GPU
until the one copy back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runtimes import onnx_session
from .base import Backend, NetworkOutput, named_outputs


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
        #: the graph's outputs by name: ``depth`` first (localdepth's exports), or one unnamed map
        self._outputs = [o.name for o in self.session.get_outputs()]
        self._device_index = int(self.device.split(":")[1]) if self.device.startswith("cuda") else 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.run(batch).depth

    def run(self, batch: np.ndarray, **conditioning: np.ndarray) -> NetworkOutput:
        if conditioning:
            return super().run(batch, **conditioning)  # refuses, with what to do instead
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if not self.device.startswith("cuda"):
            outs = self.session.run(self._outputs, {self._input: x})
        else:
            import onnxruntime as ort

            binding = self.session.io_binding()
            binding.bind_ortvalue_input(self._input, ort.OrtValue.ortvalue_from_numpy(x, "cuda", self._device_index))
            for name in self._outputs:
                binding.bind_output(name, "cuda", self._device_index)
            self.session.run_with_iobinding(binding)
            outs = binding.copy_outputs_to_cpu()
        arrays = dict(zip(self._outputs, outs))
        return named_outputs(arrays.get("depth", outs[0]), arrays)

    def describe(self) -> dict:
        return {**super().describe(), "onnx_model": self.model_path.name, "threads": self.threads}

    def close(self) -> None:
        self.session = None
