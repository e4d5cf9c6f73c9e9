"""Prompt depth (Prompt Depth Anything): --prompt-depth/--prompt-scale, the Python API and the server's
second multipart field, with a synthetic phone-LiDAR map; refused in one line where it does not belong."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import localdepth
from localdepth.errors import PromptDepthError

from conftest import rng_image
from test_transformers_families import synthetic_lidar


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A small photo and its 24 x 32 LiDAR map in millimetres (16-bit PNG), plus the same in metres (.npy)."""
    folder = tmp_path_factory.mktemp("scene")
    Image.fromarray(rng_image(90, 120, seed=5)).save(folder / "scan.png")
    lidar = synthetic_lidar()
    Image.fromarray(lidar).save(folder / "lidar.png")
    np.save(folder / "lidar_m.npy", lidar.astype(np.float32) / 1000)
    return folder


@pytest.fixture(scope="module")
def pda_estimator(tiny_prompt_da_dir):
    return localdepth.load("prompt-depth-anything-vits", weights=tiny_prompt_da_dir, device="cpu")


def test_run_with_a_synthetic_lidar_prompt(scene, tiny_prompt_da_dir, pda_estimator, tmp_path):
    from localdepth.cli.main import main as cli

    assert cli(["run", str(scene / "scan.png"), "--model", "prompt-depth-anything-vits", "--weights",
                str(tiny_prompt_da_dir), "--device", "cpu", "--prompt-depth", str(scene / "lidar.png"),
                "--prompt-scale", "0.001", "-f", "npy", "--outdir", str(tmp_path), "-q"]) == 0
    meta = json.loads((tmp_path / "scan.json").read_text())
    assert meta["kind"] == "depth" and meta["units"] == "m" and (meta["height"], meta["width"]) == (90, 120)
    assert meta["prompt_depth"]["shape"] == [24, 32] and meta["prompt_depth"]["units"] == "metres"
    lidar = synthetic_lidar()
    assert meta["prompt_depth"]["range_m"] == pytest.approx([lidar.min() / 1000, lidar.max() / 1000], rel=1e-6)
    written = np.load(tmp_path / "scan.npy")
    # the same map as the Python API with the prompt in metres, from an array and from a .npy file
    expected = pda_estimator.predict(scene / "scan.png", prompt_depth=np.load(scene / "lidar_m.npy")).map
    np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6)
    from localdepth.depthfile import read_prompt_depth

    np.testing.assert_allclose(read_prompt_depth(scene / "lidar_m.npy"), read_prompt_depth(scene / "lidar.png", 0.001),
                               rtol=1e-6)


def test_missing_or_misplaced_prompt_depth_is_one_line_with_exit_2(scene, tiny_prompt_da_dir, tiny_da_dir, tmp_path,
                                                                   capsys):
    """Refused before any weights load: in-process, so each case costs no model loading."""
    from localdepth.cli.main import main as cli

    pda = ["--model", "prompt-depth-anything-vits", "--weights", str(tiny_prompt_da_dir), "--device", "cpu"]
    scan, out = str(scene / "scan.png"), ["--outdir", str(tmp_path)]
    cases = {
        "needs a prompt depth map": [scan, *pda],
        "takes no prompt depth": [scan, "--model", "depth-anything-v2-small", "--weights", str(tiny_da_dir),
                                  "--prompt-depth", str(scene / "lidar.png"), "--prompt-scale", "0.001"],
        "is an integer image: give --prompt-scale": [scan, *pda, "--prompt-depth", str(scene / "lidar.png")],
        "no such file or folder": [scan, *pda, "--prompt-depth", str(scene / "nope.png")],
        "one map for 2 images": [scan, str(scene / "lidar.png"), *pda, "--prompt-depth", str(scene / "lidar_m.npy")],
        "--prompt-scale must be a finite number > 0": [scan, *pda, "--prompt-depth", str(scene / "lidar.png"),
                                                       "--prompt-scale", "nan"],
        "--prompt-scale needs --prompt-depth": [scan, "--model", "depth-anything-v2-small", "--weights",
                                                str(tiny_da_dir), "--prompt-scale", "0.001"],
    }
    for expected, args in cases.items():
        code = cli(["run", *args, *out])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2, (expected, err)
        assert len(lines) == 1 and lines[0].startswith("localdepth: error:") and expected in lines[0], err
    assert not list(tmp_path.glob("*.npy"))
    # and the console script says the same
    proc = subprocess.run([sys.executable, "-m", "localdepth", "run", scan, *pda, *out], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "needs a prompt depth map" in proc.stderr


def test_a_folder_of_prompts_gives_each_image_its_own(scene, tiny_prompt_da_dir, tmp_path, capsys):
    from localdepth.cli.main import main as cli

    images, prompts = tmp_path / "images", tmp_path / "prompts"
    (images / "sub").mkdir(parents=True)
    (prompts / "sub").mkdir(parents=True)
    Image.open(scene / "scan.png").save(images / "a.png")
    Image.open(scene / "scan.png").save(images / "sub" / "b.jpg")
    np.save(prompts / "a.npy", np.load(scene / "lidar_m.npy"))
    np.save(prompts / "sub" / "b.npy", np.load(scene / "lidar_m.npy") * 2)
    Image.open(scene / "scan.png").save(images / "c.png")  # no prompt for this one: it fails alone, in one line
    code = cli(["run", str(images), "--model", "prompt-depth-anything-vits", "--weights", str(tiny_prompt_da_dir),
                "--device", "cpu", "--prompt-depth", str(prompts), "-f", "npy", "--outdir", str(tmp_path / "out"), "-q"])
    assert code == 1
    a = json.loads((tmp_path / "out" / "a.json").read_text())["prompt_depth"]
    b = json.loads((tmp_path / "out" / "sub" / "b.json").read_text())["prompt_depth"]
    assert a["file"].endswith("a.npy") and b["file"].endswith("b.npy")
    assert b["range_m"] == pytest.approx([2 * v for v in a["range_m"]], rel=1e-6)
    assert not (tmp_path / "out" / "c.npy").exists()
    assert "c.png: no prompt depth" in capsys.readouterr().err


def test_python_api_refuses_missing_and_misplaced_prompts(pda_estimator, tiny_estimator, scene):
    with pytest.raises(PromptDepthError, match="needs a prompt depth map"):
        pda_estimator.predict(rng_image())
    with pytest.raises(PromptDepthError, match="takes no prompt depth"):
        tiny_estimator.predict(rng_image(), prompt_depth=np.ones((4, 4), np.float32))
    with pytest.raises(PromptDepthError, match="one prompt depth map per image"):
        pda_estimator.predict([rng_image(), rng_image()], prompt_depth=[np.ones((4, 4), np.float32)])


def test_server_takes_the_prompt_as_a_second_multipart_field(pda_estimator, scene):
    pytest.importorskip("fastapi")
    from localdepth.server import ServerSettings, create_app
    from test_server_api import run, serving

    image = (scene / "scan.png").read_bytes()
    lidar = (scene / "lidar.png").read_bytes()
    expected = pda_estimator.predict(scene / "scan.png", prompt_depth=np.load(scene / "lidar_m.npy")).map

    async def scenario():
        async with serving(create_app([pda_estimator], ServerSettings(max_batch=2))) as client:
            url = "/v1/depth?format=npy"
            ok = await client.post(url + "&prompt_scale=0.001", files={"image": image, "prompt_depth": lidar})
            missing = await client.post(url, files={"image": image})
            unscaled = await client.post(url, files={"image": image, "prompt_depth": lidar})
            garbage = await client.post(url + "&prompt_scale=0.001", files={"image": image, "prompt_depth": b"nope"})
            return ok, missing, unscaled, garbage

    ok, missing, unscaled, garbage = run(scenario())
    assert ok.status_code == 200, ok.text
    assert ok.headers["X-Depth-Units"] == "m"
    np.testing.assert_allclose(np.load(io.BytesIO(ok.content)), expected, rtol=1e-5, atol=1e-6)
    assert missing.status_code == 400 and "prompt_depth" in missing.json()["detail"]
    assert unscaled.status_code == 400 and "prompt_scale" in unscaled.json()["detail"]
    assert garbage.status_code == 400 and "not a depth map" in garbage.json()["detail"]


def test_server_refuses_a_prompt_for_a_model_without_one(tiny_estimator, scene):
    pytest.importorskip("fastapi")
    from localdepth.server import create_app
    from test_server_api import run, serving

    async def scenario():
        async with serving(create_app([tiny_estimator])) as client:
            return await client.post("/v1/depth?format=npy", files={"image": (scene / "scan.png").read_bytes(),
                                                                     "prompt_depth": (scene / "lidar.png").read_bytes()})

    r = run(scenario())
    assert r.status_code == 400 and "takes no prompt depth" in r.json()["detail"]


# ----------------------------------------------------------------------------- prompts with nothing to take metres from

def _degenerate_prompts() -> dict[str, np.ndarray]:
    """Issue 20, item 20: each of these ran as "ok" (a 1x1 prompt gave an all-NaN map; the others a
    map whose maximum was 1e-6 m)."""
    lidar = synthetic_lidar().astype(np.float32) / 1000
    few = np.zeros_like(lidar)
    few[:3, :5] = lidar[:3, :5]  # 15 valid samples, one fewer than the minimum
    return {"1x1": np.full((1, 1), 2.0, np.float32), "all NaN": np.full_like(lidar, np.nan),
            "negative": -lidar, "inf": np.full_like(lidar, np.inf), "zero": np.zeros_like(lidar), "15 samples": few}


def test_a_prompt_without_enough_valid_depth_is_refused_in_the_api(pda_estimator):
    from localdepth import limits

    assert (limits.PROMPT_MIN_VALID_VALUES, limits.PROMPT_MIN_SIDE) == (16, 2)
    for name, prompt in _degenerate_prompts().items():
        with pytest.raises(PromptDepthError, match="needs at least") as refused:
            pda_estimator.predict(rng_image(), prompt_depth=prompt)
        assert "\n" not in str(refused.value), name
        with pytest.raises(PromptDepthError, match="needs at least"):  # the decoded-image path too
            pda_estimator.predict_decoded([rng_image()], prompt_depths=[prompt])
    edge = np.zeros((24, 32), np.float32)
    edge[:4, :4] = 1.5  # exactly the minimum, all equal: a flat wall, still a prompt
    assert np.isfinite(pda_estimator.predict(rng_image(), prompt_depth=edge).map).all()


def test_a_prompt_without_enough_valid_depth_is_refused_by_the_cli_and_the_server(pda_estimator, tiny_prompt_da_dir,
                                                                                scene, tmp_path, capsys):
    from localdepth.cli.main import main as cli

    scan = str(scene / "scan.png")
    for name, prompt in _degenerate_prompts().items():
        np.save(tmp_path / "prompt.npy", prompt)
        code = cli(["run", scan, "--model", "prompt-depth-anything-vits", "--weights", str(tiny_prompt_da_dir),
                    "--device", "cpu", "--prompt-depth", str(tmp_path / "prompt.npy"), "--outdir",
                    str(tmp_path / "out"), "-q"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "needs at least" in lines[0], (name, lines)
    assert not (tmp_path / "out").exists()

    pytest.importorskip("fastapi")
    from localdepth.server import create_app
    from test_server_api import run, serving

    def npy(array):
        buf = io.BytesIO()
        np.save(buf, array)
        return buf.getvalue()

    async def scenario():
        async with serving(create_app([pda_estimator])) as client:
            return {name: await client.post("/v1/depth?format=npy", files={"image": (scene / "scan.png").read_bytes(),
                                                                            "prompt_depth": npy(prompt)})
                    for name, prompt in _degenerate_prompts().items()}

    for name, r in run(scenario()).items():
        assert r.status_code == 400 and "needs at least" in r.json()["detail"], (name, r.text)
