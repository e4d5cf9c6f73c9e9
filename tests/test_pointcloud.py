"""Point clouds and meshes: equal to Open3D's create_from_rgbd_image; relative maps refused; CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import need_open3d

o3d = need_open3d()

from localdepth import geometry, pointcloud  # noqa: E402
from localdepth.errors import LocalDepthError  # noqa: E402
from tolerance import within  # noqa: E402

TUM_K = (525.0, 525.0, 319.5, 239.5)


@pytest.fixture
def tum(rgbd_dir):
    folder = rgbd_dir / "tum"
    depth_raw = cv2.imread(str(folder / "depth.png"), cv2.IMREAD_UNCHANGED)
    color = cv2.cvtColor(cv2.imread(str(folder / "color.png")), cv2.COLOR_BGR2RGB)
    return folder, depth_raw, color


def test_point_cloud_equals_open3d_create_from_rgbd_image(tum):
    _, depth_raw, color = tum
    cam = geometry.Intrinsics(*TUM_K, width=640, height=480)
    rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
        o3d.geometry.Image(np.ascontiguousarray(color)), o3d.geometry.Image(depth_raw), depth_scale=5000.0,
        depth_trunc=1000.0, convert_rgb_to_intensity=False)
    reference = o3d.geometry.PointCloud.create_from_rgbd_image(rgbd, cam.to_open3d())
    ours = pointcloud.make_point_cloud(depth_raw / 5000.0, cam.K, color)
    ref_pts, our_pts = np.asarray(reference.points), np.asarray(ours.points)
    assert our_pts.shape == ref_pts.shape and len(our_pts) == int((depth_raw > 0).sum())
    np.testing.assert_allclose(our_pts, ref_pts, atol=1e-5)  # Open3D computes in float32
    np.testing.assert_allclose(np.asarray(ours.colors), np.asarray(reference.colors), atol=1e-6)


def test_voxel_downsampling_normals_and_mesh_without_rubber_sheets(tum, tmp_path):
    _, depth_raw, color = tum
    K = geometry.Intrinsics(*TUM_K, width=640, height=480).K
    depth = depth_raw / 5000.0
    pcd = pointcloud.make_point_cloud(depth, K, color, voxel_size=0.05, estimate_normals=True)
    assert 1000 < len(pcd.points) < int((depth_raw > 0).sum()) / 10 and pcd.has_normals()
    mesh = pointcloud.make_mesh(depth, K, color)
    v, t = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    assert len(t) > 100_000 and mesh.has_vertex_colors()
    zs = v[t][..., 2]
    assert (zs.max(axis=1) / zs.min(axis=1) <= 1.05 + 1e-9).all()  # no triangle spans a depth jump
    # a step in depth: the mesh splits in two, the point cloud keeps every point
    step = np.where(np.arange(64)[None, :] < 32, 1.0, 3.0) * np.ones((48, 1))
    m = pointcloud.make_mesh(step, K)
    assert len(m.triangles) == 2 * 47 * 62  # every quad but those between columns 31 and 32
    for suffix in (".ply", ".obj", ".glb"):
        pointcloud.write_mesh(tmp_path / f"m{suffix}", m)
        assert (tmp_path / f"m{suffix}").stat().st_size > 1000
    pointcloud.write_point_cloud(tmp_path / "c.pcd", pcd)
    assert len(o3d.io.read_point_cloud(str(tmp_path / "c.pcd")).points) == len(pcd.points)


def test_relative_map_refused_unless_relative():
    disp = np.random.default_rng(0).uniform(0.1, 1.0, (20, 30)).astype(np.float32)
    with pytest.raises(LocalDepthError, match="--relative"):
        pointcloud.metric_depth_or_refuse(disp, "disparity")
    z, units = pointcloud.metric_depth_or_refuse(disp, "disparity", relative=True)
    assert units == "arbitrary" and np.nanmin(z) == pytest.approx(1.0) and np.nanmax(z) == pytest.approx(10.0)
    # larger disparity = nearer
    within(np.diff(z.ravel()[np.argsort(disp.ravel())]).max(), 1e-6, "largest rise of z with disparity")
    assert pointcloud.metric_depth_or_refuse(disp, "depth")[1] == "m"


def test_cli_pointcloud_from_tum_ground_truth(tum, tmp_path):
    folder, depth_raw, _ = tum
    np.save(tmp_path / "tum.npy", (depth_raw / 5000.0).astype(np.float32))
    out, mesh = tmp_path / "tum.ply", tmp_path / "tum_mesh.obj"
    proc = subprocess.run([sys.executable, "-m", "localdepth", "pointcloud", str(tmp_path / "tum.npy"), "--kind", "depth",
                           "--image", str(folder / "color.png"), "--intrinsics", "525,525,319.5,239.5",
                           "--output", str(out), "--mesh", str(mesh)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "metres" in proc.stderr
    cloud = o3d.io.read_point_cloud(str(out))
    assert len(cloud.points) == int((depth_raw > 0).sum()) and cloud.has_colors()
    meta = json.loads((tmp_path / "tum.ply.json").read_text())
    assert meta["intrinsics"]["fx"] == 525 and meta["intrinsics"]["source"] == "intrinsics"
    assert meta["geometry"]["units"] == "m" and meta["geometry"]["mesh"]["triangles"] > 0


def test_cli_pointcloud_refuses_relative_and_aligns_with_points(tmp_path):
    rng = np.random.default_rng(1)
    depth = rng.uniform(1.0, 4.0, (30, 40))
    disp = (1.0 / depth - 0.02) / 2.0
    np.save(tmp_path / "rel.npy", disp.astype(np.float32))
    base = [sys.executable, "-m", "localdepth", "pointcloud", str(tmp_path / "rel.npy"), "--output",
            str(tmp_path / "rel.ply"), "--fov", "60"]
    proc = subprocess.run(base, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--relative" in proc.stderr
    proc = subprocess.run(base + ["--relative"], capture_output=True, text=True)
    assert proc.returncode == 0 and "ARBITRARY UNITS" in proc.stderr
    (tmp_path / "pts.csv").write_text("".join(f"{u},{v},{depth[v, u]}\n" for u, v in [(1, 2), (30, 5), (20, 25), (39, 29)]))
    proc = subprocess.run(base + ["--points", str(tmp_path / "pts.csv")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    pts = np.asarray(o3d.io.read_point_cloud(str(tmp_path / "rel.ply")).points)
    np.testing.assert_allclose(np.sort(pts[:, 2]), np.sort(depth.ravel()), rtol=1e-4)
    meta = json.loads((tmp_path / "rel.ply.json").read_text())
    assert meta["alignment"]["scale"] == pytest.approx(2.0, rel=1e-4) and meta["intrinsics"]["source"] == "fov"


def test_cli_run_with_metric_model_writes_point_cloud_mesh_and_normals(tiny_metric_dir, tiny_da_dir, photo, tmp_path,
                                                                       capsys):
    from PIL import Image

    from localdepth.cli.main import main

    small = tmp_path / "room.jpg"
    Image.open(photo).convert("RGB").resize((160, 120)).save(small)
    cloud, mesh = tmp_path / "room.ply", tmp_path / "room_mesh.glb"
    base = [sys.executable, "-m", "localdepth", "run", str(small), "--outdir", str(tmp_path / "out"), "--device", "cpu",
            "--quiet", "--input-size", "70"]
    proc = subprocess.run(base + ["--model", "depth-anything-v2-metric-indoor-small", "--weights", str(tiny_metric_dir),
                                  "--pointcloud", str(cloud), "--mesh", str(mesh), "--fov", "60",
                                  "--format", "npy,normals"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "out" / "room.json").read_text())
    depth = np.load(tmp_path / "out" / "room.npy")
    pts = np.asarray(o3d.io.read_point_cloud(str(cloud)).points)
    assert len(pts) == depth.size  # the metric map, every pixel
    np.testing.assert_allclose(np.sort(pts[:, 2]), np.sort(depth.ravel().astype(np.float64)), rtol=1e-5)
    assert meta["geometry"]["units"] == "m" and meta["intrinsics"]["fov_deg"] == pytest.approx(60)
    assert mesh.stat().st_size > 0
    normals = cv2.imread(str(tmp_path / "out" / "room_normals.png"))
    assert normals.shape[:2] == depth.shape and meta["outputs"]["normals"]["encoding"].startswith("rgb = (n + 1)")
    # a relative model is refused without --relative, in one line (in-process: no second interpreter start)
    code = main(base[3:] + ["--weights", str(tiny_da_dir), "--pointcloud", str(cloud)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "--relative" in err[-1]


def test_degenerate_maps_fail_in_one_line(tmp_path):
    """A 1x1 map is a map: one point (it used to be squeezed to shape ()); but it has no
    triangle for a mesh, and an all-NaN map has no point: each says so in one line instead of
    "Open3D could not write"."""
    np.save(tmp_path / "one.npy", np.full((1, 1), 2.0, np.float32))
    np.save(tmp_path / "nan.npy", np.full((6, 8), np.nan, np.float32))

    def run(name, *out):
        return subprocess.run([sys.executable, "-m", "localdepth", "pointcloud", str(tmp_path / name), "--kind",
                               "depth", "--intrinsics", "1,1,0,0", *map(str, out)], capture_output=True, text=True)

    proc = run("one.npy", "-o", tmp_path / "one.ply")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.asarray(o3d.io.read_point_cloud(str(tmp_path / "one.ply")).points), [[0, 0, 2]])
    for name, out, expected in (("one.npy", ("--mesh", tmp_path / "m.ply"), "no triangle to write"),
                                ("nan.npy", ("-o", tmp_path / "nan.ply"), "no point to write")):
        proc = run(name, *out)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Open3D" not in lines[0], proc.stderr
        assert not out[1].exists()


def test_relative_disparity_cloud_follows_the_documented_pseudo_depth(tmp_path):
    """docs/geometry.md: a relative disparity d becomes z = 1 / (0.1 + 0.9 t), t = clip((d - p1) / (p99 - p1),
    0, 1) with p1, p99 its 1st and 99th percentiles; the sidecar says the same. The map has a sky (d near
    0), a few negative values and a NaN, where 1/d would put points at infinity or behind the camera."""
    rng = np.random.default_rng(3)
    disp = rng.uniform(0.2, 2.0, (30, 40))
    disp[:4] = 1e-4  # sky
    disp[5, :6] = -0.05  # a negative shift's doing
    disp[10, 10] = np.nan
    np.save(tmp_path / "rel.npy", disp.astype(np.float32))
    fx, cx, cy = 40.0, 19.5, 14.5
    proc = subprocess.run([sys.executable, "-m", "localdepth", "pointcloud", str(tmp_path / "rel.npy"), "--relative",
                           "--intrinsics", f"{fx},{fx},{cx},{cy}", "-o", str(tmp_path / "rel.ply")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    d = disp.astype(np.float32).astype(np.float64)
    p1, p99 = np.percentile(d[np.isfinite(d)], [1, 99])
    expected = 1.0 / (0.1 + 0.9 * np.clip((d - p1) / (p99 - p1), 0.0, 1.0))
    pts = np.asarray(o3d.io.read_point_cloud(str(tmp_path / "rel.ply")).points)
    assert len(pts) == np.isfinite(d).sum()
    u = np.rint(fx * pts[:, 0] / pts[:, 2] + cx).astype(int)
    v = np.rint(fx * pts[:, 1] / pts[:, 2] + cy).astype(int)
    np.testing.assert_allclose(pts[:, 2], expected[v, u], rtol=1e-5)
    assert pts[:, 2].min() == pytest.approx(1.0) and pts[:, 2].max() == pytest.approx(10.0)
    report = json.loads((tmp_path / "rel.ply.json").read_text())["geometry"]
    assert report["units"] == "arbitrary" and "0.1 + 0.9 t" in report["pseudo_depth"]["formula"]
    assert (report["pseudo_depth"]["p1"], report["pseudo_depth"]["p99"]) == (pytest.approx(p1), pytest.approx(p99))
    assert "median" not in json.dumps(report)


def test_aligned_map_keeps_its_photo_from_any_folder(tiny_da_dir, photo, tmp_path, monkeypatch, capsys):
    """`run` -> `align` -> `pointcloud`, each from a different folder: the aligned map's sidecar keeps the photo
    as its image (`derived_from` names the map), stored relative to the sidecar, so the cloud is coloured by the
    photo's pixels wherever the command runs; a photo that is gone costs one warning line, not silence."""
    from PIL import Image

    from localdepth.cli.main import main as cli

    (tmp_path / "shoot").mkdir()
    rgb = np.asarray(Image.open(photo).convert("RGB").resize((40, 30)))
    Image.fromarray(rgb).save(tmp_path / "shoot" / "room.png")
    monkeypatch.chdir(tmp_path / "shoot")  # the photo is named relatively: "room.png"
    assert cli(["run", "room.png", "--model", "depth-anything-v2-small", "--weights", str(tiny_da_dir), "--device",
                "cpu", "-f", "npy", "--outdir", "out", "-q", "--input-size", "28"]) == 0
    meta = json.loads((tmp_path / "shoot" / "out" / "room.json").read_text())
    assert meta["image"] == "../room.png"
    disp = np.load(tmp_path / "shoot" / "out" / "room.npy")
    (tmp_path / "pts.csv").write_text("".join(f"{u},{v},{1.0 / disp[v, u]}\n" for u, v in [(1, 2), (30, 5), (20, 25), (39, 29)]))
    monkeypatch.chdir(tmp_path)
    assert cli(["align", "shoot/out/room.npy", "--points", "pts.csv", "--scale-only", "-o", "metric/room_metric.npy"]) == 0
    aligned = json.loads((tmp_path / "metric" / "room_metric.json").read_text())
    assert aligned["image"] == "../shoot/room.png" and aligned["derived_from"] == "../shoot/out/room.npy"
    assert aligned["source"] == "room.png"  # the photo, as the run named it; not the map

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert cli(["pointcloud", "../metric/room_metric.npy", "-o", "cloud.ply", "--fov", "60"]) == 0
    assert "warning" not in capsys.readouterr().err
    cloud = o3d.io.read_point_cloud(str(tmp_path / "elsewhere" / "cloud.ply"))
    assert cloud.has_colors() and len(cloud.points) == rgb.shape[0] * rgb.shape[1]
    colors = np.sort(np.rint(np.asarray(cloud.colors) * 255).astype(int), axis=0)
    np.testing.assert_array_equal(colors, np.sort(rgb.reshape(-1, 3).astype(int), axis=0))  # the photo's own pixels

    (tmp_path / "shoot" / "room.png").unlink()
    assert cli(["pointcloud", "../metric/room_metric.npy", "-o", "bare.ply", "--fov", "60"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    warnings = [line for line in err if "warning" in line]
    assert len(warnings) == 1 and "room.png" in warnings[0] and "--image" in warnings[0], err
    assert not o3d.io.read_point_cloud(str(tmp_path / "elsewhere" / "bare.ply")).has_colors()


def test_every_written_format_reads_back_in_open3d_and_trimesh(tmp_path):
    """Each mesh and point-cloud format we write opens in Open3D (and in trimesh, where trimesh reads the
    format) with the same vertices and triangles. Open3D's own .glb writer made files that neither Open3D
    nor Blender's Assimp could open ("Buffer view ... out of range"). STL stores three corners per triangle
    by design, so its vertices are compared after merging duplicates."""
    trimesh = pytest.importorskip("trimesh")
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 1.02, (30, 40))
    depth[10:14, 10:14] = 2.0  # a step: some triangles are dropped, vertices stay
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    K = np.array([[40.0, 0, 19.5], [0, 40.0, 14.5], [0, 0, 1]])
    mesh = pointcloud.make_mesh(depth, K, image)
    vertices, n_triangles = np.asarray(mesh.vertices), len(mesh.triangles)
    assert n_triangles < 2 * 29 * 39

    from scipy.spatial import cKDTree

    def same_vertices(found, what):  # the same set of points, in any order (readers reorder), float32 precision
        found = np.asarray(found, np.float64)
        if len(found) != len(vertices):  # STL: merge the corners it repeats
            found = np.unique(found.astype(np.float32), axis=0).astype(np.float64)
        assert found.shape == (len(vertices), 3), (what, found.shape, len(vertices))
        distance, nearest = cKDTree(vertices).query(found)
        within(distance.max(), 1e-5, "vertex distance", at=what)
        assert len(np.unique(nearest)) == len(vertices), what

    for suffix in pointcloud.MESH_SUFFIXES:
        path = tmp_path / f"mesh{suffix}"
        pointcloud.write_mesh(path, pointcloud.make_mesh(depth, K, image))
        back = o3d.io.read_triangle_mesh(str(path))
        assert len(back.triangles) == n_triangles, suffix
        same_vertices(back.vertices, f"open3d {suffix}")
        if suffix in (".ply", ".glb", ".gltf"):  # formats with vertex colours
            assert back.has_vertex_colors(), suffix
        theirs = trimesh.load(str(path), force="mesh", process=False)
        assert len(theirs.faces) == n_triangles, suffix
        same_vertices(theirs.vertices, f"trimesh {suffix}")

    cloud = pointcloud.make_point_cloud(depth, K, image)
    for suffix in pointcloud.POINTCLOUD_SUFFIXES:
        path = tmp_path / f"cloud{suffix}"
        pointcloud.write_point_cloud(path, cloud)
        back = o3d.io.read_point_cloud(str(path))
        np.testing.assert_allclose(np.asarray(back.points), np.asarray(cloud.points), atol=1e-5, err_msg=suffix)
        if suffix in (".ply", ".xyz"):  # what trimesh reads of these
            assert len(trimesh.load(str(path)).vertices) == len(cloud.points), suffix
