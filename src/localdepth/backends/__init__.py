"""Backends: the loaded network behind an estimator (PyTorch, ONNX Runtime, OpenVINO, LiteRT, MLX).

Loading is three steps, each in its own place: :func:`.choice.choose` decides the backend,
device and precision (a pure function of the entry, the weights' form, the request and the
machine); :mod:`localdepth.conversion` makes the converted model that backend runs, once, and
caches it; the backend class here loads it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import BackendError
from ..registry import ModelSpec
from ..weights import ResolvedWeights
from .base import Backend
from .choice import BACKENDS, DTYPES, Choice, Host, choose, weights_kind


def host_facts() -> Host:
    """The machine as :func:`choose` sees it (runtimes are checked for, not imported; PyTorch is)."""
    from ..runtimes import cpu_has_bf16, installed_runtimes, is_apple_silicon, is_x86

    runtimes = installed_runtimes()
    accelerator = None
    gpu_bf16 = False
    if "torch" in runtimes:
        import torch

        if torch.cuda.is_available():
            accelerator = "cuda"
            gpu_bf16 = bool(torch.cuda.is_bf16_supported())
        elif hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
            accelerator = "mps"
    onnx_cuda = False
    if "onnx" in runtimes and accelerator == "cuda":
        import onnxruntime

        onnx_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    auto_openvino = os.environ.get("LOCALDEPTH_AUTO_OPENVINO", "").strip().lower() not in ("0", "false", "no", "off")
    return Host(runtimes=runtimes, accelerator=accelerator, x86=is_x86(), apple_silicon=is_apple_silicon(),
                cpu_bf16=cpu_has_bf16(), onnx_cuda=onnx_cuda, auto_openvino=auto_openvino, gpu_bf16=gpu_bf16)


def create_backend(spec: ModelSpec, weights: ResolvedWeights, *, backend: str = "auto",
                   device: str = "auto", dtype: str = "auto", compile: bool = False,
                   cuda_graphs: bool = False, performance: str = "latency", threads: int | None = None,
                   log=None) -> Backend:
    """Choose the backend for ``weights`` of ``spec``, convert them for it (once; cached) and load it.

    ``performance``: ``latency`` or ``throughput`` (OpenVINO: several requests in flight);
    ``threads``: CPU threads for ONNX Runtime, OpenVINO and LiteRT (default: ``OMP_NUM_THREADS``,
    else the runtime's own default). ``log`` receives progress lines (default: stderr).
    """
    choice = choose_backend(spec, weights, backend=backend, device=device, dtype=dtype, compile=compile,
                            cuda_graphs=cuda_graphs)
    return open_backend(spec, weights, choice, compile=compile, cuda_graphs=cuda_graphs,
                        performance=performance, threads=threads, log=log)


def choose_backend(spec: ModelSpec, weights: ResolvedWeights, *, backend: str = "auto", device: str = "auto",
                   dtype: str = "auto", compile: bool = False, cuda_graphs: bool = False) -> Choice:
    """:func:`choose` for these weights on this machine (nothing is loaded or converted yet)."""
    return choose(spec, weights=weights_kind(weights.path), backend=backend, device=device, dtype=dtype,
                  host=host_facts(), torch_options=compile or cuda_graphs)


def open_backend(spec: ModelSpec, weights: ResolvedWeights, choice: Choice, *, compile: bool = False,
                 cuda_graphs: bool = False, performance: str = "latency", threads: int | None = None,
                 log=None) -> Backend:
    """Load the backend ``choice`` names, after the conversion it needs (see :mod:`localdepth.conversion`)."""
    path = Path(weights.path)
    converted = None
    if choice.conversion is not None:
        from ..conversion import Target, ensure

        log = log or (lambda line: print(f"localdepth: {line}", file=sys.stderr))
        converted = ensure(spec, weights, Target(*choice.conversion), log=log)
        path = converted.path
        if not converted.cached:
            log(f"loading the converted model (converted in {converted.seconds:.0f} s, once: it is cached for later runs)")
    if choice.backend == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(spec, path, device=choice.device, dtype=choice.precision, compile=compile,
                            cuda_graphs=cuda_graphs)
    if choice.backend == "mlx":
        from .mlx_backend import MLXBackend

        engine = MLXBackend(spec, path, device=choice.device, dtype=choice.precision)
        engine.conversion = converted.report if converted is not None else None
        return engine
    if choice.backend == "onnx":
        from .onnx_backend import OnnxBackend

        precision = choice.precision if converted is not None else _precision_of_file(path, choice.precision)
        engine = OnnxBackend(path, device=choice.device, dtype=precision, threads=threads)
    elif choice.backend == "openvino":
        from ..weights import home
        from .openvino_backend import OpenVINOBackend

        precision = choice.precision if converted is not None else _precision_of_file(path, choice.precision)
        cache = converted.folder / "compiled" if converted is not None else home() / "openvino-compiled"
        engine = OpenVINOBackend(path, precision=precision, performance=performance, threads=threads,
                                 cache_dir=cache)
    else:
        from .tflite_backend import TFLiteBackend

        return TFLiteBackend(path, threads=threads)
    engine.conversion = converted.report if converted is not None else None
    engine.converted_now = converted is not None and not converted.cached
    return engine


def _precision_of_file(path: Path, asked: str) -> str:
    """The precision of a converted model given as ``--weights``: int8 or fp16 when its report
    (``localdepth quantize --output``) or its name says so, else the one asked for."""
    import json

    report = path.parent / "report.json"
    if report.is_file():
        try:
            saved = json.loads(report.read_text()).get("precision")
        except ValueError:
            saved = None
    else:
        saved = None
    stem = path.stem.lower()
    found = saved if saved in ("int8", "fp16") else next((p for p in ("int8", "fp16") if p in stem), None)
    if asked in ("int8", "fp16") and found != asked:
        article = "an" if asked == "int8" else "a"
        raise BackendError(f"{path} is not {article} {asked} model; convert one (`localdepth quantize`, "
                           f"`localdepth export --quantize`) or drop --dtype {asked}")
    return found or asked


__all__ = ["BACKENDS", "DTYPES", "Backend", "Choice", "Host", "choose", "choose_backend", "create_backend",
           "host_facts", "open_backend", "weights_kind"]
