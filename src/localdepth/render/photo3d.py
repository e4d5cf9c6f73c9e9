"""3D photos: a photo and its depth -> the frames of a short video of a moving virtual camera.

:func:`prepare` builds the layered scene at the video's size and the camera path;
:meth:`Photo3D.frames` renders the frames one at a time; :func:`write_frames` encodes them
(MP4 and other PyAV containers, GIF and WebP through Pillow), atomically.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..geometry import PSEUDO_DEPTH_PERCENTILES, Intrinsics
from .paths import DEFAULT_AMPLITUDE, PATHS, border_zoom, camera_path, disocclusion_width, parallax_map, zoomed
from .scene import LayeredScene, build_scene, depth_for_rendering, depth_percentiles
from .warp import Rendered, View, render_view

#: containers written by PyAV (H.264, or VP9 for WebM) and by Pillow (animated)
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
ANIMATION_SUFFIXES = (".gif", ".webp")
OUTPUT_SUFFIXES = VIDEO_SUFFIXES + ANIMATION_SUFFIXES

DEFAULT_SECONDS = 4.0
DEFAULT_FPS = 30.0
#: the video's short side, pixels, when none is given ("720p"); never larger than the photo's
DEFAULT_SIZE = 720


@dataclass(frozen=True)
class Photo3DOptions:
    """What to render: ``path`` (:data:`~localdepth.render.paths.PATHS`), ``seconds`` and ``fps``
    (``round(seconds * fps)`` frames, at least 1), ``size`` (the short side in pixels, at most the
    photo's; sides made even for 4:2:0 video), ``amplitude`` (fraction of the focus depth; None:
    the path's default), ``focus`` (the depth that stays still, in the map's units after the
    conversion of :func:`~localdepth.render.scene.depth_for_rendering`; None: the median)."""

    path: str = "circle"
    seconds: float = DEFAULT_SECONDS
    fps: float = DEFAULT_FPS
    size: int = DEFAULT_SIZE
    amplitude: float | None = None
    focus: float | None = None

    @property
    def frames(self) -> int:
        return max(1, int(round(self.seconds * self.fps)))


def resize_map(depth: np.ndarray, kind: str, width: int, height: int) -> np.ndarray:
    """A map at ``width x height`` (area average when shrinking, bilinear when enlarging); invalid
    values (NaN, and depths <= 0) stay out of the averages as far as OpenCV allows: they are
    replaced by the farthest valid value first."""
    d = np.asarray(depth, dtype=np.float32)
    if d.shape == (height, width):
        return d
    valid = np.isfinite(d) & ((d > 0) if kind == "depth" else True)
    if not valid.all():
        far = (d[valid].max() if kind == "depth" else d[valid].min()) if valid.any() else 1.0
        d = np.where(valid, d, far).astype(np.float32)
    shrink = width * height < d.shape[0] * d.shape[1]
    return cv2.resize(d, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


#: the depth that stays still when none is given: the median for paths around the scene, the near
#: subject (10th percentile of the depth) for a dolly zoom, whose subject is usually in front
FOCUS_PERCENTILE = {"circle": 50.0, "swing": 50.0, "zoom-in": 50.0, "dolly-zoom": 10.0}
FOCUS_RULES = {path: ("median depth" if q == 50.0 else f"{q:g}th percentile of the depth")
               for path, q in FOCUS_PERCENTILE.items()}
#: the scene is built at most this much larger than the video (beyond, cracks are closed instead)
MAX_SCENE_SCALE = 1.5


def default_focus(z: np.ndarray, path: str) -> float:
    """The focus depth of ``path`` for the z-depth ``z`` (:data:`FOCUS_PERCENTILE`)."""
    flat = z.ravel()[:: max(1, z.size // 200_000)]
    return float(np.percentile(flat, FOCUS_PERCENTILE[path]))


def scene_scale(views: list[View], K: np.ndarray, near: float, far: float) -> float:
    """How much larger than the video to build the scene: the views' largest magnification of a
    surface at ``near`` or ``far`` (``f' / f * z / (z - t_z)``), between 1 and :data:`MAX_SCENE_SCALE`."""
    largest = 1.0
    for view in views:
        for z in (near, far):
            largest = max(largest, view.K[0, 0] / K[0, 0] * z / (z - view.t[2]))
    return min(largest, MAX_SCENE_SCALE)


def output_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(width, height)`` of the video: the short side ``size`` (never above the photo's), aspect kept,
    both even (at least 2)."""
    scale = min(1.0, size / min(width, height))
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


@dataclass
class Photo3D:
    """A prepared 3D photo: the ``scene`` at the video's size and one :class:`View` per frame."""

    scene: LayeredScene
    views: list[View]
    fps: float
    info: dict = field(default_factory=dict)

    def frames(self) -> Iterator[Rendered]:
        for view in self.views:
            yield render_view(self.scene, view)


def prepare(image: np.ndarray, depth: np.ndarray, kind: str, intrinsics: Intrinsics, options: Photo3DOptions, *,
            metric: bool | None = None) -> Photo3D:
    """Build a :class:`Photo3D` from a photo ``(H, W, 3)`` uint8 and its map ``(h, w)`` (any size with the
    photo's aspect ratio; relative maps become a pseudo-depth: :func:`depth_for_rendering`).

    ``intrinsics``: the photo's camera (:func:`localdepth.geometry.resolve_intrinsics`). Raises
    ``ValueError`` in one line for an unknown path, a map of another shape, or an amplitude that
    would take the camera through the scene.
    """
    if options.path not in PATHS:
        raise ValueError(f"unknown camera path '{options.path}'; choose from {', '.join(PATHS)}")
    H, W = image.shape[:2]
    h, w = depth.shape
    if abs(w / h - W / H) > 0.01 * (W / H) + 2.0 / min(h, H):
        raise ValueError(f"the depth map ({w}x{h}) does not have the photo's shape ({W}x{H})")
    vw, vh = output_size(W, H, options.size)
    K_out = intrinsics.scaled(vw, vh).K
    # the map at the video's size first: a 12 MP map is converted in a fraction of the time
    resized = resize_map(depth, kind, vw, vh)
    value_range = None
    if kind != "depth":  # one disparity-to-depth rule for the video's size and the scene's
        finite = resized[np.isfinite(resized)]
        value_range = tuple(float(x) for x in np.percentile(finite, PSEUDO_DEPTH_PERCENTILES)) if finite.size else None
    z, units, note = depth_for_rendering(resized, kind, metric, value_range)
    near, far = depth_percentiles(z)
    focus = default_focus(z, options.path) if options.focus is None else float(options.focus)
    views = camera_path(options.path, options.frames, K_out, vw, vh, amplitude=options.amplitude, focus=focus,
                        near=near)
    zoom = border_zoom(views, K_out, z)
    views = zoomed(views, zoom)
    parallax = parallax_map(views, K_out, vw, vh, near, far)
    # the scene at the size of the views' largest magnification (the border zoom at least): the
    # views then spread its points no wider than one pixel, and no crack opens
    scale = scene_scale(views, K_out, near, far)
    sw, sh = max(2, int(round(vw * scale))), max(2, int(round(vh * scale)))
    t0 = time.perf_counter()
    interpolation = cv2.INTER_AREA if sw * sh < W * H else cv2.INTER_LINEAR
    small = np.ascontiguousarray(image, dtype=np.uint8) if (sw, sh) == (W, H) else \
        cv2.resize(np.ascontiguousarray(image, dtype=np.uint8), (sw, sh), interpolation=interpolation)
    z_scene = z if (sw, sh) == (vw, vh) else depth_for_rendering(resize_map(depth, kind, sw, sh), kind, metric,
                                                                    value_range)[0]
    band = min(int(np.ceil(disocclusion_width(float(parallax.max()), near, far) * scale)), max(sw, sh) // 4)
    if (sw, sh) != (vw, vh):
        parallax = cv2.resize(parallax, (sw, sh), interpolation=cv2.INTER_LINEAR)
    scene = build_scene(small, z_scene, intrinsics.scaled(sw, sh).K, band=band, parallax=parallax)
    amplitude = DEFAULT_AMPLITUDE[options.path] if options.amplitude is None else options.amplitude
    info = {"path": options.path, "amplitude": amplitude, "amplitude_depth_units": amplitude * focus,
            "focus_depth": focus, "near_depth": near, "far_depth": far, "depth_units": units, "depth_note": note,
            "frames": len(views), "fps": options.fps, "seconds": len(views) / options.fps,
            "width": vw, "height": vh, "border_zoom": round(zoom, 6), "scene_size": [sw, sh],
            "focus_rule": "given" if options.focus is not None else FOCUS_RULES[options.path],
            "intrinsics": intrinsics.scaled(vw, vh).as_dict(), "intrinsics_source": intrinsics.origin,
            "scene_ms": round((time.perf_counter() - t0) * 1000, 1), **scene.info}
    return Photo3D(scene=scene, views=views, fps=options.fps, info=info)


# ----------------------------------------------------------------------------- encoding

def write_frames(path: str | Path, pictures: Iterable[np.ndarray], fps: float) -> dict:
    """Encode RGB pictures ``(H, W, 3)`` uint8 into ``path`` by its suffix, atomically (a temporary file
    beside it, renamed when complete): :data:`VIDEO_SUFFIXES` through PyAV (H.264; VP9 for ``.webm``),
    ``.gif`` and ``.webp`` through Pillow (looping). Returns what was written."""
    from ..writers import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"{path.name}: write a 3D photo as {', '.join(OUTPUT_SUFFIXES)}")
    with atomic_path(path) as tmp:
        if suffix in VIDEO_SUFFIXES:
            from fractions import Fraction

            from ..video.writers import DepthVideoWriter

            writer = DepthVideoWriter(tmp, Fraction(fps).limit_denominator(1001))
            try:
                for k, picture in enumerate(pictures):
                    writer.write_picture(picture, k / fps)
            finally:
                writer.close()
            if writer.frames == 0:
                raise ValueError("no frame to write")
            info = {"frames": writer.frames, "codec": writer._codec_name if suffix != ".webm" else "vp9"}
        else:
            info = _write_animation(tmp, suffix, pictures, fps)
    return {"file": str(path), "fps": fps, **info}


def _write_animation(path: Path, suffix: str, pictures: Iterable[np.ndarray], fps: float) -> dict:
    from PIL import Image

    frames = iter(pictures)
    first = next(frames, None)
    if first is None:
        raise ValueError("no frame to write")
    count = 1

    def picture(rgb: np.ndarray) -> Image.Image:
        im = Image.fromarray(rgb)
        if suffix == ".gif":  # a palette per frame by a fast octree: 10x faster than Pillow's default
            im = im.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        return im

    def rest():
        nonlocal count
        for rgb in frames:
            count += 1
            yield picture(rgb)

    # GIF delays are whole centiseconds: 30 fps is shown at 1/0.03 = 33.3 fps
    duration = max(1, int(round(1000.0 / fps)))
    options = {"save_all": True, "append_images": rest(), "duration": duration, "loop": 0}
    options.update(quality=80, method=0) if suffix == ".webp" else options.update(optimize=False)
    picture(first).save(path, format="GIF" if suffix == ".gif" else "WEBP", **options)
    return {"frames": count, "frame_ms": duration}


def render_to_file(photo: Photo3D, path: str | Path, *, progress: bool = False) -> dict:
    """Render every frame of ``photo`` and encode it into ``path`` (:func:`write_frames`), with a tqdm
    bar of frames when ``progress``. Returns the output's description and the timings."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    render_s = 0.0
    filled = []

    def pictures():
        nonlocal render_s
        bar = tqdm(total=len(photo.views), unit="frame", disable=not progress, dynamic_ncols=True, leave=False)
        try:
            for view in photo.views:
                t = time.perf_counter()
                rendered = render_view(photo.scene, view)
                render_s += time.perf_counter() - t
                filled.append(float(rendered.filled.mean()))
                bar.update(1)
                yield rendered.image
        finally:
            bar.close()

    out = write_frames(path, pictures(), photo.fps)
    total = time.perf_counter() - t0
    return {**out, "render_s": round(render_s, 3), "encode_s": round(total - render_s, 3),
            "total_s": round(total, 3), "filled_fraction_mean": round(float(np.mean(filled)) if filled else 0.0, 6),
            "ms_per_frame": round(1000 * total / max(1, len(filled)), 2)}
