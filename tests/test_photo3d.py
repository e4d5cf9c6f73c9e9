"""What users run: `localdepth photo3d`, `run --format stereo,anaglyph,controlnet,normals`, `video --format
stereo,anaglyph`, the server's POST /v1/photo3d and /v1/stereo with their budgets, and the README's
pictures script. Tiny random models (the pictures' content is checked by tests/test_render.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from localdepth.cli.main import main
from tolerance import at_least

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--input-size", "70"]


def smooth_photo(path: Path, h: int = 72, w: int = 96, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rgb = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def video_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert err and err[-1].startswith("localdepth: error: "), err
    return err[-1]


@pytest.fixture
def photo(tmp_path) -> Path:
    return smooth_photo(tmp_path / "photo.png")


# ----------------------------------------------------------------------------- localdepth photo3d

def test_photo3d_writes_every_frame_and_its_sidecar_last(tiny_da_dir, photo, tmp_path, capsys):
    out = tmp_path / "photo_3d.mp4"
    code = main(["photo3d", str(photo), "--weights", str(tiny_da_dir), *TINY, "--seconds", "1", "--fps", "6",
                 "--size", "48", "-o", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    frames = video_frames(out)
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)  # 96x72 -> short side 48
    moved = np.abs(frames[0].astype(int) - frames[3].astype(int)).mean()
    at_least(moved, 0.5, "frame 0 vs 3 (levels): the camera moved")  # measured 5.1
    meta = json.loads((tmp_path / "photo_3d.json").read_text())
    assert meta["path"] == "circle" and meta["frames"] == 6 and meta["output"]["frames"] == 6
    assert meta["source"]["model"] == "depth-anything-v2-small" and meta["depth_units"] == "relative"
    assert "pseudo-depth" in meta["depth_note"] and meta["intrinsics_source"] == "default"
    assert (tmp_path / "photo_3d.json").stat().st_mtime_ns >= out.stat().st_mtime_ns  # the sidecar last
    assert "wrote" in capsys.readouterr().err


def test_photo3d_from_a_depth_file_and_its_sidecar_as_gif_and_webp(tiny_da_dir, photo, tmp_path, capsys):
    from PIL import Image

    assert main(["run", str(photo), "--weights", str(tiny_da_dir), *TINY, "-f", "npy,png16", "--outdir",
                 str(tmp_path / "depth"), "-q"]) == 0
    for depth, target, path in ((tmp_path / "depth" / "photo.npy", tmp_path / "a.gif", "swing"),
                                (tmp_path / "depth" / "photo.png", tmp_path / "b.webp", "dolly-zoom")):
        code = main(["photo3d", str(photo), "--depth", str(depth), "--path", path, "--seconds", "0.5", "--fps", "8",
                     "--size", "40", "-o", str(target), "-q"])
        assert code == 0, capsys.readouterr().err
        with Image.open(target) as im:
            assert im.n_frames == 4 and im.size == (54, 40)
        meta = json.loads(target.with_suffix(".json").read_text())
        assert meta["source"]["depth_file"] == str(depth) and meta["source"]["kind"] == "disparity"
        assert meta["source"]["model"] == "depth-anything-v2-small"  # from the map's sidecar
        assert meta["path"] == path


@pytest.mark.parametrize("args, says", [
    (["-o", "x.avi"], "write a 3D photo as .mp4"),
    (["--amplitude", "2"], "--amplitude must be"),
    (["--path", "zoom-in", "--amplitude", "0.95"], "too close to the nearest depth"),
    (["--fps", "nan"], "--fps must be"),
])
def test_photo3d_refuses_bad_options_in_one_line(tiny_da_dir, photo, tmp_path, capsys, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    code = main(["photo3d", str(photo), "--weights", str(tiny_da_dir), *TINY, "--size", "32", "--seconds", "0.2",
                 "-q", *args])
    assert code == 2 and says in one_error_line(capsys)
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob("*.avi"))


# ----------------------------------------------------------------------------- run and video formats

def test_run_writes_stereo_anaglyph_controlnet_and_normals(tiny_da_dir, photo, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(photo), "--weights", str(tiny_da_dir), *TINY, "-f", "npy,stereo,anaglyph,controlnet,normals",
                 "--stereo-budget", "4", "--controlnet-size", "64", "--outdir", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    read = lambda name: cv2.cvtColor(cv2.imread(str(out / name)), cv2.COLOR_BGR2RGB)  # noqa: E731
    assert read("photo_stereo.png").shape == (72, 192, 3) and read("photo_anaglyph.png").shape == (72, 96, 3)
    controlnet = read("photo_controlnet.png")
    assert controlnet.shape == (64, 64 * round(96 * 64 / 72 / 64), 3) == (64, 64, 3)  # ControlNet's rounding
    assert read("photo_normals.png").shape == (64, 64, 3)
    meta = json.loads((out / "photo.json").read_text())
    stereo = meta["outputs"]["stereo"]
    assert stereo["budget_percent"] == 4 and stereo["layout"].startswith("left | right")
    assert stereo["disparity_near_px"] == pytest.approx(0.04 * 96) and stereo["baseline"] > 0
    assert meta["outputs"]["anaglyph"]["method"].startswith("Dubois")
    assert meta["outputs"]["controlnet"]["encoding"].startswith("inverse depth")
    assert meta["outputs"]["normals"]["encoding"].startswith("rgb = (n + 1) / 2 * 255 with n in the frame x left")
    # near = white: at the image's own size, the brightest pixel is where the disparity is largest
    assert main(["run", str(photo), "--weights", str(tiny_da_dir), *TINY, "-f", "npy,controlnet", "--outdir",
                 str(tmp_path / "full"), "-q"]) == 0
    disparity = np.load(tmp_path / "full" / "photo.npy")
    grey = cv2.imread(str(tmp_path / "full" / "photo_controlnet.png"), cv2.IMREAD_GRAYSCALE)
    assert grey.shape == disparity.shape and grey.min() == 0 and grey.max() == 255
    assert grey.flat[np.argmax(disparity)] == 255 and grey.flat[np.argmin(disparity)] == 0
    assert main(["run", str(photo), "--weights", str(tiny_da_dir), "-f", "controlnet", "--controlnet-size", "100",
                 "--outdir", str(out), "-q"]) == 2
    assert "multiple of 64" in one_error_line(capsys)


def test_video_writes_stereo_and_anaglyph_videos(tiny_da_dir, tmp_path, capsys):
    from localdepth.render import write_frames

    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (96, 64), interpolation=cv2.INTER_CUBIC)
    clip = tmp_path / "clip.mp4"
    write_frames(clip, (np.roll(base, k, axis=1) for k in range(6)), fps=12.0)
    code = main(["video", str(clip), "--format", "stereo,anaglyph", "--outdir", str(tmp_path / "views"),
                 "--weights", str(tiny_da_dir), *TINY, "-q", "--stereo-budget", "5"])
    assert code == 0, capsys.readouterr().err
    stereo = video_frames(tmp_path / "views" / "clip_stereo.mp4")
    glasses = video_frames(tmp_path / "views" / "clip_anaglyph.mp4")
    assert len(stereo) == len(glasses) == 6
    assert stereo[0].shape == (64, 192, 3) and glasses[0].shape == (64, 96, 3)
    meta = json.loads((tmp_path / "views" / "clip_stereo.json").read_text())
    modes = {w.get("mode") for w in meta["outputs"]}
    assert {"stereo", "anaglyph"} <= modes


# ----------------------------------------------------------------------------- the server

@contextlib.asynccontextmanager
async def serving(app):
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localdepth") as client:
            yield client


def png_bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_photo3d_endpoint_caps_every_budget_and_answers_a_video(tiny_estimator, photo, tmp_path):
    pytest.importorskip("fastapi")
    from localdepth.server import ServerSettings, create_app

    settings = ServerSettings(max_video_seconds=1.0, max_video_fps=8.0, max_video_frames=5, max_render_size=32)

    async def go():
        async with serving(create_app([tiny_estimator], settings)) as client:
            files = {"image": ("photo.png", png_bytes(photo), "image/png")}
            big = await client.post("/v1/photo3d", params={"seconds": 9, "fps": 30, "size": 500}, files=files)
            small = await client.post("/v1/photo3d", params={"seconds": 0.5, "fps": 4, "size": 24, "format": "gif",
                                                             "path": "zoom-in"}, files=files)
            bad = await client.post("/v1/photo3d", params={"amplitude": 2}, files=files)
            models = await client.get("/v1/models")
            return big, small, bad, models

    big, small, bad, models = asyncio.run(go())
    assert big.status_code == 200, big.text
    assert big.headers["content-type"] == "video/mp4"
    assert big.headers["X-Video-Capped"] == "seconds,fps,size,frames"
    assert big.headers["X-Video-Frames"] == "5" and big.headers["X-Video-Fps"] == "8"
    assert big.headers["X-Video-Size"] == "42,32"  # 96x72 at a short side of 32 (capped from 500)
    (tmp_path / "big.mp4").write_bytes(big.content)
    frames = video_frames(tmp_path / "big.mp4")
    assert len(frames) == 5 and frames[0].shape == (32, 42, 3)
    assert small.status_code == 200 and small.headers["content-type"] == "image/gif"
    assert small.headers["X-Video-Capped"] == "none" and small.headers["X-Video-Frames"] == "2"
    assert bad.status_code == 400 and "amplitude must be" in bad.json()["detail"]
    limits = models.json()["limits"]
    assert (limits["max_video_seconds"], limits["max_video_fps"], limits["max_video_frames"],
            limits["max_render_size"]) == (1.0, 8.0, 5, 32)


def test_stereo_endpoint_answers_an_anaglyph_or_a_side_by_side_pair(tiny_estimator, photo):
    pytest.importorskip("fastapi")
    from localdepth.server import create_app

    async def go():
        async with serving(create_app([tiny_estimator])) as client:
            files = {"image": ("photo.png", png_bytes(photo), "image/png")}
            glasses = await client.post("/v1/stereo", files=files)
            pair = await client.post("/v1/stereo", params={"format": "sbs", "budget": 5}, files=files)
            bad = await client.post("/v1/stereo", params={"budget": 50}, files=files)
            return glasses, pair, bad

    glasses, pair, bad = asyncio.run(go())
    assert glasses.headers["X-Stereo-Size"] == "96,72"  # the image's own size: under the cap
    decode = lambda r: cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)  # noqa: E731
    assert glasses.status_code == 200 and decode(glasses).shape == (72, 96, 3)
    assert pair.status_code == 200 and decode(pair).shape == (72, 192, 3)
    assert pair.headers["X-Stereo-Budget"] == "5" and pair.headers["X-Stereo-Baseline"].endswith("relative")
    assert bad.status_code == 400 and "budget must be" in bad.json()["detail"]


def test_stereo_pictures_are_capped_at_the_render_size(tiny_estimator, photo):
    pytest.importorskip("fastapi")
    from localdepth.server import ServerSettings, create_app

    async def go():
        async with serving(create_app([tiny_estimator], ServerSettings(max_render_size=36))) as client:
            files = {"image": ("photo.png", png_bytes(photo), "image/png")}
            return await client.post("/v1/stereo", params={"format": "sbs", "size": 4000}, files=files)

    pair = asyncio.run(go())
    assert pair.status_code == 200 and pair.headers["X-Stereo-Size"] == "48,36"
    assert cv2.imdecode(np.frombuffer(pair.content, np.uint8), cv2.IMREAD_COLOR).shape == (36, 96, 3)


def test_server_video_budget_defaults_are_stated():
    from localdepth import limits
    from localdepth.server import ServerSettings

    s = ServerSettings()
    assert (s.max_video_seconds, s.max_video_fps, s.max_video_frames, s.max_render_size) == (10.0, 30.0, 240, 720)
    assert (limits.SERVER_MAX_VIDEO_SECONDS, limits.SERVER_MAX_VIDEO_FRAMES) == (10.0, 240)
    with pytest.raises(ValueError, match="max_video_frames"):
        ServerSettings(max_video_frames=0)


# ----------------------------------------------------------------------------- the README's pictures

def test_the_readme_pictures_are_made_from_a_shared_photo(shared_images, pydnet_file, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(sys, "argv", ["make_pictures.py", "--outdir", str(tmp_path), "--size", "96",
                                      "--photo", str(shared_images / "demo01.jpg"), "--weights", str(pydnet_file)])
    with pytest.raises(SystemExit) as exit_code:
        runpy.run_path(str(ROOT / "docs" / "make_pictures.py"), run_name="__main__")
    assert exit_code.value.code == 0
    with Image.open(tmp_path / "photo3d.gif") as gif:
        assert gif.n_frames == 36 and min(gif.size) == 96
    anaglyph = cv2.imread(str(tmp_path / "anaglyph.png"))
    assert min(anaglyph.shape[:2]) == 96
    assert (ROOT / ".gitignore").read_text().count("/docs/pictures/") == 1  # made, never committed
