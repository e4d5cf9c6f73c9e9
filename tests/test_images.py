"""Decoding: orientation, colour modes, bit depths, and one-line errors for bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from localdepth.errors import ImageDecodeError
from localdepth.images import as_rgb, load_image

from tolerance import within


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _gradient(h=40, w=60) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4, y * 6, (x + y) * 2], axis=2).astype(np.uint8)


def test_two_by_two_checkerboard_png_decodes_to_its_pixels():
    red, blue, green, white = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)
    im = Image.new("RGB", (2, 2))
    for (x, y), colour in {(0, 0): red, (1, 0): blue, (0, 1): green, (1, 1): white}.items():
        im.putpixel((x, y), colour)
    out = load_image(_encode(im, "PNG"))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[red, blue], [green, white]])  # rows top to bottom, RGB order


def test_gradient_png_round_trips_exactly():
    rgb = _gradient()
    np.testing.assert_array_equal(load_image(_encode(Image.fromarray(rgb), "PNG")), rgb)


def test_jpeg_pixel_values():
    """A 16x32 JPEG, left half one colour and right half another (4:4:4, quality 95): away from the
    edge each half decodes to its colour within 2 levels; and the same bytes decode identically with
    OpenCV's decoder (measured: identical on the shared photos too)."""
    import cv2

    rgb = np.zeros((16, 32, 3), np.uint8)
    rgb[:, :16] = (200, 100, 50)
    rgb[:, 16:] = (30, 60, 220)
    data = _encode(Image.fromarray(rgb), "JPEG", quality=95, subsampling=0)
    out = load_image(data).astype(int)
    within(np.abs(out[:, :12] - (200, 100, 50)).max(), 2, "JPEG: max difference (levels)")
    within(np.abs(out[:, 20:] - (30, 60, 220)).max(), 2, "JPEG: max difference (levels)")
    opencv = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out, opencv)


# A 4x4 gradient stored as rows 0..15 (red = 10 * index); the EXIF orientation tells a viewer
# how to turn it. The displayed arrays below are worked out by hand.
_STORED = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
_DISPLAYED = {
    1: _STORED,
    6: [[12, 8, 4, 0], [13, 9, 5, 1], [14, 10, 6, 2], [15, 11, 7, 3]],  # "rotate 90 CW to display"
    8: [[3, 7, 11, 15], [2, 6, 10, 14], [1, 5, 9, 13], [0, 4, 8, 12]],  # "rotate 90 CCW to display"
    3: [[15, 14, 13, 12], [11, 10, 9, 8], [7, 6, 5, 4], [3, 2, 1, 0]],  # "rotate 180"
}


@pytest.mark.parametrize("orientation", sorted(_DISPLAYED))
def test_exif_orientation_of_a_four_by_four_gradient(orientation):
    stored = np.zeros((4, 4, 3), np.uint8)
    stored[:, :, 0] = np.array(_STORED) * 10
    stored[:, :, 1] = 7  # a constant second channel: orientation must not mix channels
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = load_image(_encode(Image.fromarray(stored), "PNG", exif=exif))
    np.testing.assert_array_equal(out[:, :, 0], np.array(_DISPLAYED[orientation]) * 10)
    assert (out[:, :, 1] == 7).all() and (out[:, :, 2] == 0).all()


def test_exif_orientation_on_a_jpeg_turns_the_shape():
    exif = Image.Exif()
    exif[0x0112] = 6
    out = load_image(_encode(Image.fromarray(_gradient()), "JPEG", exif=exif, quality=95))
    assert out.shape == (60, 40, 3)  # a 40x60 landscape stored, displayed as portrait


def test_palette_image_decodes_through_its_palette():
    im = Image.new("P", (2, 2))
    im.putpalette([10, 20, 30, 200, 100, 50] + [0, 0, 0] * 254)
    im.putdata([0, 1, 1, 0])
    out = load_image(_encode(im, "PNG"))
    np.testing.assert_array_equal(out, [[(10, 20, 30), (200, 100, 50)], [(200, 100, 50), (10, 20, 30)]])


def test_cmyk_decodes_to_rgb_by_the_usual_formula():
    """R = (255 - C)(255 - K) / 255 and likewise G from M, B from Y (worked out by hand, rounded)."""
    im = Image.new("CMYK", (3, 1))
    for x, cmyk in enumerate([(0, 255, 0, 0), (0, 0, 0, 128), (20, 200, 60, 30)]):
        im.putpixel((x, 0), cmyk)
    expected = [[(255, 0, 255), (127, 127, 127), (207, 49, 172)]]
    np.testing.assert_array_equal(load_image(_encode(im, "TIFF")), expected)
    flat = Image.new("CMYK", (16, 16), (20, 200, 60, 30))
    jpeg = load_image(_encode(flat, "JPEG", quality=95)).astype(int)  # CMYK JPEGs as cameras and scanners write them
    within(np.abs(jpeg - (207, 49, 172)).max(), 2, "CMYK JPEG: max difference (levels)")


@pytest.mark.parametrize(("mode", "pixel", "expected"), [
    ("RGBA", (10, 20, 30, 0), (10, 20, 30)),      # alpha dropped, not composited (transparent stays coloured)
    ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
    ("LA", (77, 128), (77, 77, 77)),               # grey repeated, alpha dropped
    ("L", 77, (77, 77, 77)),
])
def test_colour_modes_become_rgb_pixel_by_pixel(mode, pixel, expected):
    im = Image.new(mode, (3, 2), pixel)
    fmt = "TIFF" if mode == "LA" else "PNG"
    out = load_image(_encode(im, fmt))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert (out == expected).all()


def test_sixteen_bit_grey_is_scaled_to_unit_range():
    grey = np.array([[0, 1000], [32768, 65535]], np.uint16)
    out = load_image(_encode(Image.fromarray(grey), "PNG"))
    assert out.dtype == np.float32 and out.shape == (2, 2, 3)
    expected = np.array([[0.0, 1000 / 65535], [32768 / 65535, 1.0]], np.float32)
    for c in range(3):
        np.testing.assert_allclose(out[:, :, c], expected, rtol=1e-6, atol=1e-9)


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
    grey = np.array([[0, 77, 255]], np.uint8)
    np.testing.assert_array_equal(as_rgb(grey), [[(0, 0, 0), (77, 77, 77), (255, 255, 255)]])
    rgba = np.array([[(10, 20, 30, 0), (40, 50, 60, 255)]], np.uint8)
    np.testing.assert_array_equal(as_rgb(rgba), [[(10, 20, 30), (40, 50, 60)]])
    sixteen = np.array([[(65535, 0, 32768)]], np.uint16)
    np.testing.assert_allclose(as_rgb(sixteen), [[(1.0, 0.0, 32768 / 65535)]], rtol=1e-6)
    floats = np.array([[(-0.5, 0.25, 1.5)]], np.float64)
    np.testing.assert_allclose(as_rgb(floats), [[(0.0, 0.25, 1.0)]])  # clipped to [0, 1]
    np.testing.assert_array_equal(as_rgb(Image.new("RGBA", (2, 1), (1, 2, 3, 4))), [[(1, 2, 3), (1, 2, 3)]])
    with pytest.raises(ImageDecodeError):
        as_rgb(np.zeros((5, 6, 2)))
