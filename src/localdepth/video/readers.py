"""Frame sources: video files (PyAV), image sequences (files, folders, globs) and webcams (OpenCV).

Every source streams: it yields one :class:`Frame` at a time and never holds the clip, so
memory stays bounded whatever the length. A :class:`Selection` picks the frames
(``--start``, ``--end``, ``--stride``, ``--max-frames``) and ``max_res`` shrinks them
(longer side, never enlarged) before anything else sees them.

A frame that cannot be decoded (a corrupt packet, an unreadable image) is skipped and
counted in ``source.skipped``; it is never fatal. Frame times come from the source
(presentation time of video frames, ``index / fps`` for sequences and webcams), so writers
can keep the timing (and audio sync) across skipped frames.

A source that knows how many frames it holds (a video file's index) reports the frames it
promised but never delivered in ``source.missing`` once it is read to the end: a truncated
file with its index intact otherwise just ends early, without any decode error.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .. import limits
from ..errors import ImageDecodeError, LocalDepthError
from ..images import Declared, check_declared, to_uint8
from ..safety import quoted
from ..inputs import expand_inputs

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"})
DEFAULT_SEQUENCE_FPS = Fraction(24)


# ----------------------------------------------------------------------------- selection

@dataclass(frozen=True)
class Position:
    """A point in a clip: seconds (``2.5``) or a frame number (``120f``)."""

    value: float
    unit: str  # "s" | "f"

    @classmethod
    def parse(cls, text: str | float | int | None) -> Position | None:
        if text is None:
            return None
        s = str(text).strip().lower()
        m = re.fullmatch(r"(\d+)\s*f", s)
        if m:
            return cls(float(m.group(1)), "f")
        try:
            value = float(s.rstrip("s"))
        except ValueError:
            raise LocalDepthError(f"'{text}' is not a time: give seconds (2.5) or a frame number (120f)") from None
        if value < 0 or not math.isfinite(value):
            raise LocalDepthError(f"'{text}' is not a time: it must be zero or more")
        return cls(value, "s")

    def seconds(self, fps: Fraction) -> float:
        return self.value if self.unit == "s" else self.value / float(fps)

    def __str__(self) -> str:
        return f"{int(self.value)}f" if self.unit == "f" else f"{self.value:g}s"


@dataclass(frozen=True)
class Selection:
    """Which frames of a source to use: ``start <= frame < end``, then every ``stride``-th,
    at most ``max_frames`` of them."""

    start: Position | None = None
    end: Position | None = None
    stride: int = 1
    max_frames: int | None = None

    def __post_init__(self):
        if self.stride < 1:
            raise LocalDepthError("--stride must be 1 or more")
        if self.max_frames is not None and self.max_frames < 1:
            raise LocalDepthError("--max-frames must be 1 or more")

    def as_dict(self) -> dict:
        return {"start": str(self.start) if self.start else None, "end": str(self.end) if self.end else None,
                "stride": self.stride, "max_frames": self.max_frames}

    def _before_start(self, index: int, time: float, fps: Fraction) -> bool:
        if self.start is None:
            return False
        return index < self.start.value if self.start.unit == "f" else time < self.start.value - 1e-6

    def _past_end(self, index: int, time: float, fps: Fraction) -> bool:
        if self.end is None:
            return False
        return index >= self.end.value if self.end.unit == "f" else time >= self.end.value - 1e-6

    def expected(self, total: int | None, fps: Fraction) -> int | None:
        """How many frames a source of ``total`` frames yields (None when unknown)."""
        first = 0 if self.start is None else int(math.ceil(self.start.seconds(fps) * float(fps) - 1e-6))
        last = total
        if self.end is not None:
            end = int(math.ceil(self.end.seconds(fps) * float(fps) - 1e-6))
            last = end if last is None else min(last, end)
        if last is None:
            return self.max_frames
        n = max(0, -(-(last - first) // self.stride))
        return min(n, self.max_frames) if self.max_frames is not None else n


def fit_max_res(rgb: np.ndarray, max_res: int | None) -> np.ndarray:
    """Shrink so that the longer side is at most ``max_res`` (never enlarge); even sides, as
    video encoders (4:2:0 chroma) need."""
    if not max_res:
        return rgb
    h, w = rgb.shape[:2]
    if max(h, w) <= max_res:
        return rgb
    f = max_res / max(h, w)
    nw, nh = max(2, int(round(w * f / 2)) * 2), max(2, int(round(h * f / 2)) * 2)
    return cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)


@dataclass
class Frame:
    index: int       # position in the source, before selection (0-based)
    time: float      # seconds from the start of the source
    rgb: np.ndarray  # (H, W, 3) uint8 RGB, after --max-res
    name: str        # stem for per-frame files


# ----------------------------------------------------------------------------- sources

class FrameSource:
    """Base class: iterate to get frames; ``skipped`` counts undecodable ones."""

    kind = "frames"

    def __init__(self, selection: Selection | None = None, max_res: int | None = None):
        self.selection = selection or Selection()
        self.max_res = max_res
        self.skipped = 0
        #: frames the source said it has (``expected_frames``) but never delivered; set once
        #: it is read to the end, None before that or when the count is unknown
        self.missing: int | None = None
        self.fps: Fraction = DEFAULT_SEQUENCE_FPS
        self.name = "clip"
        #: a file whose audio stream the depth video copies (video files only)
        self.audio_path: Path | None = None

    @property
    def output_fps(self) -> Fraction:
        """Frame rate of the selected frames (the source's, divided by the stride)."""
        return self.fps / self.selection.stride

    @property
    def expected_frames(self) -> int | None:
        return None

    @property
    def time_base(self) -> Fraction:
        """The unit of the source's frame times: a depth video written in it keeps every frame's
        timestamp exactly (variable frame rate included)."""
        return 1 / self.output_fps

    def _shortfall_tolerance(self, expected: int) -> int:
        """How many frames may be missing before it counts: 0 where the count is exact."""
        return 0

    def start_seconds(self) -> float:
        return self.selection.start.seconds(self.fps) if self.selection.start else 0.0

    def end_seconds(self) -> float | None:
        return self.selection.end.seconds(self.fps) if self.selection.end else None

    def _raw(self) -> Iterator[tuple[int, float, np.ndarray | None, str]]:
        """(index, time, rgb or None when undecodable, name) for every source frame, in order."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        sel, kept, picked = self.selection, 0, 0
        for index, time, rgb, name in self._raw():
            if sel._before_start(index, time, self.fps):
                continue
            if sel._past_end(index, time, self.fps):
                break
            picked += 1
            if (picked - 1) % sel.stride:
                continue
            if rgb is None:
                self.skipped += 1
                continue
            yield Frame(index, time, fit_max_res(to_uint8(rgb), self.max_res), name)
            kept += 1
            if sel.max_frames is not None and kept >= sel.max_frames:
                break
        expected = self.expected_frames
        if expected is not None:
            short = max(0, expected - kept - self.skipped)
            self.missing = short if short > self._shortfall_tolerance(expected) else 0

    def describe(self) -> dict:
        return {"type": self.kind, "name": self.name, "fps": float(self.fps), "fps_fraction": str(self.fps),
                "selection": self.selection.as_dict(), "max_res": self.max_res}

    def close(self) -> None:
        pass


class VideoFileReader(FrameSource):
    """A video file decoded with PyAV, one packet at a time (seeks to ``--start``). A frame size over
    ``max_pixels`` (default :data:`~localdepth.limits.MAX_IMAGE_PIXELS`) in the container's header is
    refused before any frame is decoded, by the same budget as images (:func:`localdepth.images.check_declared`)."""

    kind = "video"

    def __init__(self, path: str | os.PathLike, selection: Selection | None = None, max_res: int | None = None,
                 max_pixels: int | None = None):
        super().__init__(selection, max_res)
        import av

        self.path = Path(path)
        self.name = self.path.stem
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as e:
            raise LocalDepthError(f"{self.path}: cannot open the video ({e}); is it a video file?") from None
        if not self._container.streams.video:
            self._container.close()
            raise LocalDepthError(f"{self.path}: has no video stream")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        self._stream = stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = Fraction(rate) if rate else DEFAULT_SEQUENCE_FPS
        self.frame_count = int(stream.frames) or None
        self._count_exact = self.frame_count is not None  # from the container's index
        if self.frame_count is None and stream.duration and stream.time_base:
            self.frame_count = int(round(float(stream.duration * stream.time_base) * float(self.fps)))
        self.width, self.height = stream.codec_context.width, stream.codec_context.height
        self.max_pixels = limits.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
        if self.width and self.height:  # the frame size its header declares, before any frame is decoded
            try:
                check_declared(Declared("video", (self.height, self.width, 3)), quoted(self.path), self.max_pixels)
            except ImageDecodeError as e:
                self._container.close()
                raise LocalDepthError(str(e).replace(" is over", " frames are over", 1).replace(" (--max-pixels)", "")) from None
        self.has_audio = bool(self._container.streams.audio)
        self.audio_path = self.path if self.has_audio else None
        self._t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0

    @property
    def expected_frames(self) -> int | None:
        return self.selection.expected(self.frame_count, self.fps)

    @property
    def time_base(self) -> Fraction:
        return Fraction(self._stream.time_base)

    def _shortfall_tolerance(self, expected: int) -> int:
        # a count estimated from the duration and the average rate can be off by a frame or two
        return 0 if self._count_exact else max(2, expected // 50)

    def _raw(self):
        import av

        stream, fps = self._stream, float(self.fps)
        start = self.start_seconds()
        if start > 0:  # jump near the start instead of decoding everything before it
            self._container.seek(int((start + self._t0) / stream.time_base), stream=stream, backward=True)
        count, following, errors = 0, None, 0
        for packet in self._container.demux(stream):
            try:
                frames = packet.decode()
            except (av.FFmpegError, ValueError) as e:
                errors += 1
                print(f"localdepth: warning: {self.path.name}: an undecodable packet ({e})", file=sys.stderr)
                continue
            for frame in frames:
                t = (float(frame.pts * stream.time_base) - self._t0) if frame.pts is not None else count / fps
                index = int(round(t * fps))
                if following is not None and index < following:
                    index = following  # variable frame rate: frames closer than 1/fps keep distinct numbers
                count += 1
                if errors and following is not None and index > following:
                    # once the file has shown damage, missing frame slots are lost frames (the
                    # decoder reorders frames, so a gap may surface a few frames after the
                    # error); without any error a gap is variable frame rate, not damage
                    for lost in range(following, index):
                        yield lost, lost / fps, None, f"frame_{lost:06d}"
                following = index + 1
                try:  # a stream may change size mid-way: a frame over the budget is not converted
                    rgb = (frame.to_ndarray(format="rgb24") if frame.width * frame.height <= self.max_pixels
                           else None)
                except (av.FFmpegError, ValueError):
                    rgb = None
                yield index, t, rgb, f"frame_{index:06d}"

    def describe(self) -> dict:
        return {**super().describe(), "path": str(self.path), "frames": self.frame_count,
                "width": self.width, "height": self.height, "audio": self.has_audio}

    def close(self) -> None:
        self._container.close()


class ImageSequenceReader(FrameSource):
    """Images from files, folders or globs, sorted naturally (``2.png`` before ``10.png``).

    Only the file names are listed up front; each image is decoded when its turn comes.
    """

    kind = "images"

    def __init__(self, specs: list[str], fps: float | Fraction | None = None, selection: Selection | None = None,
                 max_res: int | None = None, url_limits=None):
        super().__init__(selection, max_res)
        # each frame's files are named after its flattened path (a/b.png -> a_b): unique in that form
        items = expand_inputs(specs, outputs=lambda rel: [frame_name(rel)])
        missing = [i.error for i in items if i.error]
        for message in missing:
            print(f"localdepth: warning: {message}", file=sys.stderr)
        self.items = [i for i in items if not i.error]
        if not self.items:
            raise LocalDepthError("no images found in the given inputs; give a folder, a glob ('frames/*.png') or files")
        self.url_limits = url_limits
        self.fps = Fraction(fps).limit_denominator(1001) if fps else DEFAULT_SEQUENCE_FPS
        first = self.items[0]
        self.name = (first.path.parent.name if first.path is not None else "") or "sequence"

    @property
    def frame_names(self) -> list[str]:
        """The stem of every image's per-frame files, in order."""
        return [frame_name(item.rel) for item in self.items]

    @property
    def files(self) -> list[Path]:
        """The images on disk (a command must not write over them)."""
        return [item.path for item in self.items if item.path is not None]

    @property
    def expected_frames(self) -> int | None:
        return self.selection.expected(len(self.items), self.fps)

    def _raw(self):
        for index, item in enumerate(self.items):
            t = index / float(self.fps)
            if self.selection._before_start(index, t, self.fps):  # do not decode what is not used
                yield index, t, None, ""
                continue
            try:
                rgb = item.load(url_limits=self.url_limits)
            except ImageDecodeError as e:
                print(f"localdepth: warning: skipped {item.label}: {e}", file=sys.stderr)
                rgb = None
            yield index, t, rgb, frame_name(item.rel)

    def describe(self) -> dict:
        return {**super().describe(), "first": self.items[0].label, "count": len(self.items)}


def frame_name(rel) -> str:
    """An image's per-frame file stem: its relative path without the suffix, folders joined by ``_``."""
    rel = Path(rel)
    return (rel.with_suffix("") if rel.suffix else rel).as_posix().replace("/", "_")


class WebcamReader(FrameSource):
    """A camera (``0`` = the first) or any stream OpenCV's ``VideoCapture`` opens.

    Endless until ``--end``/``--max-frames`` or Ctrl-C; frame times are ``index / fps`` with
    the camera's reported rate (or ``fps`` when given).
    """

    kind = "webcam"

    def __init__(self, device: int | str, fps: float | None = None, selection: Selection | None = None,
                 max_res: int | None = None):
        super().__init__(selection, max_res)
        self.device = int(device) if str(device).isdigit() else device
        quiet = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our one-line error says it all
        try:
            self._cap = cv2.VideoCapture(self.device)
        finally:
            cv2.utils.logging.setLogLevel(quiet)
        if not self._cap.isOpened():
            raise LocalDepthError(f"cannot open webcam {device}; check that it is connected and not in use")
        reported = self._cap.get(cv2.CAP_PROP_FPS)
        chosen = fps or (reported if reported and 0 < reported < 1000 else 30.0)
        self.fps = Fraction(chosen).limit_denominator(1001)
        self.name = f"webcam{self.device}" if isinstance(self.device, int) else Path(str(self.device)).stem

    @property
    def expected_frames(self) -> int | None:
        return self.selection.expected(None, self.fps)

    def _raw(self):
        index = 0
        failures = 0
        while True:
            ok, bgr = self._cap.read()
            if not ok:
                # a camera may drop a frame; several failures in a row mean the stream ended
                failures += 1
                if failures >= 5 or not self._cap.isOpened():
                    return
                continue
            failures = 0
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr is not None and bgr.ndim == 3 else None
            yield index, index / float(self.fps), rgb, f"frame_{index:06d}"
            index += 1

    def describe(self) -> dict:
        return {**super().describe(), "device": str(self.device)}

    def close(self) -> None:
        self._cap.release()


def is_video_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS and Path(path).is_file()


def open_source(inputs: list[str], *, webcam: str | int | None = None, fps: float | None = None,
                selection: Selection | None = None, max_res: int | None = None, url_limits=None) -> FrameSource:
    """The right reader for the command line's inputs: a webcam, one video file, or images
    (files, folders, globs, lists, URLs fetched within ``url_limits``)."""
    from ..fetch import is_url

    if webcam is not None:
        if inputs:
            raise LocalDepthError("give either --webcam or input files, not both")
        return WebcamReader(webcam, fps, selection, max_res)
    if not inputs:
        raise LocalDepthError("no input given; e.g. `localdepth video clip.mp4 --output clip_depth.mp4`")
    if inputs == ["-"]:  # a stream on standard input, e.g. `ffmpeg ... -f mpegts - | localdepth video -`
        reader = WebcamReader("pipe:0", fps, selection, max_res)
        reader.name = "stdin"
        return reader
    remote = [p for p in inputs if is_url(p) and Path(p).suffix.lower() in VIDEO_EXTENSIONS]
    if remote:
        raise LocalDepthError(f"{remote[0]}: video URLs are not read directly; download the file first "
                              "(image URLs work)")
    missing = [p for p in inputs if Path(p).suffix.lower() in VIDEO_EXTENSIONS and not Path(p).is_file()]
    if missing:
        raise LocalDepthError(f"{missing[0]}: no such video file")
    videos = [p for p in inputs if is_video_file(p)]
    if videos:
        if len(inputs) > 1:
            raise LocalDepthError("give one video file at a time (or a list of images)")
        reader = VideoFileReader(videos[0], selection, max_res)
        if fps:
            print("localdepth: warning: --fps is ignored for video files (their own rate is kept)", file=sys.stderr)
        return reader
    return ImageSequenceReader(inputs, fps, selection, max_res, url_limits)
