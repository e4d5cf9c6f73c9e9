"""Alignment: exact recovery of a known scale and shift, robust fits with 30 % outliers, reference files."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from localdepth import align

from tolerance import within


def _scene(seed: int = 0, shape=(60, 80)):
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 8.0, shape)  # metres
    s, t = 3.7, -0.05
    disparity = (1.0 / depth - t) / s  # a relative map: 1 / depth = s * disparity + t
    return depth, disparity, s, t


@pytest.mark.parametrize("space", ["disparity", "depth"])
def test_known_scale_and_shift_recovered_exactly(space):
    depth, disparity, s, t = _scene()
    if space == "disparity":
        fit = align.fit_scale_shift(disparity, depth, space="disparity")
        assert (fit.scale, fit.shift) == (pytest.approx(s, rel=1e-9), pytest.approx(t, abs=1e-9))
        np.testing.assert_allclose(fit.apply(disparity), depth, rtol=1e-5)
    else:
        src = (depth - 0.4) / 2.0  # depth = 2 * src + 0.4
        fit = align.fit_scale_shift(src, depth, space="depth")
        assert (fit.scale, fit.shift) == (pytest.approx(2.0), pytest.approx(0.4))
    assert fit.n_inliers == depth.size
    within(fit.rmse, 1e-9, "RMSE of an exact fit")


def test_scale_only():
    depth, _, _, _ = _scene(1)
    fit = align.fit_scale_shift(depth / 4.0, depth, space="depth", scale_only=True)
    assert fit.scale == pytest.approx(4.0) and fit.shift == 0.0


@pytest.mark.parametrize("robust", ["irls", "ransac"])
def test_robust_fit_with_30_percent_outliers(robust):
    depth, disparity, s, t = _scene(2)
    rng = np.random.default_rng(3)
    noisy = depth.copy().ravel()
    bad = rng.choice(noisy.size, size=int(0.3 * noisy.size), replace=False)
    noisy[bad] = rng.uniform(0.3, 20.0, bad.size)
    plain = align.fit_scale_shift(disparity, noisy.reshape(depth.shape))
    assert abs(plain.scale - s) > 0.1  # least squares is pulled away by the outliers
    fit = align.fit_scale_shift(disparity, noisy.reshape(depth.shape), robust=robust)
    assert fit.scale == pytest.approx(s, rel=1e-6) and fit.shift == pytest.approx(t, abs=1e-6)
    assert 0.69 * depth.size <= fit.n_inliers <= 0.72 * depth.size


def test_points_csv_with_header_and_pixel_centres(tmp_path):
    depth, disparity, s, t = _scene(4)
    rows = [(5, 7), (60, 10), (33, 50), (79, 59), (0, 0)]
    csv = tmp_path / "known.csv"
    csv.write_text("u,v,depth_m\n# comment\n" + "".join(f"{u},{v},{depth[v, u]}\n" for u, v in rows))
    pts = align.read_points_csv(csv)
    assert pts.shape == (5, 3) and tuple(pts[1]) == (60, 10, depth[10, 60])
    fit = align.fit_to_points(disparity, pts)
    assert fit.scale == pytest.approx(s) and fit.shift == pytest.approx(t)
    # bilinear sampling between pixel centres
    assert align.sample_map(np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[0.5, 0.5], [2.0, 0.0]]))[0] == 1.5
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,x,6\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        align.read_points_csv(bad)


def test_reference_png_with_scale_npy_and_mask(tmp_path):
    depth, disparity, s, t = _scene(5)
    png = tmp_path / "ref.png"
    cv2.imwrite(str(png), np.rint(depth * 256).astype(np.uint16))
    ref = align.read_reference(png, scale=256)
    np.testing.assert_allclose(ref, depth, atol=1 / 512)
    with pytest.raises(ValueError, match="reference-scale"):
        align.read_reference(png)
    np.save(tmp_path / "ref.npy", depth)
    np.testing.assert_allclose(align.read_reference(tmp_path / "ref.npy"), depth, rtol=1e-6)
    mask = np.zeros(depth.shape, np.uint8)
    mask[:, :40] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    m = align.read_mask(tmp_path / "mask.png", depth.shape)
    assert m[:, :40].all() and not m[:, 40:].any()


def test_cli_align_points_writes_metres_and_the_fit(tmp_path):
    depth, disparity, s, t = _scene(6)
    np.save(tmp_path / "room.npy", disparity.astype(np.float32))
    (tmp_path / "room.json").write_text(json.dumps({"kind": "disparity"}))
    rng = np.random.default_rng(0)
    us, vs = rng.integers(0, 80, 40), rng.integers(0, 60, 40)
    (tmp_path / "known.csv").write_text("".join(f"{u},{v},{depth[v, u]:.6f}\n" for u, v in zip(us, vs)))
    out = tmp_path / "room_metric.npy"
    proc = subprocess.run([sys.executable, "-m", "localdepth", "align", str(tmp_path / "room.npy"),
                           "--points", str(tmp_path / "known.csv"), "--output", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "scale" in proc.stderr and "metres" in proc.stderr
    np.testing.assert_allclose(np.load(out), depth, rtol=1e-4)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["units"] == "m" and meta["alignment"]["scale"] == pytest.approx(s, rel=1e-4)
    assert meta["alignment"]["n_samples"] == 40 and meta["alignment"]["space"] == "disparity"


def test_cli_align_reference_png_and_errors(tmp_path):
    depth, disparity, s, t = _scene(7)
    np.save(tmp_path / "m.npy", disparity.astype(np.float32))
    cv2.imwrite(str(tmp_path / "lidar.png"), np.rint(depth * 256).astype(np.uint16))
    out = tmp_path / "m_metric.png"
    cmd = [sys.executable, "-m", "localdepth", "align", str(tmp_path / "m.npy"), "--reference",
           str(tmp_path / "lidar.png"), "--output", str(out)]
    proc = subprocess.run(cmd + ["--reference-scale", "256", "--robust", "ransac"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    mm = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert mm.dtype == np.uint16
    np.testing.assert_allclose(mm / 1000.0, depth, atol=0.01)
    proc = subprocess.run(cmd, capture_output=True, text=True)  # a PNG reference without its scale
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--reference-scale" in proc.stderr


def test_depth_maps_read_back_with_their_sidecar(tmp_path):
    from pathlib import Path

    from localdepth.depthfile import read_depth_map
    from localdepth.errors import LocalDepthError
    from localdepth.postprocess import DepthResult
    from localdepth.writers import WriteOptions, output_paths, write_result

    depth = np.random.default_rng(0).uniform(0.5, 9.0, (30, 40)).astype(np.float32)
    result = DepthResult(map=depth, kind="depth", model="test", input_size=(30, 40))
    opts = WriteOptions(formats=("npy", "png16", "pfm"))
    paths = output_paths(tmp_path, Path("room.jpg"), opts.formats)
    write_result(result, paths, opts, {"model": "test"})
    for fmt, tol in (("npy", 0), ("png16", 5e-4), ("pfm", 0)):
        arr, kind, meta = read_depth_map(paths[fmt])
        assert kind == "depth" and meta["model"]["model"] == "test"
        np.testing.assert_allclose(arr, depth, atol=tol)
    np.save(tmp_path / "bare.npy", depth)
    assert read_depth_map(tmp_path / "bare.npy")[1] == "disparity"  # no sidecar: the caller's kind, else relative
    assert read_depth_map(tmp_path / "bare.npy", "depth")[1] == "depth"
    with pytest.raises(LocalDepthError, match="no such depth map"):
        read_depth_map(tmp_path / "missing.npy")


def _one_error_line(proc) -> str:
    """The command failed as a user error (exit 2) with one line and no traceback."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("localdepth: error: "), proc.stderr
    return lines[0]


def test_cli_align_bad_points_and_empty_maps_are_one_line(tmp_path):
    """NaN pixel coordinates and a 0x0 map used to raise IndexError from the bilinear sampler."""
    depth, disparity, _, _ = _scene(8)
    np.save(tmp_path / "m.npy", disparity.astype(np.float32))
    np.save(tmp_path / "empty.npy", np.zeros((0, 0), np.float32))
    rows = "u,v,depth_m\n1,2,3.0\n10,20,4.0\n30,40,2.0\n"
    (tmp_path / "good.csv").write_text(rows)
    (tmp_path / "nan.csv").write_text(rows + "nan,5,2.0\n")
    (tmp_path / "inf.csv").write_text(rows + "5,inf,2.0\n")

    def run(map_name, csv):
        return subprocess.run([sys.executable, "-m", "localdepth", "align", str(tmp_path / map_name), "--points",
                               str(tmp_path / csv), "-o", str(tmp_path / "out.npy")], capture_output=True, text=True)

    assert "nan.csv:5: u,v,depth_m must be finite" in _one_error_line(run("m.npy", "nan.csv"))
    assert "inf.csv:5: u,v,depth_m must be finite" in _one_error_line(run("m.npy", "inf.csv"))
    assert "empty.npy: the depth map is empty (0x0 pixels)" in _one_error_line(run("empty.npy", "good.csv"))
    assert not (tmp_path / "out.npy").exists()
    # the sampler itself: NaN coordinates and an empty map give NaN samples, not an IndexError
    np.testing.assert_array_equal(align.sample_map(np.ones((3, 4)), np.array([[np.nan, 1.0], [1.0, np.nan]])),
                                  [np.nan, np.nan])
    assert np.isnan(align.sample_map(np.zeros((0, 0)), np.array([[0.0, 0.0]]))).all()


def test_one_by_one_maps_stay_two_dimensional(tmp_path):
    """``squeeze`` turned a 1x1 map into a scalar ("got shape ()"); (1, H, W) and (H, W, 1) lose
    their extra axis only."""
    from localdepth.depthfile import read_depth_map

    for shape, expected in (((1, 1), (1, 1)), ((1, 5, 7), (5, 7)), ((5, 7, 1), (5, 7)), ((1, 1, 1), (1, 1))):
        np.save(tmp_path / "m.npy", np.full(shape, 2.0, np.float32))
        assert read_depth_map(tmp_path / "m.npy")[0].shape == expected
    np.save(tmp_path / "ref.npy", np.full((1, 1), 2.5, np.float32))
    assert align.read_reference(tmp_path / "ref.npy").shape == (1, 1)
