"""A clip through the model: frames -> depth -> stabilisation -> one mapping -> writers.

Two ways to get the clip's one mapping (``normalize``):

* ``"clip"`` (default for files and image sequences), two passes: pass 1 predicts and
  stabilises every frame and spools the maps (float32 ``.npy``, plus the RGB frame when a
  side-by-side video needs it) to a temporary folder on disk, tracking the range; pass 2
  reads them back one at a time and writes every output with the whole clip's mapping.
  Memory holds one frame; the spool needs ``H*W*4`` bytes per frame (``+ H*W*3`` for
  ``--side``) of temporary disk, freed as pass 2 goes.
* ``"running"`` (default for webcams), one pass with a warm-up: the first ``warmup`` frames
  are held in memory, the mapping comes from their range widened by ``margin`` of its span
  on each side, then every frame is written as it comes. Values outside the range are
  clipped in the 8-bit video and 16-bit PNGs (counted in the sidecar); npz/exr keep them.

Ctrl-C (or a ``KeyboardInterrupt`` from ``on_frame``) during pass 1 stops predicting and
still writes the frames done; during writing it closes the files properly. Either way the
video is playable and the summary says ``interrupted``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..postprocess import describe_map
from .readers import Frame, FrameSource
from .stabilize import FLICKER_DEFINITION, ClipMapping, FlickerMeter, RangeTracker, Stabilizer

NORMALIZE_MODES = ("clip", "running")


@dataclass
class VideoSummary:
    frames: int = 0                # frames written
    skipped: int = 0               # undecodable frames skipped
    failed: int = 0                # frames the model failed on (skipped)
    expected: int | None = None    # frames the source said it holds (after selection), None if unknown
    missing: int = 0               # of those, never delivered: the file ends early (truncated)
    interrupted: bool = False
    flicker: float | None = None   # percent, see FlickerMeter
    seconds: float = 0.0
    mapping: ClipMapping | None = None
    stabilization: dict = field(default_factory=dict)
    outputs: list[dict] = field(default_factory=list)
    sidecar: dict | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        flicker = f"{self.flicker:.3f}%" if self.flicker is not None else "n/a (fewer than 2 frames)"
        parts = [f"{self.frames} frames written", f"{self.skipped} skipped"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.missing:
            parts.append(f"{self.missing} of {self.expected} missing")
        text = (f"{', '.join(parts)} in {self.seconds:.1f} s ({self.fps:.2f} fps); "
                f"flicker {flicker} (stabilize {self.stabilization.get('mode', '?')})")
        return text + ("; interrupted: the files hold the frames done so far" if self.interrupted else "")


class _Spool:
    """Pass-1 maps (and RGB frames when needed) on disk, read back in order and deleted."""

    def __init__(self, keep_rgb: bool, parent: str | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="localdepth-video-", dir=parent))
        self.keep_rgb = keep_rgb
        self.frames: list[tuple[int, float, str, bool]] = []

    def put(self, frame: Frame, depth: np.ndarray, confidence: np.ndarray | None = None) -> None:
        k = len(self.frames)
        np.save(self.dir / f"{k:07d}.npy", depth)
        if self.keep_rgb:
            np.save(self.dir / f"{k:07d}_rgb.npy", frame.rgb)
        if confidence is not None:
            np.save(self.dir / f"{k:07d}_conf.npy", confidence)
        self.frames.append((frame.index, frame.time, frame.name, confidence is not None))

    def _take(self, name: str) -> np.ndarray:
        p = self.dir / name
        data = np.load(p)
        p.unlink()
        return data

    def __iter__(self):
        for k, (index, t, name, has_confidence) in enumerate(self.frames):
            depth = self._take(f"{k:07d}.npy")
            rgb = self._take(f"{k:07d}_rgb.npy") if self.keep_rgb else np.zeros((*depth.shape, 3), np.uint8)
            confidence = self._take(f"{k:07d}_conf.npy") if has_confidence else None
            yield Frame(index, t, rgb, name), depth, confidence

    def __len__(self) -> int:
        return len(self.frames)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _bar(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, dynamic_ncols=True,
                bar_format=None if total else "{desc}: {n_fmt} frames [{elapsed}, {rate_fmt}]")


def process_clip(source: FrameSource, estimator, writers: list, *, stabilize: str = "align", ema: float = 0.5,
                 normalize: str = "clip", warmup: int = 16, margin: float = 0.1, progress: bool = True,
                 on_frame: Callable[[int, Frame, np.ndarray], None] | None = None,
                 sidecar_path: str | Path | None = None, tmpdir: str | None = None) -> VideoSummary:
    """Predict, stabilise and write a clip; returns a :class:`VideoSummary`.

    ``writers``: objects with ``write(frame, map, mapping)``, ``close(complete=)`` and
    ``describe()`` (:class:`~localdepth.video.writers.DepthVideoWriter`,
    :class:`~localdepth.video.writers.FrameFilesWriter`, or your own).
    ``on_frame(k, frame, map)`` is called after each frame is predicted (for previews and
    tests; raising ``KeyboardInterrupt`` there stops the run like Ctrl-C).
    ``sidecar_path``: where the clip's JSON goes (model, kind, units, mapping, fps, frame
    count, stabilisation, flicker). Writers are closed before returning, also on errors.
    """
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"unknown normalisation '{normalize}'; choose from {', '.join(NORMALIZE_MODES)}")
    stabilizer = Stabilizer(stabilize, ema)
    summary = VideoSummary()
    tracker = RangeTracker()
    kind = estimator.kind
    metric = getattr(estimator, "metric", kind == "depth")
    t_start = time.perf_counter()
    keep_rgb = any(getattr(w, "mode", None) == "side" for w in writers)

    def predicted():
        """(frame, stabilised map) for each frame; stops quietly on Ctrl-C."""
        bar = _bar(source.expected_frames, "depth", progress)
        try:
            for k, frame in enumerate(source):
                try:
                    result = estimator.predict_decoded([frame.rgb])[0]
                except (ValueError, RuntimeError) as e:  # one bad frame must not end the clip
                    summary.failed += 1
                    print(f"localdepth: warning: frame {frame.index}: {e}", file=sys.stderr)
                    continue
                depth = stabilizer(result.map)
                tracker.update(depth, kind)
                if on_frame is not None:
                    on_frame(k, frame, depth)
                yield frame, depth, result.confidence
                bar.update(1)  # after the consumer has stored or written it
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()

    meter: FlickerMeter | None = None
    spool: _Spool | None = None
    complete = False
    try:
        if normalize == "clip":
            spool = _Spool(keep_rgb, tmpdir)
            try:
                for frame, depth, confidence in predicted():
                    spool.put(frame, depth, confidence)
            except KeyboardInterrupt:  # between frames: keep what is spooled
                summary.interrupted = True
            mapping = tracker.mapping(kind, how="clip", metric=metric)
            stream = iter(spool)
            total = len(spool)
        else:
            buffered = []
            stream_iter = predicted()
            try:
                for item in stream_iter:
                    buffered.append(item)
                    if len(buffered) >= warmup:
                        break
            except KeyboardInterrupt:
                summary.interrupted = True
            mapping = tracker.mapping(kind, margin=margin, how="running", metric=metric)
            mapping.how = f"running (warm-up {len(buffered)} frames, margin {margin:g})"

            def chained():
                yield from buffered
                buffered.clear()
                yield from stream_iter

            stream = chained()
            total = None
        summary.mapping = mapping
        meter = FlickerMeter(mapping.vmin, mapping.vmax)
        bar = _bar(total, "write", progress and normalize == "clip")
        try:
            for frame, depth, confidence in stream:
                for w in writers:
                    w.write(frame, depth, mapping, confidence=confidence)
                meter.update(depth)
                summary.frames += 1
                bar.update(1)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
        complete = not summary.interrupted
    finally:
        for w in writers:
            w.close(complete=complete)
        if spool is not None:
            spool.cleanup()
        source.close()

    summary.skipped = source.skipped
    summary.expected = source.expected_frames
    summary.missing = source.missing or 0
    summary.seconds = time.perf_counter() - t_start
    summary.flicker = meter.value if meter else None
    summary.stabilization = {**stabilizer.describe(), "normalization": summary.mapping.how if summary.mapping else normalize}
    summary.outputs = [w.describe() for w in writers]
    summary.sidecar = clip_sidecar(source, estimator, summary)
    if sidecar_path is not None:
        from ..writers import atomic_write_bytes

        atomic_write_bytes(Path(sidecar_path), (json.dumps(summary.sidecar, indent=2) + "\n").encode())
    return summary


def clip_sidecar(source: FrameSource, estimator, summary: VideoSummary) -> dict:
    """The clip's JSON: what the files hold and how they were made."""
    from .. import __version__

    kind = estimator.kind
    metric = getattr(estimator, "metric", kind == "depth")
    return {
        "localdepth_version": __version__,
        "source": source.describe(),
        "model": estimator.describe(),
        "kind": kind,
        "units": "m" if metric else "relative",
        "convention": describe_map(kind, metric) + ("" if metric else "; in the first frame's scale and shift "
                                                    "when stabilised"),
        "fps": float(source.output_fps),
        "fps_fraction": str(source.output_fps),
        "frames": summary.frames,
        "skipped_frames": summary.skipped,
        "failed_frames": summary.failed,
        "expected_frames": summary.expected,
        "missing_frames": summary.missing,
        "interrupted": summary.interrupted,
        "mapping": summary.mapping.as_dict() if summary.mapping else None,
        "stabilization": summary.stabilization,
        "flicker": {"percent": summary.flicker, "definition": FLICKER_DEFINITION},
        "outputs": summary.outputs,
        "seconds": round(summary.seconds, 3),
    }
