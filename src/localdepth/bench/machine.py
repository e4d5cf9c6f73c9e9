"""What machine a benchmark ran on, and what its matrix units deliver."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from ..runtimes import cpu_has_bf16, physical_cores


def cpu_model() -> str:
    if sys.platform == "darwin":  # "Apple M1 Max"
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5, check=False).stdout.strip()
            if out:
                return out
        except OSError:
            pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def machine_info() -> dict:
    """CPU, cores, GPU and library versions."""
    import numpy
    import torch
    import transformers


    info = {
        "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "physical_cores": physical_cores(),
        "cpu_bf16": cpu_has_bf16(), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "transformers": transformers.__version__, "numpy": numpy.__version__,
        "gpu": None, "load_average": load_average(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    try:
        import openvino

        info["openvino"] = openvino.__version__.split("-")[0]
    except ImportError:
        info["openvino"] = None
    try:
        import mlx.core as mx

        info["mlx"] = mx.__version__
        info["mlx_gpu"] = bool(mx.is_available(mx.gpu))
    except (ImportError, OSError):
        info["mlx"] = None
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        info["gpu"] = {"name": f"Apple GPU (MPS; {cpu_model()})"}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1),
                       "capability": f"{p.major}.{p.minor}", "cuda": torch.version.cuda}
    return info


def matmul_flops(dtype: str = "fp32", device: str = "cpu", n: int = 2048, repeats: int = 5) -> float:
    """Measured square-matmul throughput in FLOP/s (best of ``repeats``; 2 n^3 FLOPs per product)."""
    import torch

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    a = torch.randn(n, n, device=device).to(torch_dtype)
    b = torch.randn(n, n, device=device).to(torch_dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else torch.mps.synchronize if device == "mps" \
        else (lambda: None)
    with torch.inference_mode():
        torch.mm(a, b)
        sync()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            sync()
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best
