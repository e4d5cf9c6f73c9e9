"""Decoding images into RGB arrays.

Every decoded image is an ``(H, W, 3)`` RGB array, either ``uint8`` (8-bit sources) or
``float32`` in [0, 1] (16-bit sources, so that their precision reaches the model).
EXIF orientation is applied, so ``H, W`` are the image as a viewer shows it.

Every file localdepth decodes (images, and the depth maps of :mod:`localdepth.depthfile`) passes
one gate first, :func:`admit`: its header is read (:func:`declared_size`) and the size it declares
is checked against the budget before any decoder allocates for it, and a header that declares
more raw data than the file holds is refused as lying. A format whose header the gate cannot read
is not decoded at all.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageDecodeError
from .limits import DECODED_MAX_BYTES_PER_PIXEL, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from .safety import one_line, quoted

IMAGE_EXTENSIONS = {
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".gif", ".jfif",
}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def load_image(source: str | os.PathLike | bytes, *, max_pixels: int | None = MAX_IMAGE_PIXELS,
               url_limits=None) -> np.ndarray:
    """Decode a file path, an ``http(s)://`` URL or encoded bytes to RGB (see module docstring).

    Raises :class:`ImageDecodeError` with a one-line reason for empty, truncated,
    corrupt or non-image inputs, and for images over ``max_pixels`` (width x height, read from
    the header by :func:`admit` before anything is decoded; default
    :data:`localdepth.limits.MAX_IMAGE_PIXELS`, ``None`` for no limit); files over
    :data:`localdepth.limits.MAX_IMAGE_BYTES` are not read.
    URLs are fetched within ``url_limits`` (:class:`localdepth.fetch.FetchLimits`, default 50 MiB and 30 s).
    """
    data, name = read_source(source, MAX_IMAGE_BYTES, url_limits)
    if not data:
        raise ImageDecodeError(f"{name}: empty file")
    admit(data, name, max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:  # what Pillow itself will decode
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


# ----------------------------------------------------------------------------- the gate before decoding

_PNG, _NPY, _ZIP = b"\x89PNG\r\n\x1a\n", b"\x93NUMPY", b"PK\x03\x04"
_TIFF = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_BYTES_PER_VALUE = {"1": 1, "L": 1, "P": 1, "RGB": 1, "RGBA": 1, "CMYK": 1, "YCbCr": 1, "LAB": 1, "HSV": 1, "LA": 1,
                    "PA": 1, "RGBX": 1, "RGBa": 1, "La": 1, "I": 4, "F": 4}


@dataclass(frozen=True)
class Declared:
    """What a file's header says it holds, read before anything is decoded.

    ``shape``: ``(height, width)``, ``(height, width, channels)``, or an array's shape (``.npy``);
    ``itemsize``: bytes per decoded value. For formats that store their values raw (PFM, ``.npy``,
    an ``.npz`` member), ``raw_bytes`` is what the header says the values take in the file and
    ``holds`` what the file (or zip member) has after the header.
    """

    format: str
    shape: tuple[int, ...]
    itemsize: int = 1
    raw_bytes: int | None = None
    holds: int | None = None
    member: str | None = None  # the .npz member that is read

    @property
    def values(self) -> int:
        return math.prod(self.shape)

    @property
    def pixels(self) -> int:
        """Width x height (for arrays: every value, as a depth map holds one per pixel)."""
        if self.format in ("NPY", "NPZ"):
            return self.values
        return self.shape[0] * self.shape[1]

    @property
    def decoded_bytes(self) -> int:
        return self.values * self.itemsize

    def describe(self) -> str:
        if self.format in ("NPY", "NPZ"):
            return f"an array of shape {self.shape}"
        return f"{self.shape[1]}x{self.shape[0]}"


class _Unreadable(Exception):
    """A header the gate recognises but cannot parse."""


def _pfm_header(data: bytes) -> tuple[Declared, int]:
    """``Pf``/``PF``, width height, scale, each on its own line (whitespace-separated)."""
    fields, pos = [], 0
    while len(fields) < 4:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace():
            pos += 1
        if pos == start or pos - start > 32:
            raise _Unreadable("a malformed PFM header")
        fields.append(data[start:pos])
    try:
        width, height = int(fields[1]), int(fields[2])
        float(fields[3])
    except ValueError:
        raise _Unreadable("a malformed PFM header") from None
    if width < 1 or height < 1:
        raise _Unreadable(f"a PFM header declaring {width}x{height} pixels")
    channels = 3 if fields[0] == b"PF" else 1
    return Declared("PFM", (height, width, channels), 4, height * width * channels * 4, len(data) - pos - 1), pos + 1


def _npy_header(fp, holds: int, fmt: str, member: str | None = None) -> Declared:
    try:
        version = np.lib.format.read_magic(fp)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(fp)
    except Exception as e:  # noqa: BLE001 - any malformed header: say why in one line
        raise _Unreadable(f"a malformed .npy header ({str(e).splitlines()[0][:120]})") from None
    if dtype.hasobject or not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise _Unreadable(f"an array of {dtype} values; a map must hold numbers")
    values = math.prod(shape)
    return Declared(fmt, tuple(int(n) for n in shape), dtype.itemsize, values * dtype.itemsize,
                    holds - fp.tell(), member)


def _npz_header(data: bytes) -> Declared:
    """The first member of an ``.npz`` (the one that is read): its declared size in the zip and
    the ``.npy`` header inside it (only the header is decompressed)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if not infos:
                raise _Unreadable("an .npz with no arrays")
            info = infos[0]
            with zf.open(info) as member:
                head = member.read(16 * 1024)  # the .npy header is at most a few KB
        return _npy_header(io.BytesIO(head), info.file_size, "NPZ", info.filename)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, RuntimeError,
            ValueError) as e:
        raise _Unreadable(f"not a readable .npz ({str(e).splitlines()[0][:120]})") from None


def _tiff_header(data: bytes) -> Declared:
    """Width, height, samples and bits of the first image of a TIFF (the one decoders read),
    from its directory, with Pillow's parser (Pillow cannot open float RGB or float64 TIFFs
    themselves, OpenCV can)."""
    from PIL import TiffImagePlugin

    try:
        big = data[2:4] in (b"+\x00", b"\x00+")
        ifd = TiffImagePlugin.ImageFileDirectory_v2(data[:16] if big else data[:8])
        fp = io.BytesIO(data)
        fp.seek(ifd.next)
        ifd.load(fp)
        width, height = int(ifd[256]), int(ifd[257])
        samples = int(ifd.get(277, 1))
        bits = max(ifd.get(258, (8,)) or (8,))
    except Exception as e:  # noqa: BLE001
        raise _Unreadable(f"an unreadable TIFF directory ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
    if width < 1 or height < 1 or samples < 1:
        raise _Unreadable(f"a TIFF declaring {width}x{height} pixels of {samples} samples")
    return Declared("TIFF", (height, width, samples), max(1, -(-int(bits) // 8)))


def _pillow_header(data: bytes) -> Declared | None:
    """Any other format Pillow knows: its lazy open reads the header only."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            mode, fmt = im.mode, im.format or "image"
    except Image.DecompressionBombError as e:
        import re

        found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+)", str(e))
        detail = (f"its header declares {found[1]} pixels, over Pillow's limit of {found[2]}" if found
                  else one_line(str(e)))
        raise ImageDecodeError(f"refused as a possible decompression bomb ({detail})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        return None
    itemsize = 2 if mode.startswith("I;16") else _BYTES_PER_VALUE.get(mode, 4)
    if fmt == "PNG" and len(data) > 24 and data[24] == 16:  # 16-bit colour, which OpenCV decodes as such
        itemsize = 2
    bands = 1 if mode in ("1", "L", "P", "I", "F") or mode.startswith("I;16") else len(mode)
    return Declared(fmt, (height, width, bands), itemsize)


def declared_size(data: bytes) -> Declared | None:
    """What ``data``'s header declares (see :class:`Declared`), without decoding; ``None`` for a
    format no decoder here reads. Raises :class:`ImageDecodeError` for a header it cannot parse."""
    try:
        if data.startswith(_NPY):
            return _npy_header(io.BytesIO(data), len(data), "NPY")
        if data.startswith(_ZIP):
            return _npz_header(data)
        if data[:2] in (b"Pf", b"PF") and data[2:3].isspace():
            return _pfm_header(data)[0]
        if data[:4] in _TIFF:
            return _tiff_header(data)
    except _Unreadable as e:
        raise ImageDecodeError(str(e)) from None
    return _pillow_header(data)


def admit(data: bytes, name: str, max_pixels: int | None = MAX_IMAGE_PIXELS) -> Declared | None:
    """The gate every decoder is behind: the size ``data``'s header declares, checked before
    anything is decoded. Refused (:class:`ImageDecodeError`, one line naming ``name``):

    * more than ``max_pixels`` pixels (width x height; an array's values), or more than
      :data:`~localdepth.limits.DECODED_MAX_BYTES_PER_PIXEL` bytes per allowed pixel once decoded;
    * a header that declares more raw data than the file holds (PFM, ``.npy``, an ``.npz``
      member): a lying or truncated file, refused before a decoder allocates what it declares;
    * a header that cannot be parsed.

    Returns the declaration, or ``None`` for a format the gate does not know (the callers then
    refuse to decode it). ``max_pixels=None``: no pixel budget, the other checks still apply.
    """
    try:
        declared = declared_size(data)
    except ImageDecodeError as e:
        if "decompression bomb" in str(e):
            raise ImageDecodeError(f"{name}: {e}") from None
        raise ImageDecodeError(f"{name}: {e}; the file is refused before decoding") from None
    if declared is None:
        return None
    return check_declared(declared, name, max_pixels)


def check_declared(declared: Declared, name: str, max_pixels: int | None = MAX_IMAGE_PIXELS) -> Declared:
    """The budget half of :func:`admit`, for a declaration read elsewhere (a video container's
    frame size): ``declared`` itself, or :class:`ImageDecodeError` in one line."""
    if declared.raw_bytes is not None and declared.holds is not None and declared.raw_bytes > declared.holds:
        inside = f"'s member {declared.member}" if declared.member else ""
        raise ImageDecodeError(f"{name}: the header declares {declared.describe()} ({declared.raw_bytes} bytes of "
                               f"{declared.format} data) but the file{inside} holds {max(declared.holds, 0)}: "
                               "a lying or truncated header, refused before decoding")
    if max_pixels is not None:
        if declared.pixels > max_pixels:
            raise ImageDecodeError(f"{name}: {declared.describe()} is over the limit of {max_pixels} pixels "
                                   "(--max-pixels), refused before decoding")
        if declared.decoded_bytes > max_pixels * DECODED_MAX_BYTES_PER_PIXEL:
            raise ImageDecodeError(f"{name}: {declared.describe()} would take {declared.decoded_bytes} bytes once "
                                   f"decoded, over the limit of {max_pixels * DECODED_MAX_BYTES_PER_PIXEL} "
                                   f"({DECODED_MAX_BYTES_PER_PIXEL} per pixel of --max-pixels)")
    return declared


def read_source(source, limit: int = MAX_IMAGE_BYTES, url_limits=None) -> tuple[bytes, str]:
    """``(bytes, name for messages)`` of a path, an ``http(s)://`` URL or bytes; a file over
    ``limit`` bytes is refused unread (:class:`ImageDecodeError`)."""
    from . import fetch

    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    name = quoted(source)
    if fetch.is_url(source):
        return fetch.fetch(source, url_limits or fetch.DEFAULT_LIMITS), name
    try:
        return read_bounded(Path(source), limit), name
    except OSError as e:
        raise ImageDecodeError(f"{name}: cannot read ({e.strerror or e})") from None


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
