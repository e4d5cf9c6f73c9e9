"""Decoding images into RGB arrays.

Every decoded image is an ``(H, W, 3)`` RGB array, either ``uint8`` (8-bit sources) or
``float32`` in [0, 1] (16-bit sources, so that their precision reaches the model).
EXIF orientation is applied, so ``H, W`` are the image as a viewer shows it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageDecodeError
from .limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from .safety import quoted

IMAGE_EXTENSIONS = {
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".gif", ".jfif",
}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def load_image(source: str | os.PathLike | bytes, *, max_pixels: int | None = MAX_IMAGE_PIXELS,
               url_limits=None) -> np.ndarray:
    """Decode a file path, an ``http(s)://`` URL or encoded bytes to RGB (see module docstring).

    Raises :class:`ImageDecodeError` with a one-line reason for empty, truncated,
    corrupt or non-image inputs, and for images over ``max_pixels`` (width x height, read from
    the header before anything is decoded; default :data:`localdepth.limits.MAX_IMAGE_PIXELS`,
    ``None`` for no limit); files over :data:`localdepth.limits.MAX_IMAGE_BYTES` are not read.
    URLs are fetched within ``url_limits`` (:class:`localdepth.fetch.FetchLimits`, default 50 MiB and 30 s).
    """
    from . import fetch

    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else quoted(source)
    if fetch.is_url(source):
        data = fetch.fetch(source, url_limits or fetch.DEFAULT_LIMITS)
    else:
        try:
            data = bytes(source) if isinstance(source, (bytes, bytearray)) else read_bounded(Path(source), MAX_IMAGE_BYTES)
        except OSError as e:
            raise ImageDecodeError(f"{name}: cannot read ({e.strerror or e})") from None
    if not data:
        raise ImageDecodeError(f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise ImageDecodeError(
                    f"{name}: {im.width}x{im.height} is over the limit of {max_pixels} pixels (--max-pixels)"
                )
            im.load()
            return _to_rgb_array(im, data)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{name}: not an image (unrecognised format)") from None
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"{name}: refused as a possible decompression bomb ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"{name}: corrupt or truncated image ({e})") from None


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a file, refused (:class:`ImageDecodeError`) when it holds more than ``limit``:
    an image file is read whole before decoding, so its size is a memory budget too."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ImageDecodeError(f"{quoted(path)}: the file is over the limit of {limit} bytes for an image")
    return data


def _to_rgb_array(im: Image.Image, data: bytes) -> np.ndarray:
    fmt = im.format  # the transposed copy below forgets it
    im = ImageOps.exif_transpose(im)
    if fmt in ("PNG", "TIFF") and im.mode in ("RGB", "RGBA") and _is_16bit_colour(data):
        return _decode_16bit_colour(data, im)
    if im.mode in _SIXTEEN_BIT_MODES:
        grey = np.asarray(im, dtype=np.float32)
        peak = 65535.0 if im.mode.startswith("I;16") or grey.max() > 255 else 255.0
        grey = np.clip(grey / peak, 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode == "F":
        grey = np.asarray(im, dtype=np.float32)
        lo, hi = float(grey.min()), float(grey.max())
        grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")  # palette, grey, RGBA (alpha dropped), CMYK, YCbCr, LAB...
    return np.asarray(im, dtype=np.uint8).copy()


def _is_16bit_colour(data: bytes) -> bool:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25:
        return data[24] == 16  # IHDR bit depth
    return data[:2] in (b"II", b"MM")  # TIFF: let OpenCV tell from the decoded dtype


def _decode_16bit_colour(data: bytes, im: Image.Image) -> np.ndarray:
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    rgb = cv2.cvtColor(arr[:, :, :3], cv2.COLOR_BGR2RGB)
    if rgb.dtype == np.uint16:
        return (rgb.astype(np.float32) / 65535.0)
    return rgb.astype(np.uint8)


def as_rgb(image) -> np.ndarray:
    """Normalise an in-memory image (PIL image or array) to the decoded-image convention.

    Arrays: ``(H, W)`` grey or ``(H, W, 3|4)`` RGB(A); ``uint8``, ``uint16`` or float in [0, 1].
    """
    if isinstance(image, Image.Image):
        return _to_rgb_array(image, b"")
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageDecodeError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image array, got shape {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(arr.astype(np.float32), 0.0, 1.0)
    raise ImageDecodeError(f"unsupported image dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]")


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """A decoded image as 8-bit RGB, for pictures."""
    if rgb.dtype == np.uint8:
        return rgb
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_float(rgb: np.ndarray) -> np.ndarray:
    """A decoded image as float32 in [0, 1]."""
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    return rgb.astype(np.float32, copy=False)
