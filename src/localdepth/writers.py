"""Output formats: encoders (map -> bytes) and the writer that puts a result on disk.

Formats and file names (``stem`` is the input's name without extension, under the
input's relative folder):

=========  ====================  ===========================================================
format     file                  contents
=========  ====================  ===========================================================
npy        ``stem.npy``          float32 map as predicted (metres, relative depth or relative disparity)
conf       ``stem_conf.npy``     float32 per-pixel confidence (models that predict one: Depth Anything 3)
pfm        ``stem.pfm``          the same float32 map, Portable Float Map (rows bottom-up)
png16      ``stem.png``          uint16; metric depth: millimetres (value * 0.001 = metres);
                                 relative maps (disparity, or depth of unknown scale): the
                                 0.1st..99.9th percentile of the map over 0..65535
                                 (value = offset + scale * png; values beyond the range
                                 saturate and are counted), min/max in the sidecar
color      ``stem_color.png``    colour-mapped picture, closer = high end of the map
side       ``stem_side.png``     input image and colour map side by side
normals    ``stem_normals.png``  surface normals as ControlNet's normal models read them:
                                 RGB = (n + 1) / 2 * 255, n in the frame x left, y up, z towards
                                 the camera (a wall facing the camera is (128, 128, 255)); black = none
controlnet ``stem_controlnet.png`` depth ControlNet picture: inverse depth over its min..max,
                                 near = white (what ControlNet's depth preprocessors give)
stereo     ``stem_stereo.png``   side-by-side stereo pair (left | right), rendered from the depth
anaglyph   ``stem_anaglyph.png`` red-cyan anaglyph of that pair (Dubois)
(always)   ``stem.json``         sidecar: model, kind, units, scales, sizes, timings
=========  ====================  ===========================================================

Every file is written to a temporary name in the target folder and renamed into place,
so a crash never leaves a half-written file under the final name. The sidecar is written
last: its presence marks a complete result (``--skip-existing`` relies on it).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from .images import to_uint8
from .postprocess import DepthResult
from .safety import relative_output, under_root

PNG16_MAX = 65535
METRIC_PNG16_SCALE = 0.001  # metres per unit: millimetres
ROBUST_PERCENTILES = (1.0, 99.0)  # colour range of pictures, unless a range is given
#: the range a relative png16 spans: wide enough to keep nearly every pixel, robust to the few
#: outliers a network can produce (one spike must not squeeze the rest of the map into a few codes)
PNG16_PERCENTILES = (0.1, 99.9)
_RANGE_SAMPLES = 200_000  # percentiles are estimated on at most this many pixels (a regular subsample)


def robust_range(values: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """``percentiles`` of the finite ``values`` (1-D), on a regular subsample of large maps."""
    sample = values[:: max(1, values.size // _RANGE_SAMPLES)]
    lo, hi = np.percentile(sample, percentiles)
    return float(lo), float(hi)


# ----------------------------------------------------------------------------- atomic files

def temporary_sibling(path: Path) -> Path:
    """A fresh name beside ``path`` for writing it (same folder, so a rename finishes the write;
    same suffix, so libraries that pick a format by suffix still do)."""
    path = Path(path)
    return path.parent / f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}"


def remove_quietly(path: Path) -> None:
    """Delete a temporary file if it is there (cleaning up after a failure: never a new error)."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def as_storage_error(error: OSError, path: Path, tmp: Path | None = None):
    """``error`` from writing ``path`` (through ``tmp``) as a one-line :class:`StorageError` that
    names ``path``; an error about another file (a source being read) names that file."""
    from .errors import storage_error

    own = {str(path), str(tmp)} | {str(parent) for parent in Path(path).parents}
    if error.filename is None or str(error.filename) in own:
        return storage_error(error, path)
    return storage_error(error, action="read")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (:func:`temporary_sibling`) to write to; renamed onto
    ``path`` when the block ends, removed if it fails. A filesystem error (a full disk, a
    read-only folder) becomes one :class:`~localdepth.errors.StorageError` line naming ``path``."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        remove_quietly(tmp)
        if isinstance(e, OSError):
            raise as_storage_error(e, path, tmp) from None
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``, macOS
    ``renamex_np(RENAME_SWAP)``); False where the system or filesystem cannot."""
    import ctypes
    import ctypes.util
    import errno
    import sys

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        if sys.platform.startswith("linux"):
            result = libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), 2)  # AT_FDCWD, RENAME_EXCHANGE
        elif sys.platform == "darwin":
            result = libc.renamex_np(os.fsencode(a), os.fsencode(b), 2)  # RENAME_SWAP
        else:
            return False
    except (OSError, AttributeError):  # no such C function here (an old C library)
        return False
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def replace_folder(staging: Path, target: Path) -> None:
    """Put the finished folder ``staging`` at ``target``, in place of what is there, so that
    ``target`` holds either the whole old set or the whole new one, never a mix.

    A missing ``target`` is one rename. An existing one is swapped with ``staging`` in one atomic
    exchange where the system has one (Linux 3.15+, macOS), then the old set is deleted. Elsewhere
    the old folder is renamed aside (``.NAME.old-*``) and the new one into place: a kill between
    those two renames leaves ``target`` missing and the complete old set beside it, never a mix.
    ``target`` given as a link to a folder replaces the folder it points to.
    """
    import shutil

    target = Path(os.path.realpath(target))
    staging = Path(staging)
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # it holds the old set now
        return
    aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(target, aside)
    os.rename(staging, target)
    shutil.rmtree(aside, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        # "x" mode: a fresh file with the usual permissions (umask), unlike mkstemp's 0600
        with open(tmp, "xb") as f:
            f.write(data)


def _encode(ext: str, array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, array)
    if not ok:
        raise OSError(f"OpenCV could not encode a {ext} image")
    return buf.tobytes()


def encode_rgb_png(rgb: np.ndarray) -> bytes:
    return _encode(".png", cv2.cvtColor(to_uint8(rgb), cv2.COLOR_RGB2BGR))


# ----------------------------------------------------------------------------- encoders

def encode_png16(depth: np.ndarray, kind: str, metric: bool | None = None) -> tuple[np.ndarray, dict]:
    """Map -> (uint16 array, mapping). ``value = offset + scale * png`` recovers the map.

    Metric depth (``metric``, by default ``kind == "depth"``) is stored in millimetres (values
    beyond 65.535 m are clipped, and counted). Relative maps (disparity, or depth of unknown
    scale) are normalised per image over a robust range, the :data:`PNG16_PERCENTILES` of the map
    (a few outlier pixels must not squeeze the rest into a few codes); values beyond it saturate
    at 0 or 65535 and are counted, and the map's true extremes stay in the sidecar's ``range``.
    """
    finite = np.isfinite(depth)
    if kind == "depth" if metric is None else metric:
        mm = np.where(finite, depth, 0.0) / METRIC_PNG16_SCALE
        clipped = int(np.count_nonzero(mm > PNG16_MAX))
        png = np.clip(np.rint(mm), 0, PNG16_MAX).astype(np.uint16)
        return png, {"units": "m", "scale": METRIC_PNG16_SCALE, "offset": 0.0, "clipped_pixels": clipped,
                     "note": "millimetres; 0 = no depth"}
    lo, hi = robust_range(depth[finite], PNG16_PERCENTILES) if finite.any() else (0.0, 0.0)
    span = hi - lo
    if span <= 0:
        png = np.zeros(depth.shape, np.uint16)
        scale = 0.0
    else:
        normalised = np.clip((np.where(finite, depth, lo) - lo) / span, 0.0, 1.0)
        png = np.rint(normalised * PNG16_MAX).astype(np.uint16)
        scale = span / PNG16_MAX
    return png, {"units": "relative", "scale": scale, "offset": lo, "min": lo, "max": hi,
                 "percentiles": list(PNG16_PERCENTILES),
                 "clipped_low": int(np.count_nonzero(finite & (depth < lo))),
                 "clipped_high": int(np.count_nonzero(finite & (depth > hi))),
                 "note": "normalised per image over the 0.1st..99.9th percentile: value = min + png / 65535 "
                         "* (max - min); 0 and 65535 also hold the values beyond that range"}


def decode_png16(png: np.ndarray, mapping: dict) -> np.ndarray:
    """Inverse of :func:`encode_png16` (within quantisation)."""
    return (mapping["offset"] + mapping["scale"] * png.astype(np.float64)).astype(np.float32)


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """A 256x3 uint8 lookup table for a Matplotlib colour map name (``Spectral_r``, ``gray``…)."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colour map '{name}'; any Matplotlib name works (Spectral_r, inferno, gray…)") from None
    return (cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255 + 0.5).astype(np.uint8)


def nearness(depth: np.ndarray, kind: str, vmin: float | None = None, vmax: float | None = None) -> tuple[np.ndarray, float, float]:
    """Normalise a map to [0, 1] with 1 = closest. Returns (nearness, vmin, vmax) in map units.

    Without ``vmin``/``vmax`` the range is the 1st to 99th percentile of the valid values.
    """
    finite = np.isfinite(depth)
    valid = finite & (depth > 0) if kind == "depth" else finite
    if (vmin is None or vmax is None) and valid.any():
        # robust range: a few outlier pixels must not wash out the picture
        p_lo, p_hi = robust_range(depth[valid], ROBUST_PERCENTILES)
    else:
        p_lo, p_hi = 0.0, 1.0
    lo = vmin if vmin is not None else p_lo
    hi = vmax if vmax is not None else p_hi
    span = hi - lo if hi > lo else 1.0
    t = np.clip((np.where(valid, depth, lo) - lo) / span, 0.0, 1.0)
    if kind == "depth":
        t = np.where(valid, 1.0 - t, 0.0)  # small depth = close
    return t.astype(np.float32), lo, hi


def colorize(depth: np.ndarray, kind: str, cmap: str = "Spectral_r", vmin: float | None = None,
             vmax: float | None = None) -> tuple[np.ndarray, dict]:
    """Colour-map a map: RGB uint8 ``(H, W, 3)``, closer = high end of the colour map."""
    t, lo, hi = nearness(depth, kind, vmin, vmax)
    rgb = colormap_lut(cmap)[np.rint(t * 255).astype(np.uint8)]
    return rgb, {"cmap": cmap, "vmin": lo, "vmax": hi, "closer": "high end of the colour map (brighter in gray)"}


def side_by_side(image: np.ndarray, picture: np.ndarray, gap: int = 0) -> np.ndarray:
    """Input image and a same-size picture next to each other (RGB uint8)."""
    left = to_uint8(image)
    if left.shape[:2] != picture.shape[:2]:
        left = cv2.resize(left, (picture.shape[1], picture.shape[0]), interpolation=cv2.INTER_AREA)
    parts = [left] + ([np.full((left.shape[0], gap, 3), 255, np.uint8)] if gap else []) + [picture]
    return np.concatenate(parts, axis=1)


# ----------------------------------------------------------------------------- the writer

@dataclass
class WriteOptions:
    formats: tuple[str, ...] = ("npy", "color")
    cmap: str = "Spectral_r"
    grayscale: bool = False
    #: shared colour range (for a video or collection); None = per image
    vmin: float | None = None
    vmax: float | None = None
    extra_sidecar: dict = field(default_factory=dict)
    #: stereo and anaglyph: disparity of the nearest depth, percent of the width
    stereo_budget: float = 3.0
    #: controlnet and normals: short side of the picture, a multiple of 64 (ControlNet's rule); None = the image's size
    controlnet_size: int | None = None

    @property
    def colormap(self) -> str:
        return "gray" if self.grayscale else self.cmap


Encoder = Callable[[DepthResult, WriteOptions], tuple[bytes, dict]]


def _npy(r: DepthResult, _: WriteOptions) -> tuple[bytes, dict]:
    import io

    buf = io.BytesIO()
    np.save(buf, r.map.astype(np.float32, copy=False))
    return buf.getvalue(), {"dtype": "float32", "units": r.units}


def _pfm(r: DepthResult, _: WriteOptions) -> tuple[bytes, dict]:
    return _encode(".pfm", r.map.astype(np.float32, copy=False)), {"dtype": "float32", "units": r.units,
                                                                  "rows": "bottom-to-top (PFM)"}


def _conf(r: DepthResult, _: WriteOptions) -> tuple[bytes, dict]:
    import io

    if r.confidence is None:
        raise ValueError(f"{r.model} predicts no confidence; drop 'conf' from --format")
    buf = io.BytesIO()
    np.save(buf, r.confidence.astype(np.float32, copy=False))
    return buf.getvalue(), {"dtype": "float32", "note": "per-pixel confidence of the depth, larger = more confident"}


def _png16(r: DepthResult, _: WriteOptions) -> tuple[bytes, dict]:
    png, mapping = encode_png16(r.map, r.kind, r.metric)
    return _encode(".png", png), {"dtype": "uint16", **mapping}


def _color(r: DepthResult, o: WriteOptions) -> tuple[bytes, dict]:
    rgb, info = colorize(r.map, r.kind, o.colormap, o.vmin, o.vmax)
    return encode_rgb_png(rgb), {"dtype": "uint8", **info}


def _side(r: DepthResult, o: WriteOptions) -> tuple[bytes, dict]:
    if r.image is None:
        raise ValueError("the side-by-side picture needs the input image (predict with keep_image=True)")
    rgb, info = colorize(r.map, r.kind, o.colormap, o.vmin, o.vmax)
    return encode_rgb_png(side_by_side(r.image, rgb)), {"dtype": "uint8", "layout": "image | depth", **info}


def _normals(r: DepthResult, o: WriteOptions) -> tuple[bytes, dict]:
    from .geometry import normals_picture
    from .render import resize_for_controlnet

    rgb, info = normals_picture(r.map, r.kind, o.extra_sidecar.get("intrinsics"), predicted=r.intrinsics,
                                image_path=r.source)
    rgb = resize_for_controlnet(rgb, o.controlnet_size)
    return encode_rgb_png(rgb), {"dtype": "uint8", **info, "width": rgb.shape[1], "height": rgb.shape[0]}


def _controlnet(r: DepthResult, o: WriteOptions) -> tuple[bytes, dict]:
    from .render import controlnet_depth

    rgb, info = controlnet_depth(r.map, r.kind, o.controlnet_size)
    return encode_rgb_png(rgb), {"dtype": "uint8", **info}


def _camera(r: DepthResult, o: WriteOptions):
    """The camera of a result, by the rule of :func:`localdepth.geometry.resolve_intrinsics` (given first)."""
    import os

    from .geometry import camera_from_dict, resolve_intrinsics

    h, w = r.map.shape
    given = o.extra_sidecar.get("intrinsics")
    if given:
        return camera_from_dict(given, w, h)
    path = r.source if r.source is not None and os.path.isfile(str(r.source)) else None
    return resolve_intrinsics(w, h, image_path=path, predicted=r.intrinsics)


def stereo_pair(r: DepthResult, o: WriteOptions) -> tuple[np.ndarray, np.ndarray, dict]:
    """The left and right views of a result (:func:`localdepth.render.stereo_views`) and their sidecar entry."""
    from .render import depth_for_rendering, stereo_views

    if r.image is None:
        raise ValueError("stereo pictures need the input image (predict with keep_image=True)")
    key = (o.stereo_budget, repr(o.extra_sidecar.get("intrinsics")))
    cached = getattr(r, "_stereo_pair", None)  # stereo and anaglyph of one result render the pair once
    if cached is not None and cached[0] == key:
        return cached[1]
    z, units, note = depth_for_rendering(r.map, r.kind, r.metric)
    cam = _camera(r, o)
    left, right, info = stereo_views(to_uint8(r.image), z, cam.K, budget=o.stereo_budget)
    info = {**{k: (round(v, 6) if isinstance(v, float) else v) for k, v in info.items()},
            "baseline_units": units, "depth": note, "intrinsics": cam.as_dict(), "intrinsics_source": cam.origin}
    r._stereo_pair = (key, (left.image, right.image, info))
    return left.image, right.image, info


def _stereo(r: DepthResult, o: WriteOptions) -> tuple[bytes, dict]:
    from .render import side_by_side_pair

    left, right, info = stereo_pair(r, o)
    return encode_rgb_png(side_by_side_pair(left, right)), {"dtype": "uint8", "layout": "left | right (full width each)",
                                                            **info}


def _anaglyph(r: DepthResult, o: WriteOptions) -> tuple[bytes, dict]:
    from .render import anaglyph

    left, right, info = stereo_pair(r, o)
    return encode_rgb_png(anaglyph(left, right)), {"dtype": "uint8", "glasses": "red (left eye) / cyan (right eye)",
                                                   "method": "Dubois 2009 least-squares matrices, in linear light",
                                                   **info}


#: format name -> (file suffix after the stem, encoder). Other modules register more formats here.
FORMATS: dict[str, tuple[str, Encoder]] = {
    "npy": (".npy", _npy),
    "conf": ("_conf.npy", _conf),
    "png16": (".png", _png16),
    "color": ("_color.png", _color),
    "side": ("_side.png", _side),
    "pfm": (".pfm", _pfm),
    "normals": ("_normals.png", _normals),
    "controlnet": ("_controlnet.png", _controlnet),
    "stereo": ("_stereo.png", _stereo),
    "anaglyph": ("_anaglyph.png", _anaglyph),
}
#: formats that need the input image beside the map (predict with ``keep_image=True``)
IMAGE_FORMATS = ("side", "stereo", "anaglyph")


def needs_image(formats) -> bool:
    return any(f in IMAGE_FORMATS for f in formats)
SIDECAR_SUFFIX = ".json"


def parse_formats(text: str | list[str]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = tuple(dict.fromkeys(f.strip().lower() for f in items if f.strip()))
    unknown = [f for f in formats if f not in FORMATS and f != "json"]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return tuple(f for f in formats if f != "json")


def output_names(rel: Path | str, formats: tuple[str, ...]) -> dict[str, PurePosixPath]:
    """The relative path of each format of the input at relative path ``rel`` (plus ``json``).

    Raises :class:`~localdepth.safety.UnsafePathError` when ``rel`` is absolute or holds ``..``.
    """
    rel = relative_output(rel)
    stem = rel.stem if rel.suffix else rel.name
    names = {fmt: rel.parent / f"{stem}{FORMATS[fmt][0]}" for fmt in formats}
    names["json"] = rel.parent / f"{stem}{SIDECAR_SUFFIX}"
    return names


def output_paths(outdir: Path, rel: Path | str, formats: tuple[str, ...]) -> dict[str, Path]:
    """Where each format of the input at relative path ``rel`` goes under ``outdir`` (plus ``json``).

    Every path is checked to stay under ``outdir``, symbolic links followed
    (:func:`localdepth.safety.under_root`); one that would leave it raises
    :class:`~localdepth.safety.UnsafePathError`.
    """
    return {fmt: under_root(outdir, name) for fmt, name in output_names(rel, formats).items()}


def is_complete(paths: dict[str, Path]) -> bool:
    return all(p.is_file() for p in paths.values())


def sidecar(result: DepthResult, model_info: dict, outputs: dict, extra: dict | None = None) -> dict:
    """The JSON sidecar: what the files hold and how they were made."""
    from . import __version__

    finite = result.map[np.isfinite(result.map)]
    return {
        "localdepth_version": __version__,
        "source": result.source,
        "image": None,  # the photo, relative to the sidecar's folder (None: no local file): colours, EXIF later
        "model": model_info,
        "kind": result.kind,
        "units": result.units,
        "convention": result.convention,
        "height": int(result.map.shape[0]), "width": int(result.map.shape[1]),
        "input_size": [int(v) for v in result.input_size],
        "range": {"min": float(finite.min()) if finite.size else None,
                  "max": float(finite.max()) if finite.size else None},
        "timings_ms": {k: round(v, 3) for k, v in result.timings.items()},
        "outputs": outputs,
        **_predicted_camera(result),
        **result.notes,
        **(extra or {}),
    }


def _predicted_camera(result: DepthResult) -> dict:
    """The camera the model predicted, if any (the one a command used is ``intrinsics``)."""
    info: dict = {}
    if result.intrinsics is not None:
        info["predicted_intrinsics"] = result.intrinsics.as_dict()
    if result.camera_from_world is not None:
        info["camera_from_world"] = np.asarray(result.camera_from_world, dtype=float).round(9).tolist()
    return info


def write_result(result: DepthResult, paths: dict[str, Path], options: WriteOptions, model_info: dict) -> dict:
    """Write every requested format of one result, then its sidecar. Returns the sidecar."""
    outputs = {}
    for fmt, path in paths.items():
        if fmt == "json":
            continue
        data, info = FORMATS[fmt][1](result, options)
        atomic_write_bytes(path, data)
        outputs[fmt] = {"file": path.name, **info}
    from .depthfile import image_reference

    extra = {"image": image_reference(result.source, paths["json"]), **(options.extra_sidecar or {})}
    meta = sidecar(result, model_info, outputs, extra)
    atomic_write_bytes(paths["json"], (json.dumps(meta, indent=2) + "\n").encode())
    return meta
