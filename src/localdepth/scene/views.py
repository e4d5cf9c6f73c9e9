"""The views of a scene: photos (files, folders, globs, lists) or frames of one video.

Memory is bounded by two limits, checked before the network runs: at most ``max_views`` views
(default :data:`DEFAULT_MAX_VIEWS`, never over :data:`MAX_VIEWS`) and at most
:data:`MAX_SCENE_PIXELS` input pixels in all (the decoded views, and the depth and confidence
maps at each view's resolution, are held together: about 11 bytes a pixel). More candidate
views than ``max_views`` are thinned evenly over the sequence, with one warning line; more
pixels are refused with one line that says to shrink them (``--max-res``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import ImageDecodeError, LocalDepthError
from ..inputs import expand_inputs

DEFAULT_MAX_VIEWS = limits.SCENE_DEFAULT_MAX_VIEWS
MAX_VIEWS = limits.SCENE_MAX_VIEWS
MAX_SCENE_PIXELS = limits.SCENE_MAX_PIXELS


@dataclass
class View:
    image: np.ndarray          # (H, W, 3) uint8 RGB, EXIF orientation applied
    rel: Path                  # relative output path with the input's suffix: depth/<stem>.npy, images/<rel>
    given: str | None          # the path as the user gave it (None for a video frame: set once written)
    file: Path | None = None   # the photo on disk (None for a video frame)
    frame_index: int | None = None
    time: float | None = None

    @property
    def stem(self) -> Path:
        """``rel`` without its suffix: the name of the view's outputs."""
        return self.rel.with_suffix("") if self.rel.suffix else self.rel


def even_picks(count: int, keep: int) -> list[int]:
    """``keep`` positions out of ``range(count)``, evenly spread, first and last included."""
    if keep >= count:
        return list(range(count))
    if keep == 1:
        return [0]
    return sorted({int(round(i * (count - 1) / (keep - 1))) for i in range(keep)})


def _warn(message: str) -> None:
    print(f"localdepth: warning: {message}", file=sys.stderr)


def check_max_views(max_views: int) -> int:
    """``max_views`` itself, checked with the command line's range (1 to :data:`MAX_VIEWS`)."""
    from ..safety import NUMERIC_OPTIONS

    return NUMERIC_OPTIONS["max_views"].check("--max-views", max_views)


def _shrink(rgb: np.ndarray, max_res: int | None) -> np.ndarray:
    from ..video.readers import fit_max_res

    return fit_max_res(rgb, max_res)


def photo_views(inputs: list[str], *, stride: int = 1, max_views: int = DEFAULT_MAX_VIEWS,
                max_res: int | None = None, url_limits=None) -> tuple[list[View], list[str]]:
    """Decode the photos named by ``inputs`` (files, folders, globs, lists, URLs fetched within
    ``url_limits``): ``(views, problems)``; a missing or undecodable photo is one problem line and
    the others go on. Output names come from the input layer, unique for the whole list."""
    items = expand_inputs(inputs)
    problems = [item.error for item in items if item.error]
    items = [item for item in items if not item.error][::stride]
    if len(items) > max_views:
        _warn(f"{len(items)} images, more than --max-views {max_views}: using {max_views} of them, evenly spread "
              f"(raise --max-views, at most {MAX_VIEWS}, to use more)")
        items = [items[i] for i in even_picks(len(items), max_views)]
    views, pixels = [], 0
    for item in items:
        try:
            rgb = _shrink(item.load(url_limits=url_limits), max_res)
        except ImageDecodeError as e:  # its message names the input
            problems.append(str(e))
            continue
        except OSError as e:
            problems.append(f"{item.label}: {e}")
            continue
        pixels += rgb.shape[0] * rgb.shape[1]
        _check_pixels(pixels)
        views.append(View(rgb, item.rel, item.label, file=item.path))
    return views, problems


def drop_off_grid_views(estimator, views: list[View]) -> tuple[list[View], list[str]]:
    """``(views that share the scene's network grid, one problem line per view left out)``: a view
    whose grid would crop the others to less than :data:`~localdepth.limits.SCENE_MIN_SHARED_GRID`
    of theirs is left out alone and the scene is made of the rest (:func:`localdepth.multiview.grid_outcasts`)."""
    from ..multiview import grid_outcasts

    outcasts = grid_outcasts(estimator, [v.image.shape[:2] for v in views])
    problems = [f"{views[i].given or views[i].rel.as_posix()}: {reason}" for i, reason in outcasts.items()]
    return [v for i, v in enumerate(views) if i not in outcasts], problems


def _check_pixels(pixels: int) -> None:
    if pixels > MAX_SCENE_PIXELS:
        raise LocalDepthError(f"the views hold over {MAX_SCENE_PIXELS // 1_000_000} megapixels in all, the limit of one "
                              "scene; shrink them with --max-res PX (longer side) or give fewer views")


def video_views(path: str | Path, *, stride: int = 1, max_views: int = DEFAULT_MAX_VIEWS,
                max_res: int | None = None) -> tuple[list[View], list[str], dict]:
    """Frames of one video: every ``stride``-th, at most ``max_views`` of them spread evenly over
    the clip when its length is known (else the first ``max_views``). Only the kept frames are held."""
    from ..video.readers import Selection, VideoFileReader

    reader = VideoFileReader(path, Selection(stride=stride), max_res)
    try:
        candidates = reader.expected_frames
        picks = set(even_picks(candidates, max_views)) if candidates else set(range(max_views))
        last = max(picks)
        views, pixels = [], 0
        for position, frame in enumerate(reader):
            if position > last:
                if not candidates:
                    _warn(f"{path}: the clip has more than {max_views} frames at --stride {stride}; using the first "
                          f"{max_views} (raise --stride or --max-views to cover more of it)")
                break
            if position not in picks:
                continue
            pixels += frame.rgb.shape[0] * frame.rgb.shape[1]
            _check_pixels(pixels)
            views.append(View(frame.rgb, Path(f"{frame.name}.jpg"), None, frame_index=frame.index, time=frame.time))
        if candidates and candidates > max_views:
            _warn(f"{path}: {candidates} frames at --stride {stride}, more than --max-views {max_views}: using "
                  f"{len(views)} of them, evenly spread")
        problems = [f"{path}: {reader.skipped} undecodable frame(s) skipped"] if reader.skipped else []
        return views, problems, reader.describe()
    finally:
        reader.close()


def collect_views(inputs: list[str], *, stride: int = 1, max_views: int = DEFAULT_MAX_VIEWS,
                  max_res: int | None = None, url_limits=None) -> tuple[list[View], list[str], dict]:
    """The views named on the command line: ``(views, problem lines, description of the source)``."""
    from ..fetch import is_url
    from ..video.readers import VIDEO_EXTENSIONS, is_video_file

    check_max_views(max_views)
    if stride < 1:
        raise LocalDepthError("--stride must be 1 or more")
    if not inputs:
        raise LocalDepthError("no input given; e.g. `localdepth scene photos/ --output scene/`")
    videos = [p for p in inputs if Path(p).suffix.lower() in VIDEO_EXTENSIONS]
    if videos and is_url(videos[0]):
        raise LocalDepthError(f"{videos[0]}: video URLs are not read directly; download the file first "
                              "(image URLs work)")
    if videos:
        if len(inputs) > 1:
            raise LocalDepthError("give one video, or images (files, folders, globs, lists), not both")
        if not is_video_file(videos[0]):
            raise LocalDepthError(f"{videos[0]}: no such video file")
        return video_views(videos[0], stride=stride, max_views=max_views, max_res=max_res)
    views, problems = photo_views(inputs, stride=stride, max_views=max_views, max_res=max_res, url_limits=url_limits)
    return views, problems, {"type": "images", "count": len(views)}
