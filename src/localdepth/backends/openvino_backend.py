"""OpenVINO on the CPU: converted models (:mod:`localdepth.conversion.openvino`) and TFLite files.

Compiled as :func:`localdepth.runtimes.openvino_config` says (precision, performance hint,
threads, and OpenVINO's model cache, so a second load does not compile again).

* ``latency`` (single images, the server, Ray actors): one request; :meth:`run` waits for it.
* ``throughput`` (folders): an ``AsyncInferQueue`` of OpenVINO's optimal number of requests
  (``OPTIMAL_NUMBER_OF_INFER_REQUESTS``, one per stream); :meth:`submit` starts a batch and
  returns a future, so the runner keeps :attr:`parallel_requests` batches in flight.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from ..errors import BackendError
from ..runtimes import openvino_config, openvino_core, require
from ..networks import OPTIONAL_OUTPUTS
from .base import Backend, NetworkOutput, named_outputs

PERFORMANCE = ("latency", "throughput")


class OpenVINOBackend(Backend):
    name = "openvino"

    def __init__(self, model_path: Path, *, precision: str = "fp32", performance: str = "latency",
                 threads: int | None = None, cache_dir: Path | None = None):
        require("openvino")
        if performance not in PERFORMANCE:
            raise BackendError(f"unknown performance mode '{performance}'; use latency or throughput")
        self.model_path = Path(model_path)
        self.device = "cpu"
        self.dtype = precision
        self.performance = performance
        config = openvino_config(precision, performance=performance, threads=threads, cache_dir=cache_dir)
        core = openvino_core()
        try:
            if self.model_path.suffix == ".tflite":
                from ..conversion.openvino import read_tflite

                compiled = core.compile_model(read_tflite(self.model_path), "CPU", config)
            else:  # from the path: with a cached blob, OpenVINO skips reading and compiling the model
                compiled = core.compile_model(str(self.model_path), "CPU", config)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"{self.model_path} is not a loadable OpenVINO model ({first[:200]})") from None
        self.compiled = compiled
        #: the arithmetic precision OpenVINO picked for the layers that are not int8
        hint = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # "f32", "bf16"
        self.inference_precision = {"f32": "fp32", "f16": "fp16"}.get(hint, hint)
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        batch = compiled.inputs[0].get_partial_shape()[0]
        self.max_batch = 1 if batch.is_static and batch.get_length() == 1 else None
        # an output of a compiled model can carry more names than the one the conversion gave it
        # ({'confidence', 'select_4:0', '35'}): take the known one, not whichever a set yields first
        known = {"depth", *OPTIONAL_OUTPUTS}
        names = [next((n for n in sorted(o.get_names()) if n in known), "") for o in compiled.outputs]
        self._depth = names.index("depth") if "depth" in names else 0
        self._extra = {name: i for i, name in enumerate(names) if name in OPTIONAL_OUTPUTS}
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()
        self._queue = None
        if performance == "throughput":
            import openvino

            self.parallel_requests = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self._queue = openvino.AsyncInferQueue(compiled, self.parallel_requests)
            self._queue.set_callback(self._finished)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.run(batch).depth

    def run(self, batch: np.ndarray, **conditioning: np.ndarray) -> NetworkOutput:
        if conditioning:
            return super().run(batch, **conditioning)  # refuses, with what to do instead
        with self._lock:  # one request: callers in several threads take turns
            self._request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
            return self._outputs(self._request)

    def submit(self, batch: np.ndarray, **conditioning) -> Future:
        if self._queue is None or conditioning:
            return super().submit(batch, **conditioning)
        future: Future = Future()
        try:  # waits while every request is busy: the queue is the backpressure
            self._queue.start_async({0: np.ascontiguousarray(batch, dtype=np.float32)}, userdata=future)
        except Exception as e:
            future.set_exception(e)
        return future

    def _finished(self, request, future: Future) -> None:
        try:
            future.set_result(self._outputs(request))
        except Exception as e:
            future.set_exception(e)

    def _outputs(self, request) -> NetworkOutput:
        """Copies of a finished request's outputs (the request is reused at once)."""
        def output(i: int) -> np.ndarray:
            return np.array(request.get_output_tensor(i).data, dtype=np.float32)

        # TFLite graphs: the first output is the final map
        return named_outputs(output(self._depth), {name: output(i) for name, i in self._extra.items()})

    def describe(self) -> dict:
        return {**super().describe(), "inference_precision": self.inference_precision,
                "performance": self.performance, "threads": self.threads, "openvino_model": self.model_path.name}

    def close(self) -> None:
        if self._queue is not None:
            self._queue.wait_all()
        self._queue = self._request = self.compiled = None
