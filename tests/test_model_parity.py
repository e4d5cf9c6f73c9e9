"""Our networks against the references: Transformers for the same weights, ground truth for PyDNet++."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import localdepth
from localdepth.images import load_image

from conftest import RGBD


def test_backend_output_equals_transformers_for_same_pixel_values(tiny_da_dir, tiny_estimator):
    from transformers import AutoModelForDepthEstimation

    reference = AutoModelForDepthEstimation.from_pretrained(str(tiny_da_dir)).eval()
    pixel_values = torch.randn(2, 3, 182, 252, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(pixel_values=pixel_values).predicted_depth.numpy()
    ours = tiny_estimator.backend.infer(pixel_values.numpy())
    assert ours.shape == expected.shape == (2, 182, 252)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6 * float(np.abs(expected).max()))


def test_metric_model_output_equals_transformers(tiny_metric_dir):
    from transformers import AutoModelForDepthEstimation

    est = localdepth.load("depth-anything-v2-metric-indoor-small", weights=tiny_metric_dir, device="cpu")
    reference = AutoModelForDepthEstimation.from_pretrained(str(tiny_metric_dir)).eval()
    x = torch.randn(1, 3, 140, 196, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = reference(pixel_values=x).predicted_depth.numpy()
    np.testing.assert_allclose(est.backend.infer(x.numpy()), expected, rtol=1e-5, atol=1e-5)
    result = est.predict(np.full((50, 70, 3), 128, np.uint8))
    assert result.kind == "depth" and result.units == "m"
    assert 0 <= result.map.min() and result.map.max() <= 20.0


# Photos larger than 518 px on both sides: there the reference's lower-bound resize and the
# Transformers image processor pick the same network size, so the outputs are comparable.
@pytest.mark.parametrize("name", ["demo01.jpg", "demo04.jpg", "demo11.jpg"])
def test_pipeline_correlates_with_transformers_pipeline(tiny_da_dir, tiny_estimator, shared_images, name):
    from PIL import Image
    from transformers import pipeline

    path = shared_images / name
    pipe = pipeline("depth-estimation", model=str(tiny_da_dir), device="cpu")
    reference = pipe(Image.open(path))["predicted_depth"].float().numpy().squeeze()
    ours = tiny_estimator.predict(path)
    height, width = load_image(path).shape[:2]
    assert ours.map.shape == (height, width) == reference.shape
    assert ours.map.dtype == np.float32 and ours.kind == "disparity"
    pearson = np.corrcoef(ours.map.ravel(), reference.ravel())[0, 1]
    assert pearson >= 0.97, f"Pearson {pearson:.4f} with transformers.pipeline"


def test_small_images_follow_the_reference_lower_bound_resize(tiny_estimator, shared_images):
    """demo08 is 640x425: the Depth Anything reference scales it up so both sides are >= 518
    (518x784), while Transformers' processor would shrink it to 350x518; we follow the reference."""
    result = tiny_estimator.predict(shared_images / "demo08.jpg")
    assert result.input_size == (518, 784)
    assert result.map.shape == (425, 640)


def test_batched_prediction_equals_one_by_one(tiny_estimator):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(3)]
    one_by_one = [tiny_estimator.predict(im).map for im in images]
    batched = tiny_estimator.predict(images, batch_size=3)
    for a, b in zip(one_by_one, batched):
        np.testing.assert_allclose(a, b.map, rtol=1e-4, atol=1e-5 * float(np.abs(a).max()))


def test_input_size_changes_network_resolution(tiny_da_dir):
    est = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu", input_size=252)
    result = est.predict(np.zeros((300, 400, 3), np.uint8))
    assert result.input_size == (252, 336) and result.map.shape == (300, 400)


def _rgbd_frames():
    frames = [("tum/color.png", "tum/depth.png", 5000.0)]
    frames += [(f"livingroom/color/{i:05d}.jpg", f"livingroom/depth/{i:05d}.png", 1000.0) for i in range(0, 5, 2)]
    frames += [(f"kitti/rgb/{n}.png", f"kitti/depth/{n}.png", 256.0) for n in ("0000000005", "0000000050")]
    return frames


@pytest.mark.parametrize("color,depth,scale", _rgbd_frames())
def test_pydnet_is_disparity_like_on_real_rgbd(pydnet_file, rgbd_dir, color, depth, scale):
    from scipy.stats import spearmanr

    from PIL import Image

    est = _pydnet(pydnet_file)
    result = est.predict(rgbd_dir / color)
    gt = np.asarray(Image.open(rgbd_dir / depth), dtype=np.float64) / scale
    assert result.map.shape == gt.shape and result.kind == "disparity"
    valid = gt > 0
    rho = spearmanr(result.map[valid], 1.0 / gt[valid]).statistic
    assert rho > 0.25, f"Spearman {rho:.3f} with 1/GT on {color}"


_PYDNET = {}


def _pydnet(path):
    if "est" not in _PYDNET:
        _PYDNET["est"] = localdepth.load("pydnet", weights=path)
    return _PYDNET["est"]


def test_rgbd_data_is_where_the_tests_expect():
    if not RGBD.exists():
        pytest.skip(f"{RGBD} is absent")
    assert (RGBD / "tum" / "depth.png").is_file()


def test_bf16_on_cpu_stays_close_to_fp32(tiny_da_dir, tiny_estimator):
    bf16 = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu", dtype="bf16")
    assert bf16.backend.dtype == "bf16"
    image = np.random.default_rng(1).integers(0, 256, (100, 130, 3), dtype=np.uint8)
    a, b = tiny_estimator.predict(image).map, bf16.predict(image).map
    assert b.dtype == np.float32
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98


def test_metric_model_writes_millimetre_png16(tmp_path, tiny_metric_dir):
    import json
    import subprocess
    import sys

    import cv2

    from PIL import Image

    Image.new("RGB", (64, 48), (90, 120, 200)).save(tmp_path / "room.png")
    proc = subprocess.run([sys.executable, "-m", "localdepth", "run", str(tmp_path / "room.png"), "--model",
                           "depth-anything-v2-metric-indoor-small", "--weights", str(tiny_metric_dir),
                           "--device", "cpu", "-f", "npy,png16", "--outdir", str(tmp_path / "out"), "-q"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "out" / "room.json").read_text())
    assert meta["kind"] == "depth" and meta["units"] == "m" and meta["model"]["max_depth"] == 20
    metres = np.load(tmp_path / "out" / "room.npy")
    png = cv2.imread(str(tmp_path / "out" / "room.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(png.astype(np.float64) * 0.001, metres, atol=0.0006)


def test_fixed_size_model_refuses_input_size(pydnet_file):
    with pytest.raises(localdepth.LocalDepthError, match="fixed 448x640"):
        localdepth.load("pydnet", weights=pydnet_file, input_size=256)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_cuda_reduced_precision_matches_cpu(tiny_da_dir, tiny_estimator, dtype):
    gpu = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cuda", dtype=dtype)
    image = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    a, b = tiny_estimator.predict(image).map, gpu.predict(image).map
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98
