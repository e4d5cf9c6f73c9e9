"""A clip through the model: frames -> depth -> stabilisation -> one mapping -> writers.

Depth comes from :mod:`.temporal`: frame by frame for image models; for video models
(Video Depth Anything) in overlapping windows, or streaming one frame at a time.

Two ways to get the clip's one mapping (``normalize``):

* ``"clip"`` (default for files and image sequences), two passes: pass 1 predicts and
  stabilises every frame and spools the maps (float32 ``.npy``, plus the RGB frame when a
  side-by-side video needs it) to a temporary folder on disk, tracking the range; pass 2
  reads them back one at a time and writes every output with the whole clip's mapping.
  Memory holds one frame; the spool needs ``H*W*4`` bytes per frame (``+ H*W*3`` for
  ``--side``) of temporary disk, freed as pass 2 goes. The spool is a folder
  ``localdepth-video-*`` in the temporary folder (``$TMPDIR``, else ``/tmp`` on Linux): the run
  holds a lock on it, and a run that starts removes the spools whose run is gone (killed: its
  lock went with it), saying so in one line (:func:`clean_stale_spools`).
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
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..postprocess import describe_map
from .readers import Frame, FrameSource
from .stabilize import FLICKER_DEFINITION, ClipMapping, FlickerMeter, RangeTracker, Stabilizer
from .temporal import is_video_model, make_predictor, warn_frame

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
    temporal: dict = field(default_factory=dict)  # how frames went through the model (see .temporal)
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
        latency = self.temporal.get("latency_ms")
        if latency:
            text += f"; latency per frame: median {latency['median']:.0f} ms, p95 {latency['p95']:.0f} ms"
        return text + ("; interrupted: the files hold the frames done so far" if self.interrupted else "")


SPOOL_PREFIX = "localdepth-video-"
#: a spool without a lock file (killed between creating it and locking it, or made by a version
#: of localdepth without locks) is removed once it is this old
UNLOCKED_SPOOL_AGE_S = 24 * 3600
_LOCK_NAME = ".lock"
_SPOOL_HINT = ("the video spool is in the temporary folder: free some space there, or set TMPDIR to a folder "
               "with room (about H*W*4 bytes a frame)")


def _spool_error(e: OSError, where: Path):
    from ..errors import storage_error

    return storage_error(e, where, hint=_SPOOL_HINT)


def _lock(folder: Path):
    """Hold a lock on ``folder`` for as long as this process lives (the kernel drops it when the
    process dies, SIGKILL included); None where the system has no ``flock``. The lock file is
    locked under a temporary name and then renamed, so it is never seen unlocked."""
    try:
        import fcntl
    except ImportError:
        return None
    tmp = folder / f"{_LOCK_NAME}-{os.getpid()}"
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.rename(tmp, folder / _LOCK_NAME)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _abandoned(folder: Path, mtime: float) -> bool:
    """Whether the run that made the spool ``folder`` is gone: its lock can be taken, or (no lock
    file) it is older than :data:`UNLOCKED_SPOOL_AGE_S`."""
    lock = folder / _LOCK_NAME
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if fcntl is None or not lock.is_file():
        return time.time() - mtime > UNLOCKED_SPOOL_AGE_S
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: its run is alive
        return False
    finally:
        os.close(fd)
    return True


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def clean_stale_spools(parent: str | os.PathLike | None = None, *, say=None) -> list[Path]:
    """Remove the video spools of runs that are gone (killed) from ``parent`` (default: the
    temporary folder), and say so (``say(line)``, default stderr). Only real folders named
    ``localdepth-video-*`` that belong to this user are considered, never links; a spool whose
    lock is held (its run is alive, in any process or container on this machine) is kept."""
    import stat
    import sys

    say = say or (lambda line: print(line, file=sys.stderr))
    root = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    uid = os.getuid() if hasattr(os, "getuid") else None
    removed = []
    try:
        entries = [e for e in os.scandir(root) if e.name.startswith(SPOOL_PREFIX)]
    except OSError:
        return removed
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or (uid is not None and st.st_uid != uid):
            continue
        folder = Path(entry.path)
        if not _abandoned(folder, st.st_mtime):
            continue
        size = _size(folder)
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
            say(f"localdepth: removed {folder} ({size / 1e6:.1f} MB), the video spool of a run that was killed")
    return removed


class _Spool:
    """Pass-1 maps (and RGB frames when needed) on disk, read back in order and deleted.

    A folder ``localdepth-video-*`` in ``parent`` (default: the temporary folder), locked while
    this run lives; spools of killed runs are removed first (:func:`clean_stale_spools`)."""

    def __init__(self, keep_rgb: bool, parent: str | None = None):
        clean_stale_spools(parent)
        where = Path(parent) if parent is not None else Path(tempfile.gettempdir())
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=parent))
        except OSError as e:
            raise _spool_error(e, where) from None
        try:
            self._lock = _lock(self.dir)
        except OSError as e:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise _spool_error(e, self.dir) from None
        self.keep_rgb = keep_rgb
        self.frames: list[tuple[int, float, str, bool]] = []

    def put(self, frame: Frame, depth: np.ndarray, confidence: np.ndarray | None = None) -> None:
        k = len(self.frames)
        try:
            np.save(self.dir / f"{k:07d}.npy", depth)
            if self.keep_rgb:
                np.save(self.dir / f"{k:07d}_rgb.npy", frame.rgb)
            if confidence is not None:
                np.save(self.dir / f"{k:07d}_conf.npy", confidence)
        except OSError as e:  # a full temporary folder
            raise _spool_error(e, self.dir) from None
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
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _bar(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, dynamic_ncols=True,
                bar_format=None if total else "{desc}: {n_fmt} frames [{elapsed}, {rate_fmt}{postfix}]")


def process_clip(source: FrameSource, estimator, writers: list, *, stabilize: str | None = None, ema: float = 0.5,
                 normalize: str = "clip", warmup: int = 16, margin: float = 0.1, progress: bool = True,
                 on_frame: Callable[[int, Frame, np.ndarray], None] | None = None,
                 sidecar_path: str | Path | None = None, tmpdir: str | None = None,
                 streaming: bool = False) -> VideoSummary:
    """Predict, stabilise and write a clip; returns a :class:`VideoSummary`.

    ``stabilize``: ``off``, ``align`` or ``align+ema``; None picks ``off`` for video models
    (their windows are consistent already; a mode can still be stacked) and ``align`` for
    image models. ``streaming``: video models run one frame at a time with cached temporal
    state instead of in windows (image models always run frame by frame).

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
    if stabilize is None:
        stabilize = "off" if is_video_model(estimator) else "align"
    stabilizer = Stabilizer(stabilize, ema)
    summary = VideoSummary()
    tracker = RangeTracker()
    kind = estimator.kind
    metric = getattr(estimator, "metric", kind == "depth")
    t_start = time.perf_counter()
    keep_rgb = any(getattr(w, "mode", None) == "side" for w in writers)

    def failed(frame: Frame, error: Exception) -> None:  # one bad frame must not end the clip
        summary.failed += 1
        warn_frame(frame, error)

    predictor = make_predictor(estimator, streaming=streaming, on_failure=failed)

    def predicted():
        """(frame, stabilised map, confidence or None) for each frame; stops quietly on Ctrl-C."""
        bar = _bar(source.expected_frames, "depth", progress)
        try:
            for k, (frame, raw, confidence) in enumerate(predictor(source)):
                depth = stabilizer(raw)
                tracker.update(depth, kind)
                if on_frame is not None:
                    on_frame(k, frame, depth)
                yield frame, depth, confidence
                bar.update(1)  # after the consumer has stored or written it
                latency = getattr(predictor, "last_latency_ms", None)
                if latency is not None:
                    bar.set_postfix_str(f"latency {latency:.0f} ms", refresh=False)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()

    meter: FlickerMeter | None = None
    spool: _Spool | None = None
    complete = False
    failed_run = True  # until the frames are through: an error then drops what the writers wrote
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
        failed_run = False
    finally:
        try:
            if failed_run:
                _discard(writers)
            else:
                if sidecar_path is not None:  # the marker of a complete result goes first, comes back last
                    Path(sidecar_path).unlink(missing_ok=True)
                _close(writers, complete)
        finally:
            if spool is not None:
                spool.cleanup()
            source.close()

    summary.skipped = source.skipped
    summary.expected = source.expected_frames
    summary.missing = source.missing or 0
    summary.seconds = time.perf_counter() - t_start
    summary.flicker = meter.value if meter else None
    summary.stabilization = {**stabilizer.describe(), "normalization": summary.mapping.how if summary.mapping else normalize}
    summary.temporal = predictor.describe()
    summary.outputs = [w.describe() for w in writers]
    summary.sidecar = clip_sidecar(source, estimator, summary)
    if sidecar_path is not None:
        from ..writers import atomic_write_bytes

        atomic_write_bytes(Path(sidecar_path), (json.dumps(summary.sidecar, indent=2) + "\n").encode())
    return summary


def _close(writers: list, complete: bool) -> None:
    """Finish every writer; the first error is raised once all were tried."""
    error = None
    for w in writers:
        try:
            w.close(complete=complete)
        except BaseException as e:
            error = error or e
    if error is not None:
        raise error


def _discard(writers: list) -> None:
    """Drop what every writer wrote (``discard()``; writers without one are closed as interrupted)."""
    for w in writers:
        try:
            w.discard() if hasattr(w, "discard") else w.close(complete=False)
        except Exception:  # the run's own error is the one to report
            pass


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
        "temporal": summary.temporal,
        "flicker": {"percent": summary.flicker, "definition": FLICKER_DEFINITION},
        "outputs": summary.outputs,
        "seconds": round(summary.seconds, 3),
    }
