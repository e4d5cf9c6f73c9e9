"""`localdepth run` end to end: inputs, outputs, bad files, resuming, batching."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "localdepth", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def photo_tree(tmp_path, shared_images):
    """photos/a.jpg, photos/sub/b.jpg (real photos, shrunk for speed), plus a notes file."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for src, dst in (("demo04.jpg", "a.jpg"), ("demo08.jpg", "sub/b.jpg")):
        im = Image.open(shared_images / src)
        im.thumbnail((320, 320))
        im.save(root / dst, quality=92)
    (root / "notes.md").write_text("not an image, and not picked up from a folder")
    return root


def test_folder_keeps_relative_paths_and_writes_every_format(tmp_path, photo_tree, tiny_da_dir):
    out = tmp_path / "out"
    proc = _cli("run", str(photo_tree), "--weights", str(tiny_da_dir), "--device", "cpu", "--outdir", str(out),
                "--format", "npy,png16,color,side,pfm", "--batch-size", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "2 ok, 0 failed" in proc.stderr
    for stem in ("a", "sub/b"):
        for suffix in (".npy", ".png", "_color.png", "_side.png", ".pfm", ".json"):
            assert (out / f"{stem}{suffix}").is_file(), f"{stem}{suffix}"
    meta = json.loads((out / "sub/b.json").read_text())
    assert meta["model"]["model"] == "depth-anything-v2-small" and meta["kind"] == "disparity"
    h, w = np.load(out / "sub/b.npy").shape
    assert (meta["height"], meta["width"]) == (h, w) == Image.open(photo_tree / "sub/b.jpg").size[::-1]


def test_bad_files_fail_alone_with_one_line_each(tmp_path, photo_tree, pydnet_file):
    (photo_tree / "empty.jpg").write_bytes(b"")
    (photo_tree / "text.jpg").write_text("hello")
    good = (photo_tree / "a.jpg").read_bytes()
    (photo_tree / "truncated.jpg").write_bytes(good[: len(good) // 3])
    out = tmp_path / "out"
    proc = _cli("run", str(photo_tree), str(tmp_path / "missing.png"), "--model", "pydnet",
                "--weights", str(pydnet_file), "--outdir", str(out), "-q")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("localdepth: error:")]
    assert len(errors) == 4, proc.stderr
    assert any("empty.jpg: empty file" in e for e in errors)
    assert any("text.jpg: not an image" in e for e in errors)
    assert any("truncated.jpg: corrupt or truncated" in e for e in errors)
    assert any("missing.png: no such file" in e for e in errors)
    assert "2 ok, 4 failed, 0 skipped" in proc.stderr
    assert (out / "a.npy").is_file() and (out / "sub" / "b.npy").is_file()
    assert not (out / "empty.npy").exists()


def test_globs_lists_and_input_option(tmp_path, photo_tree, pydnet_file):
    listing = tmp_path / "list.txt"
    listing.write_text("# my photos\nphotos/a.jpg\n\nphotos/sub/b.jpg\n")
    out = tmp_path / "out"
    proc = _cli("run", "--input", str(listing), "--model", "pydnet", "--weights", str(pydnet_file), "--outdir", str(out),
                "-f", "npy", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (out / "photos/a.npy").is_file() and (out / "photos/sub/b.npy").is_file()
    out2 = tmp_path / "out2"
    proc = _cli("run", str(photo_tree / "**" / "*.jpg"), "--model", "pydnet", "--weights", str(pydnet_file),
                "--outdir", str(out2), "-f", "npy", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (out2 / "a.npy").is_file() and (out2 / "sub/b.npy").is_file()


def test_default_outdir_and_skip_existing(tmp_path, photo_tree, pydnet_file):
    args = ["run", str(photo_tree / "a.jpg"), "--model", "pydnet", "--weights", str(pydnet_file), "-q"]
    assert _cli(*args, cwd=tmp_path).returncode == 0
    npy = tmp_path / "depth_out" / "a.npy"
    assert npy.is_file() and (tmp_path / "depth_out" / "a_color.png").is_file()
    before = npy.stat().st_mtime_ns
    again = _cli(*args, "--skip-existing", cwd=tmp_path)
    assert again.returncode == 0 and "0 ok, 0 failed, 1 skipped" in again.stderr
    assert npy.stat().st_mtime_ns == before
    # an interrupted run leaves outputs without their sidecar: they are redone, not skipped
    (tmp_path / "depth_out" / "a.json").unlink()
    third = _cli(*args, "--skip-existing", cwd=tmp_path)
    assert "1 ok" in third.stderr


def test_refuses_to_overwrite_inputs(tmp_path, pydnet_file):
    img = tmp_path / "x.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(img)
    proc = _cli("run", str(img), "--model", "pydnet", "--weights", str(pydnet_file), "--outdir", str(tmp_path),
                "-f", "png16", "-q")
    assert proc.returncode == 1 and "would overwrite the input" in proc.stderr
    assert Image.open(img).mode == "RGB"


def test_same_stem_inputs_do_not_collide(tmp_path, pydnet_file):
    for ext in ("png", "jpg"):
        Image.new("RGB", (64, 48), (10, 20, 30)).save(tmp_path / f"same.{ext}")
    out = tmp_path / "out"
    proc = _cli("run", str(tmp_path / "same.png"), str(tmp_path / "same.jpg"), "--model", "pydnet",
                "--weights", str(pydnet_file), "--outdir", str(out), "-f", "npy", "-q")
    assert proc.returncode == 0
    assert (out / "same_png.npy").is_file() and (out / "same_jpg.npy").is_file()


def test_usage_errors_exit_2(tmp_path):
    assert _cli("run").returncode == 2
    proc = _cli("run", str(tmp_path), "--format", "jpeg")
    assert proc.returncode == 2 and "unknown format" in proc.stderr
    proc = _cli("run", "x.jpg", "--model", "nope")
    assert proc.returncode == 2 and "unknown model 'nope'" in proc.stderr


def test_python_api_predict_forms(pydnet_file, photo):
    import localdepth

    est = localdepth.load("pydnet", weights=pydnet_file)
    from_path = est.predict(photo)
    from_str = est.predict(str(photo))
    from_bytes = est.predict(photo.read_bytes())
    from_pil = est.predict(Image.open(photo))
    np.testing.assert_array_equal(from_path.map, from_str.map)
    np.testing.assert_array_equal(from_path.map, from_bytes.map)
    assert from_pil.map.shape == from_path.map.shape
    many = est.predict([photo, photo])
    assert isinstance(many, list) and len(many) == 2
    assert from_path.kind == "disparity" and from_path.model == "pydnet"
    assert set(from_path.timings) >= {"decode", "preprocess", "inference", "postprocess"}
