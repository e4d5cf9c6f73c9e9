"""The estimator: registry entry + weights + backend + pre/postprocessing.

``localdepth.load(name)`` returns a :class:`DepthEstimator`; its :meth:`~DepthEstimator.predict`
takes images in any common form and returns :class:`~localdepth.postprocess.DepthResult` objects.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from . import registry
from .backends import Backend, choose_backend, open_backend
from .backends.base import NetworkOutput
from .depthfile import read_prompt_depth
from .errors import LocalDepthError, PromptDepthError
from .images import as_rgb, load_image
from .postprocess import (
    DepthResult, depth_like_to_disparity, fov_to_intrinsics, intrinsics_to_original, resize_to_image, to_original_size,
)
from .preprocess import network_input_note, network_size, preprocess, preprocess_prompt
from .registry import ModelSpec
from .weights import resolve


class NonCommercialLicenceWarning(UserWarning):
    """The model's weights may not be used commercially."""


_warned_licences: set[str] = set()


def warn_licence(spec: ModelSpec, fine_tuned_from: str | None = None) -> None:
    """Warn once per process when a model's weights are not licensed for commercial use
    (``fine_tuned_from``: the weights are a fine-tune of that entry, which set their licence)."""
    key = f"{spec.name}<-{fine_tuned_from}" if fine_tuned_from else spec.name
    if spec.commercial_use or key in _warned_licences:
        return
    _warned_licences.add(key)
    what = ("the licence of these weights could not be verified (see `localdepth models info`)"
            if spec.licence == "unverified" else f"weights are licensed {spec.licence}")
    if fine_tuned_from:
        what = f"weights fine-tuned from {fine_tuned_from}, which keep its licence ({spec.licence})"
    warnings.warn(f"{spec.name}: {what}: not for commercial use", NonCommercialLicenceWarning, stacklevel=3)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def check_prompt(spec: ModelSpec, given: bool) -> None:
    """Refuse a prompt depth for a model that takes none, and its absence where one is required
    (one line each, :class:`PromptDepthError`)."""
    if given and spec.prompt is None:
        raise PromptDepthError(f"{spec.name} takes no prompt depth; drop --prompt-depth (the "
                               "prompt-depth-anything-* models take one)")
    if not given and spec.prompt is not None and spec.prompt.required:
        raise PromptDepthError(f"{spec.name} needs a prompt depth map (e.g. a phone's LiDAR): --prompt-depth PATH "
                               "[--prompt-scale METRES_PER_UNIT], or predict(image, prompt_depth=array_in_metres)")


def refuse_prompt_models(spec: ModelSpec, command: str) -> None:
    """For commands that carry no prompt depth (``video``, ``batch``): a one-line error for models that need one."""
    if spec.prompt is not None and spec.prompt.required:
        raise PromptDepthError(f"{spec.name} needs a prompt depth map per image, which `localdepth {command}` does not "
                               "take; use `localdepth run --prompt-depth FOLDER`")


class DepthEstimator:
    """A loaded model ready to predict depth.

    Parameters mirror :func:`localdepth.load`. ``input_size`` changes the network
    resolution (rounded to the model's multiple), as ``--input-size`` does.
    """

    def __init__(self, spec: ModelSpec, backend: Backend, *, input_size: int | None = None,
                 weights_path: Path | None = None, fine_tuned_from: str | None = None):
        self.spec = spec
        self.backend = backend
        self.input_size = input_size
        self.weights_path = weights_path
        #: the registry entry these weights were fine-tuned from (``localdepth finetune``), if any
        self.fine_tuned_from = fine_tuned_from
        #: the camera the user gave (``{"intrinsics": "fx,fy,cx,cy"}`` or ``{"fov": degrees}``), for
        #: models whose metres depend on the focal length (Depth Anything 3 Metric); else EXIF or
        #: the default, by :func:`localdepth.geometry.resolve_intrinsics`
        self.camera: dict = {}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.output

    @property
    def metric(self) -> bool:
        """The maps are in metres."""
        return self.spec.metric

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
            return depth_like_to_disparity(raw)
        return raw

    def check_prompt(self, given: bool) -> None:
        """See :func:`check_prompt`."""
        check_prompt(self.spec, given)

    def preprocess_prompt(self, depth_m: np.ndarray) -> np.ndarray:
        """A prompt depth map in metres -> the network's ``prompt_depth`` input ``(1, h, w)``."""
        if self.spec.prompt is None:
            self.check_prompt(True)
        return preprocess_prompt(depth_m, self.spec.prompt)

    def predict(self, inputs, *, batch_size: int = 1, keep_image: bool = False, prompt_depth=None,
                prompt_scale: float | None = None):
        """Predict depth for one image or a list of images.

        ``inputs``: a path (str/Path), an ``http(s)://`` URL, encoded bytes, a PIL image, an array
        (``(H, W)``, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA; uint8, uint16 or float in [0, 1]), or
        a list of those. Returns one :class:`DepthResult` for one input, a list for a list.
        Same-size inputs are batched up to ``batch_size``.

        ``prompt_depth`` (models with a prompt input, e.g. Prompt Depth Anything): one depth map per
        input, a list for a list: an ``(H, W)`` array in metres, or a file (16-bit PNG, ``.npy``,
        ``.pfm``; ``prompt_scale`` metres per stored unit, required for integer images).
        """
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        prompts = self._prompt_list(prompt_depth, len(items), single)
        decoded, sources, decode_ms = [], [], []
        for item in items:
            t0 = time.perf_counter()
            decoded.append(self._decode(item))
            decode_ms.append(_ms(t0))
            sources.append(str(item) if isinstance(item, (str, os.PathLike)) else None)
        prompt_maps = None if prompts is None else [read_prompt_depth(p, prompt_scale) for p in prompts]
        results = self.predict_decoded(decoded, batch_size=batch_size, sources=sources, keep_image=keep_image,
                                       prompt_depths=prompt_maps)
        for r, ms in zip(results, decode_ms):
            r.timings = {"decode": ms, **r.timings}
        return results[0] if single else results

    def _prompt_list(self, prompt_depth, n: int, single: bool):
        self.check_prompt(prompt_depth is not None)
        if prompt_depth is None:
            return None
        prompts = [prompt_depth] if single else prompt_depth
        if not isinstance(prompts, (list, tuple)) or len(prompts) != n:
            raise PromptDepthError(f"give one prompt depth map per image: {n} image(s), "
                                   f"{len(prompts) if isinstance(prompts, (list, tuple)) else 1} prompt(s)")
        return list(prompts)

    @staticmethod
    def _decode(item) -> np.ndarray:
        if isinstance(item, (str, os.PathLike, bytes, bytearray)):
            return load_image(item)
        return as_rgb(item)

    def predict_decoded(self, images: Sequence[np.ndarray], *, batch_size: int = 1,
                        sources: Sequence[str | None] | None = None, keep_image: bool = False,
                        prompt_depths: Sequence[np.ndarray] | None = None) -> list[DepthResult]:
        """Predict for decoded RGB arrays (see :mod:`localdepth.images`), batching same-size ones.

        Consecutive images that share a network input size (and prompt size) go through the
        backend together. ``prompt_depths``: one metric map per image, for models with a prompt.
        """
        self.check_prompt(prompt_depths is not None)
        sources = list(sources) if sources is not None else [None] * len(images)
        prompts = None if prompt_depths is None else [self.preprocess_prompt(p) for p in prompt_depths]
        results: list[DepthResult | None] = [None] * len(images)
        for group in self._groups(images, batch_size, prompts):
            t0 = time.perf_counter()
            batch = np.stack([self.preprocess(images[i]) for i in group])
            pre_ms = _ms(t0) / len(group)
            conditioning = {} if prompts is None else {"prompt_depth": np.stack([prompts[i] for i in group])}
            group_results = self.predict_prepared(
                [images[i] for i in group], batch, sources=[sources[i] for i in group], keep_image=keep_image,
                **conditioning)
            for i, r in zip(group, group_results):
                r.timings = {"preprocess": pre_ms, **r.timings}
                results[i] = r
        return results  # type: ignore[return-value]

    def predict_prepared(self, images: Sequence[np.ndarray], batch: np.ndarray, *,
                         sources: Sequence[str | None] | None = None, keep_image: bool = False,
                         **conditioning: np.ndarray) -> list[DepthResult]:
        """Infer one already preprocessed batch (``np.stack`` of :meth:`preprocess` outputs of
        same-size ``images``) and bring each map back to its image's size.

        ``conditioning``: the batch's extra network inputs (``prompt_depth``: a stack of
        :meth:`preprocess_prompt` outputs).
        """
        return self.submit_prepared(images, batch, sources=sources, keep_image=keep_image, **conditioning)()

    def submit_prepared(self, images: Sequence[np.ndarray], batch: np.ndarray, *,
                        sources: Sequence[str | None] | None = None, keep_image: bool = False,
                        **conditioning: np.ndarray) -> Callable[[], list[DepthResult]]:
        """Start :meth:`predict_prepared`; returns a function that waits and returns its results.

        Backends with several requests in flight (``backend.parallel_requests`` > 1) infer while
        the caller submits more; others have finished when this returns. The ``inference`` timing
        is then the time from submission to the results, waiting for earlier requests included.
        """
        self.check_prompt("prompt_depth" in conditioning)
        sources = list(sources) if sources is not None else [None] * len(images)
        t0 = time.perf_counter()
        input_size = tuple(batch.shape[2:4] if self.spec.preprocessing.layout == "nchw" else batch.shape[1:3])
        if self.backend.parallel_requests > 1:  # several requests in flight: wait for this one later
            future = self.backend.submit(batch, **conditioning)

            def network_output() -> NetworkOutput:
                out = future.result()
                out.depth = self._convention(out.depth)
                return out
        else:  # one request at a time: infer now
            done = self.run_network(batch, **conditioning)

            def network_output() -> NetworkOutput:
                return done

        def results() -> list[DepthResult]:
            out = network_output()
            infer_ms = _ms(t0) / len(images)
            return [self._result(out, j, image, input_size, sources[j], infer_ms, keep_image, conditioning)
                    for j, image in enumerate(images)]

        return results

    def _result(self, out: NetworkOutput, j: int, image: np.ndarray, input_size: tuple[int, int],
                source: str | None, infer_ms: float, keep_image: bool, conditioning: dict | None = None) -> DepthResult:
        """The ``j``-th network output at ``image``'s resolution (``input_size``: the network grid)."""
        t0 = time.perf_counter()
        pre, post = self.spec.preprocessing, self.spec.postprocessing
        h, w = image.shape[:2]
        raw = out.depth[j]
        notes = network_input_note(h, w, pre, self.input_size)
        if self.spec.metric_focal:
            scale, notes["metric_scale"] = self._focal_scale(h, w, input_size, source)
            raw = raw * np.float32(scale)
        depth = to_original_size(raw, h, w, self.spec.output, post, pre)
        confidence = None if out.confidence is None else resize_to_image(out.confidence[j], h, w, post, pre)
        if out.field_of_view is not None:
            camera = fov_to_intrinsics(out.field_of_view[j], h, w)
            notes["predicted_field_of_view_deg"] = float(out.field_of_view[j])
        elif out.intrinsics is not None:
            camera = intrinsics_to_original(out.intrinsics[j], input_size, h, w)
        else:
            camera = None
        if conditioning and "prompt_depth" in conditioning:
            prompt = conditioning["prompt_depth"][j, 0]
            notes["prompt_depth"] = {"shape": [int(v) for v in prompt.shape], "units": self.spec.prompt.units,
                                     "range_m": [float(prompt.min()), float(prompt.max())],
                                     "normalisation": self.spec.prompt.normalisation}
        pose = None if out.camera_from_world is None else out.camera_from_world[j]
        return DepthResult(
            map=depth, kind=self.spec.output, model=self.spec.name, input_size=input_size,
            timings={"inference": infer_ms, "postprocess": _ms(t0)},
            source=source, image=image if keep_image else None, max_depth=self.spec.max_depth,
            confidence=confidence, intrinsics=camera, camera_from_world=pose, notes=notes, metric=self.spec.metric,
        )

    def _focal_scale(self, height: int, width: int, input_size: tuple[int, int],
                     source: str | None) -> tuple[float, dict]:
        """Metres per raw unit for a model whose output is the depth at a reference focal length:
        ``focal / metric_focal``, the focal (mean of fx and fy) in pixels of the network input and
        taken from the one intrinsics rule (given, EXIF, default)."""
        from .geometry import resolve_intrinsics

        try:
            cam = resolve_intrinsics(width, height, intrinsics=self.camera.get("intrinsics"),
                                     fov=self.camera.get("fov"), image_path=source)
        except ValueError as e:
            raise LocalDepthError(str(e)) from None
        focal = 0.5 * (cam.fx * input_size[1] / width + cam.fy * input_size[0] / height)
        note = {"rule": f"metres = focal_px * output / {self.spec.metric_focal:g}",
                "focal_px": round(focal, 4), "focal_of": f"the {input_size[1]}x{input_size[0]} network input",
                "intrinsics_source": cam.origin, "intrinsics": cam.source}
        return focal / self.spec.metric_focal, note

    def predict_views(self, images: Sequence, *, sources: Sequence[str | None] | None = None,
                      reference_strategy: str = "saddle_balanced", max_views: int | None = None,
                      keep_image: bool = False) -> list[DepthResult]:
        """Several views of one scene through an any-view model together (Depth Anything 3).

        Every result holds that view's depth at its image's resolution, confidence, intrinsics
        (pixels of that image) and ``camera_from_world`` (4x4, OpenCV axes), all views in one world
        frame. See :mod:`localdepth.multiview` (reference view, memory bound).
        """
        from .multiview import predict_views

        return predict_views(self, images, sources=sources, reference_strategy=reference_strategy,
                             max_views=max_views, keep_image=keep_image)

    def _groups(self, images: Sequence[np.ndarray], batch_size: int,
                prompts: Sequence[np.ndarray] | None = None) -> Iterable[list[int]]:
        limit = max(1, batch_size)
        if self.backend.max_batch:
            limit = min(limit, self.backend.max_batch)
        group: list[int] = []
        key = None
        for i, img in enumerate(images):
            k = (self.network_size(img.shape[0], img.shape[1]), None if prompts is None else prompts[i].shape)
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
            "kind": spec.output, "metric": spec.metric, "max_depth": spec.max_depth,
            **({"fine_tuned_from": self.fine_tuned_from, "commercial_use": spec.commercial_use}
               if self.fine_tuned_from else {}),
            **self.backend.describe(),
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


def _placement(choice) -> str:
    """``"cpu, fp32"`` (PyTorch) or ``"cpu, bf16, openvino"``: where, in what precision and, when it
    is not PyTorch, on which backend the model will run, for the loading line."""
    device = choice.device
    if choice.backend == "torch" and device == "auto":
        from .backends.torch_backend import pick_device

        device = pick_device("auto")
    return f"{device}, {choice.precision}" + ("" if choice.backend == "torch" else f", {choice.backend}")


def load(name: str | None = None, *, weights: str | os.PathLike | None = None,
         backend: str = "auto", device: str = "auto", dtype: str = "auto",
         input_size: int | None = None, download: bool = True, compile: bool = False,
         cuda_graphs: bool = False, performance: str = "latency", threads: int | None = None,
         on_loading: Callable[[str], None] | None = None) -> DepthEstimator:
    """Load a model by registry name (``depth-anything-v2-small`` or ``depth_anything_v2_small``).

    ``name`` None: the entry a fine-tuned ``weights`` folder was trained from (its ``finetune.json``),
    else :data:`~localdepth.registry.DEFAULT_MODEL`.
    ``weights``: a Hugging Face-format folder, a weights file, or a converted model (``.onnx``,
    OpenVINO ``.xml``) to use instead of the cache. Fine-tuned weights keep their base model's
    licence (:func:`localdepth.registry.as_fine_tuned`).
    ``backend``: ``auto``, ``torch``, ``onnx``, ``openvino`` or ``tflite``; ``auto`` follows the
    table in :mod:`localdepth.backends.choice` (OpenVINO on x86 CPUs where it is installed,
    PyTorch on GPUs). ``device``: ``auto``, ``cpu``, ``cuda``, ``mps``.
    ``dtype``: ``auto`` (fp16 on CUDA; OpenVINO: bf16 where the CPU has it; else fp32), ``fp32``,
    ``fp16``, ``bf16``, ``int8`` (OpenVINO or ONNX Runtime, quantized once and cached).
    ``compile``/``cuda_graphs``: PyTorch only (``torch.compile``; CUDA graph replay per input shape).
    ``performance``: ``latency`` (one image at a time) or ``throughput`` (OpenVINO keeps several
    requests in flight; for folders). ``threads``: CPU threads of ONNX Runtime, OpenVINO and LiteRT.
    ``on_loading``: called with one line (``loading NAME (cpu, fp32)…``) once the weights are found
    and the backend is chosen, before the network loads (or converts), the slow part (the CLI
    shows it on a terminal).
    """
    from .weights import finetune_record, model_for_weights

    spec = registry.get(name or model_for_weights(weights) or registry.DEFAULT_MODEL)
    if input_size is not None:
        pre = spec.preprocessing
        if pre.resize == "fixed":
            raise LocalDepthError(f"{spec.name} takes a fixed {pre.fixed_hw[0]}x{pre.fixed_hw[1]} input; drop --input-size")
        if input_size < pre.multiple_of:
            raise LocalDepthError(f"--input-size must be at least {pre.multiple_of} for {spec.name}")
    resolved = resolve(spec, weights, download=download)
    record = finetune_record(resolved.path)
    if record is not None:
        spec = registry.as_fine_tuned(spec, record, str(resolved.path))
    warn_licence(spec, record["model"] if record else None)
    choice = choose_backend(spec, resolved, backend=backend, device=device, dtype=dtype,
                            compile=compile, cuda_graphs=cuda_graphs)
    if on_loading is not None:
        on_loading(f"loading {spec.name} ({_placement(choice)})…")
    engine = open_backend(spec, resolved, choice, compile=compile, cuda_graphs=cuda_graphs,
                          performance=performance, threads=threads)
    return DepthEstimator(spec, engine, input_size=input_size, weights_path=resolved.path,
                          fine_tuned_from=record["model"] if record else None)
