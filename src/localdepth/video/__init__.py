"""Depth for video files, image sequences and webcams, temporally stable.

>>> from localdepth.video import open_source, process_clip, DepthVideoWriter, Selection
>>> source = open_source(["clip.mp4"], selection=Selection(stride=2), max_res=512)
>>> writer = DepthVideoWriter("clip_depth.mp4", source.output_fps, mode="side", audio_from=source.audio_path)
>>> summary = process_clip(source, localdepth.load(), [writer], stabilize="align")
>>> summary.flicker   # percent; see FlickerMeter

Modules: :mod:`.readers` (sources), :mod:`.stabilize` (alignment, clip mapping, flicker),
:mod:`.writers` (depth video, per-frame files), :mod:`.pipeline` (the two passes).
"""

from .pipeline import NORMALIZE_MODES, VideoSummary, process_clip
from .readers import (Frame, FrameSource, ImageSequenceReader, Position, Selection, VideoFileReader, WebcamReader,
                      open_source)
from .stabilize import STABILIZE_MODES, ClipMapping, FlickerMeter, Stabilizer
from .writers import FRAME_FORMATS, VIDEO_MODES, DepthVideoWriter, FrameFilesWriter

__all__ = [
    "FRAME_FORMATS", "NORMALIZE_MODES", "STABILIZE_MODES", "VIDEO_MODES", "ClipMapping", "DepthVideoWriter",
    "FlickerMeter", "Frame", "FrameFilesWriter", "FrameSource", "ImageSequenceReader", "Position", "Selection",
    "Stabilizer", "VideoFileReader", "VideoSummary", "WebcamReader", "open_source", "process_clip",
]
