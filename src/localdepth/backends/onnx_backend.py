"""ONNX Runtime: exported models (see :mod:`localdepth.export`) on the CPU or a CUDA GPU.

On the CPU, intra-op threads default to the number of physical cores (hyper-threads share the
vector units a ViT saturates) and inter-op parallelism is off (the graph is one chain). On CUDA
(``onnxruntime-gpu``), inputs and outputs go through I/O binding, so the output stays on the GPU
until the one copy back.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import BackendError
from .base import Backend


def physical_cores() -> int:
    """Physical cores available to this process (logical CPUs when that cannot be told)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        available = os.cpu_count() or 1
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or available
    except ImportError:
        cores = available
    return max(1, min(cores, available))


def pick_providers(device: str) -> tuple[list, str]:
    """ONNX Runtime providers for ``device`` ('auto', 'cpu', 'cuda', 'cuda:N') and the device used."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
    if device.startswith("cuda"):
        if not has_cuda:
            raise BackendError(
                "--device cuda with --backend onnx needs onnxruntime-gpu (pip install onnxruntime-gpu); "
                "use --device cpu or --backend torch")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], f"cuda:{index}"
    if device != "cpu":
        raise BackendError(f"the ONNX backend runs on cpu or cuda, not '{device}'")
    return ["CPUExecutionProvider"], "cpu"


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, model_path: Path, *, device: str = "auto", dtype: str = "fp32",
                 threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("the ONNX backend needs onnxruntime: pip install 'localdepth[onnx]'") from None
        providers, self.device = pick_providers(device)
        self.dtype = dtype
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads or physical_cores()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as e:  # ORT raises its own exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"{model_path} is not a loadable ONNX model ({first[:200]})") from None
        self.model_path = Path(model_path)
        self.threads = options.intra_op_num_threads
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
        return {**super().describe(), "onnx_model": self.model_path.name}

    def close(self) -> None:
        self.session = None
