"""``localdepth video``: video files, image sequences and webcams -> stable depth video and frames."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .. import registry
from .common import add_model_args, add_stereo_args, add_url_args, load_from_args, url_limits_from_args

EXAMPLES = """examples:
  localdepth video clip.mp4 --output clip_depth.mp4 --side       RGB | depth, same fps, audio copied
  localdepth video clip.mp4 --format npz,png16 --outdir frames/  per-frame files, one 16-bit mapping
  localdepth video clip.mp4 --format stereo,anaglyph             clip_stereo.mp4 (left | right), clip_anaglyph.mp4
  localdepth video 'frames/*.png' --fps 24 --output seq.mp4      an image sequence (sorted naturally)
  localdepth video --webcam 0 --preview                          live window with fps (needs a display)
  localdepth video clip.mp4 -m video-depth-anything-small --side  a video model: 32-frame windows, consistent
  localdepth video --webcam 0 -m video-depth-anything-small      streaming: one frame in, cached temporal state
  ffmpeg -i URL -f mpegts - | localdepth video - -m vda-small     a pipe on standard input, streaming

The two-pass default (--normalize clip) spools the frames' maps to a folder localdepth-video-* in the
temporary folder ($TMPDIR, else /tmp), about H*W*4 bytes a frame, deleted as the video is written. A
run that is killed leaves its spool behind; the next video run removes it and says so. The depth
video is written beside --output under a temporary name and renamed when finished, so a failed or
killed run leaves an existing file of that name as it was.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "video", help="depth for a video file, an image sequence or a webcam, temporally stable",
        description="Predict depth for every frame of a video, an image sequence or a webcam, stabilise it "
                    "over time, and write a depth video and/or per-frame files with one mapping for the whole "
                    "clip. A flicker measure is printed at the end (see docs/video.md).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="a video file, or images: files, folders, globs (sorted naturally); - reads a stream from "
                        "standard input (e.g. ffmpeg ... -f mpegts -)")
    p.add_argument("--webcam", metavar="N", help="read camera N (or any OpenCV VideoCapture URL) instead of files")
    g = p.add_argument_group("outputs")
    g.add_argument("--output", "-o", type=Path, metavar="FILE.mp4",
                   help="depth video (default: NAME_depth.mp4 when no --format is given)")
    g.add_argument("--side", action="store_true", help="video shows input | depth side by side")
    g.add_argument("--grayscale", action="store_true", help="grey video: closer = brighter")
    g.add_argument("--cmap", default="Spectral_r", help="Matplotlib colour map of the video (default: Spectral_r)")
    g.add_argument("--format", "-f", metavar="LIST",
                   help="comma-separated: per-frame files npz, png16, exr; and videos rendered from the depth: stereo "
                        "(NAME_stereo.mp4, left | right) and anaglyph (NAME_anaglyph.mp4, red-cyan)")
    g.add_argument("--outdir", type=Path,
                   help="folder of the per-frame files (default: NAME_frames) and of the stereo/anaglyph videos "
                        "(default: the current folder)")
    add_stereo_args(g)
    g.add_argument("--no-audio", action="store_true", help="do not copy the input's audio")
    g.add_argument("--preview", action="store_true",
                   help="live window with fps (needs a display and OpenCV with GUI support); q or Esc stops")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    s = p.add_argument_group("frames")
    s.add_argument("--fps", type=float, help="frame rate of an image sequence (default 24) or a webcam")
    s.add_argument("--start", help="first frame: seconds (2.5) or a frame number (120f)")
    s.add_argument("--end", help="stop before this time (seconds) or frame number (240f)")
    s.add_argument("--stride", type=int, default=1, help="use every N-th frame (the output's fps is divided by N)")
    s.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    s.add_argument("--max-res", type=int, metavar="PX", help="shrink frames so the longer side is at most PX")
    t = p.add_argument_group("temporal stability")
    t.add_argument("--stabilize", choices=("off", "align", "align+ema"),
                   help="align: scale and shift of each frame fitted to the previous; align+ema: then smoothed "
                        "(default: align; off for video models, whose windows are consistent already)")
    t.add_argument("--streaming", action=argparse.BooleanOptionalAction,
                   help="video models: one frame at a time with cached temporal state, latency per frame shown "
                        "(default for --webcam and -); otherwise overlapping 32-frame windows (default for files)")
    t.add_argument("--ema", type=float, default=0.5, help="weight of the newest frame for align+ema (default 0.5)")
    t.add_argument("--normalize", choices=("clip", "running"),
                   help="clip: two passes, one mapping from the whole clip (default for files); running: one pass, "
                        "mapping from a warm-up (default for webcams)")
    t.add_argument("--warmup", type=int, default=16, help="frames of warm-up for --normalize running (default 16)")
    add_url_args(p)
    add_model_args(p)
    p.set_defaults(func=main)


def preview_problem() -> str | None:
    """Why a preview window cannot open here (None when it can)."""
    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set)"
    try:
        cv2.namedWindow("localdepth-probe")
        cv2.destroyWindow("localdepth-probe")
    except cv2.error:
        return "this OpenCV has no GUI support (opencv-python-headless); pip install opencv-python for a window"
    return None


class PreviewWindow:
    """Shows input | depth with the processing rate; q or Esc stops the run like Ctrl-C."""

    mode = "side"

    def __init__(self, cmap: str):
        self.cmap = cmap
        self.frames = 0
        self._times: list[float] = []

    def write(self, frame, depth, mapping, confidence=None) -> None:
        import time

        import cv2

        from ..video.writers import depth_picture
        from ..writers import side_by_side

        now = time.perf_counter()
        self._times = (self._times + [now])[-30:]
        fps = (len(self._times) - 1) / (self._times[-1] - self._times[0]) if len(self._times) > 1 else 0.0
        picture = cv2.cvtColor(side_by_side(frame.rgb, depth_picture(depth, mapping, self.cmap)), cv2.COLOR_RGB2BGR)
        cv2.putText(picture, f"{fps:.1f} fps", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        cv2.imshow("localdepth", picture)
        self.frames += 1
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise KeyboardInterrupt

    def close(self, *, complete: bool = True) -> None:
        import cv2

        cv2.destroyAllWindows()

    def describe(self) -> dict:
        return {"preview": True, "frames": self.frames}


def check_video_outputs(source, output: Path | None, outdir: Path | None, formats: tuple[str, ...]) -> None:
    """Refuse, before anything is written, a depth video, sidecar or per-frame file that is one of
    the inputs (``video clip.mp4 --output clip.mp4``, frames written over the images they come from)."""
    from ..safety import check_outputs, under_root
    from ..video.writers import FRAME_FORMATS

    inputs = [("the input", path) for path in getattr(source, "files", [])]
    if getattr(source, "path", None) is not None:
        inputs.append(("the input", source.path))
    outputs = []
    if output is not None:
        outputs += [("--output", output), ("the sidecar of --output", output.with_suffix(".json"))]
    if outdir is not None:
        marker = under_root(outdir, "clip.json")
        if output is None or os.path.realpath(marker) != os.path.realpath(output.with_suffix(".json")):
            outputs.append(("the frames' clip.json", marker))  # (the same file as the video's: the same content)
        for name in getattr(source, "frame_names", []):
            outputs += [("a frame file", under_root(outdir, f"{name}{FRAME_FORMATS[fmt]}"))
                        for fmt in formats if fmt in FRAME_FORMATS]
    check_outputs(outputs, inputs)


def main(args: argparse.Namespace) -> int:
    from ..errors import LocalDepthError  # PyAV (and OpenEXR for exr) are checked before this runs: extras.py
    from ..video import DepthVideoWriter, FrameFilesWriter, Position, Selection, open_source, process_clip
    from ..safety import under_root
    from ..writers import atomic_write_bytes, colormap_lut

    if args.preview:
        problem = preview_problem()
        if problem:
            print(f"localdepth: error: --preview cannot open a window: {problem}; run without --preview to see the "
                  f"fps in the terminal and write the depth to --output", file=sys.stderr)
            return 2
    from ..video.writers import STEREO_MODES

    requested = tuple(dict.fromkeys(f.strip().lower() for f in (args.format or "").split(",") if f.strip()))
    views = tuple(f for f in requested if f in STEREO_MODES)  # videos rendered from the depth
    formats = tuple(f for f in requested if f not in STEREO_MODES)  # per-frame files
    try:
        if not args.grayscale:
            colormap_lut(args.cmap)
        selection = Selection(Position.parse(args.start), Position.parse(args.end), args.stride, args.max_frames)
        source = open_source(args.inputs, webcam=args.webcam, fps=args.fps, selection=selection,
                             max_res=args.max_res, url_limits=url_limits_from_args(args))
    except ValueError as e:
        raise LocalDepthError(str(e)) from None

    writers: list = []
    try:
        output = args.output
        if output is None and not formats and not views and not args.preview:
            output = Path(f"{source.name}_depth.mp4")
        check_video_outputs(source, output, (args.outdir or Path(f"{source.name}_frames")) if formats else None,
                            formats)
        if formats:
            outdir = args.outdir or Path(f"{source.name}_frames")
            try:
                writers.append(FrameFilesWriter(outdir, formats))
            except ValueError as e:
                raise LocalDepthError(str(e)) from None
        elif args.outdir and not views:
            raise LocalDepthError("--outdir holds per-frame files and stereo videos: choose them with --format "
                                  "npz,png16,exr,stereo,anaglyph")
        for view in views:
            writers.append(DepthVideoWriter(under_root(args.outdir or Path("."), f"{source.name}_{view}.mp4"),
                                            source.output_fps, mode=view,
                                            audio_from=None if args.no_audio else source.audio_path,
                                            start=source.start_seconds(), end=source.end_seconds(),
                                            time_base=source.time_base, stereo_budget=args.stereo_budget))
        if output is not None:
            mode = "side" if args.side else "gray" if args.grayscale else "color"
            writers.append(DepthVideoWriter(output, source.output_fps, mode=mode, cmap=args.cmap,
                                            audio_from=None if args.no_audio else source.audio_path,
                                            start=source.start_seconds(), end=source.end_seconds(),
                                            time_base=source.time_base))
        if args.preview:
            writers.append(PreviewWindow("gray" if args.grayscale else args.cmap))
        from ..estimator import refuse_prompt_models

        refuse_prompt_models(registry.get(args.model), "video")
        estimator = load_from_args(args)
    except BaseException:
        for w in writers:
            w.discard() if hasattr(w, "discard") else w.close(complete=False)
        source.close()
        raise

    live = args.webcam is not None or args.inputs == ["-"]  # a camera or a pipe: no end to wait for
    normalize = args.normalize or ("running" if live or args.preview else "clip")
    streaming = args.streaming if args.streaming is not None else live
    sidecar = output.with_suffix(".json") if output is not None else None
    if sidecar is None and formats:
        sidecar = under_root(writers[0].outdir, "clip.json")
    if sidecar is None and views:
        sidecar = under_root(args.outdir or Path("."), f"{source.name}_{views[0]}.json")
    try:
        summary = process_clip(source, estimator, writers, stabilize=args.stabilize, ema=args.ema,
                               normalize=normalize, warmup=args.warmup, progress=not args.quiet,
                               sidecar_path=sidecar, streaming=streaming)
    except ValueError as e:
        raise LocalDepthError(str(e)) from None
    if output is not None and formats:  # the frames' folder gets the clip's sidecar too
        clip_json = (json.dumps(summary.sidecar, indent=2) + "\n").encode()
        atomic_write_bytes(under_root(writers[0].outdir, "clip.json"), clip_json)
    print(f"localdepth: {summary.line()}", file=sys.stderr)
    for w in summary.outputs:
        where = w.get("file") or w.get("outdir")
        if where:
            print(f"localdepth: wrote {where}", file=sys.stderr)
    if summary.interrupted:
        return 130
    if summary.frames == 0:
        print("localdepth: error: no frame could be read", file=sys.stderr)
        return 1
    if summary.missing:
        # the frames decoded are written and kept, but the clip is incomplete: say so, and do
        # not exit 0, so that a script sees it (as `run` exits 1 when an input fails)
        print(f"localdepth: error: {summary.missing} of the {summary.expected} frames the file announces are "
              f"missing (it ends early: truncated or still being written?); the {summary.frames} frames read "
              f"were written", file=sys.stderr)
        return 1
    return 0
