"""Weights: resolution order, offline failures, checksums, corrupt files, the cache commands."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import subprocess
import sys
import threading
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import localdepth
from localdepth import registry, weights
from localdepth.errors import ChecksumError, WeightsError


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "localdepth", *args], capture_output=True, text=True)


def test_offline_failure_is_one_line_naming_the_model_and_the_fix(tmp_path):
    img = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(img)
    proc = _cli("run", str(img), "--model", "depth_anything_v2_small", "--outdir", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert "depth-anything-v2-small" in line and "offline" in line
    assert "localdepth models pull depth-anything-v2-small" in line and "--weights" in line


def test_unreachable_hub_fails_with_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "2")
    proc = _cli("models", "pull", "depth-anything-v2-small")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("localdepth")]
    assert len(lines) == 1 and "cannot download weights for depth-anything-v2-small" in lines[0]
    assert "--weights" in lines[0]


def test_checksum_refusal_leaves_nothing_in_the_cache(tmp_path, pydnet_file):
    wrong = tmp_path / "optimized_pydnet++.tflite"
    data = bytearray(pydnet_file.read_bytes())
    data[1000] ^= 0xFF  # one flipped byte
    wrong.write_bytes(bytes(data))
    proc = _cli("models", "add", "pydnet", str(wrong))
    assert proc.returncode == 2 and "checksum mismatch" in proc.stderr and "refusing" in proc.stderr
    assert not (weights.model_dir(registry.get("pydnet")) / wrong.name).exists()
    with pytest.raises(ChecksumError):
        localdepth.load("pydnet", weights=wrong)


def test_truncated_cached_file_is_refused(pydnet_file):
    spec = registry.get("pydnet")
    path = weights.add(spec, pydnet_file)
    assert weights.resolve(spec).origin == "cache"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ChecksumError, match="wrong size"):
        weights.resolve(spec)


def test_corrupt_safetensors_is_refused(tmp_path, tiny_da_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_da_dir, broken)
    st = broken / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    with pytest.raises(WeightsError, match="not a valid safetensors file"):
        localdepth.load("depth-anything-v2-small", weights=broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match="no model.safetensors"):
        localdepth.load("depth-anything-v2-small", weights=broken)
    with pytest.raises(WeightsError, match="Hugging Face-format folder"):
        localdepth.load("depth-anything-v2-small", weights=broken / "config.json")


def test_models_add_then_load_from_cache(tiny_da_dir):
    spec = registry.get("depth-anything-v2-small")
    assert weights.cached(spec) is None
    weights.add(spec, tiny_da_dir)
    found = weights.resolve(spec)
    assert found.origin == "cache" and (found.path / ".localdepth-verified.json").is_file()
    est = localdepth.load("depth_anything_v2_small", device="cpu")
    assert est.predict(np.zeros((40, 50, 3), np.uint8)).map.shape == (40, 50)
    # a cached file that changed since it was verified is refused
    (found.path / "config.json").write_text((found.path / "config.json").read_text() + " ")
    with pytest.raises(WeightsError, match="changed size"):
        weights.resolve(spec)


def _fake_hub_cache(hf_home: Path, repo_id: str, files: dict[str, bytes], lie_about: str | None = None) -> Path:
    """Lay out files the way huggingface_hub caches them (blobs named by sha256, snapshot links)."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for name, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        if name == lie_about:
            digest = hashlib.sha256(b"something else").hexdigest()
        (repo / "blobs" / digest).write_bytes(data)
        (snapshot / name).symlink_to(repo / "blobs" / digest)
    return snapshot


def test_hub_cache_is_used_and_verified(tmp_path, tiny_da_dir, monkeypatch):
    spec = registry.get("depth-anything-v2-small")
    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    files = {p.name: p.read_bytes() for p in tiny_da_dir.iterdir() if p.is_file()}
    snapshot = _fake_hub_cache(hf_home, spec.repo_id, files)
    found = weights.resolve(spec)
    assert found.origin == "hf-cache" and found.path == snapshot
    est = localdepth.load("depth-anything-v2-small", device="cpu")
    assert est.weights_path == snapshot
    weights._verify_hub_snapshot(snapshot, "weights")  # content addresses match
    bad = _fake_hub_cache(tmp_path / "hf2", spec.repo_id, files, lie_about="model.safetensors")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        weights._verify_hub_snapshot(bad, "weights")


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_download_verifies_checksum(file_server, pydnet_file, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    root, base = file_server
    shutil.copy(pydnet_file, root / "good.tflite")
    (root / "bad.tflite").write_bytes(b"not the model" * 100)
    spec = registry.get("pydnet")
    good = replace(spec, url=f"{base}/good.tflite")
    path = weights.pull(good)
    assert path == weights.model_dir(spec) / spec.files[0].filename and path.is_file()
    shutil.rmtree(weights.model_dir(spec))
    with pytest.raises(ChecksumError):
        weights.pull(replace(spec, url=f"{base}/bad.tflite"))
    assert not any(weights.model_dir(spec).iterdir())  # no partial file survives


def test_non_commercial_warning_once(pydnet_file):
    from localdepth import estimator

    estimator._warned_licences.discard("pydnet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        localdepth.load("pydnet", weights=pydnet_file)
        localdepth.load("pydnet", weights=pydnet_file)
    licence = [w for w in caught if issubclass(w.category, localdepth.NonCommercialLicenceWarning)]
    assert len(licence) == 1 and "research-only" in str(licence[0].message)
