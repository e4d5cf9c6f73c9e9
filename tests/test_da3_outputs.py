"""Depth Anything 3 through localdepth's pipeline: registry, relative depth in files, confidence,
the predicted camera in sidecars, point clouds, metric scaling, the server, eval and video.

Tiny randomly initialised networks of the real design stand in for the released weights: the
architecture table's row is swapped for a tiny one during a test, and the network is saved in the
Hub folder format the loader reads (``config.json`` with ``model_name``, ``model.safetensors``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import localdepth  # noqa: E402
from localdepth import registry  # noqa: E402
from localdepth.cli.main import main  # noqa: E402
from localdepth.errors import LocalDepthError  # noqa: E402
from localdepth.networks.da3 import ARCHITECTURES, DepthAnything3Network  # noqa: E402
from localdepth.networks.da3.config import Architecture  # noqa: E402

from conftest import rng_image  # noqa: E402

TINY_ANY_VIEW = Architecture(32, 4, 2, (0, 1, 2, 3), 2, 2, 2, True, "dualdpt", 16, (8, 16, 32, 32), True)
TINY_SINGLE_VIEW = Architecture(32, 4, 2, (0, 1, 2, 3), -1, -1, -1, False, "dpt", 16, (8, 16, 32, 32), False)


def save_tiny(folder, model_name: str, arch: Architecture, seed: int = 0):
    from safetensors.torch import save_model

    torch.manual_seed(seed)
    net = DepthAnything3Network(arch, model_name)
    with torch.no_grad():  # a usable random camera: fields of view near 1 rad
        if arch.camera:
            net.cam_dec.fc_fov[0].weight.mul_(0.05)
            net.cam_dec.fc_fov[0].bias.copy_(torch.tensor([1.0, 1.2]))
    folder.mkdir(parents=True, exist_ok=True)
    save_model(net, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_name": model_name}))
    return folder


@pytest.fixture
def tiny_da3(tmp_path, monkeypatch):
    """A tiny any-view network standing in for da3-small: (estimator, weights folder)."""
    monkeypatch.setitem(ARCHITECTURES, "da3-small", TINY_ANY_VIEW)
    folder = save_tiny(tmp_path / "tiny-da3", "da3-small", TINY_ANY_VIEW)
    return localdepth.load("da3-small", weights=folder, device="cpu"), folder


@pytest.fixture
def tiny_metric(tmp_path, monkeypatch):
    """A tiny single-view network standing in for da3-metric-large."""
    monkeypatch.setitem(ARCHITECTURES, "da3metric-large", TINY_SINGLE_VIEW)
    folder = save_tiny(tmp_path / "tiny-metric", "da3metric-large", TINY_SINGLE_VIEW, seed=1)
    return localdepth.load("da3-metric-large", weights=folder, device="cpu"), folder


def _png(path, rgb):
    import cv2

    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


# ----------------------------------------------------------------------------- registry


def test_registry_entries_params_counted_from_the_architecture_and_licences():
    expected = {"da3-small": ("depth-anything/DA3-SMALL", "apache-2.0"),
                "da3-base": ("depth-anything/DA3-BASE", "apache-2.0"),
                "da3-large": ("depth-anything/DA3-LARGE-1.1", "cc-by-nc-4.0"),
                "da3-giant": ("depth-anything/DA3-GIANT-1.1", "cc-by-nc-4.0"),
                "da3-mono-large": ("depth-anything/DA3MONO-LARGE", "apache-2.0"),
                "da3-metric-large": ("depth-anything/DA3METRIC-LARGE", "apache-2.0")}
    for name, (repo, licence) in expected.items():
        spec = registry.get(name.replace("-", "_"))
        assert (spec.repo_id, spec.licence, spec.format, spec.layout) == (repo, licence, "da3", "folder")
        assert spec.commercial_use == (licence == "apache-2.0")
        assert spec.output == "depth" and spec.metric == (name == "da3-metric-large")
        with torch.device("meta"):
            net = DepthAnything3Network(ARCHITECTURES[spec.architecture])
        assert spec.params_millions == pytest.approx(sum(p.numel() for p in net.parameters()) / 1e6, abs=0.05)
    assert registry.get("da3-small").params_millions == pytest.approx(34.3)  # the reference README's count
    assert registry.get("da3metric-large").name == "da3-metric-large"  # the official name is an alias


# ----------------------------------------------------------------------------- files


def test_run_writes_relative_depth_confidence_and_the_predicted_camera(tiny_da3, tmp_path):
    _, folder = tiny_da3
    photo = _png(tmp_path / "p.png", rng_image(60, 90))
    out = tmp_path / "out"
    assert main(["run", str(photo), "--model", "da3-small", "--weights", str(folder), "--device", "cpu",
                 "--format", "npy,png16,conf,color", "--outdir", str(out), "--quiet"]) == 0
    meta = json.loads((out / "p.json").read_text())
    depth, conf = np.load(out / "p.npy"), np.load(out / "p_conf.npy")
    assert meta["kind"] == "depth" and meta["units"] == "relative" and "unknown scale" in meta["convention"]
    assert meta["model"]["metric"] is False
    assert depth.shape == conf.shape == (60, 90) and float(conf.min()) > 1.0  # DA3 confidence = 1 + exp(.)
    png = meta["outputs"]["png16"]
    # relative depth is normalised over its robust range (0.1st..99.9th percentile), not in millimetres
    lo, hi = np.percentile(depth, [0.1, 99.9])
    assert png["units"] == "relative" and png["min"] == pytest.approx(float(lo), rel=1e-5)
    assert png["max"] == pytest.approx(float(hi), rel=1e-5)
    from localdepth.depthfile import read_depth_map

    back, kind, _ = read_depth_map(out / "p.png")
    inside = (depth >= lo) & (depth <= hi)
    assert kind == "depth" and np.abs(back - depth)[inside].max() <= png["scale"]
    cam = meta["predicted_intrinsics"]
    assert cam["origin"] == "model" and (cam["width"], cam["height"]) == (90, 60)
    pose = np.array(meta["camera_from_world"])
    assert pose.shape == (4, 4) and np.allclose(pose[3], [0, 0, 0, 1])
    np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-5)  # a rotation


def test_conf_format_needs_a_model_with_confidence(tiny_metric, tmp_path, capsys):
    _, folder = tiny_metric
    photo = _png(tmp_path / "p.png", rng_image(40, 50))
    assert main(["run", str(photo), "--model", "da3-metric-large", "--weights", str(folder), "--format", "conf",
                 "--outdir", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "predicts no confidence" in err[0]


def test_point_clouds_use_the_predicted_camera_and_refuse_unscaled_depth_without_relative(tiny_da3, tmp_path):
    pytest.importorskip("open3d")
    _, folder = tiny_da3
    photo = _png(tmp_path / "p.png", rng_image(48, 64))
    base = ["run", str(photo), "--model", "da3-small", "--weights", str(folder), "--outdir", str(tmp_path / "o"),
            "--pointcloud", str(tmp_path / "c.ply"), "--quiet"]
    assert main(base) == 2  # relative depth: refused without --relative
    assert main([*base, "--relative"]) == 0
    meta = json.loads((tmp_path / "o" / "p.json").read_text())
    assert meta["intrinsics_source"] == "model"  # a PNG has no EXIF; nothing was given
    assert meta["intrinsics"]["fx"] == pytest.approx(meta["predicted_intrinsics"]["fx"])
    assert meta["geometry"]["units"] == "arbitrary"
    assert main(["pointcloud", str(tmp_path / "o" / "p.npy"), "--output", str(tmp_path / "c2.ply"), "--relative"]) == 0
    report = json.loads((tmp_path / "c2.ply.json").read_text())
    assert report["intrinsics_source"] == "model"
    assert report["intrinsics"]["fx"] == pytest.approx(meta["predicted_intrinsics"]["fx"])
    assert main(["pointcloud", str(tmp_path / "o" / "p.npy"), "--output", str(tmp_path / "c3.ply"), "--relative",
                 "--fov", "70"]) == 0
    assert json.loads((tmp_path / "c3.ply.json").read_text())["intrinsics_source"] == "given"


# ----------------------------------------------------------------------------- metric


def test_metric_large_gives_metres_from_the_focal_length(tiny_metric, tmp_path):
    """metres = focal (pixels of the network input) * output / 300, the focal from the one rule."""
    from localdepth.postprocess import to_original_size

    est, _ = tiny_metric
    image = rng_image(60, 80, seed=2)
    x = est.preprocess(image)
    raw = est.run_network(x[None]).depth[0]
    net_h, net_w = x.shape[1:]
    f_default = 80 / (2 * math.tan(math.radians(30)))  # the stated 60 degree default
    focal_net = 0.5 * (f_default * net_w / 80 + f_default * net_h / 60)
    r = est.predict(image)
    np.testing.assert_allclose(r.map, to_original_size(raw * focal_net / 300.0, 60, 80, "depth"), rtol=1e-5)
    note = r.notes["metric_scale"]
    assert note["intrinsics_source"] == "default" and note["focal_px"] == pytest.approx(focal_net, rel=1e-4)
    assert r.metric and r.units == "m"
    est.camera = {"fov": 90.0}
    wide = est.predict(image)
    ratio = math.tan(math.radians(30)) / math.tan(math.radians(45))  # focal at 90 degrees / at 60 degrees
    np.testing.assert_allclose(wide.map, r.map * ratio, rtol=1e-5)
    assert wide.notes["metric_scale"]["intrinsics_source"] == "given"


def test_metric_large_run_uses_exif_and_writes_millimetres(tiny_metric, tmp_path):
    from PIL import Image

    _, folder = tiny_metric
    exif = Image.Exif()
    exif[0xA405] = 26  # FocalLengthIn35mmFilm
    photo = tmp_path / "exif.jpg"
    Image.fromarray(rng_image(60, 80)).save(photo, exif=exif)
    out = tmp_path / "o"
    assert main(["run", str(photo), "--model", "da3-metric-large", "--weights", str(folder), "--format",
                 "npy,png16", "--outdir", str(out), "--quiet"]) == 0
    meta = json.loads((out / "exif.json").read_text())
    assert meta["units"] == "m" and meta["outputs"]["png16"]["scale"] == 0.001
    assert meta["metric_scale"]["intrinsics_source"] == "exif"
    assert "focal_px * output / 300" in meta["metric_scale"]["rule"]


# ----------------------------------------------------------------------------- several views


def test_predict_views_needs_an_any_view_model_and_bounds_the_views(tiny_da3, tiny_metric):
    est, _ = tiny_da3
    views = [rng_image(42, 56, seed=s) for s in range(3)]
    results = est.predict_views(views, max_views=3)
    assert [r.map.shape for r in results] == [(42, 56)] * 3
    assert all(r.confidence is not None and r.camera_from_world.shape == (4, 4) for r in results)
    with pytest.raises(LocalDepthError, match="over the limit of 2"):
        est.predict_views(views, max_views=2)
    with pytest.raises(LocalDepthError, match="one image at a time"):
        tiny_metric[0].predict_views(views)
    # views are predicted together: a view's depth depends on the others, unlike predict()
    alone = est.predict(views[0])
    # measured 1.7e-4 of the map's maximum: the views change each other's depth (float noise: below 1e-6)
    assert np.abs(alone.map - results[0].map).max() > 1e-5 * np.abs(results[0].map).max()


# ----------------------------------------------------------------------------- server, eval, video


def test_server_point_cloud_uses_the_predicted_camera_unless_the_request_gives_one(tiny_da3):
    pytest.importorskip("fastapi")
    import asyncio

    import httpx

    from localdepth.server import create_app
    from server_support import png_bytes, smooth_image

    est, _ = tiny_da3
    app = create_app([est])
    body = png_bytes(smooth_image(42, 56))

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localdepth") as client:
                model = await client.post("/v1/depth?format=ply", content=body)
                given = await client.post("/v1/depth?format=ply&fov=60", content=body)
                return model, given

    model, given = asyncio.run(go())
    assert model.status_code == 200, model.text
    assert model.headers["X-Intrinsics-Source"] == "model" and model.headers["X-Depth-Units"] == "relative"
    expected = est.predict(smooth_image(42, 56)).intrinsics
    assert float(model.headers["X-Intrinsics"].split(",")[0]) == pytest.approx(expected.fx, rel=1e-5)
    assert given.headers["X-Intrinsics-Source"] == "given"


def test_eval_accepts_da3_models_and_needs_an_alignment_for_relative_depth(tiny_da3, rgbd_dir):
    from localdepth.evaluation import EvalSettings, estimator_predictor, evaluate, open_dataset

    est, _ = tiny_da3
    dataset = open_dataset(f"folder:{rgbd_dir / 'livingroom'}", limit=1)
    report = evaluate([estimator_predictor(est)], dataset, EvalSettings(alignment="scale"))
    figures = report["models"]["da3-small"]["mean"]
    assert math.isfinite(figures["abs_rel"]) and 0 <= figures["d1"] <= 1
    with pytest.raises(LocalDepthError, match="needs an alignment"):
        evaluate([estimator_predictor(est)], dataset, EvalSettings(alignment="none"))


def test_video_frames_carry_the_confidence(tiny_da3, tmp_path):
    from localdepth.video import FrameFilesWriter, ImageSequenceReader, process_clip

    est, _ = tiny_da3
    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(2):
        _png(seq / f"{i}.png", rng_image(42, 56, seed=i))
    files = FrameFilesWriter(tmp_path / "frames", ("npz", "png16"))
    summary = process_clip(ImageSequenceReader([str(seq)]), est, [files], progress=False)
    assert summary.frames == 2
    frame = np.load(tmp_path / "frames" / "0.npz")
    assert frame["confidence"].shape == frame["depth"].shape == (42, 56) and frame["confidence"].min() > 1
    assert summary.sidecar["units"] == "relative"
    assert summary.mapping.png16_scale != 0.001  # normalised for the clip, not millimetres


# ----------------------------------------------------------------------------- views that cannot share the grid (issue 20, item 19)


def test_a_view_that_cannot_share_the_scenes_grid_is_left_out_alone(tiny_da3, tmp_path, capsys):
    """A 300 x 1 strip beside two photos: the views go through the network on the smallest grid, so
    the photos were cropped to 56 x 14 of their 504 x 378 (99.6 % NaN, exit 0, no warning)."""
    est, folder = tiny_da3
    photos = [rng_image(42, 56, seed=s) for s in range(2)]
    strip = rng_image(1, 300, seed=9)
    assert est.network_size(1, 300) == (14, 56) and est.network_size(42, 56) == (378, 504)
    with pytest.raises(LocalDepthError, match=r"view 2 \(array\): its 300x1 image gives a 56x14 network input, which "
                                              r"cannot share the scene's 504x378 grid \(the others would keep 0.4% of"):
        est.predict_views([*photos, strip])
    # a 4:3 and a 3:4 photo still share one grid (378 x 378: 75 % of each), as before
    from localdepth import limits
    from localdepth.multiview import shared_grid

    assert limits.SCENE_MIN_SHARED_GRID == 0.5
    assert shared_grid([(378, 504), (504, 378)]) == ([0, 1], (378, 378))
    mixed = est.predict_views([photos[0], rng_image(56, 42, seed=3)])
    assert all(np.isfinite(r.map).mean() == pytest.approx(0.75, abs=0.03) for r in mixed)

    paths = [_png(tmp_path / name, image) for name, image in (("a.png", photos[0]), ("b.png", photos[1]),
                                                             ("strip.png", strip))]
    common = ["--model", "da3-small", "--weights", str(folder), "--device", "cpu"]
    assert main(["scene", *map(str, paths), *common, "-o", str(tmp_path / "with")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("localdepth: error:")]
    assert len(errors) == 1 and "strip.png: its 300x1 image" in errors[0] and "left out of the scene" in errors[0], err
    assert main(["scene", *map(str, paths[:2]), *common, "-o", str(tmp_path / "without")]) == 0
    capsys.readouterr()
    for name in ("a", "b"):  # the rest is computed as if the strip had not been given
        with_strip = np.load(tmp_path / "with" / "depth" / f"{name}.npy")
        assert np.isfinite(with_strip).all()
        np.testing.assert_array_equal(with_strip, np.load(tmp_path / "without" / "depth" / f"{name}.npy"))
    assert len(json.loads((tmp_path / "with" / "cameras.json").read_text())["views"]) == 2
    assert not (tmp_path / "with" / "depth" / "strip.npy").exists()


def test_the_server_leaves_a_view_off_the_grid_out_of_the_scene(tiny_da3):
    pytest.importorskip("fastapi")
    import asyncio
    import base64

    import httpx

    from localdepth.server import create_app
    from server_support import png_bytes

    est, _ = tiny_da3
    app = create_app([est])
    photos = [png_bytes(rng_image(42, 56, seed=s)) for s in range(2)]
    strip = png_bytes(rng_image(1, 300, seed=9))

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localdepth", timeout=120) as client:
                files = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate([*photos, strip])]
                with_strip = await client.post("/v1/scene?format=json", files=files)
                without = await client.post("/v1/scene?format=json", files=files[:2])
                return with_strip, without

    with_strip, without = asyncio.run(go())
    assert with_strip.status_code == 200, with_strip.text
    assert with_strip.headers["X-Scene-Views"] == "2" and with_strip.headers["X-Scene-Refused"] == "3"
    body = with_strip.json()
    assert [r["image"] for r in body["refused"]] == [3] and "cannot share the scene's" in body["refused"][0]["reason"]
    assert "X-Scene-Refused" not in without.headers and without.json()["refused"] == []
    points = [np.frombuffer(base64.b64decode(r.json()["points"]["positions"]), "<f4") for r in (with_strip, without)]
    np.testing.assert_array_equal(points[0], points[1])
