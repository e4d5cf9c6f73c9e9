"""Clip outputs: a depth video (PyAV, audio copied) and per-frame files (npz, png16, exr).

Every writer gets the clip's one :class:`~localdepth.video.stabilize.ClipMapping`, so all
frames share one scaling. Writers are context managers; ``close()`` finishes the file
(encoder flushed, container trailer written) also after Ctrl-C, so an interrupted run leaves
a playable video of the frames done so far. ``discard()`` (on an error) drops what was written.

The depth video is written to a temporary file beside it (``.NAME.<random>.tmp.mp4``) and
renamed onto its name only when it is finished, as every file of ``localdepth run`` is: a run
that fails, or is killed, leaves a previous video of that name as it was (a kill leaves the
temporary file beside it, to delete).

Per-frame files (``stem`` is ``frame_000123`` for videos and webcams, the image's name for
image sequences):

======  ================  ==============================================================
format  file              contents
======  ================  ==============================================================
npz     ``stem.npz``      ``depth``: float32 map as written (aligned disparity in the first
                          frame's units, or metres), ``index``, ``time`` (seconds), and
                          ``confidence`` (float32) for models that predict one (Depth Anything 3)
png16   ``stem.png``      uint16 with the clip's mapping: ``value = offset + scale * png``
                          (scale and offset in the clip's JSON sidecar, the same for every frame)
exr     ``stem.exr``      float32 map in channel ``Z`` (OpenEXR, ZIP compression)
======  ================  ==============================================================
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..safety import crash_point, under_root
from ..writers import (as_storage_error, atomic_write_bytes, colormap_lut, nearness, remove_quietly, side_by_side,
                       temporary_sibling)
from .readers import Frame
from .stabilize import ClipMapping

STEREO_MODES = ("stereo", "anaglyph")
VIDEO_MODES = ("color", "gray", "side", *STEREO_MODES)
FRAME_FORMATS = {"npz": ".npz", "png16": ".png", "exr": ".exr"}


def depth_picture(depth: np.ndarray, mapping: ClipMapping, cmap: str) -> np.ndarray:
    """Colour-map a map with the clip's range: RGB uint8, closer = high end of the map."""
    t, _, _ = nearness(depth, mapping.kind, mapping.vmin, mapping.vmax)
    return colormap_lut(cmap)[np.rint(t * 255).astype(np.uint8)]


def _even(rgb: np.ndarray) -> np.ndarray:
    """4:2:0 video needs even sides: drop a last odd row/column."""
    h, w = rgb.shape[:2]
    return rgb[: h - h % 2, : w - w % 2]


class DepthVideoWriter:
    """A depth video with the source's frame rate and timing, audio stream copied.

    ``mode``: ``color`` (colour map), ``gray`` (closer = brighter), ``side`` (input | depth),
    ``stereo`` (left | right views rendered from the depth, :mod:`localdepth.render.stereo`, with a
    disparity budget of ``stereo_budget`` percent of the width) or ``anaglyph`` (their red-cyan
    mix). :meth:`write_picture` encodes any RGB picture (3D photos use it).
    Frame ``k`` is shown at the source time of the frame it came from, so a skipped frame
    holds the previous one on screen and the audio stays in sync. ``time_base``: the unit of
    those times (``source.time_base``; default ``1/fps``); with the source's own unit every
    timestamp is kept exactly, so variable-frame-rate input is not re-timed to a constant
    rate. ``fps`` stays the nominal (average) rate. ``audio_from``: a file
    whose first audio stream is remuxed (not re-encoded) for ``[start, end)`` seconds.
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction, *, mode: str = "color", cmap: str = "Spectral_r",
                 audio_from: Path | None = None, start: float = 0.0, end: float | None = None,
                 codec: str = "libx264", crf: int = 18, time_base: Fraction | None = None,
                 stereo_budget: float = 3.0):
        import av

        if mode not in VIDEO_MODES:
            raise ValueError(f"unknown video mode '{mode}'; choose from {', '.join(VIDEO_MODES)}")
        self.path = Path(path)
        self._tmp = temporary_sibling(self.path)  # renamed onto path once finished
        self.mode, self.cmap = mode, ("gray" if mode == "gray" else cmap)
        self.stereo_budget = stereo_budget
        self.stereo_info: dict = {}
        self.fps = Fraction(fps).limit_denominator(100_000)
        self.time_base = Fraction(time_base) if time_base else 1 / self.fps
        self.start, self.end = start, end
        self.frames = 0
        self.audio_copied = False
        self._codec_name, self._crf = codec, crf
        self._out = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = av.open(str(self._tmp), "w")
        except OSError as e:
            remove_quietly(self._tmp)
            raise as_storage_error(e, self.path, self._tmp) from None
        self._video = None
        self._last_pts = -1
        self._t0: float | None = None
        self._audio_in = self._audio_out = self._packets = None
        self._audio_shift = 0
        self._audio_done = True
        self._pending = None
        if audio_from is not None:
            self._open_audio(Path(audio_from))

    # -- audio
    def _open_audio(self, source: Path) -> None:
        import av

        try:
            self._audio_in = av.open(str(source))
            a_in = self._audio_in.streams.audio[0]
            self._audio_out = self._out.add_stream_from_template(a_in)
        except (av.FFmpegError, ValueError, IndexError) as e:
            print(f"localdepth: warning: the audio is not copied ({e})", file=sys.stderr)
            self._close_audio_input()
            return
        tb = a_in.time_base
        a0 = a_in.start_time or 0
        self._audio_shift = a0 + int(self.start / tb)
        if self.start > 0:
            self._audio_in.seek(self._audio_shift, stream=a_in, backward=True)
        self._packets = self._audio_in.demux(a_in)
        self._audio_tb = tb
        self._audio_done = False

    def _next_packet(self):
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        for packet in self._packets:
            if packet.pts is not None and packet.size:
                return packet
        return None

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Copy audio packets that start before ``seconds`` after the clip start (None: to the
        selection's end)."""
        if self._audio_done:
            return
        import av

        length = None if self.end is None else self.end - self.start
        limit = seconds if length is None else (length if seconds is None else min(seconds, length))
        while True:
            packet = self._next_packet()
            if packet is None:
                return self._close_audio_input()
            rel = packet.pts - self._audio_shift
            if rel < 0:
                continue  # before the selection's start
            t = float(rel * self._audio_tb)
            if limit is not None and t >= limit:
                if seconds is None or (length is not None and t >= length):
                    return self._close_audio_input()
                self._pending = packet  # for a later frame
                return
            packet.pts = rel
            if packet.dts is not None:
                packet.dts = max(0, packet.dts - self._audio_shift)
            packet.stream = self._audio_out
            try:
                self._out.mux(packet)
                self.audio_copied = True
            except av.FFmpegError as e:
                print(f"localdepth: warning: the audio is not copied further ({e})", file=sys.stderr)
                return self._close_audio_input()

    def _close_audio_input(self) -> None:
        self._audio_done = True
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None

    # -- video
    def _open_video(self, width: int, height: int) -> None:
        import av

        wanted = "libvpx-vp9" if self.path.suffix.lower() == ".webm" else self._codec_name
        codec = wanted if wanted in av.codecs_available else "mpeg4"
        stream = self._out.add_stream(codec, rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":  # MPEG-4 Part 2 allows time-base denominators up to 65535 only
            self.time_base = self.time_base.limit_denominator(65535)
        stream.time_base = stream.codec_context.time_base = self.time_base  # the encoder's too, or it re-times
        if codec == "libx264":
            stream.options = {"crf": str(self._crf), "preset": "veryfast"}
        elif codec == "libvpx-vp9":
            stream.options = {"crf": str(self._crf + 12), "b": "0", "deadline": "realtime", "cpu-used": "8"}
        self._video = stream
        try:
            self._out.start_encoding()  # writes the header: fails here if the audio codec does not fit
        except av.FFmpegError as e:
            if self._audio_out is None:
                raise
            print(f"localdepth: warning: the audio is not copied: {self.path.suffix} cannot hold it ({e})",
                  file=sys.stderr)
            self._close_audio_input()
            self._audio_out = None
            self._out.close()
            self._out = av.open(str(self._tmp), "w")
            self._open_video(width, height)

    def write(self, frame: Frame, depth: np.ndarray, mapping: ClipMapping,
              confidence: np.ndarray | None = None) -> None:
        if self.mode in STEREO_MODES:
            picture = self._stereo_picture(frame.rgb, depth, mapping)
        else:
            picture = depth_picture(depth, mapping, self.cmap)
            if self.mode == "side":
                picture = side_by_side(frame.rgb, picture)
        self.write_picture(picture, frame.time)

    def _stereo_picture(self, rgb: np.ndarray, depth: np.ndarray, mapping: ClipMapping) -> np.ndarray:
        """The stereo pair (left | right) or the anaglyph of one frame. The clip's range gives one
        relative-to-depth rule, and its nearest depth one baseline, for every frame (no pulsing)."""
        from ..geometry import default_intrinsics
        from ..render import anaglyph, depth_for_rendering, side_by_side_pair, stereo_views

        value_range = None if mapping.kind == "depth" else (mapping.vmin, mapping.vmax)
        z, _, _ = depth_for_rendering(depth, mapping.kind, mapping.metric, value_range)
        h, w = z.shape
        near = 1.0 if value_range is not None else max(float(mapping.vmin), 1e-6)
        left, right, info = stereo_views(rgb, z, default_intrinsics(w, h).K, budget=self.stereo_budget, near=near)
        self.stereo_info = {k: info[k] for k in ("budget_percent", "cameras")}
        if self.mode == "anaglyph":
            return anaglyph(left.image, right.image)
        return side_by_side_pair(left.image, right.image)

    def write_picture(self, picture: np.ndarray, time: float) -> None:
        """Encode one RGB picture ``(H, W, 3)`` uint8 shown at ``time`` seconds (from the first picture's
        time; odd sides lose their last row/column, as 4:2:0 video needs)."""
        import av

        picture = _even(np.ascontiguousarray(picture))
        if self._video is None:
            self._open_video(picture.shape[1], picture.shape[0])
            self._t0 = time
        pts = max(self._last_pts + 1, int(round((time - self._t0) / self.time_base)))
        self._last_pts = pts
        vf = av.VideoFrame.from_ndarray(picture, format="rgb24")
        vf.pts, vf.time_base = pts, self.time_base
        try:
            for packet in self._video.encode(vf):
                self._out.mux(packet)
        except OSError as e:  # a full disk
            raise as_storage_error(e, self.path, self._tmp) from None
        self.frames += 1
        if self.frames == 2:
            crash_point("video-writing")  # tests: a kill while the depth video is being written
        # interleave: audio up to the end of this frame, so a stop anywhere leaves both in step
        self._mux_audio_until(float(pts * self.time_base + 1 / self.fps))

    @property
    def duration(self) -> float:
        return float(self._last_pts * self.time_base + 1 / self.fps) if self._last_pts >= 0 else 0.0

    def close(self, *, complete: bool = True) -> None:
        """Flush the encoder, write the trailer and rename the video onto its name.
        ``complete=False`` (interrupted) copies the audio only as far as the video goes. A video
        without frames is dropped, and an existing file of that name kept."""
        if self._out is None:
            return
        try:
            try:
                if self._video is not None:
                    for packet in self._video.encode(None):
                        self._out.mux(packet)
                    if not self._audio_done:
                        self._mux_audio_until(None if complete else self.duration)
            finally:
                self._close_audio_input()
                out, self._out = self._out, None
                out.close()
            if self.frames > 0:
                os.replace(self._tmp, self.path)
        except OSError as e:  # a full disk while finishing
            raise as_storage_error(e, self.path, self._tmp) from None
        finally:
            remove_quietly(self._tmp)  # gone already when it was renamed

    def discard(self) -> None:
        """Drop what was written (the run failed): an existing file of this name stays as it was."""
        self._close_audio_input()
        out, self._out = self._out, None
        if out is not None:
            try:
                out.close()
            except Exception:  # closing after a failure: what is left is deleted anyway
                pass
        remove_quietly(self._tmp)

    def describe(self) -> dict:
        info = {"file": str(self.path), "mode": self.mode, "cmap": self.cmap, "fps": float(self.fps),
                "frames": self.frames, "duration_s": round(self.duration, 6), "audio_copied": self.audio_copied}
        if self.mode in STEREO_MODES:
            info.update(self.stereo_info, layout="left | right" if self.mode == "stereo" else "red-cyan (Dubois)")
        return info


def encode_exr(depth: np.ndarray) -> bytes:
    """A float32 map as an OpenEXR image with one channel ``Z`` (ZIP compression)."""
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    fd, tmp = tempfile.mkstemp(suffix=".exr")
    os.close(fd)
    try:
        with OpenEXR.File(header, {"Z": np.ascontiguousarray(depth, dtype=np.float32)}) as f:
            f.write(tmp)
        return Path(tmp).read_bytes()
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_exr(path: str | os.PathLike) -> np.ndarray:
    import OpenEXR

    with OpenEXR.File(str(path)) as f:
        return np.array(f.channels()["Z"].pixels, dtype=np.float32)


class FrameFilesWriter:
    """Per-frame ``npz`` / ``png16`` / ``exr`` files under ``outdir`` (see module docs)."""

    def __init__(self, outdir: str | os.PathLike, formats: tuple[str, ...]):
        unknown = [f for f in formats if f not in FRAME_FORMATS]
        if unknown:
            raise ValueError(f"unknown frame format(s) {', '.join(unknown)}; choose from {', '.join(FRAME_FORMATS)}")
        if "exr" in formats:
            try:
                import OpenEXR  # noqa: F401
            except ImportError:
                raise ValueError("exr needs the OpenEXR package: pip install 'localdepth[video]'") from None
        self.outdir = Path(outdir)
        self.formats = formats
        self.frames = 0
        #: the folder's clip.json marks a complete set: removed before the first frame, written last
        self.marker = under_root(self.outdir, "clip.json")

    def paths(self, name: str) -> dict[str, Path]:
        """Each format's file for the frame ``name``, checked to stay under ``outdir``."""
        return {fmt: under_root(self.outdir, f"{name}{FRAME_FORMATS[fmt]}") for fmt in self.formats}

    def write(self, frame: Frame, depth: np.ndarray, mapping: ClipMapping,
              confidence: np.ndarray | None = None) -> None:
        import cv2

        if self.frames == 0:
            try:
                self.marker.unlink(missing_ok=True)
            except OSError as e:
                raise as_storage_error(e, self.marker) from None
        for fmt, path in self.paths(frame.name).items():
            if fmt == "npz":
                buf = io.BytesIO()
                extra = {} if confidence is None else {"confidence": confidence.astype(np.float32, copy=False)}
                np.savez_compressed(buf, depth=depth.astype(np.float32, copy=False), index=frame.index, time=frame.time,
                                    **extra)
                data = buf.getvalue()
            elif fmt == "png16":
                ok, enc = cv2.imencode(".png", mapping.to_png16(depth))
                if not ok:
                    raise OSError("OpenCV could not encode a 16-bit PNG")
                data = enc.tobytes()
            else:
                data = encode_exr(depth)
            atomic_write_bytes(path, data)
        self.frames += 1

    def close(self, *, complete: bool = True) -> None:
        pass

    def discard(self) -> None:
        pass  # each frame's files are whole; without clip.json the folder is not a complete result

    def describe(self) -> dict:
        return {"outdir": str(self.outdir), "formats": list(self.formats), "frames": self.frames,
                "files": {fmt: f"<stem>{FRAME_FORMATS[fmt]}" for fmt in self.formats}}
