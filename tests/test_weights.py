"""Weights: resolution order, offline failures, checksums, corrupt files, the cache commands."""

from __future__ import annotations

import hashlib
import http.server
import os
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


class _Unavailable:
    """A Hub on 127.0.0.1 that answers 503 to everything and counts the requests."""

    def __init__(self):
        self.requests = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                hub.requests.append(self.path)
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.mark.parametrize("name", ["video-depth-anything-small", "depth-anything-v2-small", "da3-small"])
def test_an_unreachable_hub_fails_every_model_at_once_in_one_whole_line(name, tmp_path):
    """Missing Video Depth Anything weights cost 24.5 s and six huggingface_hub retry lines, and
    the message was cut mid-word; the folder models failed at once. Every kind of Hub entry (a
    single file, a Transformers folder, a Depth Anything 3 folder) now asks the Hub once and
    fails in one line that ends with what to do: with nothing listening, and with a Hub that
    answers 503 (whose requests are counted: no retries with back-off)."""
    spec = registry.get(name)
    down = _Unavailable()
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    try:
        for endpoint in ("http://127.0.0.1:9", down.url):  # nothing listens on the discard port
            env["HF_ENDPOINT"] = endpoint
            proc = subprocess.run([sys.executable, "-m", "localdepth", "models", "pull", name], capture_output=True,
                                  text=True, env=env, timeout=300)
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert proc.returncode == 2 and len(lines) == 1, proc.stderr
            assert lines[0].endswith(weights.how_to_provide(spec)), lines[0]
            reason = lines[0].split(f"huggingface.co/{spec.repo_id} (", 1)[1].split("); run `", 1)[0]
            assert reason in ("ConnectError: [Errno 111] Connection refused",) or "503" in reason, reason
            assert not reason.endswith(("aga", "connec")) and (len(reason) <= 160 or reason.endswith(" …"))
    finally:
        down.server.shutdown()
    assert 1 <= len(down.requests) <= 2, down.requests


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


def _offline_run(image: Path, out: Path, env: dict) -> subprocess.CompletedProcess:
    """`localdepth run` with the default model, offline: it can only use what is cached."""
    return subprocess.run([sys.executable, "-m", "localdepth", "run", str(image), "--device", "cpu", "--outdir",
                           str(out), "-q"], capture_output=True, text=True, env={**env, "HF_HUB_OFFLINE": "1"})


def test_hub_cache_is_used_and_verified(tmp_path, tiny_da_dir, monkeypatch):
    """The Hugging Face cache layout, made by hand: used as it is, through the public path
    (`resolve` and `localdepth run`); a blob whose content is not its sha256 name is refused, also
    when it changed after an earlier run had verified it. (The cache used to be checked only for
    its structure, so a corrupted but well-formed safetensors blob was loaded.)"""
    from PIL import Image

    spec = registry.get("depth-anything-v2-small")
    files = {p.name: p.read_bytes() for p in tiny_da_dir.iterdir() if p.is_file()}
    image = tmp_path / "a.png"
    Image.new("RGB", (32, 24), (90, 120, 200)).save(image)
    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    snapshot = _fake_hub_cache(hf_home, spec.repo_id, files)
    found = weights.resolve(spec)
    assert found.origin == "hf-cache" and found.path == snapshot
    proc = _offline_run(image, tmp_path / "ok", dict(os.environ))
    assert proc.returncode == 0, proc.stderr

    # the same file changed in place after it was verified (its modification time moves on)
    blob = (snapshot / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # the tensor data, not the header: still a well-formed safetensors file
    blob.write_bytes(bytes(data))
    stat = blob.stat()
    os.utime(blob, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as any later write would
    proc = _offline_run(image, tmp_path / "changed", dict(os.environ))
    assert proc.returncode == 2 and "checksum mismatch" in proc.stderr, proc.stderr
    assert not (tmp_path / "changed" / "a.npy").exists()

    # a cache laid out with a lying blob from the start
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf2"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf2" / "hub"))
    _fake_hub_cache(tmp_path / "hf2", spec.repo_id, files, lie_about="model.safetensors")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        weights.resolve(spec)


class FakeHub:
    """huggingface.co for one repository, served from 127.0.0.1 (huggingface_hub follows
    HF_ENDPOINT): the revision and tree APIs and `resolve/` downloads. ``corrupt``: a file whose
    served bytes differ from the content address (sha256) the server announces for it."""

    def __init__(self, repo_id: str, files: dict[str, bytes], corrupt: str | None = None):
        import json
        from urllib.parse import urlparse

        commit, hub = "a" * 40, self

        def lfs(name: str) -> bool:
            return name.endswith((".safetensors", ".pth"))

        def address(name: str, data: bytes) -> str:  # LFS files are named by sha256, git files by sha1
            return hashlib.sha256(data).hexdigest() if lfs(name) else hashlib.sha1(data).hexdigest()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, body: bytes, headers: dict, code: int = 200):
                self.send_response(code)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            def do_GET(self):
                path, api = urlparse(self.path).path, f"/api/models/{repo_id}"
                if path.startswith(f"{api}/revision/"):
                    info = {"id": repo_id, "sha": commit, "siblings": [{"rfilename": n} for n in files]}
                    return self.reply(json.dumps(info).encode(), {"Content-Type": "application/json"})
                if path.startswith(f"{api}/tree/"):
                    tree = [{"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest(),
                             "lfs": {"oid": address(n, d), "size": len(d), "pointerSize": 134}
                             if lfs(n) else None}
                            for n, d in files.items()]
                    return self.reply(json.dumps(tree).encode(), {"Content-Type": "application/json"})
                name = path.partition(f"/{repo_id}/resolve/")[2].partition("/")[2]
                if name not in files:
                    return self.reply(b"", {"X-Error-Code": "EntryNotFound"}, 404)
                data = files[name]
                etag = address(name, data)
                if name == hub.corrupt:
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                self.reply(data, {"ETag": f'"{etag}"', "X-Repo-Commit": commit})

            do_HEAD = do_GET

        self.corrupt = corrupt
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()


@pytest.mark.parametrize("corrupt", [None, "model.safetensors"])
def test_models_pull_from_a_hub_verifies_what_it_downloads(tmp_path, tiny_da_dir, corrupt):
    """`localdepth models pull` against a Hub on 127.0.0.1, through huggingface_hub's real
    download code: a good repository is cached and then used offline; a file whose bytes do not
    match its announced sha256 is refused, and not left in the cache for the next run to use."""
    from PIL import Image

    files = {p.name: p.read_bytes() for p in tiny_da_dir.iterdir() if p.is_file()}
    hub = FakeHub(registry.get("depth-anything-v2-small").repo_id, files, corrupt)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_HUB_CACHE")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), LOCALDEPTH_HOME=str(tmp_path / "ld"),
               HF_HUB_DISABLE_XET="1")
    try:
        pull = subprocess.run([sys.executable, "-m", "localdepth", "models", "pull", "depth-anything-v2-small"],
                              capture_output=True, text=True, env=env, timeout=300)
    finally:
        hub.close()
    image = tmp_path / "a.png"
    Image.new("RGB", (32, 24), (90, 120, 200)).save(image)
    run = _offline_run(image, tmp_path / "out", env)
    if corrupt is None:
        assert pull.returncode == 0 and "weights ready" in pull.stdout, pull.stderr
        assert run.returncode == 0, run.stderr
        return
    lines = [ln for ln in pull.stderr.splitlines() if ln.startswith("localdepth")]
    assert pull.returncode == 2 and len(lines) == 1 and "checksum mismatch" in lines[0], pull.stderr
    assert run.returncode == 2 and "no local weights for depth-anything-v2-small" in run.stderr, run.stderr


def test_models_pull_of_a_single_file_entry_through_the_hub(tmp_path):
    """A single-file Hub entry (Video Depth Anything's .pth) through huggingface_hub's real
    snapshot download, restricted to that file: verified, converted to safetensors, usable offline."""
    from test_weight_checks import tiny_vda_checkpoint

    spec = registry.get("video-depth-anything-small")
    pth = tiny_vda_checkpoint(tmp_path / spec.files[0].filename)
    hub = FakeHub(spec.repo_id, {pth.name: pth.read_bytes(), "README.md": b"a card"})
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_HUB_CACHE")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), LOCALDEPTH_HOME=str(tmp_path / "ld"),
               HF_HUB_DISABLE_XET="1")
    try:
        pull = subprocess.run([sys.executable, "-m", "localdepth", "models", "pull", spec.name],
                              capture_output=True, text=True, env=env, timeout=300)
    finally:
        hub.close()
    assert pull.returncode == 0 and "weights ready" in pull.stdout, pull.stderr
    stored = tmp_path / "ld" / "models" / spec.name / "video_depth_anything_vits.safetensors"
    assert stored.is_file()
    snapshot = next((tmp_path / "hf" / "hub").glob("models--*/snapshots/*"))
    assert sorted(p.name for p in snapshot.iterdir()) == [pth.name]  # only the entry's file was fetched


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
