"""Missing optional extras are said before any work, in one line with the install command (issue 19, item 11).

Each case makes one module unimportable (``sys.modules[name] = None``, which makes ``import name`` raise
ImportError) and runs the command with weights that do not exist: had the command loaded the model (or
run it) before checking, it would fail on the weights instead, and its output folder would exist.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from localdepth.cli.main import main as cli

ABSENT = "/nonexistent/weights"


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def blocked(monkeypatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def one_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("localdepth: error: "), err
    assert "weights" not in err[0], err  # the model was never looked for
    return err[0]


def test_run_pointcloud_without_open3d(monkeypatch, capsys, photo, tmp_path):
    blocked(monkeypatch, "open3d")
    line = one_error(capsys, cli(["run", str(photo), "--weights", ABSENT, "--outdir", str(tmp_path / "out"),
                                  "--model", "depth-anything-v2-metric-indoor-small", "--pointcloud",
                                  str(tmp_path / "x.ply")]))
    assert "open3d" in line and "pip install 'localdepth[geometry]'" in line
    assert not (tmp_path / "out").exists()
    # the same run without geometry needs no Open3D: it gets as far as the (absent) weights
    code = cli(["run", str(photo), "--weights", ABSENT, "--outdir", str(tmp_path / "out2"), "-q"])
    assert code == 2 and ABSENT in capsys.readouterr().err


def test_mesh_glb_without_trimesh(monkeypatch, capsys, photo, tmp_path):
    blocked(monkeypatch, "trimesh")
    line = one_error(capsys, cli(["run", str(photo), "--weights", ABSENT, "--outdir", str(tmp_path / "out"),
                                  "--relative", "--mesh", str(tmp_path / "m.glb")]))
    assert "trimesh" in line and "localdepth[geometry]" in line
    np.save(tmp_path / "d.npy", np.ones((4, 4), np.float32))
    line = one_error(capsys, cli(["pointcloud", str(tmp_path / "d.npy"), "--kind", "depth",
                                  "--mesh", str(tmp_path / "m.glb")]))
    assert "trimesh" in line and not (tmp_path / "m.glb").exists()


def test_pointcloud_without_open3d(monkeypatch, capsys, tmp_path):
    blocked(monkeypatch, "open3d")
    np.save(tmp_path / "d.npy", np.ones((4, 4), np.float32))
    line = one_error(capsys, cli(["pointcloud", str(tmp_path / "d.npy"), "--kind", "depth", "-o",
                                  str(tmp_path / "x.ply")]))
    assert "open3d" in line and "localdepth[geometry]" in line


def test_scene_without_open3d_leaves_no_folder(monkeypatch, capsys, photo, tmp_path):
    """It used to run the network, write depth/ and conf/, and fail at points.ply."""
    blocked(monkeypatch, "open3d")
    line = one_error(capsys, cli(["scene", str(photo), str(photo), "--weights", ABSENT, "--output",
                                  str(tmp_path / "scene")]))
    assert "open3d" in line and "localdepth[geometry]" in line
    assert not (tmp_path / "scene").exists()


def test_video_without_pyav_or_openexr(monkeypatch, capsys, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not read")
    blocked(monkeypatch, "av")
    line = one_error(capsys, cli(["video", str(clip), "--weights", ABSENT, "-o", str(tmp_path / "d.mp4")]))
    assert "av is missing" in line and "localdepth[video]" in line
    monkeypatch.delitem(sys.modules, "av")
    pytest.importorskip("av")
    blocked(monkeypatch, "OpenEXR")
    line = one_error(capsys, cli(["video", str(clip), "--weights", ABSENT, "--format", "npz,exr",
                                  "--outdir", str(tmp_path / "frames")]))
    assert "OpenEXR" in line and "localdepth[video]" in line and not (tmp_path / "frames").exists()


def test_scene_of_a_video_without_pyav(monkeypatch, capsys, tmp_path):
    clip = tmp_path / "walk.mp4"
    clip.write_bytes(b"not read")
    blocked(monkeypatch, "av")
    line = one_error(capsys, cli(["scene", str(clip), "--weights", ABSENT, "--output", str(tmp_path / "scene")]))
    assert "av is missing" in line and "localdepth[video]" in line


def test_serve_batch_and_nyu_without_their_extras(monkeypatch, capsys, photo, tmp_path):
    blocked(monkeypatch, "fastapi")
    line = one_error(capsys, cli(["serve", "--weights", ABSENT]))
    assert "fastapi" in line and "localdepth[server]" in line
    blocked(monkeypatch, "ray")
    line = one_error(capsys, cli(["batch", str(photo), "--weights", ABSENT, "--outdir", str(tmp_path / "b")]))
    assert "ray" in line and "localdepth[distributed]" in line and not (tmp_path / "b").exists()
    blocked(monkeypatch, "h5py")
    line = one_error(capsys, cli(["eval", "--model", f"depth-anything-v2-small={ABSENT}",
                                  "-d", f"nyu:{tmp_path / 'nyu.mat'}", "--outdir", str(tmp_path / "e")]))
    assert "h5py" in line and "localdepth[geometry]" in line


def test_a_library_that_cannot_load_is_said_with_the_system_fix(tmp_path):
    """Open3D's wheel loads libusb with ctypes: installed but unusable is an OSError, not an ImportError."""
    np.save(tmp_path / "d.npy", np.ones((4, 4), np.float32))
    script = textwrap.dedent(f"""
        import sys

        class Broken:
            def find_spec(self, name, path=None, target=None):
                if name == "open3d":
                    raise OSError("libusb-1.0.so.0: cannot open shared object file")

        sys.modules.pop("open3d", None)
        sys.meta_path.insert(0, Broken())
        from localdepth.cli.main import main
        sys.exit(main(["pointcloud", {str(tmp_path / 'd.npy')!r}, "--kind", "depth", "-o", {str(tmp_path / 'x.ply')!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "libusb" in lines[0] and "apt-get install" in lines[0]


def test_finetune_and_photo3d_without_their_extras(monkeypatch, capsys, photo, tmp_path):
    """LoRA needs PEFT, several workers Ray Train, an MP4 3D photo PyAV: said before any data or model is read."""
    data = f"folder:{tmp_path / 'scans'}"
    blocked(monkeypatch, "peft")
    line = one_error(capsys, cli(["finetune", "--model", "depth-anything-v2-small", "--weights", ABSENT, "--data",
                                  data, "--lora", "8", "--outdir", str(tmp_path / "ft")]))
    assert "peft" in line and "localdepth[train]" in line and not (tmp_path / "ft").exists()
    blocked(monkeypatch, "ray.train")
    line = one_error(capsys, cli(["finetune", "--model", "depth-anything-v2-small", "--weights", ABSENT, "--data",
                                  data, "--workers", "2", "--outdir", str(tmp_path / "ft")]))
    assert "ray.train" in line and "localdepth[distributed]" in line and not (tmp_path / "ft").exists()
    blocked(monkeypatch, "av")
    line = one_error(capsys, cli(["photo3d", str(photo), "--weights", ABSENT, "-o", str(tmp_path / "p.mp4")]))
    assert "av" in line and "localdepth[video]" in line and not (tmp_path / "p.mp4").exists()
