"""`localdepth scene` with the real Depth Anything 3 network against the official ``inference()``.

The official da3-small (full-size architecture, seeded random weights, see ``da3_reference``) is
saved with its own ``save_pretrained`` and loaded by localdepth from that folder. Both see the
same three living-room photos (one scene, one size) in fp32; the scene's files must agree with the
official prediction: depth (Pearson, on the image grid), intrinsics (in pixels of each image) and
poses. Measured: Pearson 1 - 1e-11, intrinsics 2e-6 relative, poses 2e-6 (tolerances: the issue's).
Skipped where the network or the official code is absent.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open3d", reason="Open3D (and its libusb dependency) is not installed")
pytest.importorskip("localdepth.networks.da3", reason="this checkout has no Depth Anything 3 network")
da3_reference = pytest.importorskip("da3_reference", reason="the Depth Anything 3 oracle helpers are absent")

from tolerance import correlated  # noqa: E402

RES = 280  # processing resolution (504 by default): 20 x 15 patches per view


@pytest.mark.slow  # about 30 s on 2 shared cores: the official and localdepth's full-size Small, 3 views each
def test_scene_files_match_official_inference_on_the_same_photos(rgbd_dir, tmp_path, monkeypatch):
    from localdepth import geometry
    from localdepth.cli.main import main

    official = da3_reference.official_model("da3-small", seed=0)
    folder = da3_reference.save_official(official, tmp_path / "da3-small")
    photos = [str(rgbd_dir / "livingroom" / "color" / f"{i:05d}.jpg") for i in (0, 2, 4)]
    out = tmp_path / "scene"
    assert main(["scene", *photos, "--model", "da3-small", "--weights", str(folder), "--device", "cpu",
                 "--dtype", "fp32", "--input-size", str(RES), "--output", str(out)]) == 0
    monkeypatch.setattr(torch, "autocast", da3_reference.no_autocast())  # the official inference in fp32 too
    ref = official.inference(photos, process_res=RES)

    views = json.loads((out / "cameras.json").read_text())["views"]
    grid_h, grid_w = ref.depth.shape[1:]
    assert [v["image"] for v in views] == photos
    for j, view in enumerate(views):
        stem = f"{2 * j:05d}"
        depth, conf = np.load(out / "depth" / f"{stem}.npy"), np.load(out / "conf" / f"{stem}.npy")
        h, w = depth.shape
        assert (h, w) == conf.shape == (view["height"], view["width"]) == (480, 640)
        for ours, theirs in ((depth, ref.depth[j]), (conf, ref.conf[j])):
            expected = cv2.resize(theirs, (w, h), interpolation=cv2.INTER_LINEAR)
            correlated(ours, expected, 0.9999, at=stem)
        # the official principal point is W/2 in continuous coordinates; localdepth's pixel centres
        # are at integers: half a pixel less on the network grid, then the grid scaled to the image
        K_grid = ref.intrinsics[j] - np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
        expected_K = geometry.from_matrix(K_grid, grid_w, grid_h).scaled(w, h).K
        np.testing.assert_allclose(view["intrinsics"], expected_K, rtol=1e-3)
        np.testing.assert_allclose(np.asarray(view["camera_from_world"])[:3], ref.extrinsics[j], atol=1e-3)
    report = json.loads((out / "scene.json").read_text())
    assert report["units"] == "relative" and report["fusion"]["points"] > 1000
    cameras = [ln for ln in (out / "colmap" / "cameras.txt").read_text().splitlines() if not ln.startswith("#")]
    assert len(cameras) == 3
