"""Closed-form geometry: planes back-project to the right points; project/unproject; intrinsics; normals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from localdepth import geometry as g

K = np.array([[500.0, 0.0, 159.5], [0.0, 480.0, 119.5], [0.0, 0.0, 1.0]])
H, W = 240, 320


def test_fronto_parallel_plane_back_projects_to_the_plane():
    depth = np.full((H, W), 2.5)
    pts = g.unproject(depth, K)
    assert pts.shape == (H, W, 3)
    np.testing.assert_allclose(pts[..., 2], 2.5)
    # pixel centre (u, v) = (159.5 + 100, 119.5) lies 100 px right of the principal point: x = 100 * z / fx
    v, u = 119, 259
    np.testing.assert_allclose(pts[v, u], [(u - 159.5) * 2.5 / 500, (v - 119.5) * 2.5 / 480, 2.5])
    # the top-left pixel centre is at integer coordinates (0, 0)
    np.testing.assert_allclose(pts[0, 0], [-159.5 * 2.5 / 500, -119.5 * 2.5 / 480, 2.5])


def test_tilted_plane_back_projects_onto_the_plane():
    # plane n . X = d with n = (0.3, -0.2, 1) / |.|, d = 3: depth along each ray is d / (n . ray)
    n = np.array([0.3, -0.2, 1.0])
    n /= np.linalg.norm(n)
    u, v = g.pixel_grid(H, W)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
    depth = 3.0 / (rays @ n)
    pts = g.unproject(depth, K)
    np.testing.assert_allclose(pts @ n, 3.0, rtol=1e-12)
    np.testing.assert_allclose(pts, rays * depth[..., None], rtol=1e-12)
    # normals from depth of a plane: the plane's normal, facing the camera, away from the borders
    normals = g.normals_from_depth(depth, K)
    np.testing.assert_allclose(normals[5:-5, 5:-5], np.broadcast_to(-n, (H - 10, W - 10, 3)), atol=1e-9)


def test_project_unproject_round_trip_and_ray_length():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 10.0, (H, W))
    pts = g.unproject(depth, K)
    uv, z = g.project(pts, K)
    u, v = g.pixel_grid(H, W)
    np.testing.assert_allclose(uv[..., 0], u, atol=1e-9)
    np.testing.assert_allclose(uv[..., 1], v, atol=1e-9)
    np.testing.assert_allclose(z, depth)
    ray = g.z_to_ray(depth, K)
    np.testing.assert_allclose(np.linalg.norm(g.unproject(ray, K, ray=True), axis=-1), ray)
    np.testing.assert_allclose(g.ray_to_z(ray, K), depth)
    assert (ray >= depth).all()


def test_invalid_depth_gives_nan_points():
    depth = np.array([[0.0, np.nan], [np.inf, 1.0]])
    pts = g.unproject(depth, np.eye(3))
    assert np.isnan(pts[0, 0]).all() and np.isnan(pts[0, 1]).all() and np.isnan(pts[1, 0]).all()
    assert np.isfinite(pts[1, 1]).all()


def test_intrinsics_from_options_fov_and_default():
    cam = g.parse_intrinsics("525,525,319.5,239.5", 640, 480)
    np.testing.assert_array_equal(cam.K, [[525, 0, 319.5], [0, 525, 239.5], [0, 0, 1]])
    with pytest.raises(ValueError, match="fx,fy,cx,cy"):
        g.parse_intrinsics("525,525", 640, 480)
    fov = g.from_fov(90.0, 640, 480)
    assert fov.fx == pytest.approx(320.0) and (fov.cx, fov.cy) == (319.5, 239.5)
    assert fov.fov_deg == pytest.approx(90.0)
    d = g.resolve_intrinsics(640, 480)
    assert d.source.startswith("default") and d.fov_deg == pytest.approx(g.DEFAULT_FOV_DEG)
    assert g.resolve_intrinsics(640, 480, intrinsics="1,2,3,4", fov=30).fx == 1.0  # explicit wins
    half = cam.scaled(320, 240)
    assert (half.fx, half.cx, half.cy) == (262.5, 159.5, 119.5)


def test_intrinsics_from_exif_35mm_equivalent(tmp_path):
    from PIL import Image

    img = Image.new("RGB", (400, 300))
    exif = img.getexif()
    exif.get_ifd(0x8769)[0xA405] = 28  # FocalLengthIn35mmFilm
    path = tmp_path / "exif.jpg"
    img.save(path, exif=exif)
    cam = g.resolve_intrinsics(400, 300, image_path=path)
    assert cam.source.startswith("exif")
    assert cam.fx == pytest.approx(28 / math.hypot(36, 24) * 500)  # diagonal of 400x300 is 500 px
    plain = tmp_path / "plain.png"
    Image.new("RGB", (40, 30)).save(plain)
    assert g.resolve_intrinsics(40, 30, image_path=plain).source.startswith("default")


def test_normals_encoding_round_trip_and_discontinuities():
    n = np.array([[[0.0, 0.0, -1.0], [0.6, 0.0, -0.8], [0.0, 0.0, 0.0]]])
    rgb = g.encode_normals(n)
    assert tuple(rgb[0, 2]) == (0, 0, 0) and tuple(rgb[0, 0]) == (128, 128, 0)
    np.testing.assert_allclose(g.decode_normals(rgb)[0, :2], n[0, :2], atol=0.01)
    depth = np.ones((4, 6))
    depth[:, 3:] = 2.0
    edge = g.depth_discontinuities(depth, 0.05)
    assert edge[:, 2:4].all() and not edge[:, [0, 1, 4, 5]].any()


def test_normals_output_format_through_the_writer(tmp_path):
    import cv2

    from localdepth.postprocess import DepthResult
    from localdepth.writers import WriteOptions, output_paths, parse_formats, write_result

    assert parse_formats("npy,normals") == ("npy", "normals")
    wall = DepthResult(map=np.full((30, 40), 2.0, np.float32), kind="depth", model="test", input_size=(30, 40))
    opts = WriteOptions(formats=("normals",), extra_sidecar={"intrinsics": {"fx": 40, "fy": 40, "cx": 19.5, "cy": 14.5}})
    paths = output_paths(tmp_path, Path("wall.png"), opts.formats)
    meta = write_result(wall, paths, opts, {"model": "test"})
    rgb = cv2.cvtColor(cv2.imread(str(paths["normals"])), cv2.COLOR_BGR2RGB)
    # a wall facing the camera: n = (0, 0, -1) in the camera frame, (0, 0, 1) in ControlNet's (x left, y up,
    # z towards the camera): "blue is front"
    assert (rgb == (128, 128, 255)).all()
    assert meta["outputs"]["normals"]["intrinsics"]["fx"] == 40


def test_normals_format_follows_controlnets_convention_blue_front_red_left_green_up():
    """ControlNet's normal models (NormalBAE, DSINE): "blue is front, red is left, green is top"."""
    f, h, w = 40.0, 30, 40
    cx, cy = (w - 1) / 2, (h - 1) / 2
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    floor = np.where(v > cy + 2, f * 1.5 / np.maximum(v - cy, 1e-9), 50.0)  # y = +1.5: 1.5 below the camera
    right_wall = np.where(u > cx + 2, f * 2.0 / np.maximum(u - cx, 1e-9), 50.0)  # x = +2: to the right
    camera = {"fx": f, "fy": f, "cx": cx, "cy": cy}
    rgb_floor, info = g.normals_picture(floor, "depth", camera)
    rgb_wall, _ = g.normals_picture(right_wall, "depth", camera)
    floor_px = rgb_floor[h - 6: h - 2, 5:-5].reshape(-1, 3).astype(int)
    wall_px = rgb_wall[5:-5, w - 8: w - 3].reshape(-1, 3).astype(int)
    assert np.abs(floor_px - (128, 255, 128)).max() <= 1  # the floor faces up: green
    assert np.abs(wall_px - (255, 128, 128)).max() <= 1  # the right wall faces left: red
    assert info["encoding"].startswith("rgb = (n + 1) / 2 * 255 with n in the frame x left, y up, z towards")
