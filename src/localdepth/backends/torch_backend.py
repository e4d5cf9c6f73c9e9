"""PyTorch through Hugging Face Transformers (``AutoModelForDepthEstimation``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendError
from .base import Backend

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu")
        if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise BackendError("--device mps asked for, but MPS is not available; use --device cpu")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str, device: str) -> str:
    if dtype == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
    if dtype not in _DTYPES:
        raise BackendError(f"unknown dtype '{dtype}'; use auto, fp32, fp16 or bf16")
    if dtype == "fp16" and device == "cpu":
        raise BackendError("fp16 is not supported on CPU; use --dtype bf16 or fp32")
    return dtype


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, folder: Path, *, device: str = "auto", dtype: str = "auto"):
        import torch
        from transformers import AutoModelForDepthEstimation
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # loading a local folder needs no progress bar
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self._torch_dtype = getattr(torch, _DTYPES[self.dtype])
        try:
            model = AutoModelForDepthEstimation.from_pretrained(
                str(folder), dtype=self._torch_dtype,
            )
        except (OSError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"cannot load the model in {folder}: {first[:200]}") from None
        self.model = model.eval().to(self.device)
        self.config = model.config

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self._torch_dtype, non_blocking=True)
            out = self.forward(x)
            return out.float().cpu().numpy()

    def forward(self, pixel_values):
        """Tensor in, tensor out: ``(N, 3, h, w)`` -> ``(N, h', w')`` on the backend's device."""
        return self.model(pixel_values=pixel_values).predicted_depth

    def close(self) -> None:
        import torch

        self.model = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
