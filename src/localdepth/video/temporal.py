"""A clip's frames -> depth maps, in order, in bounded memory.

Three predictors, each a callable from an iterator of :class:`~.readers.Frame` to an iterator
of ``(frame, map, confidence)`` at the frame's resolution (``confidence`` None unless the model
predicts one):

* :class:`PerFrameDepth`: any image model, one frame at a time (temporal stability then comes
  from :mod:`.stabilize`);
* :class:`WindowedDepth`: video models (Video Depth Anything) offline, as the reference
  ``infer_video_depth`` does it: windows of ``WINDOW`` (32) frames that start every
  ``WINDOW - OVERLAP`` (22) frames; in every window after the first, the first ``OVERLAP``
  (10) slots hold the previous window's inputs at ``KEYFRAMES`` (the clip's first frame, one
  frame from the middle of the previous window, and the 8 frames the two windows share). Each
  window's maps are brought into the clip's scale and shift by a least-squares fit of its two
  keyframe maps onto the aligned maps of the same frames (relative models only: metric maps
  are in metres already), and the ``INTERP`` (8) shared frames are blended linearly from the
  previous window's maps to the new one's. The clip is padded at its end with its last frame.
  Memory holds one window of frames and inputs, the previous window's keyframe inputs, and the
  8 maps still to be blended: about 50 frames whatever the clip's length;
* :class:`StreamingDepth`: video models one frame at a time with the network's cached
  temporal state (the reference ``video_depth_stream.py``), for webcams and pipes; records the
  latency of every frame.

On the GPU pipeline (:attr:`~localdepth.estimator.DepthEstimator.device_pipeline`) each frame's
8-bit pixels go to the device and are resized there; the window's inputs (and the previous window's
keyframe inputs) stay on the device, and each map comes back at the frame's size once its window
is done. So the device holds at most one window and its keyframes (42 network inputs: about 2.9 MB
each at 518x924 in fp16) beside the network's activations for one window, and the streaming
state's bounded cache (:class:`~localdepth.networks.vda.StreamState`); the host holds the maps still
to be aligned and blended, as on the CPU path.

Video models take the reference's input size rule for wide frames: above an aspect ratio of
1.78 the input size shrinks to ``input_size * 1.777 / ratio`` (rounded to a multiple of 14) so
the longer side stays about that of 16:9 (:func:`video_input_size`).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from ..postprocess import to_original_size
from ..preprocess import preprocess
from .readers import Frame

WINDOW = 32
OVERLAP = 10
KEYFRAMES = (0, 12, 24, 25, 26, 27, 28, 29, 30, 31)
INTERP = 8
#: aspect ratio above which video models shrink their input size (the reference's rule)
WIDE_RATIO = 1.78
#: streaming latency statistics cover at most this many of the latest frames
LATENCY_FRAMES = 10_000

FailureHandler = Callable[[Frame, Exception], None]


def warn_frame(frame: Frame, error: Exception) -> None:
    """The one line a frame the model could not take costs (the clip goes on)."""
    print(f"localdepth: warning: frame {frame.index}: {error}", file=sys.stderr)


def is_video_model(estimator) -> bool:
    spec = getattr(estimator, "spec", None)
    return bool(getattr(spec, "temporal", False))


def video_input_size(height: int, width: int, input_size: int, multiple: int = 14) -> int:
    """The input size a video model uses for ``height x width`` frames (see the module docs)."""
    ratio = max(height, width) / min(height, width)
    if ratio > WIDE_RATIO:
        input_size = int(input_size * 1.777 / ratio)
        input_size = max(multiple, round(input_size / multiple) * multiple)  # never below one patch
    return input_size


def make_predictor(estimator, *, streaming: bool = False, on_failure: FailureHandler = warn_frame):
    """The predictor for ``estimator``: per frame for image models; windows (or a stream with
    ``streaming``) for video models."""
    if not is_video_model(estimator):
        return PerFrameDepth(estimator, on_failure)
    return StreamingDepth(estimator, on_failure) if streaming else WindowedDepth(estimator, on_failure)


class PerFrameDepth:
    """Each frame through the model on its own; a frame the model fails on is reported and skipped."""

    def __init__(self, estimator, on_failure: FailureHandler = warn_frame):
        self.estimator = estimator
        self.on_failure = on_failure

    def __call__(self, frames: Iterable[Frame]) -> Iterator[tuple[Frame, np.ndarray, np.ndarray | None]]:
        for frame in frames:
            try:
                result = self.estimator.predict_decoded([frame.rgb])[0]
            except (ValueError, RuntimeError) as e:  # one bad frame must not end the clip
                self.on_failure(frame, e)
                continue
            yield frame, result.map, result.confidence

    def describe(self) -> dict:
        return {"mode": "per-frame"}


class _VideoModelInput:
    """The frame size a video model is fixed to (the first frame's), and its input size."""

    def __init__(self, estimator):
        self.estimator = estimator
        self.size: tuple[int, int] | None = None
        self.input_size: int | None = None

    def accepts(self, frame: Frame) -> bool:
        h, w = frame.rgb.shape[:2]
        if self.size is None:
            pre = self.estimator.spec.preprocessing
            self.size = (h, w)
            self.input_size = video_input_size(h, w, self.estimator.input_size or pre.input_size, pre.multiple_of)
        return (h, w) == self.size

    @property
    def on_device(self) -> bool:
        return bool(getattr(self.estimator, "device_pipeline", False))

    def prepare(self, frame: Frame):
        """The frame's network input ``(3, h, w)``: NumPy, or a device tensor on the GPU pipeline."""
        if self.on_device:
            from ..preprocess_torch import image_tensor, preprocess_image

            backend = self.estimator.backend
            pixels = image_tensor(frame.rgb, pin=backend.device.startswith("cuda")).to(backend.device, non_blocking=True)
            return preprocess_image(pixels, self.estimator.spec.preprocessing, self.input_size).to(backend.torch_dtype)
        return preprocess(frame.rgb, self.estimator.spec.preprocessing, self.input_size)

    def stack(self, inputs: list):
        if self.on_device:
            import torch

            return torch.stack(inputs)
        return np.stack(inputs)

    def infer_window(self, inputs) -> list[np.ndarray]:
        """One clip ``(T, 3, h, w)`` -> its ``T`` maps at the frame's size (on the host)."""
        if not self.on_device:
            return [self.to_frame(d) for d in self.estimator.run_network(inputs[None]).depth[0]]
        depth = self.estimator.backend.run_tensor(inputs[None])["depth"][0]
        return self.maps_to_host(list(depth))

    def maps_to_host(self, maps: list) -> list[np.ndarray]:
        """Device maps at network resolution -> NumPy maps at the frame's size (resized there)."""
        from .. import preprocess_torch as pt

        spec = self.estimator.spec
        resized = [pt.to_original_size(d, *self.size, self.estimator.kind, spec.postprocessing, spec.preprocessing)
                   for d in maps]
        host, copied = pt.to_host(resized)
        copied.synchronize()
        return [h.numpy() for h in host]

    def size_error(self, frame: Frame) -> ValueError:
        h, w = frame.rgb.shape[:2]
        return ValueError(f"is {w}x{h}, but this clip is {self.size[1]}x{self.size[0]}; "
                          "a video model needs one frame size (skipped)")

    def to_frame(self, depth: np.ndarray) -> np.ndarray:
        """A network-resolution map at the frame's size, resized as the reference does
        (the entry's postprocessing: bilinear, ``align_corners=True``)."""
        spec = self.estimator.spec
        return to_original_size(depth, *self.size, self.estimator.kind, spec.postprocessing, spec.preprocessing)


class WindowedDepth:
    """Video models offline: overlapping windows with keyframes and alignment (module docs)."""

    def __init__(self, estimator, on_failure: FailureHandler = warn_frame, *, window: int = WINDOW,
                 overlap: int = OVERLAP, keyframes: tuple[int, ...] = KEYFRAMES, interp: int = INTERP):
        if len(keyframes) != overlap or not 0 < interp < overlap < window:
            raise ValueError("the keyframes must fill the overlap, and the blend must be shorter than it")
        self.estimator = estimator
        self.on_failure = on_failure
        self.window, self.overlap, self.keyframes, self.interp = window, overlap, keyframes, interp
        self.align = estimator.kind != "depth"  # metric maps are in metres: nothing to align
        self.scales: list[float] = []
        self.shifts: list[float] = []
        self.windows = 0

    def __call__(self, frames: Iterable[Frame]) -> Iterator[tuple[Frame, np.ndarray, None]]:
        net = _VideoModelInput(self.estimator)
        step = self.window - self.overlap
        buffer: list[tuple[Frame | None, np.ndarray]] = []  # frames from the current window's start
        state = _AlignmentState()
        for frame in frames:
            if not net.accepts(frame):
                self.on_failure(frame, net.size_error(frame))
                continue
            buffer.append((frame, net.prepare(frame)))
            if len(buffer) == self.window:
                yield from self._window(buffer, state, net)
                del buffer[:step]
        # the end: windows start while real frames remain, padded with the last frame's input
        while buffer and buffer[0][0] is not None:
            buffer += [(None, buffer[-1][1])] * (self.window - len(buffer))
            yield from self._window(buffer, state, net)
            del buffer[:step]
        yield from ((f, d, None) for f, d in state.pending if f is not None)
        state.pending.clear()

    def _window(self, buffer, state: _AlignmentState, net: _VideoModelInput):
        inputs = net.stack([x for _, x in buffer])
        if state.keyframe_inputs is not None:
            inputs[: self.overlap] = state.keyframe_inputs
        maps = net.infer_window(inputs)
        state.keyframe_inputs = inputs[list(self.keyframes)]  # a copy (advanced indexing), NumPy or tensor
        self.windows += 1
        frames = [f for f, _ in buffer]
        align_len = self.overlap - self.interp
        if not state.started:
            state.started = True
            state.references = [maps[k] for k in self.keyframes[:align_len]]
            finished = list(zip(frames, maps))
        else:
            scale, shift = 1.0, 0.0
            if self.align:
                from ..align import fit_affine

                fit = fit_affine(np.concatenate([m.ravel() for m in maps[:align_len]]),
                                 np.concatenate([m.ravel() for m in state.references]))
                scale, shift = fit.scale, fit.shift
            self.scales.append(scale)
            self.shifts.append(shift)
            aligned = [np.maximum(m * np.float32(scale) + np.float32(shift), 0).astype(np.float32) for m in maps]
            weights = np.linspace(0.0, 1.0, self.interp)
            blended = [(f, (prev * (1 - w) + new * w).astype(np.float32))
                       for (f, prev), new, w in zip(state.pending, aligned[align_len:self.overlap], weights)]
            finished = blended + list(zip(frames[self.overlap:], aligned[self.overlap:]))
            state.references = state.references[:1] + [aligned[k] for k in self.keyframes[1:align_len]]
        state.pending = finished[-self.interp:]
        yield from ((f, d, None) for f, d in finished[: -self.interp] if f is not None)

    def describe(self) -> dict:
        info = {"mode": "windows", "window": self.window, "overlap": self.overlap, "keyframes": list(self.keyframes),
                "blended_frames": self.interp, "windows": self.windows,
                "alignment": ("least-squares scale and shift of each window's keyframe maps onto the aligned maps "
                              "of the same frames") if self.align else "none (metric depth)"}
        if self.scales:
            info.update(scale_min=float(min(self.scales)), scale_max=float(max(self.scales)))
        return info


class _AlignmentState:
    """What one window passes to the next."""

    def __init__(self):
        self.started = False
        self.keyframe_inputs = None  # the previous window's inputs at KEYFRAMES (NumPy, or device tensors)
        self.references: list[np.ndarray] = []  # aligned maps of the keyframes the next fit targets
        self.pending: list[tuple[Frame | None, np.ndarray]] = []  # maps the next window blends into


class StreamingDepth:
    """Video models one frame at a time with cached temporal state; records per-frame latency
    (the statistics cover the latest :data:`LATENCY_FRAMES` frames, so that a camera running
    for days keeps a bounded record)."""

    def __init__(self, estimator, on_failure: FailureHandler = warn_frame):
        self.estimator = estimator
        self.on_failure = on_failure
        self.stream = estimator.backend.open_stream()
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_FRAMES)
        self.frames = 0

    @property
    def last_latency_ms(self) -> float | None:
        return self.latencies_ms[-1] if self.latencies_ms else None

    def __call__(self, frames: Iterable[Frame]) -> Iterator[tuple[Frame, np.ndarray, None]]:
        net = _VideoModelInput(self.estimator)
        for frame in frames:
            if not net.accepts(frame):
                self.on_failure(frame, net.size_error(frame))
                continue
            t0 = time.perf_counter()
            if net.on_device:
                depth = net.maps_to_host([self.stream.step_tensor(net.prepare(frame)[None])[0]])[0]
            else:
                depth = net.to_frame(self.stream.step(net.prepare(frame)[None])[0])
            self.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
            self.frames += 1
            yield frame, depth, None

    def describe(self) -> dict:
        info: dict = {"mode": "streaming", "cache": "hidden states of the temporal attention, official window rule"}
        if self.latencies_ms:
            lat = np.asarray(self.latencies_ms)
            info["latency_ms"] = {"median": float(np.median(lat)), "p95": float(np.percentile(lat, 95)),
                                  "max": float(lat.max()), "frames": self.frames, "over_latest": int(lat.size)}
        return info
