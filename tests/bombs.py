"""Small files that declare huge sizes (decompression bombs and lying headers), built at test
time, and the peak memory of a call measured in this process.

Every builder writes a few KB to a few hundred KB; what each declares is in its docstring.
"""

from __future__ import annotations

import contextlib
import io
import struct
import sys
import zipfile
import zlib

import cv2
import numpy as np
import pytest


# ----------------------------------------------------------------------------- peak memory

def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


@contextlib.contextmanager
def peak_growth():
    """Measure the growth of this process's peak resident memory (VmHWM) over its resident memory
    at the start of the block, in MiB: ``with peak_growth() as grown: ...; grown()``. Linux only:
    writing 5 to /proc/self/clear_refs resets the peak, so the block's own peak is read."""
    if not sys.platform.startswith("linux"):
        pytest.skip("peak memory is read from /proc/self (Linux)")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError as e:
        pytest.skip(f"cannot reset the peak memory counter ({e})")
    start = _status_mib("VmRSS")
    result = {}
    yield lambda: result["grown"]
    result["grown"] = _status_mib("VmHWM") - start


# ----------------------------------------------------------------------------- bombs

def npy_header(shape, descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def npz_bomb(shape=(8200, 8200), descr: str = "<f4", zero_bytes: int | None = None) -> bytes:
    """An ``.npz`` whose one member declares ``shape`` and holds ``zero_bytes`` of zeros
    (default: all the values, so the zip is honest: 269 MB of float32 zeros deflate to ~270 KB),
    streamed through deflate 1 MiB at a time so building it holds no more than that."""
    total = int(np.prod(shape)) * np.dtype(descr).itemsize if zero_bytes is None else zero_bytes
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("depth.npy", "w", force_zip64=True) as f:
            f.write(npy_header(shape, descr))
            chunk = b"\0" * 2**20
            while total > 0:
                f.write(chunk[:total])
                total -= len(chunk)
    return buf.getvalue()


def tiff_bomb(width: int, height: int, bits: int = 16, zero_bytes: int | None = None) -> bytes:
    """A grey TIFF declaring ``width x height`` of ``bits``-bit samples in one deflate strip of
    ``zero_bytes`` zeros (default: all of them: honest, ~1000:1)."""
    total = width * height * bits // 8 if zero_bytes is None else zero_bytes
    comp, parts = zlib.compressobj(9), []
    chunk = b"\0" * 2**20
    while total > 0:
        parts.append(comp.compress(chunk[:total]))
        total -= len(chunk)
    strip = b"".join(parts) + comp.flush()
    entries = [(256, 4, width), (257, 4, height), (258, 3, bits), (259, 3, 8), (262, 3, 1),
               (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(strip))]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + strip


def jpeg_header_only(width: int, height: int, grey: bool = True) -> bytes:
    """A real 16x16 JPEG whose frame header (SOF0) is patched to declare ``width x height``: a
    decoder allocates for the declared size and fills it from a scan meant for 16x16."""
    shape = (16, 16) if grey else (16, 16, 3)
    ok, buf = cv2.imencode(".jpg", np.full(shape, 128, np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_header_only(width: int, height: int, bit_depth: int = 16, colour_type: int = 0) -> bytes:
    """A PNG (16-bit grey by default) declaring ``width x height`` with a tiny truncated stream."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def webp_header_only(width: int = 16384, height: int = 16384) -> bytes:
    """A real 16x16 lossless WebP (VP8L) whose header is patched to declare ``width x height`` (at
    most 16384 a side). libwebp decodes it whole: 30 bytes that become width x height x 4."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, "WEBP", lossless=True)
    data = bytearray(buf.getvalue())
    at = data.index(b"VP8L") + 9  # after the chunk header and the 0x2f signature: 14 + 14 bits of size - 1
    bits = struct.unpack("<I", data[at:at + 4])[0]
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    data[at:at + 4] = struct.pack("<I", bits)
    return bytes(data)


def pfm_lying(width: int = 100_000, height: int = 100_000, body: int = 1000) -> bytes:
    """A 1 KB PFM whose header declares ``width x height`` float32 values."""
    return f"Pf\n{width} {height}\n-1.0\n".encode() + b"\0" * body


def npy_lying(shape=(100_000, 100_000), body: int = 1000) -> bytes:
    """An ``.npy`` declaring ``shape`` float32 that holds ``body`` bytes."""
    return npy_header(shape) + b"\0" * body


def video_bomb(path, side: int = 8200, frames: int = 2) -> None:
    """A Matroska file of ``frames`` Motion-JPEG frames of ``side x side`` black pixels: each frame is
    a 0.8 MB JPEG (built from a ``side x side`` grey array, 67 MB at 8200, freed at once), the file
    1.6 MB; decoding it to RGB takes 200 MB a frame."""
    import fractions

    import av

    ok, buf = cv2.imencode(".jpg", np.zeros((side, side), np.uint8))
    assert ok
    data = buf.tobytes()
    del buf
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = side, side, "yuvj420p"
        for i in range(frames):
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, fractions.Fraction(1, 1)
            out.mux(packet)
