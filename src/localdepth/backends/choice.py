"""Which backend runs a model, on which device, at which precision: one pure function.

:func:`choose` depends only on the registry entry, the form of the weights given (the entry's
own format, an ``.onnx`` file, an OpenVINO ``.xml``), the backend, device and dtype asked for,
and the machine (:class:`Host`: installed runtimes, GPU, x86, native bf16). Never on what is
cached: a conversion the choice needs is made once and cached (:mod:`localdepth.conversion`),
but its presence changes nothing.

``--backend auto``, first rule that applies:

=====================================================  ==========================================
weights / device / dtype                               backend
=====================================================  ==========================================
an ``.onnx`` file                                      onnx (ONNX Runtime)
an OpenVINO IR (``.xml``)                              openvino
``--compile`` or ``--cuda-graphs``                     torch
a TFLite entry (PyDNet++)                              tflite (LiteRT: faster than OpenVINO on it)
Apple silicon, MLX installed, ``--device auto``,       mlx (on the GPU, fp16)
a model MLX runs (:func:`runs_on_mlx`)
a GPU (``cuda``, ``mps``, or ``auto`` with one there)  torch (on a Mac: MPS)
x86 CPU, OpenVINO installed, family in OPENVINO_AUTO   openvino (unless LOCALDEPTH_AUTO_OPENVINO=0)
``--dtype int8``, ONNX Runtime installed               onnx (ONNX Runtime dynamic int8)
otherwise                                              torch
=====================================================  ==========================================

Video models (``spec.temporal``: Video Depth Anything) run on PyTorch or MLX: their windows of
frames and their streaming state are not part of a converted graph. MLX runs Depth Anything V1
and V2, Video Depth Anything and Depth Anything 3 Mono and Metric (:mod:`localdepth.networks.mlx`);
its device is Apple silicon's GPU (``--device auto``, ``gpu`` or ``mps``) or the CPU (``cpu``,
and ``auto`` elsewhere: MLX's Linux CPU build).

``LOCALDEPTH_AUTO_OPENVINO=0`` keeps ``auto`` off OpenVINO (``--backend openvino`` still works);
the test suite sets it, as its references are PyTorch's.

``--dtype auto``: torch and onnx use fp16 on CUDA (torch: bf16 for entries whose reference runs in
bf16, ``spec.half_precision``, on cards that compute it), fp32 elsewhere (MPS included); openvino uses
bf16 where the CPU computes bf16 natively (AVX-512 BF16 or AMX), fp32 elsewhere; mlx uses fp16 on the
GPU and fp32 on the CPU; tflite is fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BackendError
from ..networks import LOADERS
from ..networks.mlx import RUNS as MLX_RUNS, design_of
from ..registry import ModelSpec

BACKENDS = ("auto", "torch", "onnx", "openvino", "tflite", "mlx")
DTYPES = ("auto", "fp32", "fp16", "bf16", "int8")

#: families ``auto`` sends to OpenVINO on x86 CPUs: those whose network's conversion is tested
#: against PyTorch (tests/test_openvino.py; the Depth Anything V1/V2 entries share one network
#: class). A family joins once its conversion test passes. ``--backend openvino`` takes any
#: network PyTorch runs (localdepth.networks.LOADERS), converted from it, and TFLite files directly.
OPENVINO_AUTO = ("depth-anything-v2", "depth-anything-v2-metric", "depth-anything-v1")

_PRECISIONS = {
    "torch": ("fp32", "fp16", "bf16"),
    "onnx": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
    "tflite": ("fp32",),
    "mlx": ("fp32", "fp16", "bf16"),
}
#: the devices MLX takes: Apple silicon's GPU (``gpu``; ``mps`` names the same GPU) or the CPU
MLX_DEVICES = ("auto", "cpu", "gpu", "mps")


def runs_on_mlx(spec: ModelSpec) -> bool:
    """MLX runs this model (the families of :mod:`localdepth.networks.mlx`); ``auto`` picks MLX
    for all of them on Apple silicon."""
    return design_of(spec) is not None


@dataclass(frozen=True)
class Host:
    """The facts about the machine that a choice depends on."""

    runtimes: frozenset[str]  # importable: "torch", "onnx", "openvino", "tflite", "mlx"
    accelerator: str | None = None  # "cuda" or "mps" when PyTorch sees one
    x86: bool = True
    apple_silicon: bool = False  # macOS on arm64: MLX runs on its GPU
    cpu_bf16: bool = False  # native bf16 arithmetic (AVX-512 BF16, AMX)
    onnx_cuda: bool = False  # ONNX Runtime has its CUDA provider
    gpu_bf16: bool = False  # the CUDA card computes bf16 (Ampere and later)
    auto_openvino: bool = True  # False: LOCALDEPTH_AUTO_OPENVINO=0


@dataclass(frozen=True)
class Choice:
    backend: str  # "torch", "onnx", "openvino", "tflite", "mlx"
    device: str  # as the backend takes it: "auto", "cpu", "cuda", "cuda:1", "mps"; mlx: "gpu" or "cpu"
    precision: str  # "fp32", "fp16", "bf16", "int8"
    #: the conversion the backend runs, ``(runtime, precision)``, or None (it reads the weights as they are)
    conversion: tuple[str, str] | None = None


def weights_kind(path) -> str:
    """``"onnx"`` for an ONNX file, ``"openvino"`` for an OpenVINO IR, else ``"native"`` (the entry's format)."""
    suffix = str(path).lower().rsplit(".", 1)[-1] if "." in str(path) else ""
    return {"onnx": "onnx", "xml": "openvino"}.get(suffix, "native")


def choose(spec: ModelSpec, *, weights: str = "native", backend: str = "auto", device: str = "auto",
           dtype: str = "auto", host: Host, torch_options: bool = False) -> Choice:
    """The backend, device, precision and conversion for one load (see the module docstring).

    ``weights``: :func:`weights_kind` of the resolved weights; ``torch_options``: ``--compile``
    or ``--cuda-graphs`` was asked for. Raises :class:`BackendError` with what to do instead
    when the combination cannot run.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    if dtype not in DTYPES:
        raise BackendError(f"unknown dtype '{dtype}'; use one of {', '.join(DTYPES)}")
    on_gpu = device.startswith(("cuda", "mps")) or (device == "auto" and host.accelerator is not None)
    if backend == "auto":
        backend = _auto(spec, weights, device, dtype, host, torch_options, on_gpu)
    _check(spec, weights, backend, device, dtype, host, torch_options)
    precision = _precision(backend, dtype, device, host, spec.half_precision)
    conversion = None
    if weights == "native" and backend == "onnx":
        conversion = ("onnx", precision)
    elif weights == "native" and backend == "openvino":
        # bf16 is a compile option of the fp32 model; TFLite files are read as they are
        ir = "int8" if precision == "int8" else "fp32"
        conversion = None if (spec.format == "tflite" and ir == "fp32") else ("openvino", ir)
    elif backend == "mlx":  # fp16 and bf16 are casts of the fp32 conversion at load
        conversion = ("mlx", "fp32")
    if backend in ("openvino", "tflite"):
        device = "cpu"
    elif backend == "mlx":
        device = "gpu" if _mlx_gpu(device, host) else "cpu"
    return Choice(backend, device, precision, conversion)


def _mlx_gpu(device: str, host: Host) -> bool:
    return host.apple_silicon and device in ("auto", "gpu", "mps")


def _auto(spec, weights, device, dtype, host, torch_options, on_gpu) -> str:
    if weights in ("onnx", "openvino"):
        return weights
    if torch_options:
        return "torch"
    if spec.format == "tflite":
        return "tflite"
    if (host.apple_silicon and "mlx" in host.runtimes and device == "auto" and dtype != "int8"
            and runs_on_mlx(spec)):
        return "mlx"
    if on_gpu:
        return "torch"
    openvino = "openvino" in host.runtimes and host.auto_openvino
    if device in ("auto", "cpu") and host.x86 and openvino and spec.family in OPENVINO_AUTO:
        return "openvino"
    if dtype == "int8" and "onnx" in host.runtimes and spec.format in LOADERS and spec.prompt is None:
        return "onnx"
    return "torch"


def _check(spec, weights, backend, device, dtype, host, torch_options) -> None:
    if spec.temporal and (backend not in ("torch", "mlx") or weights != "native" or dtype == "int8"):
        raise BackendError(f"{spec.name} is a video model: its windows and streaming state run on PyTorch or MLX "
                           f"only, in fp32, fp16 or bf16; use --backend torch (or auto) with its own weights")
    if torch_options and backend != "torch":
        raise BackendError("--compile and --cuda-graphs are PyTorch options; use --backend torch")
    if weights in ("onnx", "openvino") and backend != weights:
        kind = {"onnx": "an ONNX", "openvino": "an OpenVINO"}[weights]
        raise BackendError(f"the weights are {kind} model; use --backend {weights}")
    if backend in ("onnx", "openvino") and weights == "native" and spec.prompt is not None:
        raise BackendError(f"{spec.name} takes a prompt depth, which a converted model (pixel_values only) has "
                           f"no input for; use --backend torch")
    if backend in ("onnx", "openvino") and backend not in host.runtimes:
        from ..runtimes import install_message

        raise BackendError(install_message(backend, [{"onnx": "onnxruntime"}.get(backend, backend)]))
    if backend == "torch":
        if spec.format not in LOADERS:
            raise BackendError(f"{spec.name} is a {spec.format} model, which PyTorch does not run; use --backend auto")
        if dtype == "int8":
            raise BackendError("int8 runs on the OpenVINO or ONNX backend; use --backend openvino --dtype int8 "
                               "(or --backend onnx)")
    elif backend == "onnx":
        if weights == "native" and spec.format not in LOADERS:
            raise BackendError(f"{spec.name} is a {spec.format} model; only PyTorch networks export to ONNX; "
                               f"use --backend auto")
    elif backend == "openvino":
        if weights == "native" and spec.format not in LOADERS and spec.format != "tflite":
            raise BackendError(f"{spec.name} is a {spec.format} model, which OpenVINO cannot take; use --backend auto")
        if device not in ("auto", "cpu"):
            raise BackendError(f"the OpenVINO backend runs on the CPU, not '{device}'; use --device cpu "
                               f"or --backend torch")
    elif backend == "tflite":
        if spec.format != "tflite" or weights != "native":
            raise BackendError(f"{spec.name} has no TFLite weights; use --backend torch")
        if device not in ("auto", "cpu"):
            raise BackendError("the TFLite backend runs on the CPU only; use --device cpu")
    elif backend == "mlx":
        if "mlx" not in host.runtimes:
            from ..runtimes import install_message

            raise BackendError(install_message("mlx"))
        if not runs_on_mlx(spec):
            raise BackendError(f"{spec.name} does not run on MLX (MLX runs {MLX_RUNS}); use --backend torch")
        if device not in MLX_DEVICES:
            raise BackendError(f"the MLX backend runs on Apple silicon's GPU or the CPU, not '{device}'; "
                               f"use --device auto, gpu or cpu")
        if device in ("gpu", "mps") and not host.apple_silicon:
            raise BackendError("MLX has no GPU here (it uses Apple silicon's); use --device cpu")
    allowed = _PRECISIONS[backend]
    if dtype != "auto" and dtype not in allowed:
        hint = {"openvino": "fp32, bf16 or int8", "onnx": "fp32, fp16 or int8", "tflite": "fp32 only (--dtype auto)",
                "torch": "fp32, fp16 or bf16", "mlx": "fp32, fp16 or bf16"}[backend]
        raise BackendError(f"the {backend} backend runs {hint}, not {dtype}")


def _precision(backend: str, dtype: str, device: str, host: Host, half: str = "fp16") -> str:
    if dtype != "auto":
        return dtype
    if backend == "openvino":
        return "bf16" if host.cpu_bf16 else "fp32"
    if backend == "torch":
        if not (device.startswith("cuda") or (device == "auto" and host.accelerator == "cuda")):
            return "fp32"
        return "bf16" if half == "bf16" and host.gpu_bf16 else "fp16"
    if backend == "onnx":  # ONNX Runtime's own device: CUDA where its CUDA provider is installed
        return "fp16" if device.startswith("cuda") or (device == "auto" and host.onnx_cuda) else "fp32"
    if backend == "mlx":
        return "fp16" if _mlx_gpu(device, host) else "fp32"
    return "fp32"
