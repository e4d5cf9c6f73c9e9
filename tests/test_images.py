"""Decoding: orientation, colour modes, bit depths, and one-line errors for bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from localdepth.errors import ImageDecodeError
from localdepth.images import as_rgb, load_image


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _gradient(h=40, w=60) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4, y * 6, (x + y) * 2], axis=2).astype(np.uint8)


def test_rgb_jpeg_and_png():
    rgb = _gradient()
    out = load_image(_encode(Image.fromarray(rgb), "PNG"))
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out, rgb)
    assert load_image(_encode(Image.fromarray(rgb), "JPEG")).shape == (40, 60, 3)


def test_exif_orientation_is_applied():
    rgb = _gradient()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = _encode(Image.fromarray(rgb), "JPEG", exif=exif, quality=95)
    out = load_image(data)
    assert out.shape == (60, 40, 3)  # displayed as portrait


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK", "LA", "I;16"])
def test_colour_modes_become_rgb(mode):
    base = Image.fromarray(_gradient())
    if mode == "I;16":
        im = Image.fromarray((np.arange(40 * 60).reshape(40, 60) * 20).astype(np.uint16))
    elif mode == "P":
        im = base.convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        im = base.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "LA" else "PNG")
    out = load_image(_encode(im, fmt))
    assert out.shape == (40, 60, 3)
    if mode == "I;16":
        assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
        np.testing.assert_allclose(out[0, 1, 0], 20 / 65535, rtol=1e-4)
    else:
        assert out.dtype == np.uint8


def test_sixteen_bit_colour_png_keeps_precision():
    import cv2

    rgb16 = (np.random.default_rng(0).integers(0, 65536, (20, 30, 3))).astype(np.uint16)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    out = load_image(buf.tobytes())
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, rgb16 / 65535.0, atol=1e-6)


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"this is a text file, not a picture", "not an image"),
])
def test_bad_inputs_raise_one_line(data, reason):
    with pytest.raises(ImageDecodeError) as e:
        load_image(data)
    assert reason in str(e.value) and "\n" not in str(e.value)


def test_truncated_png_is_refused():
    data = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)), "PNG")
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_truncated_jpeg_is_refused():
    data = _encode(Image.fromarray(_gradient(200, 300)), "JPEG")
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read"):
        load_image(tmp_path / "nope.jpg")


def test_pixel_limit():
    with pytest.raises(ImageDecodeError, match="over the limit"):
        load_image(_encode(Image.fromarray(_gradient()), "PNG"), max_pixels=100)


def test_arrays_and_pil_images():
    grey = np.zeros((5, 6), np.uint8)
    assert as_rgb(grey).shape == (5, 6, 3)
    assert as_rgb(np.zeros((5, 6, 4), np.uint8)).shape == (5, 6, 3)
    assert as_rgb(np.full((5, 6, 3), 65535, np.uint16)).max() == pytest.approx(1.0)
    assert as_rgb(Image.new("RGBA", (6, 5))).shape == (5, 6, 3)
    with pytest.raises(ImageDecodeError):
        as_rgb(np.zeros((5, 6, 2)))
