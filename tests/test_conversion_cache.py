"""The conversion cache: kept across `models add`, bounded by a budget (least recently used
evicted), cleaned of killed conversions, shown and cleared by `localdepth models cache`.

References: victim cache entries compared byte for byte before and after; the cache's own
listing against the folders on disk; a conversion killed with SIGKILL in a child process.
Conversions here are real ONNX conversions of the tiny Depth Anything (parity-checked against
PyTorch), with the graph export itself replaced by a copy of one made once for the module: the
export takes 16 s, the rest of a conversion about one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the conversion cache tests convert to ONNX: pip install 'localdepth[onnx]'")

from localdepth import conversion, registry, weights  # noqa: E402
from localdepth.conversion import Target, cache  # noqa: E402
from localdepth.conversion import onnx as onnx_conversion  # noqa: E402
from localdepth.weights import ResolvedWeights  # noqa: E402

SPEC = registry.get("depth-anything-v2-small")
FP32, INT8 = Target("onnx", "fp32"), Target("onnx", "int8")


@pytest.fixture(scope="module")
def graph(tiny_da_dir, tmp_path_factory) -> Path:
    """The tiny model's ONNX graph, exported once."""
    home = tmp_path_factory.mktemp("export-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCALDEPTH_HOME", str(home))
        made = conversion.convert(SPEC, ResolvedWeights(tiny_da_dir, "argument"), FP32)
    kept = tmp_path_factory.mktemp("graph") / "model.onnx"
    shutil.copyfile(made.path, kept)
    return kept


@pytest.fixture
def fast_export(graph, monkeypatch):
    """Conversions copy the module's graph instead of exporting again (the parity check still runs)."""
    monkeypatch.setattr(onnx_conversion, "export_graph",
                        lambda exported, names, path, opset=onnx_conversion.OPSET: Path(shutil.copyfile(graph, path)))
    # the export's input is never made either
    monkeypatch.setattr(conversion.source.Source, "exported", property(lambda self: None))


def variant(tiny_da_dir: Path, folder: Path, note: str) -> Path:
    """The same network under different bytes (a note in config.json): other weights to the
    cache's content key, the same map, so the copied graph passes its parity check."""
    shutil.copytree(tiny_da_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "localdepth_test_note": note}))
    return folder


def snapshot(folder: Path, *, skip_last_used: bool = False) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not (skip_last_used and p.name == cache.LAST_USED)}


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "localdepth", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def test_models_add_keeps_conversions_of_the_same_weights_and_of_others(tiny_da_dir, fast_export, tmp_path):
    """`models add` deleted the ONNX, OpenVINO and int8 conversions, even of the same weights.
    Now the conversions live apart, keyed by the weights' content: adding the same weights finds
    them again, byte for byte; adding other weights keeps them too (for the budget to decide)."""
    assert _cli("models", "add", SPEC.name, tiny_da_dir).returncode == 0
    cached = weights.resolve(SPEC)
    assert cached.origin == "cache"
    made = [conversion.ensure(SPEC, cached, target) for target in (FP32, INT8)]
    assert not any(c.cached for c in made)
    root = conversion.converted_root(SPEC, cached)
    victim = snapshot(root, skip_last_used=True)  # its last use moves when it is used, below
    assert len(victim) >= 4  # two models and their reports

    again = _cli("models", "add", SPEC.name, tiny_da_dir)
    assert again.returncode == 0 and "verified" in again.stdout, again.stderr
    assert snapshot(root, skip_last_used=True) == victim
    assert all(conversion.find(SPEC, weights.resolve(SPEC), t) is not None for t in (FP32, INT8))

    other = variant(tiny_da_dir, tmp_path / "other", "fine-tuned")
    assert _cli("models", "add", SPEC.name, other).returncode == 0
    assert conversion.converted_root(SPEC, weights.resolve(SPEC)) != root
    assert conversion.find(SPEC, weights.resolve(SPEC), FP32) is None
    assert snapshot(root, skip_last_used=True) == victim


def test_conversions_kept_inside_the_weights_folder_by_an_earlier_version_are_adopted(tiny_da_dir, fast_export):
    """The old layout (``models/<name>/converted/``) moves to the cache instead of being lost."""
    assert _cli("models", "add", SPEC.name, tiny_da_dir).returncode == 0
    made = conversion.ensure(SPEC, weights.resolve(SPEC), FP32)
    weights_folder = made.folder.parent
    legacy = weights.model_dir(SPEC) / "converted" / weights_folder.name
    legacy.parent.mkdir()
    os.replace(weights_folder, legacy)
    victim = snapshot(legacy)
    assert _cli("models", "add", SPEC.name, tiny_da_dir).returncode == 0  # replaced the weights folder whole
    found = conversion.find(SPEC, weights.resolve(SPEC), FP32)
    assert found is not None and snapshot(found.folder.parent, skip_last_used=True) == {
        k: v for k, v in victim.items() if not k.endswith(cache.LAST_USED)}


def test_the_least_recently_used_conversions_leave_when_over_budget(tiny_da_dir, fast_export, tmp_path, monkeypatch):
    """The cache only grew (about 190 MB per distinct weights). With a budget that holds two
    conversions, a third evicts the least recently used, never the one in use, and the one used
    last stays byte for byte. Through the public path: `localdepth.load(..., backend="onnx")`."""
    import localdepth

    a, b, c = (variant(tiny_da_dir, tmp_path / name, name) for name in "abc")

    def load(folder):
        return localdepth.load(SPEC.name, weights=folder, backend="onnx", device="cpu")

    load(a)
    size = cache.entries()[0].bytes
    monkeypatch.setenv(cache.BUDGET_ENV, str(2.5 * size / 2**20))  # room for two, not three
    load(b)
    load(a)  # a is used again: b is now the least recently used
    kept = conversion.slot(SPEC, ResolvedWeights(a, "argument"), FP32)
    victim = snapshot(kept, skip_last_used=True)
    load(c)
    present = {e.path for e in cache.entries()}
    assert conversion.slot(SPEC, ResolvedWeights(b, "argument"), FP32) not in present
    assert {kept, conversion.slot(SPEC, ResolvedWeights(c, "argument"), FP32)} == present
    assert snapshot(kept, skip_last_used=True) == victim
    assert sum(e.bytes for e in cache.entries()) <= cache.budget()


_KILLED = """
import os, signal, sys
from localdepth import conversion, registry
from localdepth.conversion import Target, onnx
from localdepth.weights import ResolvedWeights

def killed(job, folder):
    (folder / "model.onnx").write_bytes(b"half a graph")
    os.kill(os.getpid(), signal.SIGKILL)

onnx.make = killed
conversion.convert(registry.get("depth-anything-v2-small"), ResolvedWeights(sys.argv[1], "argument"),
                   Target("onnx", "fp32"))
"""


def test_staging_folders_of_killed_conversions_are_cleaned(tiny_da_dir, fast_export):
    """A conversion killed with SIGKILL leaves its staging folder; the next conversion (or
    `models cache`) removes it, and leaves alone the staging folder of a conversion still running."""
    killed = subprocess.run([sys.executable, "-c", _KILLED, str(tiny_da_dir)], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    weights_folder = conversion.converted_root(SPEC, ResolvedWeights(tiny_da_dir, "argument"))
    leftovers = [p for p in weights_folder.iterdir() if ".staging-" in p.name]
    assert len(leftovers) == 1 and (leftovers[0] / "model.onnx").read_bytes() == b"half a graph"
    running = cache.staging(weights_folder, "onnx-int8-running")  # this process: alive
    listing = _cli("models", "cache")
    assert listing.returncode == 0 and "removed 1 leftover" in listing.stdout, listing.stdout + listing.stderr
    assert not leftovers[0].exists() and running.is_dir()
    conversion.convert(SPEC, ResolvedWeights(tiny_da_dir, "argument"), FP32)
    assert running.is_dir() and [p for p in weights_folder.iterdir() if p.name.startswith(".")] == [running]


def test_models_cache_shows_and_clears(tiny_da_dir, fast_export, tmp_path):
    """`localdepth models cache`: entries, sizes, last use, total against the budget; `--clear
    NAME` removes that model's only (another model's entry stays byte for byte); `--budget`
    evicts down to a size; a bad budget is one line."""
    da1 = registry.get("depth-anything-v1-small")
    conversion.convert(SPEC, ResolvedWeights(tiny_da_dir, "argument"), FP32)
    conversion.convert(da1, ResolvedWeights(tiny_da_dir, "argument"), FP32)
    listing = _cli("models", "cache")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].startswith(f"conversion cache: {cache.root()} (budget 5.00 GiB")
    for entry in cache.entries():
        row = next(line for line in lines if line.startswith(entry.model + " "))
        assert entry.weights_id in row and entry.name in row
    assert lines[-1].startswith("total: 2 conversion(s)") and lines[-1].endswith("of 5.00 GiB")
    rows = json.loads(_cli("models", "cache", "--json").stdout)
    assert rows["total_bytes"] == sum(e["bytes"] for e in rows["entries"]) > 0
    assert {e["model"] for e in rows["entries"]} == {SPEC.name, da1.name}

    victim_entry = next(e for e in cache.entries() if e.model == da1.name)
    victim = snapshot(victim_entry.path)
    cleared = _cli("models", "cache", "depth_anything_v2_small", "--clear")
    assert cleared.returncode == 0 and "removed 1 conversion(s)" in cleared.stdout
    assert [e.model for e in cache.entries()] == [da1.name] and snapshot(victim_entry.path) == victim

    env = {**os.environ, cache.BUDGET_ENV: "lots"}
    _bad = _cli("models", "cache", env=env)
    assert _bad.returncode == 2 and len(_bad.stderr.strip().splitlines()) == 1 and cache.BUDGET_ENV in _bad.stderr
    assert _cli("models", "cache", "--budget", "0").returncode == 0
    assert cache.entries() == [] and not any(cache.root().iterdir())
