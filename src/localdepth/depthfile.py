"""Reading depth maps written by ``localdepth run`` (or anyone) back, with their sidecar.

``read_depth_map(path)`` understands ``.npy``/``.npz`` (float maps), ``.pfm`` and localdepth's
16-bit ``.png`` (decoded with the mapping in the ``.json`` sidecar beside it). The kind
(``"depth"`` = z-depth, ``"disparity"`` = relative inverse depth) comes from the sidecar,
else from the caller's ``kind``; depth is in metres unless the sidecar's ``units`` say
``relative`` (:func:`is_metric`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageDecodeError, LocalDepthError
from .limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from .safety import quoted
from .writers import decode_png16

MAP_SUFFIXES = (".npy", ".npz", ".pfm", ".png")


def sidecar_for(path: Path) -> dict | None:
    """The ``stem.json`` sidecar next to a map, if any (only that name: a guess could pick another map's)."""
    candidate = Path(path).with_suffix(".json")
    if candidate.is_file():
        try:
            return json.loads(candidate.read_text())
        except (OSError, ValueError):
            return None
    return None


def image_reference(source, sidecar_path: Path) -> str | None:
    """How a sidecar at ``sidecar_path`` names the photo ``source`` it was made from: a path relative to
    the sidecar's folder (so it resolves wherever the command runs, and when the two move together), or
    None when ``source`` is no local file (a URL, an array, standard input)."""
    import os

    if source is None or not isinstance(source, (str, os.PathLike)) or not Path(source).is_file():
        return None
    return Path(os.path.relpath(Path(source).resolve(), Path(sidecar_path).resolve().parent)).as_posix()


def sidecar_image(map_path: Path, meta: dict) -> tuple[Path | None, str | None]:
    """``(photo, None)``: the colour image of a map, from its sidecar's ``image`` (relative to the sidecar's
    folder); ``(None, why)`` when the sidecar names one that is not there; ``(None, None)`` when it names none.

    Older sidecars named the photo only in ``source``, as given on the command line (relative to the folder
    it ran in), and ``align`` put the input map there: both are still followed.
    """
    from .images import IMAGE_EXTENSIONS

    folder = Path(map_path).parent
    named = meta.get("image")
    if named:
        found = Path(named) if Path(named).is_absolute() else folder / named
        return (found, None) if found.is_file() else (None, f"its sidecar names the image {named} (from {folder}), "
                                                            "which is not there")
    source = meta.get("source")
    if not isinstance(source, str) or "://" in source:
        return None, None
    for candidate in (Path(source), folder / source):
        if candidate.is_file():
            if candidate.suffix.lower() in IMAGE_EXTENSIONS:
                return candidate, None
            if candidate.suffix.lower() in MAP_SUFFIXES and candidate.resolve() != Path(map_path).resolve():
                return sidecar_image(candidate, sidecar_for(candidate) or {})  # an older align's input map
    return None, f"its sidecar names the image {source}, which is not there"


def as_2d_map(array) -> np.ndarray:
    """A stored map as ``(H, W)`` (dtype kept): leading or trailing length-1 axes (``(1, H, W)``,
    ``(H, W, 1)``) are dropped, but never H or W themselves, so a 1x1 map stays 1x1 (a plain
    ``squeeze`` made it a scalar)."""
    arr = np.asarray(array)
    while arr.ndim > 2 and (arr.shape[0] == 1 or arr.shape[-1] == 1):
        arr = arr[0] if arr.shape[0] == 1 else arr[..., 0]
    return arr


def read_depth_map(path: str | Path, kind: str | None = None,
                   max_pixels: int | None = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, str, dict]:
    """``(map (H, W) float32, kind, sidecar or {})``; raises :class:`LocalDepthError` in one line.

    The file goes through the same gate as every input (:func:`localdepth.images.admit`): its
    header's size is checked against ``max_pixels`` before it is decoded."""
    path = Path(path)
    if not path.is_file():
        raise LocalDepthError(f"{quoted(path)}: no such depth map")
    suffix = path.suffix.lower()
    if suffix not in MAP_SUFFIXES:
        raise LocalDepthError(f"{quoted(path)}: unsupported depth map type; use one of {', '.join(MAP_SUFFIXES)}")
    meta = sidecar_for(path) or {}
    try:
        raw, _ = decode_depth_file(path, max_pixels)
    except ValueError as e:
        raise LocalDepthError(str(e)) from None
    if suffix == ".png":
        mapping = (meta.get("outputs") or {}).get("png16")
        if raw.dtype != np.uint16:
            raise LocalDepthError(f"{quoted(path)}: not a 16-bit depth PNG")
        if mapping is None:
            raise LocalDepthError(f"{quoted(path)}: a 16-bit PNG without its localdepth sidecar; "
                                  "give the map as .npy, or use `--reference-scale` style metres yourself")
        raw = decode_png16(raw, mapping)
    arr = as_2d_map(np.asarray(raw, dtype=np.float32))
    if arr.ndim != 2:
        raise LocalDepthError(f"{quoted(path)}: a depth map must be 2-D (height x width), got shape {arr.shape}")
    if arr.size == 0:
        raise LocalDepthError(f"{quoted(path)}: the depth map is empty ({arr.shape[1]}x{arr.shape[0]} pixels)")
    found = meta.get("kind") or kind or "disparity"
    if found not in ("depth", "disparity"):
        raise LocalDepthError(f"{quoted(path)}: unknown map kind '{found}' (depth or disparity)")
    return arr, found, meta


def is_metric(kind: str, meta: dict) -> bool:
    """A map of ``kind`` with sidecar ``meta`` is in metres: depth, unless its sidecar says relative units."""
    return kind == "depth" and (meta.get("units") or "m") == "m"


# ----------------------------------------------------------------------------- depth inputs
#
# Depth maps given *to* localdepth (alignment references, prompt depths): ``.npy``/``.npz`` arrays,
# float images (PFM, 32-bit TIFF) and integer images (16-bit PNG, as depth cameras and phones
# write them), from a path or from encoded bytes (an upload).

def decode_depth_file(source, max_pixels: int | None = MAX_IMAGE_PIXELS, *,
                      grayscale: bool = False) -> tuple[np.ndarray, str]:
    """A depth file decoded as stored: ``(array in its own dtype, kind)``, ``kind`` as
    :func:`load_depth_values` says. Nothing is decoded before :func:`localdepth.images.admit`
    has checked the size its header declares (``max_pixels``, default
    :data:`~localdepth.limits.MAX_IMAGE_PIXELS`; ``None``: only the other checks); a format the
    gate cannot read is refused. ``grayscale``: colour images are turned grey (for masks and
    ground truth) instead of refused. Raises ``ValueError`` in one line."""
    from .images import admit, read_source

    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), "<upload>"
    else:
        try:
            data, name = read_source(Path(source), MAX_IMAGE_BYTES)
        except ImageDecodeError as e:
            raise ValueError(str(e)) from None
    if not data:
        raise ValueError(f"{name}: empty file")
    try:
        declared = admit(data, name, max_pixels)
    except ImageDecodeError as e:
        raise ValueError(str(e)) from None
    if declared is None:
        raise ValueError(f"{name}: not a depth map (use a 16-bit PNG, .npy or .pfm)")
    if declared.format in ("NPY", "NPZ"):
        try:
            arr = _read_npy(data, declared)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{name}: not a readable .npy/.npz array ({str(e).splitlines()[0][:160]})") from None
        return arr, "array"
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_UNCHANGED
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:
        raise ValueError(f"{name}: cannot decode the {declared.format} image ({str(e).strip().splitlines()[-1][:160]})") from None
    if arr is None:
        raise ValueError(f"{name}: not a depth map (use a 16-bit PNG, .npy or .pfm)")
    return arr, ("integer-image" if np.issubdtype(arr.dtype, np.integer) else "float-image")


def _read_npy(data: bytes, declared) -> np.ndarray:
    """The array of an admitted ``.npy``, or the admitted member of an ``.npz`` (the first)."""
    if declared.format == "NPY":
        return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as zf, zf.open(declared.member) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def load_depth_values(source, max_pixels: int | None = MAX_IMAGE_PIXELS, *,
                      grayscale: bool = False) -> tuple[np.ndarray, str]:
    """The raw values of a depth map and what they came from, without any unit conversion.

    ``source``: a path or encoded bytes. Returns ``((H, W) float64, kind)`` with ``kind`` one of
    ``"array"`` (``.npy``/``.npz``), ``"float-image"`` (PFM, float TIFF) or ``"integer-image"``
    (8/16-bit PNG/TIFF: values in some unit the caller must scale). ``max_pixels``: refuse maps
    whose header states more (checked before decoding, see :func:`decode_depth_file`). Raises
    ``ValueError`` in one line.
    """
    name = "<upload>" if isinstance(source, (bytes, bytearray)) else str(source)
    arr, kind = decode_depth_file(source, max_pixels, grayscale=grayscale)
    arr = as_2d_map(arr)
    if arr.ndim != 2:
        raise ValueError(f"{name}: a depth map must have one channel, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name}: a depth map must hold numbers, got {arr.dtype}")
    return arr.astype(np.float64), kind


def read_prompt_depth(source, scale: float | None = None, max_pixels: int | None = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A prompt depth map in metres, ``(H, W)`` float32; non-finite or negative values become 0.

    ``source``: an array (metres), a path or encoded bytes (see :func:`load_depth_values`).
    ``scale``: metres per stored unit (0.001 for millimetre PNGs, as phones write LiDAR depth);
    required for integer images, 1 otherwise. A map with too few valid values is refused
    (:func:`check_prompt_values`). Raises :class:`PromptDepthError` in one line.
    """
    from .errors import PromptDepthError

    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise PromptDepthError(f"--prompt-scale must be a positive number of metres per unit, got {scale}")
    if isinstance(source, np.ndarray):
        name = "array"
        values, kind = np.asarray(source, dtype=np.float64), "array"
        if values.ndim != 2:
            raise PromptDepthError(f"a prompt depth array must be (H, W) in metres, got shape {values.shape}")
    else:
        name = "<upload>" if isinstance(source, (bytes, bytearray)) else quoted(source)
        try:
            values, kind = load_depth_values(source, max_pixels)
        except ValueError as e:
            raise PromptDepthError(f"prompt depth {e}") from None
    if kind == "integer-image" and scale is None:
        raise PromptDepthError(f"prompt depth {name} is an integer image: give --prompt-scale, the metres per unit "
                               "(0.001 for millimetres)")
    with np.errstate(over="ignore", invalid="ignore"):
        metres = values * (scale if scale is not None else 1.0)
    check_prompt_values(metres, f"prompt depth {name}")
    return np.where(np.isfinite(metres) & (metres > 0), metres, 0.0).astype(np.float32)


def check_prompt_values(metres: np.ndarray, label: str = "the prompt depth map") -> None:
    """Refuse (:class:`PromptDepthError`, one line) a prompt depth map the network cannot take its
    metres from: a side under :data:`~localdepth.limits.PROMPT_MIN_SIDE` pixels, or fewer than
    :data:`~localdepth.limits.PROMPT_MIN_VALID_VALUES` valid values (finite and > 0 metres).
    Prompt Depth Anything maps its output onto the prompt's range, so an all-zero, all-NaN or
    negative prompt gave a map whose maximum was 1e-6 m, and a 1x1 one an all-NaN map."""
    from .errors import PromptDepthError
    from .limits import PROMPT_MIN_SIDE, PROMPT_MIN_VALID_VALUES

    arr = np.asarray(metres)
    if arr.ndim != 2:
        raise PromptDepthError(f"{label}: a prompt depth map must be (H, W) in metres, got shape {arr.shape}")
    h, w = arr.shape
    if min(h, w) < PROMPT_MIN_SIDE:
        raise PromptDepthError(f"{label} is {w}x{h} pixels; a prompt depth map needs at least "
                               f"{PROMPT_MIN_SIDE}x{PROMPT_MIN_SIDE}")
    with np.errstate(invalid="ignore"):
        valid = int(np.count_nonzero(np.isfinite(arr) & (arr > 0)))
    if valid < PROMPT_MIN_VALID_VALUES:
        raise PromptDepthError(f"{label} holds {valid} valid depth values (finite and > 0 metres) of {h * w}; a prompt "
                               f"needs at least {PROMPT_MIN_VALID_VALUES}: check that it holds depth and its "
                               "--prompt-scale")
