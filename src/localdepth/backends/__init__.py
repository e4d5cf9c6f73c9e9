"""Backends: the loaded network behind an estimator (PyTorch, TFLite; ONNX Runtime slots in here)."""

from __future__ import annotations

from ..errors import BackendError
from ..registry import ModelSpec
from ..weights import ResolvedWeights
from .base import Backend

BACKENDS = ("auto", "torch", "tflite")


def create_backend(spec: ModelSpec, weights: ResolvedWeights, *, backend: str = "auto",
                   device: str = "auto", dtype: str = "auto") -> Backend:
    """Load ``weights`` of ``spec`` into the backend that runs them."""
    if backend == "auto":
        backend = "tflite" if spec.format == "tflite" else "torch"
    if backend == "torch":
        if spec.format != "transformers":
            raise BackendError(f"{spec.name} is a {spec.format} model; use --backend auto")
        from .torch_backend import TorchBackend

        return TorchBackend(weights.path, device=device, dtype=dtype)
    if backend == "tflite":
        if spec.format != "tflite":
            raise BackendError(f"{spec.name} has no TFLite weights; use --backend torch")
        if device not in ("auto", "cpu"):
            raise BackendError("the TFLite backend runs on the CPU only; use --device cpu")
        if dtype not in ("auto", "fp32"):
            raise BackendError("the TFLite model is fp32 only; use --dtype auto")
        from .tflite_backend import TFLiteBackend

        return TFLiteBackend(weights.path)
    raise BackendError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")


__all__ = ["Backend", "BACKENDS", "create_backend"]
