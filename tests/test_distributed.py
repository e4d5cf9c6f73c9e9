"""`localdepth batch` on a local Ray: same outputs as `localdepth run`, failures in the manifest,
resume by skipping, and no lost or duplicated outputs when an inference actor is killed.

One Ray session (2 CPUs) serves the whole module: starting Ray costs seconds on 2 cores. The CLI
runs in subprocesses that join it with --ray-address.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the distributed extra is not installed")
pq = pytest.importorskip("pyarrow.parquet")

from localdepth.distributed import BatchConfig, OutputTarget, collect, connect, run_batch  # noqa: E402
from localdepth.distributed.pipeline import (CRASH_AFTER_ENV, CRASH_MARKER_ENV, INSTALL_HINT,  # noqa: E402
                                             plan_resources, require_ray)
from localdepth.errors import LocalDepthError  # noqa: E402
from localdepth.writers import WriteOptions  # noqa: E402
from tolerance import within  # noqa: E402

PHOTOS = ("demo01.jpg", "demo04.jpg", "demo08.jpg", "demo11.jpg", "demo17.jpg", "demo18.jpg")


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray with 2 CPUs, started on demand as `localdepth batch` does without --ray-address."""
    session = connect(None, num_cpus=2, quiet=True)
    yield session.get_runtime_context().gcs_address
    session.shutdown()


@pytest.fixture
def collection(tmp_path, shared_images) -> Path:
    """Real photos (some in a subfolder), a truncated JPEG and a text file named .png."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate(PHOTOS):
        shutil.copy(shared_images / name, root / ("sub" if i % 3 == 2 else ".") / name)
    data = (shared_images / "demo01.jpg").read_bytes()
    (root / "corrupt.jpg").write_bytes(data[: len(data) // 20])
    (root / "notes.png").write_text("not an image\n")
    return root


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "localdepth", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _manifest(path: Path) -> dict[str, dict]:
    rows = pq.read_table(path).to_pylist()
    assert len({r["input"] for r in rows}) == len(rows), "an input appears twice in the manifest"
    return {Path(r["input"]).name: r for r in rows}


def test_batch_matches_run_records_failures_and_resumes(collection, tmp_path, pydnet_file, ray_address):
    model = ["--model", "pydnet", "--weights", str(pydnet_file), "--format", "npy,png16,color"]
    ref, out = tmp_path / "run", tmp_path / "batch"
    run = _cli("run", str(collection), "--outdir", str(ref), "-q", *model)
    assert run.returncode == 1, run.stderr  # the two bad inputs
    batch = _cli("batch", str(collection), "--outdir", str(out), "--ray-address", ray_address,
                 "--workers", "2", "--batch-size", "2", *model)
    assert batch.returncode == 1, batch.stderr
    assert "done: 6 ok, 2 failed, 0 skipped" in batch.stderr
    # Ray's C++ warning about actor constructor arguments (printed at error level on every run) is dropped
    assert "max_restarts" not in batch.stderr and "core_worker" not in batch.stderr, batch.stderr

    # the same files as `localdepth run`, plus the manifest
    assert _files(out) == sorted(_files(ref) + ["manifest.parquet"])
    for npy in ref.rglob("*.npy"):
        # same decode, preprocessing, TFLite graph and resize on the same machine: bit-identical
        np.testing.assert_array_equal(np.load(npy), np.load(out / npy.relative_to(ref)))
    for png in ref.rglob("*.png"):
        assert png.read_bytes() == (out / png.relative_to(ref)).read_bytes(), png.name
    for side in ref.rglob("*.json"):
        a, b = json.loads(side.read_text()), json.loads((out / side.relative_to(ref)).read_text())
        a.pop("timings_ms"), b.pop("timings_ms")  # measured, so never equal
        assert a == b

    rows = _manifest(out / "manifest.parquet")
    assert {n: r["status"] for n, r in rows.items()} == {**{n: "ok" for n in PHOTOS},
                                                         "corrupt.jpg": "failed", "notes.png": "failed"}
    assert "corrupt or truncated" in rows["corrupt.jpg"]["error"]
    assert "not an image" in rows["notes.png"]["error"]
    assert rows["corrupt.jpg"]["outputs"] == [] and rows["notes.png"]["outputs"] == []
    ok = rows["demo08.jpg"]
    assert ok["error"] == "" and ok["kind"] == "disparity" and ok["inference_ms"] > 0
    assert sorted(ok["outputs"]) == sorted(str(out / "sub" / f"demo08{s}") for s in
                                           (".npy", ".png", "_color.png", ".json"))

    # a second run skips everything done and rewrites nothing
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix != ".parquet"}
    again = _cli("batch", str(collection), "--outdir", str(out), "--ray-address", ray_address, "-q", *model)
    assert "done: 0 ok, 2 failed, 6 skipped" in again.stderr, again.stderr
    # -q: the two inputs' errors and the summary, nothing from Ray (no error-level core_worker.cc line)
    lines = again.stderr.strip().splitlines()
    assert all(line.startswith(("localdepth: error: ", "done: ")) for line in lines), again.stderr
    assert len(lines) == 3, again.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    rows = _manifest(out / "manifest.parquet")
    assert sorted(n for n, r in rows.items() if r["status"] == "skipped") == sorted(PHOTOS)
    assert len(rows["demo01.jpg"]["outputs"]) == 4


def test_killed_worker_loses_and_duplicates_nothing(tmp_path, shared_images, pydnet_file, ray_address,
                                                    monkeypatch):
    root = tmp_path / "images"
    for copy in ("a", "b"):
        (root / copy).mkdir(parents=True)
        for name in PHOTOS:
            shutil.copy(shared_images / name, root / copy / name)
    marker = tmp_path / "crashed"
    # the first actor to have inferred 3 images kills its own process (SIGKILL) mid-job, once
    monkeypatch.setenv(CRASH_AFTER_ENV, "3")
    monkeypatch.setenv(CRASH_MARKER_ENV, str(marker))
    out = tmp_path / "depth"
    cfg = BatchConfig(model="pydnet", weights=str(pydnet_file), formats=("npy",), workers=2, batch_size=1)
    summary = run_batch(collect([str(root)]), str(out), cfg, progress=False)

    assert marker.exists(), "the fault was not injected"
    assert (summary.ok, summary.failed, summary.skipped) == (12, 0, 0)
    expected = sorted(f"{c}/{Path(n).stem}{s}" for c in "ab" for n in PHOTOS for s in (".npy", ".json"))
    assert _files(out) == sorted(expected + ["manifest.parquet"])  # no temporary or duplicate files
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert sorted(r["rel"] for r in rows) == sorted(f"{c}/{n}" for c in "ab" for n in PHOTOS)
    assert {r["status"] for r in rows} == {"ok"}
    for npy in out.rglob("*.npy"):
        assert np.load(npy).shape == tuple(json.loads(npy.with_suffix(".json").read_text())[k]
                                           for k in ("height", "width"))


def test_manifest_inputs_and_url_outdir(tmp_path, shared_images, pydnet_file, ray_address):
    """A Parquet manifest (absolute paths, a missing one) and an fsspec URL as --outdir (file://:
    the same fsspec code path as s3://, which cannot be reached here)."""
    import pyarrow as pa

    # one row is a URL: read through fsspec by the decode tasks
    paths = [(shared_images / PHOTOS[0]).as_uri()] + [str(shared_images / n) for n in PHOTOS[1:3]] \
        + [str(shared_images / "gone.jpg")]
    manifest = tmp_path / "list.parquet"
    pq.write_table(pa.table({"path": paths, "label": [1, 2, 3, 4]}), manifest)
    out = tmp_path / "depth"
    cfg = BatchConfig(model="pydnet", weights=str(pydnet_file), formats=("npy",))
    summary = run_batch(collect([str(manifest)]), f"file://{out}", cfg, progress=False)
    assert (summary.ok, summary.failed) == (3, 1), summary.errors
    assert "gone.jpg: no such file" in summary.errors[0]
    assert _files(out) == sorted([f"{Path(n).stem}{s}" for n in PHOTOS[:3] for s in (".npy", ".json")]
                                 + ["manifest.parquet"])
    rows = _manifest(out / "manifest.parquet")
    assert rows["demo01.jpg"]["outputs"][0].startswith("file://")


def test_manifest_formats_and_relative_paths(tmp_path, shared_images):
    (tmp_path / "a").mkdir()
    shutil.copy(shared_images / "demo01.jpg", tmp_path / "a" / "x.jpg")
    (tmp_path / "list.csv").write_text("path,other\na/x.jpg,1\nmissing.jpg,2\n")
    (tmp_path / "list.jsonl").write_text(json.dumps({"path": str(tmp_path / "a" / "x.jpg"), "rel": "y/z.jpg"}) + "\n")
    csv = collect([str(tmp_path / "list.csv")])
    assert [(s.rel, s.error is None) for s in csv] == [("a/x.jpg", True), ("missing.jpg", False)]
    assert csv[0].input == str(tmp_path / "a" / "x.jpg")
    assert [(s.rel, s.error) for s in collect([str(tmp_path / "list.jsonl")])] == [("y/z.jpg", None)]
    (tmp_path / "bad.csv").write_text("file\nx.jpg\n")
    with pytest.raises(LocalDepthError, match="needs a 'path' column"):
        collect([str(tmp_path / "bad.csv")])


def test_url_inputs_are_listed_through_fsspec(tmp_path, shared_images):
    pytest.importorskip("fsspec")
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name, where in (("demo01.jpg", "a"), ("demo04.jpg", "a/b")):
        shutil.copy(shared_images / name, tmp_path / where / name)
    (tmp_path / "a" / "notes.txt").write_text("skip me")
    folder = collect([f"file://{tmp_path}/a"])
    assert [(s.rel, s.error) for s in folder] == [("b/demo04.jpg", None), ("demo01.jpg", None)]
    assert folder[1].input == f"file://{tmp_path}/a/demo01.jpg"
    assert [s.rel for s in collect([f"file://{tmp_path}/a/**/*.jpg"])] == ["b/demo04.jpg", "demo01.jpg"]
    missing = collect([f"file://{tmp_path}/nothing.jpg"])
    assert missing[0].error.endswith("no such file or folder")


def test_unavailable_url_filesystem_is_one_line():
    pytest.importorskip("fsspec")
    import fsspec

    try:
        fsspec.filesystem("s3")
        pytest.skip("s3fs is installed here")
    except (ImportError, ValueError):
        pass
    with pytest.raises(LocalDepthError, match="pip install s3fs"):
        OutputTarget("s3://bucket/depth", WriteOptions()).check()


def test_resources_leave_room_for_decoding():
    cfg = BatchConfig(model="pydnet", workers=2)
    assert plan_resources(cfg, 2) == 0.5  # 2 actors x 0.5 CPU + 1 CPU for decode/write tasks
    assert plan_resources(BatchConfig(model="pydnet"), 16) == 1.0
    with pytest.raises(LocalDepthError, match="leave no CPU"):
        plan_resources(BatchConfig(model="pydnet", workers=2, cpus_per_worker=1), 2)


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(LocalDepthError) as e:
        require_ray()
    assert str(e.value) == INSTALL_HINT and "pip install 'localdepth[distributed]'" in str(e.value)


def test_models_whose_metres_need_a_camera_are_sent_to_run(tmp_path, shared_images, capsys):
    """Depth Pro's metres follow the photo's EXIF or a given camera (as `run` does); the Ray stages carry
    the map only, so batch refuses it in one line, before Ray starts, rather than write other metres."""
    from localdepth.cli.main import main

    for model in ("depth-pro", "da3-metric-large"):
        assert main(["batch", str(shared_images / "demo01.jpg"), "--model", model, "--outdir", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err.strip()
        assert "localdepth batch carries the depth map only" in err and "localdepth run" in err and "\n" not in err
    assert not (tmp_path / "b").exists()


def test_torch_model_and_side_format_match_the_runner(tmp_path, shared_images, tiny_da_dir, ray_address):
    """The Transformers backend and the side-by-side format (the decoded image travels to the
    writers) through the pipeline, against the Runner behind `localdepth run`."""
    from PIL import Image

    import localdepth
    from localdepth.inputs import expand_inputs
    from localdepth.runner import Runner

    images = tmp_path / "images"
    images.mkdir()
    for name in PHOTOS[:2]:
        shutil.copy(shared_images / name, images / name)
    formats = ("npy", "side")
    cfg = BatchConfig(model="depth-anything-v2-small", weights=str(tiny_da_dir), device="cpu", formats=formats)
    summary = run_batch(collect([str(images)]), str(tmp_path / "batch"), cfg, progress=False)
    assert (summary.ok, summary.failed) == (2, 0)

    estimator = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu")
    Runner(estimator, tmp_path / "run", WriteOptions(formats=formats), progress=False).run(
        expand_inputs([str(images)]))
    for name in PHOTOS[:2]:
        stem = Path(name).stem
        a, b = np.load(tmp_path / "run" / f"{stem}.npy"), np.load(tmp_path / "batch" / f"{stem}.npy")
        # same weights and inputs: identical here with OMP_NUM_THREADS=1, but torch on CPU may use
        # other thread counts (or batches) in the Ray actor than in this process, which moves the
        # last bits of sums. Measured: 0 at 1 and 2 threads; 2.7e-5 where this process ran each
        # image in a batch of two (docs/testing.md, Tolerances), above the rtol 1e-4 / atol 1e-5
        # this check had on pixels near zero: bounded relative to the map's range instead.
        within(np.abs(b - a).max() / np.ptp(a), 1e-4, "max |batch - run| / range")
        side = np.asarray(Image.open(tmp_path / "batch" / f"{stem}_side.png"))
        assert side.shape == (a.shape[0], 2 * a.shape[1], 3)


DRIVER = """
import json, os, sys, time
import psutil
from localdepth.distributed import connect
ray = connect(None, num_cpus=1, quiet=True)
ray.get(ray.remote(lambda: os.getpid()).remote())  # a worker process too
procs = [p for p in psutil.Process().children(recursive=True) if "watchdog" not in " ".join(p.cmdline())]
listening = sorted({c.laddr.ip for p in procs for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN})
print(json.dumps({"pids": {p.pid: p.create_time() for p in procs}, "listening": listening}), flush=True)
time.sleep(600)
"""


def test_local_ray_binds_loopback_only_and_dies_with_its_driver(tmp_path):
    """The Ray that `localdepth batch` starts listens on 127.0.0.1 only, and none of its processes
    (agents included) outlive a kill -9 of the driver."""
    psutil = pytest.importorskip("psutil")
    import signal
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = driver.stdout.readline()
        assert line, "the driver did not start Ray"
        info = json.loads(line)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    pids = {int(p): t for p, t in info["pids"].items()}
    assert len(pids) >= 3  # gcs, raylet, agents, a worker
    assert info["listening"] and all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip in info["listening"]), \
        info["listening"]

    def alive():
        out = []
        for pid, created in pids.items():
            try:
                p = psutil.Process(pid)
                if abs(p.create_time() - created) < 1e-3 and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(f"{pid} {p.name()}")
            except psutil.Error:
                pass
        return out

    deadline = time.monotonic() + 30
    while alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    left = alive()
    for entry in left:  # clean up what this test started, by pid, before failing
        os.kill(int(entry.split()[0]), signal.SIGKILL)
    assert not left, f"still running 30 s after kill -9 of the driver: {left}"


@pytest.mark.parametrize("url", [False, True], ids=["folder", "file-url"])
def test_resume_redoes_items_with_any_file_missing(tmp_path, shared_images, pydnet_file, ray_address, url):
    """An item is complete only when every file is there, its sidecar included (written last, it
    marks completion), for a folder and for a URL target alike."""
    images = tmp_path / "images"
    images.mkdir()
    for name in PHOTOS[:3]:
        shutil.copy(shared_images / name, images / name)
    out = tmp_path / "depth"
    target = f"file://{out}" if url else str(out)
    cfg = BatchConfig(model="pydnet", weights=str(pydnet_file), formats=("npy", "color"))
    first = run_batch(collect([str(images)]), target, cfg, progress=False)
    assert (first.ok, first.failed, first.skipped) == (3, 0, 0)
    (out / "demo01.json").unlink()  # the outputs are there, the sidecar is not: not complete
    (out / "demo04_color.png").unlink()  # one output of several is missing: not complete
    kept = (out / "demo08.npy").stat().st_mtime_ns
    again = run_batch(collect([str(images)]), target, cfg, progress=False)
    assert (again.ok, again.failed, again.skipped) == (2, 0, 1)
    assert (out / "demo01.json").is_file() and (out / "demo04_color.png").is_file()
    assert (out / "demo08.npy").stat().st_mtime_ns == kept
    rows = _manifest(out / "manifest.parquet")
    assert {n: r["status"] for n, r in rows.items()} == {"demo01.jpg": "ok", "demo04.jpg": "ok", "demo08.jpg": "skipped"}


def test_manifest_rel_column_cannot_escape_outdir(tmp_path, shared_images, pydnet_file, ray_address):
    import pyarrow as pa

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "important.npy").write_bytes(b"victim")
    (victim / "important.json").write_bytes(b"victim")
    (tmp_path / "lists").mkdir()
    photo = str(shared_images / PHOTOS[0])
    manifest = tmp_path / "lists" / "m.parquet"
    pq.write_table(pa.table({"path": [photo, str(shared_images / PHOTOS[1]), str(shared_images / PHOTOS[2])],
                             "rel": ["../victim/important.jpg", str(victim / "important.jpg"), "ok/x.jpg"]}),
                   manifest)
    out = tmp_path / "lists" / "out"
    cfg = BatchConfig(model="pydnet", weights=str(pydnet_file), formats=("npy",))
    summary = run_batch(collect([str(manifest)]), str(out), cfg, progress=False)
    assert (summary.ok, summary.failed) == (1, 2), summary.errors
    assert all("refused" in e for e in summary.errors)
    assert (victim / "important.npy").read_bytes() == b"victim" and (victim / "important.json").read_bytes() == b"victim"
    assert (out / "ok" / "x.npy").is_file()


SHUTDOWN_DRIVER = """
import os, time
from localdepth.distributed import connect
ray = connect(None, num_cpus=1, quiet=True)
ray.get(ray.remote(lambda: os.getpid()).remote())
ray.shutdown()
time.sleep(6)  # the watchdog polls every 0.5 s and gives 3 s of grace before SIGKILL
print("alive", flush=True)
"""


def test_watchdog_spares_a_driver_that_shuts_ray_down_and_carries_on():
    """After ``ray.shutdown()`` the driver still holds its log files in the session folder; the
    watchdog, stopping what is left of that Ray, must not take the driver for one of Ray's processes."""
    pytest.importorskip("psutil")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SHUTDOWN_DRIVER], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0 and "alive" in done.stdout, (done.returncode, done.stderr[-500:])
