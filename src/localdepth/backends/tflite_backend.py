"""TFLite models (PyDNet++) through the LiteRT interpreter (``ai-edge-litert``)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import BackendError
from ..runtimes import thread_budget
from .base import Backend


_XNNPACK_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate"


@contextlib.contextmanager
def _without_xnnpack_notice():
    """LiteRT's C++ runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on
    file descriptor 2 whenever a model is prepared, and no setting of it (TF_CPP_MIN_LOG_LEVEL
    included) turns that off. Capture the descriptor for the call and pass every other line on."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = b"".join(line for line in captured if not line.startswith(_XNNPACK_NOTICE))
            if rest:
                sys.stderr.write(rest.decode(errors="replace"))
                sys.stderr.flush()


class TFLiteBackend(Backend):
    name = "tflite"
    max_batch = 1  # the graph has a fixed batch of one; batches are run image by image

    def __init__(self, model_path: Path, *, threads: int | None = None, output_index: int = 0):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover - it is a core dependency
            raise BackendError("the TFLite backend needs ai-edge-litert: pip install ai-edge-litert") from None
        # OMP_NUM_THREADS caps it as it caps PyTorch (Ray sets it to an actor's CPU share)
        threads = thread_budget(threads) or os.cpu_count() or 1
        try:
            self._interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
            with _without_xnnpack_notice():
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise BackendError(f"{model_path} is not a loadable TFLite model ({e})") from None
        self._input = self._interpreter.get_input_details()[0]
        # PyDNet++ has three refinement outputs; the first is the final full-resolution map.
        self._output = self._interpreter.get_output_details()[output_index]
        self.input_shape = tuple(int(v) for v in self._input["shape"])

    def infer(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        for x in batch:
            self._interpreter.set_tensor(self._input["index"], np.ascontiguousarray(x[None], dtype=np.float32))
            self._interpreter.invoke()
            out = self._interpreter.get_tensor(self._output["index"])
            outputs.append(np.asarray(out, dtype=np.float32).reshape(out.shape[1], out.shape[2]))
        return np.stack(outputs)
