"""What this machine offers to run a network: installed runtimes, CPU facts, thread counts.

Facts only, no choices (those are in :mod:`localdepth.backends.choice`), and nothing here
imports a runtime: it asks whether one is importable. Used by the backend choice, the
backends, the conversions and ``localdepth bench``.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from pathlib import Path

from .errors import BackendError

#: modules each optional runtime needs (to run; converting to it may need more, see EXTRAS)
_RUNTIME_MODULES = {
    "torch": ("torch",),
    "tflite": ("ai_edge_litert",),
    "onnx": ("onnxruntime",),
    "openvino": ("openvino",),
    "mlx": ("mlx.core",),
}

#: the pip extra that installs each runtime and its conversion tools
EXTRAS = {
    "onnx": ("onnx", ("onnx", "onnxruntime", "onnxscript")),
    "openvino": ("openvino", ("openvino",)),
    "nncf": ("openvino", ("openvino", "nncf")),
    "mlx": ("mlx", ("mlx.core",)),
    "coreml": ("coreml", ("coremltools",)),
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def installed_runtimes() -> frozenset[str]:
    """The runtimes whose modules can be imported here (nothing is imported)."""
    return frozenset(name for name, modules in _RUNTIME_MODULES.items() if all(map(_importable, modules)))


def require(tool: str) -> None:
    """Raise one line with the install command when ``tool``'s modules ('onnx', 'openvino',
    'nncf') are not all importable."""
    missing = [m for m in EXTRAS[tool][1] if not _importable(m)]
    if missing:
        raise BackendError(install_message(tool, missing))


def install_message(tool: str, missing: list[str] | None = None) -> str:
    """'<what> needs <modules>: pip install ...', the one line shown when a runtime is missing."""
    extra, modules = EXTRAS[tool]
    what, verb = {"onnx": ("ONNX export and the ONNX backend", "need"), "openvino": ("the OpenVINO backend", "needs"),
                  "nncf": ("int8 quantization for OpenVINO", "needs"), "mlx": ("the MLX backend", "needs"),
                  "coreml": ("Core ML export", "needs")}[tool]
    names = ", ".join(m.split(".")[0] for m in (missing or modules))
    return f"{what} {verb} {names}: pip install 'localdepth[{extra}]'"


# ----------------------------------------------------------------------------- the CPU

def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def is_apple_silicon() -> bool:
    """macOS on an Apple M-series chip: MLX's GPU (Metal) and PyTorch's MPS are there."""
    return sys.platform == "darwin" and platform.machine().lower() == "arm64"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


#: oneDNN's instruction-set caps (``ONEDNN_MAX_CPU_ISA``) that still allow native bf16
_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                     "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2",
                     "ALL", "DEFAULT")


def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX-512 BF16 or AMX), so bf16 pays off, and
    oneDNN (inside PyTorch and OpenVINO) may use it: ``ONEDNN_MAX_CPU_ISA`` below
    ``AVX512_CORE_BF16`` turns it off (OpenVINO then cannot compile bf16 layers at all)."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    if cap and cap not in _ONEDNN_BF16_ISAS:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


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


def thread_budget(threads: int | None = None) -> int | None:
    """Threads a CPU runtime should use: ``threads`` when given, else ``OMP_NUM_THREADS`` (Ray
    sets it to an actor's CPU share; PyTorch follows it too), else None (the runtime's default)."""
    if threads:
        return max(1, int(threads))
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return max(1, int(env)) if env.isdigit() else None


# ----------------------------------------------------------------------------- runtime sessions

def onnx_providers(device: str) -> tuple[list, str]:
    """ONNX Runtime providers for ``device`` ('auto', 'cpu', 'cuda', 'cuda:N') and the device used."""
    import onnxruntime as ort

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
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


def onnx_session(path, *, device: str = "cpu", threads: int | None = None):
    """An ONNX Runtime session as localdepth runs one: all graph optimisations, one chain of ops
    (inter-op parallelism off), intra-op threads = ``threads`` or the physical cores (hyper-threads
    share the vector units a ViT saturates). Returns the session; ``session.localdepth_device``
    says where it runs."""
    import onnxruntime as ort

    providers, used = onnx_providers(device)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = thread_budget(threads) or physical_cores()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # ORT raises its own exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError(f"{path} is not a loadable ONNX model ({first[:200]})") from None
    session.localdepth_device = used
    session.localdepth_threads = options.intra_op_num_threads
    return session


#: OpenVINO's names for localdepth's precisions (INFERENCE_PRECISION_HINT)
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


def openvino_config(precision: str, *, performance: str = "latency", threads: int | None = None,
                    cache_dir=None) -> dict:
    """How localdepth compiles an OpenVINO model for the CPU (the backend and the int8 accuracy
    check use the same, so the deviation a quantization reports is what runs).

    ``precision``: fp32 or bf16 arithmetic; int8 models run their quantized layers in int8 and
    the rest in bf16 where the CPU has it, else fp32. ``performance``: ``latency`` (one request
    at a time uses every core) or ``throughput`` (several requests in flight, OpenVINO's streams).
    ``cache_dir``: OpenVINO's model cache, so the next load reuses the compiled blob.
    """
    if precision == "int8":
        precision = "bf16" if cpu_has_bf16() else "fp32"
    config = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[precision], "PERFORMANCE_HINT": performance.upper()}
    budget = thread_budget(threads)
    if budget:
        config["INFERENCE_NUM_THREADS"] = budget
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        config["CACHE_DIR"] = str(cache_dir)
    return config


_core = None


def openvino_core():
    """One ``openvino.Core`` per process (it holds the plugins and their caches)."""
    global _core
    if _core is None:
        import openvino

        _core = openvino.Core()
    return _core


# ----------------------------------------------------------------------------- PyTorch on MPS

#: PyTorch's switch that runs operations MPS lacks on the CPU instead of failing; read once, when
#: PyTorch is imported
MPS_FALLBACK = "PYTORCH_ENABLE_MPS_FALLBACK"


def enable_mps_fallback(environ=None, platform_name: str | None = None) -> bool:
    """On macOS, set ``PYTORCH_ENABLE_MPS_FALLBACK=1`` unless the user set it (their value wins),
    so that a model with an operation MPS lacks runs (that operation on the CPU, said in one
    line: :func:`localdepth.backends.torch_backend.mps_fallback_notice`) instead of failing.
    localdepth calls it when it is imported, before PyTorch is. Returns whether the fallback is on."""
    environ = os.environ if environ is None else environ
    if (platform_name or sys.platform) != "darwin":
        return False
    environ.setdefault(MPS_FALLBACK, "1")
    return environ[MPS_FALLBACK].strip() not in ("", "0")
