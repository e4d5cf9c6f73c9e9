"""Backends: the loaded network behind an estimator (PyTorch, ONNX Runtime, TFLite)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import BackendError
from ..registry import ModelSpec
from ..weights import ResolvedWeights
from .base import Backend

BACKENDS = ("auto", "torch", "onnx", "tflite")

#: ONNX variant for each --dtype ("auto" is fp16 on CUDA, fp32 elsewhere)
_ONNX_VARIANT = {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}


def require_onnx_extra() -> None:
    """One line that says how to install the ONNX tools when one of them is missing."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendError(f"ONNX export and the ONNX backend need {', '.join(missing)}: pip install 'localdepth[onnx]'")


def _onnx_runtime_device(device: str) -> str | None:
    """The device ONNX Runtime would run on for ``device``, or None when it cannot."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "auto":
        if has_cuda:
            return "cuda"
        try:  # PyTorch on a GPU beats ONNX Runtime on the CPU
            import torch

            if torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
                return None
        except ImportError:
            pass
        return "cpu"
    if device == "cpu" or (device.startswith("cuda") and has_cuda):
        return device
    return None


def _onnx_variant(dtype: str, device: str) -> str:
    if dtype == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
    if dtype not in _ONNX_VARIANT:
        raise BackendError(f"the ONNX backend has fp32, fp16 and int8 models, not {dtype}; use --dtype int8 or fp32")
    return _ONNX_VARIANT[dtype]


def _onnx_dtype_of(path: Path, dtype: str) -> str:
    if dtype != "auto":
        return dtype
    stem = path.stem.lower()
    return next((v for v in ("int8", "fp16") if v in stem), "fp32")


def create_backend(spec: ModelSpec, weights: ResolvedWeights, *, backend: str = "auto",
                   device: str = "auto", dtype: str = "auto", compile: bool = False,
                   cuda_graphs: bool = False) -> Backend:
    """Load ``weights`` of ``spec`` into the backend that runs them.

    ``auto``: TFLite for TFLite models; ONNX Runtime for an ``.onnx`` file, or when an export of
    these weights in the asked precision is cached (``localdepth export``) and ONNX Runtime can run
    on the device; PyTorch otherwise.
    """
    is_onnx_file = Path(weights.path).is_file() and Path(weights.path).suffix == ".onnx"
    if backend == "auto":
        backend = "tflite" if spec.format == "tflite" else "torch"
        if is_onnx_file:
            backend = "onnx"
        elif spec.format == "transformers" and not (compile or cuda_graphs):
            ort_device = _onnx_runtime_device(device)
            if ort_device is not None and dtype in ("auto", *_ONNX_VARIANT):
                from ..export import cached_export

                if cached_export(spec, weights, _onnx_variant(dtype, ort_device)) is not None:
                    backend, device = "onnx", ort_device
        if dtype == "int8" and backend == "torch":
            backend = "onnx"  # int8 exists as an ONNX Runtime quantized model only
    if backend == "torch":
        from ..networks import LOADERS

        if spec.format not in LOADERS:
            raise BackendError(f"{spec.name} is a {spec.format} model; use --backend auto")
        if is_onnx_file:
            raise BackendError(f"{weights.path} is an ONNX model; use --backend onnx")
        if dtype == "int8":
            raise BackendError("int8 runs on the ONNX backend; use --backend onnx --dtype int8")
        from .torch_backend import TorchBackend

        return TorchBackend(spec, weights.path, device=device, dtype=dtype, compile=compile, cuda_graphs=cuda_graphs)
    if backend == "onnx":
        if spec.format != "transformers":
            raise BackendError(f"{spec.name} is a {spec.format} model; use --backend auto")
        if compile or cuda_graphs:
            raise BackendError("--compile and --cuda-graphs are PyTorch options; use --backend torch")
        require_onnx_extra()
        from .onnx_backend import OnnxBackend, pick_providers

        if is_onnx_file:
            return OnnxBackend(Path(weights.path), device=device, dtype=_onnx_dtype_of(Path(weights.path), dtype))
        _, ort_device = pick_providers(device)  # fails early, before an export, on an impossible device
        variant = _onnx_variant(dtype, ort_device)
        from ..export import ensure_exported

        path = ensure_exported(spec, weights, variant,
                               log=lambda line: print(f"localdepth: {line} (once; cached)", file=sys.stderr))
        return OnnxBackend(path, device=ort_device, dtype=variant)
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
