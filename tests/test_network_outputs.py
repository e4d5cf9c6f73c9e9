"""The network calling convention (localdepth.networks): outputs beyond depth reach the result.

A stand-in network of a format of its own returns confidence, a camera and a pose; the test
checks that the estimator brings each back to the image's pixels with the documented conventions,
that the sidecar records them, and that the one intrinsics rule of geometry prefers what the user
gave, then EXIF, then the model, then the default.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

FOCAL_NET = 50.0  # focal length the stand-in predicts, in pixels of its input grid


class _CameraNet(torch.nn.Module):
    """depth = 1 + mean of the input channels; confidence = 2; a fixed camera and pose."""

    extra_outputs = True
    focal = FOCAL_NET  # a test sets a negative one: the unusable camera a random network can predict

    def forward(self, pixel_values, **conditioning):
        n, _, h, w = pixel_values.shape
        depth = 1.0 + pixel_values.mean(dim=1)
        f = self.focal
        K = torch.tensor([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
        pose = torch.eye(4)
        pose[0, 3] = 0.25
        return {"depth": depth, "confidence": torch.full_like(depth, 2.0),
                "intrinsics": K.expand(n, 3, 3), "camera_from_world": pose.expand(n, 4, 4)}


@pytest.fixture
def camera_estimator(monkeypatch, tmp_path):
    from localdepth import networks, registry
    from localdepth.backends import create_backend
    from localdepth.estimator import DepthEstimator
    from localdepth.weights import ResolvedWeights

    module = types.ModuleType("localdepth_test_camera_net")
    module.load = lambda spec, path, *, device, dtype: _CameraNet()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(networks.LOADERS, "camera-test", module.__name__)
    spec = dataclasses.replace(registry.get("depth-anything-v2-metric-indoor-small"), name="camera-test",
                               format="camera-test")
    backend = create_backend(spec, ResolvedWeights(tmp_path, "argument"), backend="torch", device="cpu")
    return DepthEstimator(spec, backend)


def test_confidence_camera_and_pose_reach_the_result_in_image_pixels(camera_estimator):
    image = np.zeros((100, 200, 3), dtype=np.uint8)  # network input: 518 x 1036 (lower bound 518, x14)
    result = camera_estimator.predict(image)
    net_h, net_w = result.input_size
    assert (net_h, net_w) == (518, 1036)
    assert result.map.shape == result.confidence.shape == (100, 200)
    np.testing.assert_allclose(result.confidence, 2.0)
    cam = result.intrinsics
    assert cam.origin == "model" and (cam.width, cam.height) == (200, 100)
    # a resize by s maps the focal to f * s and the centre (c + 0.5) * s - 0.5: here back to the image's centre
    assert cam.fx == pytest.approx(FOCAL_NET * 200 / net_w) and cam.fy == pytest.approx(FOCAL_NET * 100 / net_h)
    assert (cam.cx, cam.cy) == (pytest.approx(99.5), pytest.approx(49.5))
    assert result.camera_from_world[0, 3] == pytest.approx(0.25)


def test_sidecar_records_the_predicted_camera(camera_estimator, tmp_path):
    from localdepth.writers import WriteOptions, output_paths, write_result

    result = camera_estimator.predict(np.zeros((40, 60, 3), dtype=np.uint8))
    paths = output_paths(tmp_path, Path("x.png"), ("npy",))
    write_result(result, paths, WriteOptions(formats=("npy",)), camera_estimator.describe())
    meta = json.loads(paths["json"].read_text())
    assert meta["predicted_intrinsics"]["origin"] == "model"
    assert meta["predicted_intrinsics"]["fx"] == pytest.approx(result.intrinsics.fx)
    assert meta["camera_from_world"][0][3] == pytest.approx(0.25)


def test_one_intrinsics_rule_given_then_exif_then_model_then_default(tmp_path):
    from PIL import Image

    from localdepth import geometry

    model = geometry.from_matrix(np.array([[80.0, 0, 49.5], [0, 80.0, 24.5], [0, 0, 1]]), 100, 50, source="model")
    assert geometry.resolve_intrinsics(100, 50, intrinsics="10,10,5,5", predicted=model).origin == "given"
    assert geometry.resolve_intrinsics(100, 50, fov=90.0, predicted=model).origin == "given"
    assert geometry.resolve_intrinsics(100, 50).origin == "default"
    used = geometry.resolve_intrinsics(200, 100, predicted=model)  # scaled to the map's size
    assert used.origin == "model" and used.fx == pytest.approx(160.0) and used.cx == pytest.approx(99.5)
    photo = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif[0xA405] = 28  # FocalLengthIn35mmFilm
    Image.new("RGB", (100, 50)).save(photo, exif=exif)
    assert geometry.resolve_intrinsics(100, 50, image_path=photo, predicted=model).origin == "exif"


def test_server_ply_uses_the_model_camera_when_the_request_gives_none(camera_estimator):
    """The one rule in the server: no fx/fy/cx/cy/fov and no EXIF -> the predicted camera; given -> given."""
    pytest.importorskip("fastapi")
    from localdepth.server import create_app
    from server_support import png_bytes
    from test_server_api import run, serving

    image = np.full((40, 60, 3), 100, np.uint8)
    expected = camera_estimator.predict(image).intrinsics

    async def scenario():
        async with serving(create_app([camera_estimator])) as client:
            model = await client.post("/v1/depth?format=ply", content=png_bytes(image))
            given = await client.post("/v1/depth?format=ply&fov=90", content=png_bytes(image))
            return model, given

    model, given = run(scenario())
    assert model.status_code == 200, model.text
    assert model.headers["X-Intrinsics-Source"] == "model"
    fx, fy, cx, cy = (float(v) for v in model.headers["X-Intrinsics"].split(","))
    assert (fx, fy, cx, cy) == pytest.approx((expected.fx, expected.fy, expected.cx, expected.cy), rel=1e-5)
    assert b"intrinsics_source model" in model.content[:2000]
    assert given.headers["X-Intrinsics-Source"] == "given"
    assert float(given.headers["X-Intrinsics"].split(",")[0]) == pytest.approx(30.0, rel=1e-5)  # (60/2)/tan(45°)


def test_normals_format_uses_the_model_camera_unless_one_is_given(camera_estimator, tmp_path):
    from localdepth.writers import WriteOptions, output_paths, write_result

    result = camera_estimator.predict(np.zeros((40, 60, 3), dtype=np.uint8))
    paths = output_paths(tmp_path, Path("x.png"), ("normals",))
    meta = write_result(result, paths, WriteOptions(formats=("normals",)), camera_estimator.describe())
    info = meta["outputs"]["normals"]
    assert info["intrinsics_source"] == "model" and info["intrinsics"]["fx"] == pytest.approx(result.intrinsics.fx)
    given = WriteOptions(formats=("normals",), extra_sidecar={"intrinsics": {"fov": 90.0, "source": "fov"}})
    info = write_result(result, paths, given, camera_estimator.describe())["outputs"]["normals"]
    assert info["intrinsics_source"] == "given" and info["intrinsics"]["fx"] == pytest.approx(30.0)


# ----------------------------------------------------------------------------- an unusable predicted camera

@pytest.fixture
def bad_camera_estimator(camera_estimator, monkeypatch):
    """The stand-in predicting a negative focal length (an intrinsics matrix, as Depth Anything 3 does)."""
    monkeypatch.setattr(_CameraNet, "focal", -FOCAL_NET)
    return camera_estimator


def test_an_unusable_predicted_camera_matters_only_where_it_is_used(bad_camera_estimator, tmp_path):
    """given > EXIF > model > default, and only the camera used is checked: the map is made, the
    prediction is kept (marked), a given or EXIF camera is used, and using the prediction is one
    ValueError that names --fov and --intrinsics."""
    from PIL import Image

    from localdepth import geometry

    result = bad_camera_estimator.predict(np.full((40, 60, 3), 90, np.uint8))
    assert np.isfinite(result.map).all() and result.intrinsics.problem
    assert geometry.resolve_intrinsics(60, 40, fov=60.0, predicted=result.intrinsics).origin == "given"
    assert geometry.resolve_intrinsics(60, 40, intrinsics="50,50,30,20", predicted=result.intrinsics).fx == 50
    photo = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif[0xA405] = 28
    Image.new("RGB", (60, 40)).save(photo, exif=exif)
    assert geometry.resolve_intrinsics(60, 40, image_path=photo, predicted=result.intrinsics).origin == "exif"
    with pytest.raises(ValueError, match="--fov.*--intrinsics"):
        geometry.resolve_intrinsics(60, 40, predicted=result.intrinsics)
    for bad in (geometry.from_fov(-1.9, 60, 40, check=False), geometry.from_fov(180.0, 60, 40, check=False),
                geometry.from_fov(float("nan"), 60, 40, check=False)):
        assert bad.problem, bad
        with pytest.raises(ValueError, match="--fov"):
            geometry.resolve_intrinsics(60, 40, predicted=bad)
    # the one camera rule (safety.check_camera): 170 degrees on 60 px is a 2.6 px focal, usable; 179 degrees
    # a 0.26 px focal, under the 1 px minimum
    assert geometry.from_fov(170.0, 60, 40).problem is None
    assert "at least 1 pixel" in geometry.from_fov(179.0, 60, 40, check=False).problem


def test_pointcloud_of_a_map_with_an_unusable_predicted_camera(bad_camera_estimator, tmp_path, capsys):
    """`localdepth pointcloud` reads the prediction from the sidecar: with --fov it is not used; without,
    the command ends with one line naming --fov/--intrinsics (and writes nothing)."""
    from conftest import need_open3d

    need_open3d()
    from localdepth.cli.main import main as cli
    from localdepth.writers import WriteOptions, output_paths, write_result

    result = bad_camera_estimator.predict(np.full((40, 60, 3), 90, np.uint8))
    paths = output_paths(tmp_path, Path("x.png"), ("npy",))
    meta = write_result(result, paths, WriteOptions(formats=("npy",)), bad_camera_estimator.describe())
    assert "problem" in meta["predicted_intrinsics"]
    assert cli(["pointcloud", str(paths["npy"]), "-o", str(tmp_path / "given.ply"), "--fov", "60"]) == 0
    assert json.loads((tmp_path / "given.ply.json").read_text())["intrinsics_source"] == "given"
    capsys.readouterr()
    assert cli(["pointcloud", str(paths["npy"]), "-o", str(tmp_path / "none.ply")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fov" in err[0] and "--intrinsics" in err[0], err
    assert not (tmp_path / "none.ply").exists()


def test_server_ply_with_an_unusable_predicted_camera(bad_camera_estimator):
    pytest.importorskip("fastapi")
    from localdepth.server import create_app
    from server_support import png_bytes
    from test_server_api import run, serving

    image = np.full((40, 60, 3), 100, np.uint8)

    async def scenario():
        async with serving(create_app([bad_camera_estimator])) as client:
            none = await client.post("/v1/depth?format=ply", content=png_bytes(image))
            given = await client.post("/v1/depth?format=ply&fov=90", content=png_bytes(image))
            return none, given

    none, given = run(scenario())
    assert none.status_code == 400 and "fov=" in none.json()["detail"], none.text
    assert given.status_code == 200 and given.headers["X-Intrinsics-Source"] == "given"
