"""The backend interface: a loaded network that maps a batch of inputs to raw predictions.

Backends know nothing of files, image decoding or output formats; pre- and
postprocessing live in :mod:`localdepth.preprocess` and :mod:`localdepth.postprocess`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Backend(ABC):
    #: short name shown in sidecars and benchmarks ("torch", "tflite", "onnx")
    name: str = ""
    #: where it runs ("cpu", "cuda:0", "mps")
    device: str = "cpu"
    #: numeric precision of the weights and activations ("fp32", "fp16", "bf16", "int8")
    dtype: str = "fp32"
    #: largest batch the backend takes in one call (None: any)
    max_batch: int | None = None

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 3, h, w)`` (or ``(N, h, w, 3)`` for NHWC models) float32 -> ``(N, h', w')`` float32.

        ``h', w'`` is the network's output resolution, usually ``h, w``.
        """

    def describe(self) -> dict:
        return {"backend": self.name, "device": self.device, "dtype": self.dtype}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release accelerator memory; the default does nothing."""
