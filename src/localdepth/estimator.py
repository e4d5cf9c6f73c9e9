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
from .depthfile import check_prompt_values, read_prompt_depth
from .errors import CameraError, LocalDepthError, PromptDepthError
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
        #: models whose metres depend on the focal length (Depth Pro, Depth Anything 3 Metric); else
        #: EXIF, the model's own, the default, by :func:`localdepth.geometry.resolve_intrinsics`.
        #: ``predict(intrinsics=, fov=)`` gives one for a call instead.
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

    @property
    def device_pipeline(self) -> bool:
        """Pre- and postprocessing run on the backend's device (PyTorch on CUDA): the decoded image
        goes to the device, and only the map at its size comes back (:mod:`localdepth.preprocess_torch`)."""
        return bool(getattr(self.backend, "device_pipeline", False))

    def prepare(self, rgb: np.ndarray):
        """What a decoding thread makes of a decoded image for :meth:`network_batch`: its network
        input (NumPy), or, on the device pipeline, the image itself as a host tensor, in pinned
        memory on CUDA so that its copy to the GPU runs asynchronously."""
        if not self.device_pipeline:
            return self.preprocess(rgb)
        from .preprocess_torch import image_tensor

        return image_tensor(rgb, pin=self.backend.device.startswith("cuda"))

    def network_batch(self, images: Sequence[np.ndarray], prepared: Sequence | None = None):
        """One network batch from same-size ``images`` (``prepared``: their :meth:`prepare` outputs, if
        made already): ``np.stack`` of the network inputs, or on the device pipeline a tensor
        ``(N, 3, h, w)`` on the device in the model's dtype, channels-last (8-bit pixels copied
        asynchronously, then resized and normalised there)."""
        prepared = list(prepared) if prepared is not None else [self.prepare(image) for image in images]
        if not self.device_pipeline:
            return np.stack(prepared)
        from .preprocess_torch import preprocess_batch

        device = [x.to(self.backend.device, non_blocking=True) for x in prepared]
        return preprocess_batch(device, self.spec.preprocessing, self.input_size, dtype=self.backend.torch_dtype)

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
        check_prompt_values(depth_m)
        return preprocess_prompt(depth_m, self.spec.prompt)

    def predict(self, inputs, *, batch_size: int = 1, keep_image: bool = False, prompt_depth=None,
                prompt_scale: float | None = None, intrinsics=None, fov: float | None = None):
        """Predict depth for one image or a list of images.

        ``inputs``: a path (str/Path), an ``http(s)://`` URL, encoded bytes, a PIL image, an array
        (``(H, W)``, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA; uint8, uint16 or float in [0, 1]), or
        a list of those. Returns one :class:`DepthResult` for one input, a list for a list.
        Same-size inputs are batched up to ``batch_size``.

        ``prompt_depth`` (models with a prompt input, e.g. Prompt Depth Anything): one depth map per
        input, a list for a list: an ``(H, W)`` array in metres, or a file (16-bit PNG, ``.npy``,
        ``.pfm``; ``prompt_scale`` metres per stored unit, required for integer images).

        ``intrinsics`` (``"fx,fy,cx,cy"`` or four numbers, pixels of the photo) or ``fov`` (horizontal,
        degrees): the camera of the photos, where the metres depend on it (Depth Pro, Depth Anything 3
        Metric). It wins over the photo's EXIF and the camera the model predicts (``result.intrinsics``
        still holds the prediction; ``result.notes["metric_scale"]`` says which camera made the metres).
        """
        single = not isinstance(inputs, (list, tuple))
        camera = given_camera_dict(intrinsics, fov)
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
                                       prompt_depths=prompt_maps, cameras=[camera] * len(decoded) if camera else None)
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
                        prompt_depths: Sequence[np.ndarray] | None = None,
                        cameras: Sequence[dict | None] | None = None) -> list[DepthResult]:
        """Predict for decoded RGB arrays (see :mod:`localdepth.images`), batching same-size ones.

        Consecutive images that share a network input size (and prompt size) go through the
        backend together. ``prompt_depths``: one metric map per image, for models with a prompt.
        ``cameras``: per image, the camera the user gave and where its EXIF is (see :meth:`metric_camera`);
        None: :attr:`camera` and the image's source.
        """
        cameras = list(cameras) if cameras is not None else [None] * len(images)
        self.check_prompt(prompt_depths is not None)
        sources = list(sources) if sources is not None else [None] * len(images)
        prompts = None if prompt_depths is None else [self.preprocess_prompt(p) for p in prompt_depths]
        results: list[DepthResult | None] = [None] * len(images)
        for group in self._groups(images, batch_size, prompts):
            t0 = time.perf_counter()
            batch = self.network_batch([images[i] for i in group])
            pre_ms = _ms(t0) / len(group)
            conditioning = {} if prompts is None else {"prompt_depth": np.stack([prompts[i] for i in group])}
            group_results = self.predict_prepared(
                [images[i] for i in group], batch, sources=[sources[i] for i in group], keep_image=keep_image,
                cameras=[cameras[i] for i in group], **conditioning)
            for i, r in zip(group, group_results):
                r.timings = {"preprocess": pre_ms, **r.timings}
                results[i] = r
        return results  # type: ignore[return-value]

    def predict_prepared(self, images: Sequence[np.ndarray], batch: np.ndarray, *,
                         sources: Sequence[str | None] | None = None, keep_image: bool = False,
                         cameras: Sequence[dict | None] | None = None, **conditioning: np.ndarray) -> list[DepthResult]:
        """Infer one already preprocessed batch (``np.stack`` of :meth:`preprocess` outputs of
        same-size ``images``) and bring each map back to its image's size.

        ``conditioning``: the batch's extra network inputs (``prompt_depth``: a stack of
        :meth:`preprocess_prompt` outputs).
        """
        return self.submit_prepared(images, batch, sources=sources, keep_image=keep_image, cameras=cameras,
                                    **conditioning)()

    def submit_prepared(self, images: Sequence[np.ndarray], batch: np.ndarray, *,
                        sources: Sequence[str | None] | None = None, keep_image: bool = False,
                        cameras: Sequence[dict | None] | None = None,
                        **conditioning: np.ndarray) -> Callable[[], list[DepthResult]]:
        """Start :meth:`predict_prepared`; returns a function that waits and returns its results.

        Backends with several requests in flight (``backend.parallel_requests`` > 1) infer while
        the caller submits more; others have finished when this returns. The ``inference`` timing
        is then the time from submission to the results, waiting for earlier requests included.
        """
        self.check_prompt("prompt_depth" in conditioning)
        sources = list(sources) if sources is not None else [None] * len(images)
        cameras = list(cameras) if cameras is not None else [None] * len(images)
        t0 = time.perf_counter()
        input_size = tuple(int(v) for v in (batch.shape[2:4] if self.spec.preprocessing.layout == "nchw"
                                            else batch.shape[1:3]))
        if not isinstance(batch, np.ndarray):  # a device batch: everything stays there until the maps
            out = self.backend.run_tensor(batch, **conditioning)
            return self.device_results(out, images, [input_size] * len(images), sources, t0, keep_image, conditioning,
                                       cameras)
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
            return [self._result(out, j, image, input_size, sources[j], infer_ms, keep_image, conditioning, cameras[j])
                    for j, image in enumerate(images)]

        return results

    def device_results(self, out: dict, images: Sequence[np.ndarray], input_sizes: Sequence[tuple[int, int]],
                       sources: Sequence[str | None], t0: float, keep_image: bool,
                       conditioning: dict | None = None,
                       cameras: Sequence[dict | None] | None = None) -> Callable[[], list[DepthResult]]:
        """The device pipeline's end: the network's device outputs ``out`` (launched, maybe not
        finished) resized to each image's size on the device (as :func:`to_original_size` does), their
        copies back started; returns a function that waits for them and makes the results. Only the
        maps at the images' sizes (and the small camera outputs) cross to the host. ``out``'s values
        are batched tensors, or lists of one tensor per image."""
        import torch

        from . import preprocess_torch as pt

        pre, post = self.spec.preprocessing, self.spec.postprocessing
        cameras = list(cameras) if cameras is not None else [None] * len(images)
        # Depth Pro's metres depend on the camera used, which may be its own prediction: its field of
        # view (one number per image) is read back first, the maps stay on the device
        fovs = None
        if "field_of_view" in out and self.spec.metric:
            fov = out["field_of_view"]
            fovs = (torch.stack(list(fov)) if isinstance(fov, (list, tuple)) else fov).float().cpu().numpy()
        maps, confidences, scale_notes = [], [], []
        for j, image in enumerate(images):
            h, w = image.shape[:2]
            raw = out["depth"][j]
            fov_camera = None if fovs is None else fov_to_intrinsics(fovs[j], h, w)
            scale, note = self._metric_scale(h, w, input_sizes[j], sources[j], fov_camera, cameras[j])
            if note is not None:
                raw = raw.float() * scale
            scale_notes.append(note)
            maps.append(pt.to_original_size(raw, h, w, self.spec.output, post, pre))
            if "confidence" in out:
                confidences.append(pt.resize_to_image(out["confidence"][j], h, w, post, pre))
        small = [k for k in ("intrinsics", "camera_from_world", "field_of_view") if k in out]
        stacked = [torch.stack(list(out[k])) if isinstance(out[k], (list, tuple)) else out[k] for k in small]
        host, copied = pt.to_host(maps + confidences + [v.float() for v in stacked])

        def results() -> list[DepthResult]:
            copied.synchronize()
            infer_ms = _ms(t0) / len(images)
            n = len(images)
            arrays = {k: host[2 * n + i if confidences else n + i].numpy().astype(np.float64)
                      for i, k in enumerate(small)} if small else {}
            net = NetworkOutput(depth=None, **arrays)  # type: ignore[arg-type]  # maps given below
            return [self._result(net, j, image, input_sizes[j], sources[j], infer_ms, keep_image, conditioning,
                                 cameras[j], resized=(host[j].numpy(), host[n + j].numpy() if confidences else None,
                                          scale_notes[j]))
                    for j, image in enumerate(images)]

        return results

    def _result(self, out: NetworkOutput, j: int, image: np.ndarray, input_size: tuple[int, int],
                source: str | None, infer_ms: float, keep_image: bool, conditioning: dict | None = None,
                given: dict | None = None, resized: tuple | None = None) -> DepthResult:
        """The ``j``-th network output at ``image``'s resolution (``input_size``: the network grid).
        ``given``: the camera the user gave for this image (see :meth:`metric_camera`). ``resized``:
        ``(map, confidence, metric scale note)`` already at the image's size (the device pipeline);
        otherwise they are made here from ``out``.

        The predicted camera is kept as predicted (it may be unusable: :attr:`Intrinsics.problem`);
        only a camera that is used is checked (:meth:`metric_camera`, and geometry later)."""
        t0 = time.perf_counter()
        pre, post = self.spec.preprocessing, self.spec.postprocessing
        h, w = image.shape[:2]
        notes = network_input_note(h, w, pre, self.input_size)
        if out.field_of_view is not None:
            camera = fov_to_intrinsics(out.field_of_view[j], h, w)
            notes["predicted_field_of_view_deg"] = float(out.field_of_view[j])
        elif out.intrinsics is not None:
            camera = intrinsics_to_original(out.intrinsics[j], input_size, h, w)
        else:
            camera = None
        if resized is not None:
            depth, confidence, scale_note = resized
            if scale_note is not None:
                notes["metric_scale"] = scale_note
        else:
            raw = out.depth[j]
            scale, scale_note = self._metric_scale(h, w, input_size, source,
                                                   camera if out.field_of_view is not None else None, given)
            if scale_note is not None:
                notes["metric_scale"] = scale_note
                raw = raw * np.float32(scale)
            depth = to_original_size(raw, h, w, self.spec.output, post, pre)
            confidence = None if out.confidence is None else resize_to_image(out.confidence[j], h, w, post, pre)
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

    def metric_camera(self, width: int, height: int, source=None, predicted=None, given: dict | None = None):
        """The camera that turns a focal-dependent model's output into metres, by the one intrinsics
        rule (:func:`localdepth.geometry.resolve_intrinsics`): the camera given (``given``, else
        :attr:`camera`), the photo's EXIF (``given["exif"]``, else ``source``), the camera the model
        ``predicted``, the default. Only the camera used is checked; an unusable one is a one-line
        :class:`~localdepth.errors.CameraError` that names ``--fov``/``--intrinsics``."""
        from .geometry import Intrinsics, resolve_intrinsics

        given = self.camera if given is None else given
        exif = given.get("exif", source)
        if isinstance(exif, str) and not os.path.isfile(exif):
            exif = None  # a URL or a label: no EXIF to read
        try:
            stated = given.get("intrinsics")
            if isinstance(stated, Intrinsics):  # already made for this image (the server's request)
                return stated if (stated.width, stated.height) == (width, height) else stated.scaled(width, height)
            return resolve_intrinsics(width, height, intrinsics=stated, fov=given.get("fov"), image_path=exif,
                                      predicted=predicted)
        except ValueError as e:
            raise CameraError(str(e)) from None

    def _metric_scale(self, height: int, width: int, input_size: tuple[int, int], source: str | None,
                      fov_camera, given: dict | None) -> tuple[float, dict | None]:
        """The factor that makes the raw map metres with the camera of the intrinsics rule, and the
        sidecar's note of it; ``(1, None)`` where the camera does not matter. ``fov_camera``: the camera
        of a predicted field of view (Depth Pro), else None."""
        if self.spec.metric_focal:
            return self._focal_scale(height, width, input_size, source, given)
        if fov_camera is not None and self.spec.metric:
            return self._field_of_view_scale(fov_camera, source, given)
        return 1.0, None

    def _focal_scale(self, height: int, width: int, input_size: tuple[int, int],
                     source: str | None, given: dict | None = None) -> tuple[float, dict]:
        """Metres per raw unit for a model whose output is the depth at a reference focal length:
        ``focal / metric_focal``, the focal (mean of fx and fy) in pixels of the network input and
        taken from the one intrinsics rule (given, EXIF, default)."""
        cam = self.metric_camera(width, height, source, given=given)
        focal = 0.5 * (cam.fx * input_size[1] / width + cam.fy * input_size[0] / height)
        note = {"rule": f"metres = focal_px * output / {self.spec.metric_focal:g}",
                "focal_px": round(focal, 4), "focal_of": f"the {input_size[1]}x{input_size[0]} network input",
                "intrinsics_source": cam.origin, "intrinsics": cam.source, "camera": cam.as_dict()}
        return focal / self.spec.metric_focal, note

    def _field_of_view_scale(self, predicted, source: str | None, given: dict | None) -> tuple[float, dict]:
        """The factor that turns a network's inverse depth made with its own predicted focal (Depth Pro:
        canonical inverse depth x width / predicted focal) into the one made with the camera of the
        intrinsics rule: ``predicted focal / focal used`` (the official ``infer(f_px=...)``)."""
        cam = self.metric_camera(predicted.width, predicted.height, source, predicted=predicted, given=given)
        scale = 1.0 if cam is predicted else predicted.fx / cam.fx
        if not np.isfinite(scale) or scale == 0:  # a field of view of 0 or NaN leaves nothing to rescale
            raise CameraError(f"{self.name} predicted a field of view of {predicted.fov_deg:.4g} degrees, which "
                                  "leaves no depth to rescale to the camera given")
        note = {"rule": "inverse depth = canonical inverse depth * width / focal_px", "focal_px": round(cam.fx, 4),
                "focal_of": f"the {cam.width}x{cam.height} image", "intrinsics_source": cam.origin,
                "intrinsics": cam.source, "camera": cam.as_dict()}
        return scale, note

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


def given_camera_dict(intrinsics=None, fov: float | None = None) -> dict:
    """``predict(intrinsics=, fov=)`` -> the camera dict of :attr:`DepthEstimator.camera` (checked:
    a bad value is a one-line :class:`LocalDepthError`)."""
    if intrinsics is not None and fov is not None:
        raise LocalDepthError("give either intrinsics or fov, not both")
    if intrinsics is not None:
        from .geometry import parse_intrinsics

        text = intrinsics if isinstance(intrinsics, str) else ",".join(repr(float(v)) for v in intrinsics)
        try:
            parse_intrinsics(text, 1, 1)
        except ValueError as e:
            raise LocalDepthError(str(e)) from None
        return {"intrinsics": text}
    if fov is not None:
        if not 0 < float(fov) < 180:
            raise LocalDepthError(f"fov is the horizontal field of view in degrees, in (0, 180); got {fov}")
        return {"fov": float(fov)}
    return {}


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
         on_loading: Callable[[str], None] | None = None,
         progress: Callable[[str], None] | None = None) -> DepthEstimator:
    """Load a model by registry name (``depth-anything-v2-small`` or ``depth_anything_v2_small``).

    ``name`` None: the entry a fine-tuned ``weights`` folder was trained from (its ``finetune.json``),
    else :data:`~localdepth.registry.DEFAULT_MODEL`.
    ``weights``: a Hugging Face-format folder, a weights file, or a converted model (``.onnx``,
    OpenVINO ``.xml``) to use instead of the cache. Fine-tuned weights keep their base model's
    licence (:func:`localdepth.registry.as_fine_tuned`).
    ``backend``: ``auto``, ``torch``, ``onnx``, ``openvino``, ``tflite`` or ``mlx``; ``auto`` follows the
    table in :mod:`localdepth.backends.choice` (MLX on Apple silicon, OpenVINO on x86 CPUs where it is installed,
    PyTorch on GPUs). ``device``: ``auto``, ``cpu``, ``cuda``, ``mps``.
    ``dtype``: ``auto`` (fp16 on CUDA; OpenVINO: bf16 where the CPU has it; else fp32), ``fp32``,
    ``fp16``, ``bf16``, ``int8`` (OpenVINO or ONNX Runtime, quantized once and cached).
    ``compile``/``cuda_graphs``: PyTorch only (``torch.compile``; CUDA graph replay per input shape).
    ``performance``: ``latency`` (one image at a time) or ``throughput`` (OpenVINO keeps several
    requests in flight; for folders). ``threads``: CPU threads of ONNX Runtime, OpenVINO and LiteRT.
    ``on_loading``: called with one line (``loading NAME (cpu, fp32)…``) once the weights are found
    and the backend is chosen, before the network loads (or converts), the slow part (the CLI
    shows it on a terminal). ``progress``: called with each long step of a first conversion
    (exporting, checking parity, quantizing), one line each (default: a line on stderr; the CLI
    passes a :class:`localdepth.progress.Status`).
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
                          performance=performance, threads=threads, log=progress)
    return DepthEstimator(spec, engine, input_size=input_size, weights_path=resolved.path,
                          fine_tuned_from=record["model"] if record else None)
