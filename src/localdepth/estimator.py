"""The estimator: registry entry + weights + backend + pre/postprocessing.

``localdepth.load(name)`` returns a :class:`DepthEstimator`; its :meth:`~DepthEstimator.predict`
takes images in any common form and returns :class:`~localdepth.postprocess.DepthResult` objects.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from . import registry
from .backends import Backend, create_backend
from .backends.base import NetworkOutput
from .errors import LocalDepthError
from .images import as_rgb, load_image
from .postprocess import DepthResult, intrinsics_to_original, to_original_size
from .preprocess import network_size, preprocess
from .registry import ModelSpec
from .weights import resolve


class NonCommercialLicenceWarning(UserWarning):
    """The model's weights may not be used commercially."""


_warned_licences: set[str] = set()


def warn_licence(spec: ModelSpec) -> None:
    """Warn once per process when a model's weights are not licensed for commercial use."""
    if spec.commercial_use or spec.name in _warned_licences:
        return
    _warned_licences.add(spec.name)
    warnings.warn(
        f"{spec.name} weights are licensed {spec.licence}: not for commercial use",
        NonCommercialLicenceWarning, stacklevel=3,
    )


_MIN_RAW = 1e-3  # floor of depth-like raw outputs before their reciprocal


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class DepthEstimator:
    """A loaded model ready to predict depth.

    Parameters mirror :func:`localdepth.load`. ``input_size`` changes the network
    resolution (rounded to the model's multiple), as ``--input-size`` does.
    """

    def __init__(self, spec: ModelSpec, backend: Backend, *, input_size: int | None = None,
                 weights_path: Path | None = None):
        self.spec = spec
        self.backend = backend
        self.input_size = input_size
        self.weights_path = weights_path

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.output

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        return network_size(height, width, self.spec.preprocessing, self.input_size)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        return preprocess(rgb, self.spec.preprocessing, self.input_size)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed batch -> maps of the model's kind at network resolution.

        The step between :meth:`preprocess` and resizing back: the backend, then the entry's
        output convention (the reciprocal of depth-like raw outputs).
        """
        return self._convention(self.backend.infer(batch))

    def run_network(self, batch: np.ndarray, **conditioning: np.ndarray) -> NetworkOutput:
        """Like :meth:`infer`, with every output the network gives (confidence, a camera)."""
        out = self.backend.run(batch, **conditioning)
        out.depth = self._convention(out.depth)
        return out

    def _convention(self, raw: np.ndarray) -> np.ndarray:
        if self.spec.reciprocal_output:
            raw = 1.0 / np.maximum(raw, _MIN_RAW)
        return raw

    def predict(self, inputs, *, batch_size: int = 1, keep_image: bool = False):
        """Predict depth for one image or a list of images.

        ``inputs``: a path (str/Path), encoded bytes, a PIL image, an array (``(H, W)``,
        ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA; uint8, uint16 or float in [0, 1]), or a list
        of those. Returns one :class:`DepthResult` for one input, a list for a list.
        Same-size inputs are batched up to ``batch_size``.
        """
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        decoded, sources, decode_ms = [], [], []
        for item in items:
            t0 = time.perf_counter()
            decoded.append(self._decode(item))
            decode_ms.append(_ms(t0))
            sources.append(str(item) if isinstance(item, (str, os.PathLike)) else None)
        results = self.predict_decoded(decoded, batch_size=batch_size, sources=sources, keep_image=keep_image)
        for r, ms in zip(results, decode_ms):
            r.timings = {"decode": ms, **r.timings}
        return results[0] if single else results

    @staticmethod
    def _decode(item) -> np.ndarray:
        if isinstance(item, (str, os.PathLike, bytes, bytearray)):
            return load_image(item)
        return as_rgb(item)

    def predict_decoded(self, images: Sequence[np.ndarray], *, batch_size: int = 1,
                        sources: Sequence[str | None] | None = None, keep_image: bool = False) -> list[DepthResult]:
        """Predict for decoded RGB arrays (see :mod:`localdepth.images`), batching same-size ones.

        Consecutive images that share a network input size go through the backend together.
        """
        sources = list(sources) if sources is not None else [None] * len(images)
        results: list[DepthResult | None] = [None] * len(images)
        for group in self._groups(images, batch_size):
            t0 = time.perf_counter()
            batch = np.stack([self.preprocess(images[i]) for i in group])
            pre_ms = _ms(t0) / len(group)
            group_results = self.predict_prepared(
                [images[i] for i in group], batch, sources=[sources[i] for i in group], keep_image=keep_image)
            for i, r in zip(group, group_results):
                r.timings = {"preprocess": pre_ms, **r.timings}
                results[i] = r
        return results  # type: ignore[return-value]

    def predict_prepared(self, images: Sequence[np.ndarray], batch: np.ndarray, *,
                         sources: Sequence[str | None] | None = None, keep_image: bool = False) -> list[DepthResult]:
        """Infer one already preprocessed batch (``np.stack`` of :meth:`preprocess` outputs of
        same-size ``images``) and bring each map back to its image's size."""
        return self.submit_prepared(images, batch, sources=sources, keep_image=keep_image)()

    def submit_prepared(self, images: Sequence[np.ndarray], batch: np.ndarray, *,
                        sources: Sequence[str | None] | None = None, keep_image: bool = False):
        """Start :meth:`predict_prepared`; returns a function that waits and returns its results.

        Backends with several requests in flight (``backend.parallel_requests`` > 1) infer while
        the caller submits more; others have finished when this returns. The ``inference`` timing
        is then the time from submission to the results, waiting for earlier requests included.
        """
        sources = list(sources) if sources is not None else [None] * len(images)
        t0 = time.perf_counter()
        future = self.backend.submit(batch)
        input_size = tuple(batch.shape[2:4] if self.spec.preprocessing.layout == "nchw" else batch.shape[1:3])

        def results() -> list[DepthResult]:
            out = future.result()
            out.depth = self._convention(out.depth)
            return self._results(images, out, input_size, _ms(t0) / len(images), sources, keep_image)

        return results

    def _results(self, images, out: NetworkOutput, input_size, infer_ms: float, sources, keep_image) -> list[DepthResult]:
        results = []
        for j, image in enumerate(images):
            t0 = time.perf_counter()
            h, w = image.shape[:2]
            depth = to_original_size(out.depth[j], h, w, self.spec.output)
            confidence = None if out.confidence is None else to_original_size(out.confidence[j], h, w, "confidence")
            camera = None if out.intrinsics is None else intrinsics_to_original(out.intrinsics[j], input_size, h, w)
            pose = None if out.camera_from_world is None else out.camera_from_world[j]
            results.append(DepthResult(
                map=depth, kind=self.spec.output, model=self.spec.name, input_size=input_size,
                timings={"inference": infer_ms, "postprocess": _ms(t0)},
                source=sources[j], image=image if keep_image else None, max_depth=self.spec.max_depth,
                confidence=confidence, intrinsics=camera, camera_from_world=pose,
            ))
        return results

    def _groups(self, images: Sequence[np.ndarray], batch_size: int) -> Iterable[list[int]]:
        limit = max(1, batch_size)
        if self.backend.max_batch:
            limit = min(limit, self.backend.max_batch)
        group: list[int] = []
        key = None
        for i, img in enumerate(images):
            k = self.network_size(img.shape[0], img.shape[1])
            if group and (k != key or len(group) >= limit):
                yield group
                group = []
            group.append(i)
            key = k
        if group:
            yield group

    def describe(self) -> dict:
        """What a sidecar records about the model that produced a map."""
        spec = self.spec
        return {
            "model": spec.name, "family": spec.family, "source": spec.source, "licence": spec.licence,
            "kind": spec.output, "max_depth": spec.max_depth, **self.backend.describe(),
        }

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        b = self.backend
        return f"DepthEstimator({self.spec.name!r}, backend={b.name}, device={b.device}, dtype={b.dtype})"


def load(name: str = registry.DEFAULT_MODEL, *, weights: str | os.PathLike | None = None,
         backend: str = "auto", device: str = "auto", dtype: str = "auto",
         input_size: int | None = None, download: bool = True, compile: bool = False,
         cuda_graphs: bool = False, performance: str = "latency", threads: int | None = None) -> DepthEstimator:
    """Load a model by registry name (``depth-anything-v2-small`` or ``depth_anything_v2_small``).

    ``weights``: a Hugging Face-format folder, a weights file, or a converted model (``.onnx``,
    OpenVINO ``.xml``) to use instead of the cache.
    ``backend``: ``auto``, ``torch``, ``onnx``, ``openvino`` or ``tflite``; ``auto`` follows the
    table in :mod:`localdepth.backends.choice` (OpenVINO on x86 CPUs where it is installed,
    PyTorch on GPUs). ``device``: ``auto``, ``cpu``, ``cuda``, ``mps``.
    ``dtype``: ``auto`` (fp16 on CUDA; OpenVINO: bf16 where the CPU has it; else fp32), ``fp32``,
    ``fp16``, ``bf16``, ``int8`` (OpenVINO or ONNX Runtime, quantized once and cached).
    ``compile``/``cuda_graphs``: PyTorch only (``torch.compile``; CUDA graph replay per input shape).
    ``performance``: ``latency`` (one image at a time) or ``throughput`` (OpenVINO keeps several
    requests in flight; for folders). ``threads``: CPU threads of ONNX Runtime, OpenVINO and LiteRT.
    """
    spec = registry.get(name)
    if input_size is not None:
        pre = spec.preprocessing
        if pre.resize == "fixed":
            raise LocalDepthError(f"{spec.name} takes a fixed {pre.fixed_hw[0]}x{pre.fixed_hw[1]} input; drop --input-size")
        if input_size < pre.multiple_of:
            raise LocalDepthError(f"--input-size must be at least {pre.multiple_of} for {spec.name}")
    resolved = resolve(spec, weights, download=download)
    warn_licence(spec)
    engine = create_backend(spec, resolved, backend=backend, device=device, dtype=dtype, compile=compile,
                            cuda_graphs=cuda_graphs, performance=performance, threads=threads)
    return DepthEstimator(spec, engine, input_size=input_size, weights_path=resolved.path)
