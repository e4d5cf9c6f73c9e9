"""The backend interface: a loaded network that maps a batch of inputs to raw predictions.

Backends know nothing of files, image decoding or output formats; pre- and
postprocessing live in :mod:`localdepth.preprocess` and :mod:`localdepth.postprocess`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from ..networks import OPTIONAL_OUTPUTS


@dataclass
class NetworkOutput:
    """What a network returns for one batch, as NumPy arrays at network resolution ``(h', w')``.

    * ``depth``: ``(N, h', w')`` float32, the raw map in the registry entry's convention;
    * ``confidence``: ``(N, h', w')`` float32 or None (larger = more confident);
    * ``intrinsics``: ``(N, 3, 3)`` float64 or None: a predicted camera, in pixels of the
      network *input* grid ``(h, w)``, pixel centres at integer coordinates;
    * ``camera_from_world``: ``(N, 4, 4)`` float64 or None: a predicted pose, OpenCV axes
      (x right, y down, z forward);
    * ``field_of_view``: ``(N,)`` float64 or None: a predicted *horizontal* field of view of the
      image, degrees (Depth Pro). Unlike ``intrinsics`` it does not depend on the input grid, which
      may stretch the image (1536 x 1536 for Depth Pro): the camera is built for the image itself.
    """

    depth: np.ndarray
    confidence: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    camera_from_world: np.ndarray | None = None
    field_of_view: np.ndarray | None = None


_FLOAT64 = ("intrinsics", "camera_from_world", "field_of_view")


def named_outputs(depth: np.ndarray, named: dict[str, np.ndarray]) -> NetworkOutput:
    """A :class:`NetworkOutput` from a graph's ``depth`` map (``(N, h, w)``, or ``(N, 1, h, w)``
    and ``(N, h, w, 1)`` as graphs give it) and its other outputs by name (unknown names dropped)."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim == 4:
        depth = depth[..., 0] if depth.shape[-1] == 1 else depth[:, 0]
    extra = {k: np.asarray(v, dtype=np.float64 if k in _FLOAT64 else np.float32)
             for k, v in named.items() if k in OPTIONAL_OUTPUTS}
    return NetworkOutput(depth=depth, **extra)


class Stream(ABC):
    """One video stream through a network with temporal state (e.g. cached attention states)."""

    @abstractmethod
    def step(self, frame: np.ndarray) -> np.ndarray:
        """One preprocessed frame ``(1, 3, h, w)`` -> its map ``(1, h', w')``, given the earlier ones."""


class Backend(ABC):
    #: short name shown in sidecars and benchmarks ("torch", "tflite", "onnx")
    name: str = ""
    #: where it runs ("cpu", "cuda:0", "mps")
    device: str = "cpu"
    #: numeric precision of the weights and activations ("fp32", "fp16", "bf16", "int8")
    dtype: str = "fp32"
    #: largest batch the backend takes in one call (None: any)
    max_batch: int | None = None
    #: batches worth having in flight at once (OpenVINO's throughput mode): a caller with more
    #: work :meth:`submit`\ s up to this many before it waits for the first
    parallel_requests: int = 1
    #: the report of the conversion this backend runs (:mod:`localdepth.conversion`), if any
    conversion: dict | None = None
    #: that conversion was made while this backend loaded (not found in the cache)
    converted_now: bool = False

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 3, h, w)`` (or ``(N, h, w, 3)`` for NHWC models) float32 -> ``(N, h', w')`` float32.

        ``h', w'`` is the network's output resolution, usually ``h, w``.
        """

    def run(self, batch: np.ndarray, **conditioning: np.ndarray) -> NetworkOutput:
        """Every output of the network for ``batch`` (see :class:`NetworkOutput`).

        ``conditioning``: extra network inputs some models take (``prompt_depth``), as arrays, or
        options of the network's forward (Depth Anything 3's ``same_scene=True``). Backends
        whose networks return only depth need not override this.
        """
        if conditioning:
            from ..errors import BackendError

            raise BackendError(f"the {self.name} backend does not take {', '.join(sorted(conditioning))}; "
                               "use --backend torch")
        return NetworkOutput(depth=self.infer(batch))

    def submit(self, batch: np.ndarray, **conditioning) -> Future:
        """Start inferring ``batch``; the future's result is :meth:`run`'s. Backends that keep
        several requests in flight override this; the default runs the batch now."""
        future: Future = Future()
        try:
            future.set_result(self.run(batch, **conditioning))
        except Exception as e:  # handed to whoever waits on the future
            future.set_exception(e)
        return future

    def open_stream(self):
        """A :class:`Stream` for a video network that keeps temporal state between frames."""
        from ..errors import BackendError

        raise BackendError(f"the {self.name} backend does not stream video models; use --backend torch")

    def describe(self) -> dict:
        info = {"backend": self.name, "device": self.device, "dtype": self.dtype}
        if self.conversion:  # what a sidecar should say about a converted model
            keys = ("runtime", "precision", "weights_id", "calibration", "deviation")
            info["conversion"] = {k: self.conversion[k] for k in keys if k in self.conversion}
        return info

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release accelerator memory; the default does nothing."""
