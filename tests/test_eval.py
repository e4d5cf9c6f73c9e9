"""Evaluation: metric definitions, crops, datasets (folder, manifest, NYU .mat, KITTI split, DIODE), CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from localdepth.evaluation import (EvalSettings, compute_metrics, crop_mask, evaluate, open_dataset, oracle,
                                   to_markdown)
from localdepth.evaluation.datasets import Dataset, Sample
from localdepth.evaluation.evaluate import Predictor, align_prediction
from localdepth.evaluation.metrics import Aggregate

from tolerance import at_least, within


def test_metric_definitions_on_known_errors():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # 0 = missing, not scored
    m = compute_metrics(2.0 * gt, gt)
    assert m["n"] == 3
    assert m["abs_rel"] == pytest.approx(1.0)
    assert m["sq_rel"] == pytest.approx((1 + 2 + 4) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 4 + 16) / 3))
    assert m["rmse_log"] == pytest.approx(math.log(2))
    assert m["log10"] == pytest.approx(math.log10(2))
    assert m["silog"] == pytest.approx(0.0, abs=1e-6)  # a global scale error is invisible to SILog
    assert (m["d1"], m["d2"], m["d3"]) == (0.0, 0.0, 0.0)  # ratio 2 > 1.25^3
    m = compute_metrics(gt * np.array([[1.2, 1.0], [1.5, 1.0]]), gt)
    assert (m["d1"], m["d2"], m["d3"]) == pytest.approx((2 / 3, 1.0, 1.0))
    perfect = compute_metrics(gt, gt)
    assert perfect["abs_rel"] == 0 and perfect["d1"] == 1


def test_every_metric_on_a_hand_computed_case():
    """Four pixels with ratios 1.1, 1.5, 1.9 (over) and 2.5 (under) to the ground truth: every
    metric is non-zero, SILog's variance differs from RMSE-log's mean square, and each delta
    threshold splits the pixels differently. Expected values are written out from the
    definitions (Eigen et al. 2014; SILog as the KITTI benchmark: 100 x the standard deviation of
    the natural-log error), not computed by the code under test."""
    gt = np.array([[1.0, 2.0], [4.0, 2.0]])
    pred = np.array([[1.1, 3.0], [7.6, 0.8]])  # gt x 1.1, x 1.5, x 1.9, / 2.5
    m = compute_metrics(pred, gt)
    assert m["n"] == 4
    assert m["abs_rel"] == pytest.approx((0.1 / 1 + 1.0 / 2 + 3.6 / 4 + 1.2 / 2) / 4)  # 0.525
    assert m["sq_rel"] == pytest.approx((0.01 / 1 + 1.0 / 2 + 12.96 / 4 + 1.44 / 2) / 4)  # 1.1175
    assert m["rmse"] == pytest.approx(math.sqrt((0.01 + 1.0 + 12.96 + 1.44) / 4))  # 1.9628 m
    logs = [math.log(1.1), math.log(1.5), math.log(1.9), -math.log(2.5)]
    mean_sq, mean = sum(v * v for v in logs) / 4, sum(logs) / 4
    assert m["rmse_log"] == pytest.approx(math.sqrt(mean_sq))  # 0.5969
    assert m["log10"] == pytest.approx((math.log10(1.1) + math.log10(1.5) + math.log10(1.9) + math.log10(2.5)) / 4)
    assert m["silog"] == pytest.approx(100 * math.sqrt(mean_sq - mean * mean))
    assert m["silog"] == pytest.approx(59.419, abs=1e-3)  # x100: not 0.594
    # ratios 1.1 | 1.5, 1.9, 2.5 against 1.25 | 1.5625 | 1.953125
    assert (m["d1"], m["d2"], m["d3"]) == pytest.approx((1 / 4, 2 / 4, 3 / 4))


@pytest.mark.parametrize("crop, shape, rows, cols", [
    ("eigen", (480, 640), (45, 471), (41, 601)),  # NYU: eval_mask[45:471, 41:601] in the Eigen/BTS code
    ("garg", (375, 1242), (153, 371), (44, 1197)),  # KITTI: int(0.40810811 h) : int(0.99189189 h), same for w
])
def test_crops_decide_which_pixels_are_scored(crop, shape, rows, cols):
    """A synthetic map that is 10 % off inside the crop and 100 % off outside it: with the crop
    only the inside counts (AbsRel 0.1); without, the pixel counts of the two regions weigh in."""
    gt = np.full(shape, 2.0)
    inside = np.zeros(shape, bool)
    inside[rows[0]:rows[1], cols[0]:cols[1]] = True
    pred = np.where(inside, 2.2, 4.0)
    ds = Dataset("synthetic", [Sample("s", rgb=lambda: np.zeros((*shape, 3), np.uint8), depth=lambda: gt,
                                      crop=crop, max_depth=10.0)])  # as NYU (10 m), KITTI (80 m)
    cropped = evaluate([Predictor("m", lambda rgb, sample: (pred, "depth"))], ds, EvalSettings(alignment="none"))
    res = cropped["models"]["m"]
    n_in = (rows[1] - rows[0]) * (cols[1] - cols[0])
    assert res["pixels"] == n_in
    assert res["mean"]["abs_rel"] == pytest.approx(0.1)
    whole = evaluate([Predictor("m", lambda rgb, sample: (pred, "depth"))], ds,
                     EvalSettings(alignment="none", crop="none"))["models"]["m"]
    n = shape[0] * shape[1]
    assert whole["pixels"] == n
    assert whole["mean"]["abs_rel"] == pytest.approx((0.1 * n_in + 1.0 * (n - n_in)) / n)


def test_mean_over_images_versus_pooled_pixels():
    agg = Aggregate()
    big = np.ones((10, 10))
    agg.add(big * 1.1, big, big > 0)  # abs_rel 0.1 over 100 px
    small = np.ones((1, 1))
    agg.add(small * 1.5, small, small > 0)  # abs_rel 0.5 over 1 px
    res = agg.result()
    assert res["mean"]["abs_rel"] == pytest.approx(0.3)
    assert res["pooled"]["abs_rel"] == pytest.approx((10 + 0.5) / 101)
    assert res["images"] == 2 and res["pixels"] == 101


def test_crops():
    eigen = crop_mask((480, 640), "eigen")
    rows, cols = np.flatnonzero(eigen.any(1)), np.flatnonzero(eigen.any(0))
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (45, 470, 41, 600)
    garg = crop_mask((375, 1242), "garg")
    rows, cols = np.flatnonzero(garg.any(1)), np.flatnonzero(garg.any(0))
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (153, 371, 44, 1197)


def test_alignments_recover_affine_predictions():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 10.0, (20, 30))
    valid = np.ones(gt.shape, bool)
    disparity = 5.0 / gt + 0.3
    for mode in ("scale-shift-disparity",):
        depth, fit = align_prediction(disparity, "disparity", gt, valid, mode)
        np.testing.assert_allclose(depth, gt, rtol=1e-5)
    depth, _ = align_prediction(3.0 * gt, "depth", gt, valid, "scale")
    np.testing.assert_allclose(depth, gt, rtol=1e-5)
    depth, _ = align_prediction(2.0 * gt - 1.0, "depth", gt, valid, "scale-shift-depth")
    np.testing.assert_allclose(depth, gt, rtol=1e-5)
    from localdepth.errors import LocalDepthError

    with pytest.raises(LocalDepthError, match="needs an alignment"):
        align_prediction(disparity, "disparity", gt, valid, "none")


def test_folder_layouts_of_the_shared_rgbd_frames(rgbd_dir):
    ds = open_dataset(f"folder:{rgbd_dir}")
    names = [s.name for s in ds.samples]
    assert names == ["kitti/0000000005", "kitti/0000000050", "kitti/0000000100"] + \
        [f"livingroom/0000{i}" for i in range(5)] + ["tum"]
    tum = ds.samples[-1]
    raw = cv2.imread(str(rgbd_dir / "tum" / "depth.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(tum.depth(), raw / 5000.0, rtol=1e-6)  # TUM: 5000 per metre
    living = ds.samples[3]
    assert living.intrinsics["fx"] == 525.0 and living.intrinsics["cx"] == 319.5
    assert float(living.depth().max()) < 10.0  # millimetres -> metres
    assert ds.samples[0].crop == "garg" and ds.samples[0].max_depth == 80.0
    assert ds.samples[0].rgb().shape[:2] == ds.samples[0].depth().shape


def test_oracle_on_the_shared_ground_truth_is_perfect(rgbd_dir):
    ds = open_dataset(f"folder:{rgbd_dir}")
    for align in ("none", "scale", "scale-shift-disparity", "scale-shift-depth"):
        report = evaluate([oracle()], ds, EvalSettings(alignment=align))
        res = report["models"]["gt"]
        assert res["images"] == 9
        assert res["mean"]["abs_rel"] == pytest.approx(0.0, abs=1e-5), align
        assert res["mean"]["d1"] == 1.0 and res["pooled"]["d1"] == 1.0
    assert "| gt | 0.0000 |" in to_markdown(report)


def test_manifest_nyu_kitti_split_and_diode(tmp_path, rgbd_dir):
    import h5py

    # manifest: paths relative to the CSV, intrinsics columns
    (tmp_path / "m").mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    depth = np.random.default_rng(1).uniform(0.5, 5, (24, 32))
    cv2.imwrite(str(tmp_path / "m" / "a.png"), rgb)
    cv2.imwrite(str(tmp_path / "m" / "a_d.png"), np.rint(depth * 1000).astype(np.uint16))
    (tmp_path / "m" / "manifest.csv").write_text("rgb,depth,depth_scale,fx,fy,cx,cy\na.png,a_d.png,1000,30,30,15.5,11.5\n")
    ds = open_dataset(f"folder:{tmp_path / 'm'}")
    assert len(ds.samples) == 1 and ds.samples[0].intrinsics["fx"] == 30
    np.testing.assert_allclose(ds.samples[0].depth(), depth, atol=6e-4)

    # NYU Depth v2 labeled .mat layout (HDF5, column-major: images (N,3,W,H), depths (N,W,H))
    n_rgb = np.random.default_rng(2).integers(0, 255, (3, 480, 640, 3), dtype=np.uint8)
    n_depth = np.random.default_rng(3).uniform(0.5, 9.0, (3, 480, 640)).astype(np.float32)
    with h5py.File(tmp_path / "nyu.mat", "w") as f:
        f["images"] = n_rgb.transpose(0, 3, 2, 1)
        f["depths"] = n_depth.transpose(0, 2, 1)
    (tmp_path / "test.txt").write_text("1\n3\n")
    ds = open_dataset(f"nyu:{tmp_path / 'nyu.mat'}", split=tmp_path / "test.txt")
    assert [s.name for s in ds.samples] == ["0001", "0003"]
    np.testing.assert_array_equal(ds.samples[1].rgb(), n_rgb[2])
    np.testing.assert_array_equal(ds.samples[1].depth(), n_depth[2])
    assert ds.samples[0].crop == "eigen" and ds.samples[0].max_depth == 10.0

    # KITTI split file, BTS format (rgb depth focal), paths relative to --data-root
    split = tmp_path / "eigen_test.txt"
    split.write_text("rgb/0000000005.png depth/0000000005.png 707.0493\nrgb/0000000050.png None 707.0493\n")
    ds = open_dataset(f"kitti:{split}", data_root=rgbd_dir / "kitti")
    assert len(ds.samples) == 1 and ds.samples[0].intrinsics["fx"] == pytest.approx(707.0493)
    assert ds.samples[0].crop == "garg" and float(ds.samples[0].depth().max()) < 100

    # DIODE: *_depth.npy (H, W, 1) metres + mask + png
    scan = tmp_path / "diode" / "val" / "indoors" / "scene_1" / "scan_1"
    scan.mkdir(parents=True)
    cv2.imwrite(str(scan / "f1.png"), rgb)
    np.save(scan / "f1_depth.npy", depth[..., None].astype(np.float32))
    np.save(scan / "f1_depth_mask.npy", (depth > 1).astype(np.float32))
    ds = open_dataset(f"diode:{tmp_path / 'diode'}")
    assert [s.name for s in ds.samples] == ["val/indoors/scene_1/scan_1/f1"]
    report = evaluate([oracle()], ds, EvalSettings(alignment="none"))
    assert report["models"]["gt"]["pixels"] == int(((depth > 1) & (depth >= 0.6)).sum())
    # an unreadable frame is reported and skipped; the others are still evaluated
    scan2 = scan.parent / "scan_2"
    scan2.mkdir()
    (scan2 / "f2.png").write_bytes(b"not a png")
    np.save(scan2 / "f2_depth.npy", depth[..., None].astype(np.float32))
    report = evaluate([oracle()], open_dataset(f"diode:{tmp_path / 'diode'}"), EvalSettings(alignment="none"))
    assert report["models"]["gt"]["images"] == 1 and report["failed"][0]["name"].endswith("scan_2/f2")
    assert "not an image" in report["failed"][0]["error"]


def _frame(folder, rgb_name: str, depth_name: str, metres: np.ndarray, units_per_metre: float, seed: int):
    """One RGB-D frame: a random colour image and a 16-bit depth PNG of ``metres``."""
    (folder / rgb_name).parent.mkdir(parents=True, exist_ok=True)
    (folder / depth_name).parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, metres.shape + (3,), dtype=np.uint8)
    cv2.imwrite(str(folder / rgb_name), rgb)
    cv2.imwrite(str(folder / depth_name), np.rint(metres * units_per_metre).astype(np.uint16))


@pytest.mark.parametrize("layout, rgb_name, depth_name, scale, crop, max_depth", [
    ("tum", "color.png", "depth.png", 5000, None, 10.0),
    ("open3d", "color/{i:05d}.jpg", "depth/{i:05d}.png", 1000, None, 10.0),
    ("nyu", "rgb/rgb_{i:05d}.jpg", "depth/sync_depth_{i:05d}.png", 1000, "eigen", 10.0),
    ("nyu-flat", "rgb_{i:05d}.jpg", "sync_depth_{i:05d}.png", 1000, "eigen", 10.0),
    ("kitti", "image/{i:010d}.png", "depth/{i:010d}.png", 256, "garg", 80.0),
    ("prefixed", "image/image_{i}.png", "depth/depth_{i:04d}.png", 256, "garg", 80.0),
])
def test_each_folder_layout_pairs_its_frames(tmp_path, layout, rgb_name, depth_name, scale, crop, max_depth):
    """Every layout `eval --help` lists: found in a subfolder, frames paired (by stem or by the shared key
    once rgb_/sync_depth_/depth_/image_ are stripped), read at the layout's scale, with its crop and range."""
    root = tmp_path / "data"
    frames = [0, 5, 12] if "{i" in rgb_name else [0]
    truth = {}
    for k, i in enumerate(frames):
        metres = np.random.default_rng(10 + k).uniform(0.5, 9.0, (48, 64))
        _frame(root / layout, rgb_name.format(i=i), depth_name.format(i=i), metres, scale, k)
        truth[i] = metres
    if "{i" in rgb_name:  # a depth map without its photo pairs with nothing
        _frame(root / layout, "unused.png", depth_name.format(i=99), truth[0], scale, 9)
        (root / layout / "unused.png").unlink()
    ds = open_dataset(f"folder:{root}")
    assert len(ds.samples) == len(frames), [s.name for s in ds.samples]
    for sample, i in zip(ds.samples, frames):
        assert sample.name.startswith(f"{layout}/") or sample.name == layout
        np.testing.assert_allclose(sample.depth(), truth[i], atol=0.5 / scale + 1e-6)
        assert sample.rgb().shape == (48, 64, 3)
        assert (sample.crop, sample.max_depth) == (crop, max_depth)


def test_eval_help_lists_the_folder_layouts():
    proc = subprocess.run([sys.executable, "-m", "localdepth", "eval", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for files in ("color.png + depth.png", "color/* + depth/*.png", "rgb/rgb_N.jpg + depth/sync_depth_N.png",
                  "rgb_N.jpg + sync_depth_N.png", "rgb/* or image/* + depth/*"):
        assert files in proc.stdout, files


def test_pair_key():
    from localdepth.evaluation.datasets import pair_files, pair_key

    assert pair_key("rgb_00005") == pair_key("sync_depth_00005") == pair_key("5") == pair_key("5_depth") == "5"
    assert pair_key("Image_Kitchen") == pair_key("kitchen_depth") == "kitchen"
    # exact stems first; a key two RGB files share is ambiguous and pairs nothing
    rgbs = {"a": Path("a.png"), "rgb_1": Path("rgb_1.png"), "img_1": Path("img_1.png"), "rgb_2": Path("rgb_2.png")}
    depths = {"a": Path("a_d.png"), "depth_1": Path("depth_1.png"), "depth_02": Path("depth_02.png")}
    assert pair_files(rgbs, depths) == [(Path("a.png"), Path("a_d.png")), (Path("rgb_2.png"), Path("depth_02.png"))]


def test_cli_eval_pydnet_and_ground_truth_on_the_shared_frames(rgbd_dir, pydnet_file, tmp_path):
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "localdepth", "eval", "--model", "gt", "--model",
                           f"pydnet={pydnet_file}", "--dataset", f"folder:{rgbd_dir}", "--align",
                           "scale-shift-disparity", "--outdir", str(out), "--error-maps", "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ")]
    assert lines[1].startswith("| gt | 0.0000 |") and lines[2].startswith("| pydnet |")
    report = json.loads((out / "eval.json").read_text())
    gt, pyd = report["models"]["gt"], report["models"]["pydnet"]
    assert gt["mean"]["abs_rel"] == pytest.approx(0, abs=1e-5) and gt["mean"]["d1"] == 1.0
    # a real, weak indoor network: clearly better than chance, clearly worse than the oracle
    assert pyd["mean"]["abs_rel"] > 0.05 and pyd["mean"]["d1"] < 0.99
    within(pyd["mean"]["abs_rel"], 0.5, "PyDNet++ AbsRel")
    at_least(pyd["mean"]["d1"], 0.4, "PyDNet++ δ1")
    assert pyd["images"] == 9 and len(pyd["per_image"]) == 9
    assert all(row["fit"]["space"] == "disparity" for row in pyd["per_image"])
    pic = cv2.imread(str(out / "error_maps" / "pydnet" / "tum.png"))
    assert pic.shape == (480, 4 * 640, 3)
    assert (out / "eval.md").read_text().count("\n| ") == 3
    assert gt["negative_scale_fits"] == 0
    assert pyd["negative_scale_fits"] == sum(row["fit"]["scale"] < 0 for row in pyd["per_image"])
    # a relative model without alignment is refused in one line
    proc = subprocess.run([sys.executable, "-m", "localdepth", "eval", "-m", f"pydnet={pydnet_file}", "-d",
                           f"folder:{rgbd_dir / 'tum'}", "--align", "none", "-q"], capture_output=True, text=True)
    assert proc.returncode == 2 and "needs an alignment" in proc.stderr.strip().splitlines()[-1]


def test_frames_without_valid_ground_truth_are_skipped_and_counted(tmp_path):
    """A frame whose depth PNG is all zeros (no valid pixel) used to end the run with the
    alignment's traceback. It is skipped with one line and counted; only a dataset without any
    valid frame fails (exit 1, one line)."""
    rng = np.random.default_rng(0)
    depths = {"good": rng.uniform(0.5, 5, (24, 32)), "empty": np.zeros((24, 32)), "good2": rng.uniform(1, 3, (24, 32))}
    for name, depth in depths.items():
        cv2.imwrite(str(tmp_path / f"{name}.png"), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / f"{name}_d.png"), np.rint(depth * 1000).astype(np.uint16))
    (tmp_path / "manifest.csv").write_text("rgb,depth,depth_scale\n" + "".join(
        f"{n}.png,{n}_d.png,1000\n" for n in depths))

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "localdepth", "eval", "-m", "gt", "-d", f"folder:{tmp_path}",
                               "-q", *extra], capture_output=True, text=True)

    for align in ("none", "scale-shift-disparity"):
        proc = run("--align", align, "--outdir", str(tmp_path / align))
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        notes = [ln for ln in proc.stderr.splitlines() if ln.startswith("localdepth: ")]
        assert notes == ["localdepth: warning: empty: skipped, no valid ground truth (0 pixels in [0.001, inf] m)"]
        report = json.loads((tmp_path / align / "eval.json").read_text())
        assert [s["name"] for s in report["skipped"]] == ["empty"] and report["failed"] == []
        assert report["models"]["gt"]["images"] == 2 and report["models"]["gt"]["mean"]["abs_rel"] == 0
        assert "1 frame(s) skipped" in proc.stdout

    # nothing valid at all (every depth beyond --max-depth): one error line, exit 1
    proc = run("--max-depth", "0.1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("localdepth: error:")]
    assert len(errors) == 1 and "no frame has valid ground truth (3 skipped" in errors[0], proc.stderr


def test_eval_runs_depth_pro_zoedepth_and_prompt_da_beside_the_others(rgbd_dir, tiny_depth_pro_dir, tiny_zoedepth_dir,
                                                                      tiny_prompt_da_dir, tiny_da_dir, tmp_path):
    """One table with the oracle, a relative model and the three new families (random weights: the
    figures mean nothing, the table proves each runs through eval). Depth Pro's predicted camera is
    scored against the frame's intrinsics; Prompt DA gets the simulated LiDAR."""
    from localdepth.cli.main import main as cli

    models = [("gt", None), ("depth-anything-v2-small", tiny_da_dir), ("depth-pro", tiny_depth_pro_dir),
              ("zoedepth-nyu", tiny_zoedepth_dir), ("prompt-depth-anything-vits", tiny_prompt_da_dir)]
    args = ["eval", "-d", f"folder:{rgbd_dir / 'livingroom'}", "--limit", "1", "--align", "scale-shift-disparity",
            "--device", "cpu", "--outdir", str(tmp_path), "-q"]
    for name, folder in models:
        args += ["-m", name if folder is None else f"{name}={folder}"]
    assert cli(args) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    table = (tmp_path / "eval.md").read_text()
    rows = [line.split(" | ")[0].lstrip("| ") for line in table.splitlines() if line.startswith("| ")][1:]
    assert rows == [name for name, _ in models]
    assert report["models"]["gt"]["mean"]["abs_rel"] == pytest.approx(0, abs=1e-5)
    for name, _ in models:
        res = report["models"][name]
        assert res["images"] == 1 and np.isfinite(res["mean"]["abs_rel"]) and 0 <= res["mean"]["d1"] <= 1
    dp = report["models"]["depth-pro"]
    assert dp["focal_images"] == 1 and 0 <= dp["focal_abs_rel"] == dp["per_image"][0]["focal_abs_rel"]
    assert "focal_abs_rel" not in report["models"]["zoedepth-nyu"]
    assert "simulated low-resolution LiDAR" in report["models"]["prompt-depth-anything-vits"]["info"]["prompt_depth"]
    assert "Predicted focal length" in table and "Prompt depth for prompt-depth-anything-vits" in table


def test_simulated_lidar_and_focal_error():
    from localdepth.evaluation.evaluate import focal_error, simulated_lidar
    from localdepth.evaluation.datasets import Sample
    from localdepth.geometry import from_fov

    gt = np.full((16, 24), 2.0, np.float32)
    gt[:8, :8] = 0  # a hole: that block has no valid pixel
    gt[8:, 16:] = 4.0
    lidar = simulated_lidar(gt, 8)
    np.testing.assert_allclose(lidar, [[0, 2, 2], [2, 2, 4]])
    sample = Sample("s", lambda: None, lambda: gt, intrinsics={"fx": 500.0, "fy": 500.0, "cx": 319.5, "cy": 239.5,
                                                              "width": 640, "height": 480})
    cam = from_fov(2 * np.degrees(np.arctan(320 / 550)), 640, 480, source="model")  # fx = 550
    assert focal_error(cam, sample, 640, 480) == pytest.approx(0.1)
    assert focal_error(cam.scaled(320, 240), sample, 640, 480) == pytest.approx(0.1)  # compared at one size
    assert focal_error(None, sample, 640, 480) is None
