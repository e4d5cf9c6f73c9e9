"""Every output format round-trips: values, dtype, and the units recorded in the sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from localdepth.postprocess import DepthResult
from localdepth.writers import (
    WriteOptions, colorize, decode_png16, encode_png16, output_paths, parse_formats, write_result,
)

ALL = ("npy", "png16", "color", "side", "pfm")


def _result(kind: str) -> DepthResult:
    y, x = np.mgrid[0:30, 0:40].astype(np.float32)
    depth = (0.5 + 0.1 * x + 0.05 * y) if kind == "depth" else (3.0 + np.sin(x / 5) + y / 10)
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    return DepthResult(map=depth.astype(np.float32), kind=kind, model="test-model", input_size=(28, 42),
                       timings={"inference": 1.5}, source="in/photo.jpg", image=image)


def _write(tmp_path: Path, result: DepthResult, formats=ALL, **kw):
    paths = output_paths(tmp_path, Path("sub/photo.jpg"), formats)
    meta = write_result(result, paths, WriteOptions(formats=formats, **kw), {"model": result.model})
    return paths, meta


def test_file_names_keep_relative_path_and_stem(tmp_path):
    paths = output_paths(tmp_path, Path("sub/photo.jpg"), ALL)
    names = {k: p.relative_to(tmp_path).as_posix() for k, p in paths.items()}
    assert names == {"npy": "sub/photo.npy", "png16": "sub/photo.png", "color": "sub/photo_color.png",
                     "side": "sub/photo_side.png", "pfm": "sub/photo.pfm", "json": "sub/photo.json"}


@pytest.mark.parametrize("kind", ["disparity", "depth"])
def test_round_trip_of_every_format(tmp_path, kind):
    result = _result(kind)
    paths, meta = _write(tmp_path, result)
    on_disk = json.loads(paths["json"].read_text())
    assert on_disk == meta
    assert on_disk["kind"] == kind and on_disk["units"] == ("m" if kind == "depth" else "relative")
    assert on_disk["input_size"] == [28, 42] and (on_disk["height"], on_disk["width"]) == (30, 40)
    assert on_disk["timings_ms"]["inference"] == 1.5

    npy = np.load(paths["npy"])
    assert npy.dtype == np.float32
    np.testing.assert_array_equal(npy, result.map)
    assert on_disk["outputs"]["npy"]["units"] == result.units

    pfm = cv2.imread(str(paths["pfm"]), cv2.IMREAD_UNCHANGED)
    assert pfm.dtype == np.float32
    np.testing.assert_array_equal(pfm, result.map)

    png = cv2.imread(str(paths["png16"]), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == result.map.shape
    info = on_disk["outputs"]["png16"]
    recovered = decode_png16(png, info)
    if kind == "depth":
        assert info["scale"] == 0.001 and info["units"] == "m"  # millimetres
        np.testing.assert_allclose(recovered, result.map, atol=0.0005 + 1e-6)
    else:  # the 0.1st..99.9th percentile spans the codes: of 1200 values, the 2 at each end saturate
        values = np.sort(result.map.ravel())
        assert values[1] <= info["min"] <= values[2] and values[-3] <= info["max"] <= values[-2]
        assert png.min() == 0 and png.max() == 65535 and info["percentiles"] == [0.1, 99.9]
        inside = (result.map >= info["min"]) & (result.map <= info["max"])
        assert (info["clipped_low"], info["clipped_high"]) == (2, 2) and (~inside).sum() == 4
        assert (png[result.map < info["min"]] == 0).all() and (png[result.map > info["max"]] == 65535).all()
        np.testing.assert_allclose(recovered[inside], result.map[inside], atol=info["scale"] / 2 + 1e-6)

    color = cv2.imread(str(paths["color"]))
    assert color.shape == (30, 40, 3)
    side = cv2.imread(str(paths["side"]))
    assert side.shape == (30, 80, 3)
    np.testing.assert_array_equal(side[:, :40, ::-1], result.image)  # left half is the input


def test_pfm_rows_are_stored_bottom_up(tmp_path):
    result = _result("disparity")
    paths, _ = _write(tmp_path, result, formats=("pfm",))
    data = paths["pfm"].read_bytes()
    header_end = [i for i, b in enumerate(data) if b == 0x0A][2] + 1
    assert data[:3] == b"Pf\n" and b"-1" in data[:header_end]  # grey, little-endian
    first_row = np.frombuffer(data[header_end:header_end + 4 * 40], "<f4")
    np.testing.assert_array_equal(first_row, result.map[-1])


def test_relative_png16_keeps_its_codes_for_the_map_not_for_a_spike():
    """A smooth map of 10 000 distinct values with 5 spike pixels 1000x larger (as PyDNet++'s old
    reciprocal gave): the spikes saturate and are counted; the map keeps one code per value
    (normalising to the true maximum put all 10 000 values into 66 codes)."""
    ramp = np.linspace(1.0, 2.0, 10_000, dtype=np.float32).reshape(100, 100)
    spiky = ramp.copy()
    spiky.flat[[5, 500, 5000, 7000, 9999]] = 1000.0
    png, info = encode_png16(spiky, "disparity")
    normal = spiky < 1000.0
    assert len(np.unique(png[normal])) >= 9_900
    # beyond the 99.9th percentile: the 5 spikes and the ~5 highest values of the ramp
    assert (png[~normal] == 65535).all() and 5 < info["clipped_high"] <= 15 and info["clipped_low"] <= 10
    recovered = decode_png16(png, info)
    inside = normal & (spiky >= info["min"]) & (spiky <= info["max"])
    assert inside.sum() >= 9_980
    np.testing.assert_allclose(recovered[inside], spiky[inside], atol=info["scale"] / 2 + 1e-6)


def test_metric_png16_clips_beyond_65m_and_counts(tmp_path):
    result = _result("depth")
    result.map[0, 0] = 80.0
    png, info = encode_png16(result.map, "depth")
    assert png[0, 0] == 65535 and info["clipped_pixels"] == 1


@pytest.mark.parametrize("kind", ["disparity", "depth"])
def test_grayscale_closer_is_brighter(kind):
    near, far = (5.0, 1.0) if kind == "disparity" else (1.0, 5.0)
    m = np.array([[near, far]], np.float32)
    rgb, info = colorize(m, kind, "gray", vmin=1.0, vmax=5.0)
    assert rgb[0, 0].mean() == 255 and rgb[0, 1].mean() == 0
    assert "closer" in info


def test_no_temporary_files_are_left_and_files_are_readable(tmp_path):
    import os
    import stat

    paths, _ = _write(tmp_path, _result("disparity"))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(paths["npy"].stat().st_mode) == 0o666 & ~umask
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


def test_parse_formats():
    assert parse_formats("npy, png16,json") == ("npy", "png16")
    with pytest.raises(ValueError, match="unknown format"):
        parse_formats("npy,jpeg")


def test_a_crash_during_a_write_leaves_no_file(tmp_path, monkeypatch):
    import os

    from localdepth import writers

    target = tmp_path / "out" / "photo.npy"
    writers.atomic_write_bytes(target, b"old complete content")

    real_replace = os.replace

    def crash(src, dst):
        raise KeyboardInterrupt  # e.g. Ctrl-C after the data went out, before the rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        writers.atomic_write_bytes(target, b"new content")
    monkeypatch.setattr(os, "replace", real_replace)
    assert target.read_bytes() == b"old complete content"
    assert [p.name for p in target.parent.iterdir()] == ["photo.npy"]


@pytest.mark.parametrize("failing", [".npy", "_color.png"])
def test_a_failed_data_write_leaves_no_sidecar(tiny_da_dir, tmp_path, monkeypatch, capsys, failing):
    """The sidecar marks an image as done (--skip-existing trusts it), so it is written only after every
    data file: a write that fails (here the disk refuses one file, first or last) leaves no sidecar, the
    image is counted as failed, and the next --skip-existing run does it again."""
    from PIL import Image

    from localdepth import writers
    from localdepth.cli.main import main as cli

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(photo)
    real = writers.atomic_write_bytes

    def refusing(path, data):
        if str(path).endswith(failing):
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(writers, "atomic_write_bytes", refusing)
    args = ["run", str(photo), "--weights", str(tiny_da_dir), "--device", "cpu", "--input-size", "28",
            "-f", "npy,color", "--outdir", str(tmp_path / "out"), "-q", "--skip-existing"]
    assert cli(args) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "out" / "photo.json").exists()
    monkeypatch.setattr(writers, "atomic_write_bytes", real)
    assert cli(args) == 0
    assert "1 ok, 0 failed, 0 skipped" in capsys.readouterr().err
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"photo.npy", "photo_color.png", "photo.json"}
