"""Decompression bombs and lying headers (issue 20, items 8 and 9): every file a command decodes
(images, prompt depths, alignment references and masks, maps given to `pointcloud`/`align`,
ground-truth depth) passes one gate, :func:`localdepth.images.admit`, which reads the size its
header declares and refuses it before any decoder allocates.

Reference: the sizes the bombs of ``tests/bombs.py`` were built to declare. Memory is measured in
this process (the growth of its peak resident memory during the call): without the gate these
files allocated hundreds of MB here (the issue measured 7.1 GB for a 2 MB .npz and 4.0 GB for a
0.9 MB TIFF) or ended in an OpenCV traceback."""

from __future__ import annotations

import numpy as np
import pytest

from bombs import (jpeg_header_only, npy_lying, npz_bomb, peak_growth, pfm_lying, png_header_only, tiff_bomb,
                   webp_header_only)
from localdepth import limits
from localdepth.depthfile import load_depth_values
from localdepth.errors import ImageDecodeError, LocalDepthError
from localdepth.images import load_image

#: peak memory a refused file may add, MiB: reading the file (under 0.3 MB here) and Python's own
#: allocations; measured 0.0 to 1.5 MiB for every case below
REFUSAL_MIB = 24

# what each builder declares, and the format the gate must name
DECLARED = {
    "png16": (lambda: png_header_only(9000, 9000), "PNG", (9000, 9000)),
    "jpeg": (lambda: jpeg_header_only(9000, 9000), "JPEG", (9000, 9000)),
    "tiff": (lambda: tiff_bomb(9000, 9000), "TIFF", (9000, 9000)),
    "webp": (lambda: webp_header_only(8200, 8200), "WEBP", (8200, 8200)),
    "pfm": (lambda: pfm_lying(100_000, 90_000), "PFM", (90_000, 100_000)),
    "npy": (lambda: npy_lying((90_000, 100_000)), "NPY", (90_000, 100_000)),
    "npz": (lambda: npz_bomb((8200, 8200)), "NPZ", (8200, 8200)),
}


@pytest.mark.parametrize("case", sorted(DECLARED))
def test_the_gate_reads_every_formats_declared_size_without_decoding(case):
    from localdepth.images import declared_size

    build, fmt, (h, w) = DECLARED[case]
    declared = declared_size(build())
    assert declared.format == fmt and declared.shape[:2] == (h, w)


# (file name, builder, what the one-line refusal says)
BOMBS = {
    "npz, honest (2000:1)": ("p.npz", lambda: npz_bomb((8200, 8200)), "is over the limit of 67108864 pixels"),
    "npz, member declaring 40 GB": ("p.npz", lambda: npz_bomb((100_000, 100_000), zero_bytes=2**20),
                                    "lying or truncated header"),
    "npy declaring 40 GB": ("p.npy", npy_lying, "lying or truncated header"),
    "tiff, honest (1000:1)": ("p.tiff", lambda: tiff_bomb(9000, 9000), "9000x9000 is over the limit"),
    "tiff declaring 10 Gpx": ("p.tif", lambda: tiff_bomb(100_000, 100_000, zero_bytes=2**20),
                              "100000x100000 is over the limit"),
    "jpeg header only": ("p.jpg", lambda: jpeg_header_only(9000, 9000), "9000x9000 is over the limit"),
    "16-bit png header only": ("p.png", lambda: png_header_only(9000, 9000), "9000x9000 is over the limit"),
    "webp header only": ("p.webp", lambda: webp_header_only(8200, 8200), "8200x8200 is over the limit"),
    "pfm declaring 40 GB in 1 KB": ("p.pfm", pfm_lying, "lying or truncated header"),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_depth_files_are_refused_from_their_header_with_bounded_memory(case, tmp_path):
    """The reader of prompt depths, alignment references, masks and ground truth, with its default
    budget (the command line's and the Python API's: MAX_IMAGE_PIXELS)."""
    name, build, expected = BOMBS[case]
    path = tmp_path / name
    path.write_bytes(build())
    with peak_growth() as grown:
        with pytest.raises(ValueError) as refused:
            load_depth_values(path)
    message = str(refused.value)
    assert expected in message and "\n" not in message, message
    assert grown() < REFUSAL_MIB, f"{case}: refusing it took {grown():.0f} MiB"


@pytest.mark.parametrize("case", ["webp header only", "jpeg header only", "16-bit png header only", "tiff, honest (1000:1)"])
def test_images_pass_the_same_gate(case, tmp_path):
    name, build, expected = BOMBS[case]
    path = tmp_path / name
    path.write_bytes(build())
    with peak_growth() as grown:
        with pytest.raises(ImageDecodeError, match="over the limit|decompression bomb"):
            load_image(path)
    assert grown() < REFUSAL_MIB


def test_arrays_of_non_numbers_or_wide_values_are_refused_from_the_header():
    """Within the pixel budget, an .npy of 32-byte values would still take 32 bytes a pixel."""
    from bombs import npy_header
    from localdepth.images import admit

    assert limits.DECODED_MAX_BYTES_PER_PIXEL == 16 and limits.MAX_IMAGE_PIXELS == 8192 * 8192
    with pytest.raises(ImageDecodeError, match="must hold numbers"):
        admit(npy_header((100, 100), "|V64") + b"\0" * 64 * 100 * 100, "x.npy")
    wide = np.dtype(np.clongdouble)
    if wide.itemsize <= limits.DECODED_MAX_BYTES_PER_PIXEL:
        pytest.skip(f"no numeric dtype wider than {limits.DECODED_MAX_BYTES_PER_PIXEL} bytes here")
    data = npy_header((100, 100), wide.str) + b"\0" * wide.itemsize * 100 * 100
    with pytest.raises(ImageDecodeError, match="bytes once decoded, over the limit"):
        admit(data, "x.npy", max_pixels=10_000)
    assert admit(data, "x.npy", max_pixels=10_000 * wide.itemsize).values == 10_000


def test_prompt_depth_bomb_is_a_usage_error_before_any_loading(tmp_path, tiny_prompt_da_dir, capsys):
    """The issue's repro: `run --prompt-depth` on a small .npz that decompresses to GBs; the
    command line passed no pixel limit to the prompt reader."""
    from localdepth.cli.main import main as cli

    from conftest import rng_image
    from PIL import Image

    Image.fromarray(rng_image(30, 40)).save(tmp_path / "scan.png")
    (tmp_path / "lidar.npz").write_bytes(npz_bomb((8200, 8200)))
    with peak_growth() as grown:
        code = cli(["run", str(tmp_path / "scan.png"), "--model", "prompt-depth-anything-vits", "--weights",
                    str(tiny_prompt_da_dir), "--device", "cpu", "--prompt-depth", str(tmp_path / "lidar.npz"),
                    "--outdir", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "8200, 8200) is over the limit of 67108864 pixels" in err[0], err
    assert grown() < REFUSAL_MIB, f"{grown():.0f} MiB"


def test_lying_pfm_header_is_one_line_in_pointcloud_and_align(tmp_path, capsys):
    """Item 9: a 1 KB PFM declaring 100000x100000 gave a cv2.error traceback."""
    from localdepth.cli.main import main as cli

    lying = tmp_path / "map.pfm"
    lying.write_bytes(pfm_lying())
    np.save(tmp_path / "good.npy", np.ones((20, 30), np.float32))
    for args in (["pointcloud", str(lying), "--relative", "--output", str(tmp_path / "c.ply")],
                 ["align", str(lying), "--reference", str(tmp_path / "good.npy"), "-o", str(tmp_path / "a.npy")],
                 ["align", str(tmp_path / "good.npy"), "--reference", str(lying), "-o", str(tmp_path / "b.npy")]):
        with peak_growth() as grown:
            code = cli(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, (args, err)
        assert "declares 100000x100000 (40000000000 bytes of PFM data) but the file holds 1000" in err[0], err
        assert grown() < REFUSAL_MIB


def test_alignment_masks_and_ground_truth_pass_the_gate(tmp_path):
    from localdepth import align
    from localdepth.evaluation.datasets import read_png_depth

    bomb = tmp_path / "gt.png"
    bomb.write_bytes(tiff_bomb(9000, 9000))  # a TIFF named .png: the header decides, not the name
    with peak_growth() as grown:
        with pytest.raises(ValueError, match="9000x9000 is over the limit"):
            align.read_mask(bomb, (10, 10))
        with pytest.raises(LocalDepthError, match="9000x9000 is over the limit"):
            read_png_depth(bomb, 1000.0)
    assert grown() < REFUSAL_MIB


def test_maps_within_the_budget_still_read(tmp_path):
    """The gate passes honest files of every kind it reads (values checked)."""
    import cv2

    depth = (np.arange(12, dtype=np.float32).reshape(3, 4) + 1) / 4
    np.save(tmp_path / "a.npy", depth)
    np.savez_compressed(tmp_path / "a.npz", depth=depth, other=np.zeros(3))
    cv2.imwrite(str(tmp_path / "a.pfm"), depth)
    cv2.imwrite(str(tmp_path / "a.tiff"), depth)
    cv2.imwrite(str(tmp_path / "a16.png"), (depth * 1000).astype(np.uint16))
    for name in ("a.npy", "a.npz", "a.pfm", "a.tiff"):
        np.testing.assert_array_equal(load_depth_values(tmp_path / name)[0], depth, err_msg=name)
    values, kind = load_depth_values(tmp_path / "a16.png")
    assert kind == "integer-image"
    np.testing.assert_array_equal(values, (depth * 1000).astype(np.uint16))


def test_a_video_declaring_huge_frames_is_refused_before_decoding(tmp_path):
    """`video` and `scene` read video files: a 1.6 MB Matroska file of 8200 x 8200 Motion-JPEG frames
    took 535 MiB to read; its container header states the frame size, checked as an image's is."""
    av = pytest.importorskip("av")
    from bombs import video_bomb
    from localdepth.video.readers import VideoFileReader

    path = tmp_path / "bomb.mkv"
    video_bomb(path)
    with av.open(str(path)):  # PyAV's libraries are loaded now, not counted below
        pass
    with peak_growth() as grown:
        with pytest.raises(LocalDepthError, match="8200x8200 frames are over the limit of 67108864 pixels") as refused:
            VideoFileReader(path)
    assert "\n" not in str(refused.value)
    assert grown() < REFUSAL_MIB, f"{grown():.0f} MiB"
