"""The pipelined runner: same files as the sequential one in any order of completion, bounded
memory, and a clean stop on Ctrl-C (no half-written or temporary files)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import INTERRUPTIBLE_LOCALDEPTH, rng_image
from localdepth import images as images_module
from localdepth import runner as runner_module
from localdepth.inputs import expand_inputs
from localdepth.runner import Runner
from localdepth.writers import WriteOptions

FORMATS = ("npy", "png16", "color")


@pytest.fixture(scope="module")
def small_estimator(tiny_da_dir):
    import localdepth

    return localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu", input_size=42)


def _images(folder: Path, n: int, broken: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = (30, 40) if i % 3 else (40, 30)  # two network sizes, so batches split by size
        cv2.imwrite(str(folder / f"im{i:03d}.png"), rng_image(h, w, seed=i))
    if broken:
        (folder / "im_broken.png").write_bytes(b"not a png")
    return folder


def _tree(outdir: Path) -> dict[str, object]:
    """Every output file: bytes, except the sidecars' timings (they measure wall time)."""
    files = {}
    for p in sorted(outdir.rglob("*")):
        if p.is_file():
            rel = str(p.relative_to(outdir))
            if p.suffix == ".json":
                meta = json.loads(p.read_text())
                meta.pop("timings_ms", None)
                files[rel] = meta
            else:
                files[rel] = p.read_bytes()
    return files


def _leftovers(outdir: Path) -> list[Path]:
    return [p for p in outdir.rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".part")]


def _delayed(fn, rng: random.Random, most: float):
    lock = threading.Lock()

    def wrapper(*args, **kwargs):
        with lock:
            pause = rng.uniform(0, most)
        time.sleep(pause)
        return fn(*args, **kwargs)

    return wrapper


def test_pipelined_writes_exactly_what_sequential_writes(small_estimator, tmp_path, monkeypatch):
    items = expand_inputs([str(_images(tmp_path / "in", 14))])
    options = WriteOptions(formats=FORMATS)
    seq = Runner(small_estimator, tmp_path / "seq", options, batch_size=3, progress=False, pipeline=False,
                 on_error=lambda line: None).run(items)
    for seed in (1, 2):  # random delays make decodes and writes finish in a different order each time
        rng = random.Random(seed)
        # inputs decode through InputItem.load, which calls localdepth.images.load_image
        monkeypatch.setattr(images_module, "load_image", _delayed(images_module.load_image, rng, 0.02))
        monkeypatch.setattr(runner_module, "write_result", _delayed(runner_module.write_result, rng, 0.03))
        out = tmp_path / f"pipe{seed}"
        pipe = Runner(small_estimator, out, options, batch_size=3, progress=False, pipeline=True, workers=3,
                      on_error=lambda line: None).run(items)
        monkeypatch.undo()
        assert [(o.item.path, o.status) for o in pipe.outcomes] == [(o.item.path, o.status) for o in seq.outcomes]
        assert pipe.ok == 14 and pipe.failed == 1
        assert _tree(out) == _tree(tmp_path / "seq")
        assert not _leftovers(out)


def test_memory_stays_bounded_over_many_files(small_estimator, tmp_path):
    items = expand_inputs([str(_images(tmp_path / "in", 120, broken=False))])
    run = Runner(small_estimator, tmp_path / "out", WriteOptions(formats=("npy",)), batch_size=4,
                 progress=False, workers=2)
    summary = run.run(items)
    assert summary.ok == 120
    bound = run.decode_window + run.bucket_window + run.write_window + run.batch_size
    assert 0 < run.peak_in_flight <= bound < 120


def test_keyboard_interrupt_stops_cleanly(small_estimator, tmp_path, monkeypatch):
    items = expand_inputs([str(_images(tmp_path / "in", 24, broken=False))])
    options = WriteOptions(formats=FORMATS)
    Runner(small_estimator, tmp_path / "ref", options, batch_size=2, progress=False, pipeline=False).run(items)
    reference = _tree(tmp_path / "ref")

    real_run = small_estimator.backend.run
    calls = {"n": 0}

    def interrupted_run(batch, **conditioning):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
        return real_run(batch, **conditioning)

    monkeypatch.setattr(small_estimator.backend, "run", interrupted_run)
    monkeypatch.setattr(runner_module, "write_result", _delayed(runner_module.write_result, random.Random(0), 0.05))
    out = tmp_path / "out"
    summary = Runner(small_estimator, out, options, batch_size=2, progress=False, workers=2).run(items)
    assert summary.interrupted
    assert 0 < summary.ok < 24
    assert not _leftovers(out), "no temporary files may be left behind"
    written = _tree(out)
    stems = {Path(k).stem for k in written if k.endswith(".json")}
    assert len(stems) >= summary.ok
    for stem in stems:  # each finished item is complete and identical to the uninterrupted run
        for name in (f"{stem}.json", f"{stem}.npy", f"{stem}.png", f"{stem}_color.png"):
            assert written[name] == reference[name]
    assert all(Path(k).stem.replace("_color", "") in stems for k in written), \
        "a file without its sidecar is a half-written item"


def test_ctrl_c_on_the_command_line(tiny_da_dir, tmp_path):
    """A real SIGINT once the first result is written. 3000 inputs (hard links to six images:
    instant to make, but seconds of decoding, inference and writing on any machine) so that the
    signal always lands mid-run; the test never skips (with 60 inputs, a fast machine could
    finish first and the test skipped itself)."""
    sources = sorted(_images(tmp_path / "src", 6, broken=False).iterdir())
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(3000):
        os.link(sources[k % len(sources)], folder / f"im{k:04d}.png")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*INTERRUPTIBLE_LOCALDEPTH, "run", str(folder), "--outdir", str(out), "--weights", str(tiny_da_dir),
         "--device", "cpu", "--input-size", "42", "-f", "npy,color", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"not interrupted mid-run (exit {proc.returncode}): {stderr[-500:]}"
    assert "interrupted" in stderr
    assert 0 < len(list(out.glob("*.json"))) < 3000
    assert not _leftovers(out)
    for sidecar in out.glob("*.json"):
        assert (out / f"{sidecar.stem}_color.png").is_file()
        assert np.load(out / f"{sidecar.stem}.npy").shape in ((30, 40), (40, 30))  # loads: not truncated


def test_interrupt_summary_counts_every_item_written(small_estimator, tmp_path, monkeypatch):
    """Ctrl-C while the runner waits for a write: that write still finishes (atomically), so the
    summary must count it. It was taken off the queue before the wait and lost: one too few."""
    from localdepth.backends.base import NetworkOutput

    items = expand_inputs([str(_images(tmp_path / "in", 16, broken=False))])
    real_write = runner_module.write_result
    first = threading.Event()

    def write(*args, **kwargs):
        if not first.is_set():
            first.set()
            time.sleep(2.0)  # the oldest write is slow: the runner ends up waiting for it
        return real_write(*args, **kwargs)

    def ctrl_c():
        first.wait(30)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)  # a real signal, as Ctrl-C sends

    # an instant network, so that the runner is soon waiting on the slow write, not inferring
    monkeypatch.setattr(small_estimator.backend, "run",
                        lambda batch, **kw: NetworkOutput(depth=np.ones((batch.shape[0], *batch.shape[2:]), np.float32)))
    monkeypatch.setattr(runner_module, "write_result", write)
    threading.Thread(target=ctrl_c, daemon=True).start()
    out = tmp_path / "out"
    summary = Runner(small_estimator, out, WriteOptions(formats=("npy",)), batch_size=1, progress=False,
                     workers=2).run(items)
    assert summary.interrupted
    written = sorted(p.stem for p in out.glob("*.json"))
    assert sorted(Path(o.item.path).stem for o in summary.outcomes if o.status == "ok") == written
    assert summary.ok == len(written) > 0
    assert not _leftovers(out)
