"""Distrusting inputs in one place: outputs stay under their root for every input form, the
network input is bounded whatever the image, numeric options are checked once, names in
messages stay on one line, and every limit's default is asserted (a change is a visible decision).

Each limit is tested so that the test fails when the limit is *removed*, not only when it is
lowered: the escapes below really reach a victim file when containment is gone, and the network
budget test measures the size the network is asked for (a spy refuses absurd sizes, so a removed
budget fails the test instead of allocating gigabytes).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from localdepth import limits, registry
from localdepth.cli.main import main
from localdepth.safety import (NUMERIC_OPTIONS, InvalidValueError, Range, UnsafePathError, check_options, contained,
                               one_line, quoted, relative_output, under_root)


def write_png(path: Path, h: int = 24, w: int = 32, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), rgb)
    return path


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (links not followed) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def run_cli(capsys, *args) -> tuple[int, str]:
    code = main(list(map(str, args)))
    return code, capsys.readouterr().err


@pytest.fixture
def tiny(tiny_da_dir):
    return ["--weights", str(tiny_da_dir), "--device", "cpu", "-q"]


# ----------------------------------------------------------------------------- the containment rules

def test_relative_outputs_refuse_absolute_and_dotdot_paths():
    assert str(relative_output("a/b/c.png")) == "a/b/c.png"
    assert str(relative_output("a/./b.png")) == "a/b.png"
    for bad in ("/etc/passwd", "../x.png", "a/../../x.png", "a/..", "", ".", "C:\\x.png", "x\0.png"):
        with pytest.raises(UnsafePathError, match="refused"):
            relative_output(bad)


def test_containment_follows_symbolic_links(tmp_path):
    root, victim = tmp_path / "out", tmp_path / "victim"
    (root / "real").mkdir(parents=True)
    victim.mkdir()
    (root / "linked").symlink_to(victim, target_is_directory=True)
    (root / "file.json").symlink_to(victim / "important.json")
    assert under_root(root, "real/a.npy") == root / "real" / "a.npy"
    assert under_root(root, "new/folder/a.npy") == root / "new" / "folder" / "a.npy"  # not there yet: fine
    for rel in ("linked/a.npy", "file.json"):
        with pytest.raises(UnsafePathError, match="symbolic link"):
            under_root(root, rel)
    # a link that stays inside the root is fine
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    assert contained(root, root / "alias" / "a.npy") == root / "alias" / "a.npy"


# ----------------------------------------------------------------------------- every input form, end to end

def test_run_glob_with_dotdot_cannot_write_outside_outdir(tmp_path, monkeypatch, capsys, tiny):
    """`localdepth run "*/../../bad/one.png" --outdir out` wrote bad/one.* beside the input."""
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    write_png(tmp_path / "bad" / "one.png")
    write_png(work / "good.png", seed=1)
    victim = work / "bad" / "one.json"  # where the escaped sidecar would land: out/sub/../../bad/one.json
    victim.parent.mkdir()
    victim.write_text("victim")
    monkeypatch.chdir(work)
    before = tree(tmp_path)
    code, err = run_cli(capsys, "run", "*/../../bad/one.png", "good.png", "--outdir", "out", *tiny)
    assert code == 1, err
    assert "refused: it holds '..'" in err and "1 ok, 1 failed" in err
    assert victim.read_text() == "victim"
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("work/out/")} == before  # nothing else written
    assert (work / "out" / "good.npy").is_file()


def test_txt_list_dotdot_line_stays_under_outdir(tmp_path, capsys, tiny):
    write_png(tmp_path / "photos" / "a.png")
    write_png(tmp_path / "lists" / "b.png", seed=1)
    (tmp_path / "lists" / "l.txt").write_text("../photos/a.png\nb.png\n")
    victim = tmp_path / "out" / ".." / "photos" / "a.json"  # where a '..' kept in the output path would go
    out = tmp_path / "out"
    before = tree(tmp_path)
    code, err = run_cli(capsys, "run", tmp_path / "lists" / "l.txt", "--outdir", out, *tiny)
    assert code == 0, err
    assert (out / "a.npy").is_file() and (out / "b.npy").is_file()  # the '..' line keeps only its name
    assert not victim.exists()
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("out/")} == before


def test_symlinks_in_the_output_tree_are_not_followed_out(tmp_path, capsys, tiny):
    images, out, victim = tmp_path / "in", tmp_path / "out", tmp_path / "victim"
    write_png(images / "sub" / "photo.png")
    write_png(images / "top.png", seed=1)
    victim.mkdir()
    (victim / "photo.json").write_text("victim sidecar")
    (victim / "photo.npy").write_text("victim map")
    out.mkdir()
    (out / "sub").symlink_to(victim, target_is_directory=True)
    before = tree(victim)
    code, err = run_cli(capsys, "run", images, "--outdir", out, *tiny)
    assert code == 1, err
    assert "symbolic link" in err and "1 ok, 1 failed" in err
    assert tree(victim) == before
    assert (out / "top.npy").is_file()


def test_batch_rows_that_escape_are_refused_one_by_one(tmp_path, tiny_da_dir):
    """The decode stage of `localdepth batch` (no Ray needed): a manifest's `rel` column used as
    given, absolute or with '..', is refused per row; a '..' path without `rel` gets a safe name."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from localdepth.distributed import BatchConfig, OutputTarget, collect
    from localdepth.distributed.pipeline import decode_stage

    write_png(tmp_path / "data" / "a.png")
    write_png(tmp_path / "data" / "b.png", seed=1)
    write_png(tmp_path / "elsewhere" / "c.png", seed=2)
    write_png(tmp_path / "elsewhere" / "d.png", seed=3)
    (tmp_path / "m").mkdir()
    manifest = tmp_path / "m" / "list.csv"
    manifest.write_text("path,rel\n"
                        f"{tmp_path / 'data' / 'a.png'},../../victim/important.png\n"
                        f"{tmp_path / 'data' / 'b.png'},{tmp_path / 'victim' / 'b.png'}\n"
                        "../elsewhere/c.png,\n"
                        f"{tmp_path / 'elsewhere' / 'd.png'},fine/d.png\n")
    sources = collect([str(manifest)])
    assert [s.rel for s in sources][2:] == ["c.png", "fine/d.png"]
    out = tmp_path / "out"
    cfg = BatchConfig(model="depth-anything-v2-small", weights=str(tiny_da_dir), formats=("npy",))
    rows = pd.DataFrame({"index": range(len(sources)), "input": [s.input for s in sources],
                         "rel": [s.rel for s in sources], "error": [s.error or "" for s in sources]})
    decoded = decode_stage(rows, cfg, OutputTarget(str(out), cfg.options))
    assert list(decoded["status"]) == ["failed", "failed", "pending", "pending"]
    assert "holds '..'" in decoded["error"][0] and "is absolute" in decoded["error"][1]
    for planned in decoded["outputs"][2:]:
        assert all(Path(p).is_relative_to(out) for p in json.loads(planned).values())


def test_video_frame_files_stay_under_their_folder(tmp_path):
    pytest.importorskip("av")
    from localdepth.video import FrameFilesWriter

    (tmp_path / "frames").mkdir()
    (tmp_path / "victim.npz").write_text("victim")
    (tmp_path / "frames" / "frame_000001.npz").symlink_to(tmp_path / "victim.npz")
    writer = FrameFilesWriter(tmp_path / "frames", ("npz",))
    assert writer.paths("frame_000000")["npz"] == tmp_path / "frames" / "frame_000000.npz"
    with pytest.raises(UnsafePathError):
        writer.paths("frame_000001")
    with pytest.raises(UnsafePathError):
        writer.paths("../frame")


# ----------------------------------------------------------------------------- the network input budget

def test_limit_defaults_are_stated():
    """A changed default must be a visible decision: these are the documented values."""
    assert limits.MAX_IMAGE_PIXELS == 8192 * 8192
    assert limits.MAX_IMAGE_BYTES == 512 * 1024 * 1024
    assert limits.NETWORK_MAX_PIXELS == 2_000_000
    assert limits.NETWORK_MAX_ASPECT == 4.0
    for spec in registry.MODELS.values():
        pre = spec.preprocessing
        assert (pre.max_pixels, pre.max_aspect) == (limits.NETWORK_MAX_PIXELS, limits.NETWORK_MAX_ASPECT), spec.name
    from localdepth.cli.main import build_parser

    parser = build_parser()
    for command in (["run", "x.jpg"], ["batch", "x.jpg", "--outdir", "o"]):
        assert parser.parse_args(command).max_pixels == limits.MAX_IMAGE_PIXELS


def test_network_input_is_bounded_for_any_image_shape():
    from localdepth.preprocess import network_size, plan_network_input

    da = registry.get("depth-anything-v2-small").preprocessing
    midas = registry.get("midas-dpt-large").preprocessing
    # within the budget, the reference resize is untouched (lower bound 518, multiples of 14)
    assert network_size(480, 640, da) == (518, 686)
    assert network_size(1080, 1920, da) == (518, 924)
    assert network_size(480, 640, midas) == (384, 512)
    # a 1 x 5000 strip: the reference asks for 518 x 2,590,000 (16 GB of float32 input)
    plan = plan_network_input(1, 5000, da)
    assert plan.reference == (518, 2_590_000)
    assert plan.size == (518, 2072) and plan.limited_by == ("aspect ratio over 4:1",)
    for h, w in ((1, 5000), (5000, 1), (50, 2000), (3, 100_000), (100_000, 100_000)):
        for pre, size in ((da, None), (da, 4000), (midas, 8000)):
            nh, nw = network_size(h, w, pre, size)
            assert nh * nw <= pre.max_pixels and max(nh, nw) <= pre.max_aspect * min(nh, nw), (h, w, size)
            assert nh % pre.multiple_of == 0 and nw % pre.multiple_of == 0
    assert plan_network_input(480, 640, da, 4000).limited_by == ("over 2000000 pixels",)
    note = plan.note(da)
    assert note["reference"] == [518, 2_590_000] and note["max_pixels"] == 2_000_000


@pytest.fixture
def network_requests(monkeypatch):
    """Every network input size localdepth plans, recorded. A size over 50 Mpx is refused here,
    before anything allocates it, so that a removed budget fails the test instead of the machine."""
    import localdepth.preprocess as pp

    asked: list[tuple[int, int]] = []
    real = pp.network_size

    def spy(*args, **kwargs):
        h, w = real(*args, **kwargs)
        asked.append((h, w))
        assert h * w <= 50_000_000, f"the network was asked for {h}x{w} pixels"
        return h, w

    monkeypatch.setattr(pp, "network_size", spy)
    return asked


@pytest.fixture
def network_inputs(monkeypatch):
    """The shape of every batch handed to a network (what it is asked to allocate for)."""
    from localdepth.estimator import DepthEstimator

    shapes: list[tuple[int, ...]] = []
    real = DepthEstimator.run_network

    def spy(self, batch, **conditioning):
        shapes.append(tuple(batch.shape))
        return real(self, batch, **conditioning)

    monkeypatch.setattr(DepthEstimator, "run_network", spy)
    return shapes


def test_a_1x5000_image_through_run_is_bounded(tmp_path, capsys, tiny, network_requests, network_inputs):
    strip = write_png(tmp_path / "strip.png", 1, 5000)
    out = tmp_path / "out"
    code, err = run_cli(capsys, "run", strip, "--outdir", out, "--format", "npy,png16", *tiny)
    assert code == 0, err
    assert network_requests and max(h * w for h, w in network_requests) <= limits.NETWORK_MAX_PIXELS
    # what the network got: one 3 x 518 x 2072 float32 input (12.9 MB) instead of 518 x 2,590,000 (16 GB)
    assert network_inputs == [(1, 3, 518, 2072)]
    assert np.load(out / "strip.npy").shape == (1, 5000)
    meta = json.loads((out / "strip.json").read_text())
    assert meta["input_size"] == [518, 2072]
    assert meta["network_input"]["reference"] == [518, 2_590_000]
    assert meta["network_input"]["limited_by"] == ["aspect ratio over 4:1"]


def test_cli_refuses_images_over_max_pixels_before_decoding(tmp_path, capsys, tiny):
    from server_support import png_header_only

    big = tmp_path / "big.png"
    big.write_bytes(png_header_only(12000, 12000))  # 144 Mpx claimed in a few hundred bytes
    small = write_png(tmp_path / "small.png")
    code, err = run_cli(capsys, "run", big, small, "--outdir", tmp_path / "out", *tiny)
    assert code == 1 and "12000x12000 is over the limit of 67108864 pixels" in err, err
    code, err = run_cli(capsys, "run", small, "--outdir", tmp_path / "out2", "--max-pixels", "100", *tiny)
    assert code == 1 and "32x24 is over the limit of 100 pixels" in err, err


# ----------------------------------------------------------------------------- numeric options

@pytest.mark.parametrize("args, words", [
    (["pointcloud", "m.npy", "-o", "c.ply", "--intrinsics", "nan,1,2,3"], "four finite numbers"),
    (["pointcloud", "m.npy", "-o", "c.ply", "--intrinsics", "inf,inf,0,0"], "four finite numbers"),
    (["pointcloud", "m.npy", "-o", "c.ply", "--voxel-size", "nan"], "--voxel-size must be a finite number > 0"),
    (["pointcloud", "m.npy", "-o", "c.ply", "--voxel-size", "-1"], "--voxel-size must be a finite number > 0"),
    (["pointcloud", "m.npy", "-o", "c.ply", "--fov", "inf"], "--fov must be a finite number >= 0.01 and < 180"),
    (["align", "m.npy", "-o", "x.npy", "--reference", "r.png", "--reference-scale", "0"], "--reference-scale must be"),
    (["run", "x.jpg", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["run", "x.jpg", "--max-pixels", "0"], "--max-pixels must be an integer >= 1"),
    (["batch", "x.jpg", "--outdir", "o", "--workers", "0"], "--workers must be"),
    (["serve", "--port", "70000"], "--port must be an integer >= 1 and <= 65535"),
    (["serve", "--timeout", "nan"], "--timeout must be"),
    (["eval", "--model", "gt", "--dataset", "folder:x", "--max-depth=-inf"], "--max-depth must be"),
    (["video", "x.mp4", "--fps", "nan"], "--fps must be"),
    (["photo3d", "x.jpg", "--seconds", "0"], "--seconds must be a finite number > 0"),
    (["photo3d", "x.jpg", "--size", "8"], "--size must be an integer >= 16"),
    (["photo3d", "x.jpg", "--amplitude", "inf"], "--amplitude must be"),
    (["run", "x.jpg", "--stereo-budget", "40"], "--stereo-budget must be"),
    (["run", "x.jpg", "--controlnet-size", "0"], "--controlnet-size must be"),
    (["bench", "--size", "518,9000"], "--size must be an integer >= 16 and <= 8192 (got 9000)"),
])
def test_numeric_options_are_checked_once_before_any_command(args, words, capsys):
    """The inputs named here do not exist: the command itself would fail differently (or start a
    server); the option check comes first and ends the run with exit 2 and one line."""
    code, err = run_cli(capsys, *args)
    assert code == 2 and words in err, err
    assert err.count("\n") == 1, err


def test_outdir_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    photo = write_png(tmp_path / "photo.png")
    code, err = run_cli(capsys, "run", photo, "--outdir", photo)
    assert code == 2 and "is a file, not a folder" in err
    assert photo.read_bytes()[:4] == b"\x89PNG"


def test_ranges_refuse_non_finite_values_and_describe_themselves():
    assert Range(0, 180, lo_open=True, hi_open=True).describe() == "a finite number > 0 and < 180"
    for value in (float("nan"), float("inf"), -float("inf"), "x", None, True):
        assert not Range().contains(value)
    assert Range(1, None, integer=True).contains(3) and not Range(1, None, integer=True).contains(2.5)
    with pytest.raises(InvalidValueError, match=r"fx must be a finite number >= 1 \(got 0\.0\)"):
        check_options({"fx": 0.0}, label=str)
    check_options({"fx": None, "unknown": float("nan")})  # absent and unknown names are left alone
    check_options({"size": [518, 1036]})  # a list option (bench --size 518,1036), item by item
    with pytest.raises(InvalidValueError, match=r"size must be an integer >= 16 and <= 8192 \(got nan\)"):
        check_options({"size": [518, float("nan")]}, label=str)
    assert {"fov", "voxel_size", "reference_scale", "batch_size", "port", "max_points"} <= set(NUMERIC_OPTIONS)


# ----------------------------------------------------------------------------- names in messages

def test_names_in_messages_stay_on_one_line(tmp_path, capsys, tiny):
    assert quoted("photo.jpg") == "photo.jpg" and quoted("my photo.jpg") == "my photo.jpg"
    assert quoted("a\nb.jpg") == "'a\\nb.jpg'" and quoted(" lead.jpg") == "' lead.jpg'"
    assert quoted("it's.jpg") == "'it\\'s.jpg'"
    assert one_line("first\nsecond\x1b[31m") == "first\\nsecond\\x1b[31m"
    bad = tmp_path / "evil\nlocaldepth: done: 99 ok.jpg"
    bad.write_text("not an image")
    code, err = run_cli(capsys, "run", bad, "--outdir", tmp_path / "out", *tiny)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("localdepth: error:")]
    assert len(errors) == 1 and "evil\\nlocaldepth: done: 99 ok.jpg'" in errors[0], err
    assert not any(line.startswith("localdepth: done") for line in err.splitlines())


# ----------------------------------------------------------------------------- cameras (issue 20, item 21)

#: each made every point of a point cloud infinite, and was accepted (exit 0, 200)
UNPHYSICAL = {"fx=1e-300": "1e-300,1e-300,15.5,11.5", "cx=1e308": "500,500,1e308,11.5",
              "fx=1e300": "1e300,1e300,15.5,11.5", "fy=0.5": "500,0.5,15.5,11.5"}


def test_unphysical_cameras_are_refused_by_the_one_check():
    from localdepth import geometry
    from localdepth.safety import check_camera

    assert (limits.CAMERA_MIN_FOCAL_PX, limits.CAMERA_MIN_FOV_DEG, limits.CAMERA_MAX_PRINCIPAL_OFFSET) == (1.0, 0.01, 4.0)
    for name, text in UNPHYSICAL.items():
        with pytest.raises(InvalidValueError) as refused:
            geometry.resolve_intrinsics(32, 24, intrinsics=text)
        assert "\n" not in str(refused.value), name
        fx, fy, cx, cy = map(float, text.split(","))
        with pytest.raises(ValueError):  # a sidecar's or a dataset's camera
            geometry.camera_from_dict({"fx": fx, "fy": fy, "cx": cx, "cy": cy, "width": 32, "height": 24}, 32, 24)
    for fov in (1e-320, 0.009, 180.0, float("nan")):
        with pytest.raises(ValueError):
            geometry.resolve_intrinsics(32, 24, fov=fov)
    # the edges of the ranges are still cameras: a focal of one pixel, 4 image sizes off centre, 0.01 degrees
    assert geometry.resolve_intrinsics(32, 24, intrinsics="1,1,143.5,107.5").fx == 1.0
    long_focal = geometry.resolve_intrinsics(32, 24, fov=0.01).fx
    check_camera(long_focal, long_focal, 15.5, 11.5, 32, 24)
    with pytest.raises(InvalidValueError, match="principal point"):
        check_camera(500, 500, 15.5 + 4 * 32 + 1, 11.5, 32, 24)


def test_an_unphysical_exif_focal_is_as_if_the_photo_stated_none(tmp_path):
    from PIL import Image

    from localdepth import geometry

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x920A] = 1e-9  # FocalLength, mm
    exif.get_ifd(0x8769)[0xA20E] = 1.0  # FocalPlaneXResolution, pixels per inch
    Image.new("RGB", (32, 24)).save(tmp_path / "p.jpg", exif=exif)
    assert geometry.from_exif(tmp_path / "p.jpg", 32, 24) is None
    assert geometry.resolve_intrinsics(32, 24, image_path=tmp_path / "p.jpg").origin == "default"


def test_pointcloud_refuses_unphysical_cameras_from_options_sidecars_and_cameras_json(tmp_path, capsys):
    depth = np.full((24, 32), 2.0, np.float32)
    np.save(tmp_path / "m.npy", depth)
    (tmp_path / "m.json").write_text(json.dumps({"kind": "depth", "units": "m"}))
    out = ["-o", tmp_path / "c.ply"]
    cases = [["--intrinsics", text] for text in UNPHYSICAL.values()] + [["--fov", "1e-320"]]
    for extra in cases:
        code, err = run_cli(capsys, "pointcloud", tmp_path / "m.npy", *out, *extra)
        assert code == 2 and err.count("\n") == 1 and "localdepth: error:" in err, (extra, err)
    # a sidecar's predicted camera
    np.save(tmp_path / "s.npy", depth)
    (tmp_path / "s.json").write_text(json.dumps({"kind": "depth", "units": "m", "predicted_intrinsics": {
        "fx": 1e-300, "fy": 1e-300, "cx": 15.5, "cy": 11.5, "width": 32, "height": 24}}))
    code, err = run_cli(capsys, "pointcloud", tmp_path / "s.npy", *out)
    assert code == 2 and "model predicted" in err and "at least 1 pixel" in err and "--fov" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "c.ply").exists()
    # ... checked only where it is used: a camera the user gives wins over it (issue 19, item 4)
    code, err = run_cli(capsys, "pointcloud", tmp_path / "s.npy", *out, "--fov", "60")
    assert code == 0 and (tmp_path / "c.ply").exists(), err
    (tmp_path / "c.ply").unlink()
    # a scene's cameras.json
    (tmp_path / "cameras.json").write_text(json.dumps({"views": [{
        "image": "m.jpg", "width": 32, "height": 24, "intrinsics": [[500, 0, 1e308], [0, 500, 11.5], [0, 0, 1]],
        "camera_from_world": np.eye(4).tolist()}]}))
    code, err = run_cli(capsys, "pointcloud", tmp_path / "m.npy", *out, "--cameras", tmp_path / "cameras.json",
                        "--view", "0")
    assert code == 2 and "principal point" in err and err.count("\n") == 1, err
    assert not (tmp_path / "c.ply").exists()


def test_the_servers_ply_refuses_unphysical_cameras(tiny_estimator):
    pytest.importorskip("fastapi")
    import asyncio

    from localdepth.server import create_app
    from server_support import png_bytes, smooth_image
    from test_server_limits import serving

    data = png_bytes(smooth_image(24, 32))

    async def scenario():
        async with serving(create_app([tiny_estimator])) as client:
            return {q: await client.post(f"/v1/depth?format=ply&{q}", content=data)
                    for q in ("fx=1e-300", "cx=1e308", "fov=1e-320", "fx=1e300", "fx=500&cy=-1e6", "fx=1")}

    answers = asyncio.run(scenario())
    assert answers.pop("fx=1").status_code == 200  # one pixel: the edge of the range
    for query, r in answers.items():
        assert r.status_code == 400 and "\n" not in r.json()["detail"], (query, r.text)
