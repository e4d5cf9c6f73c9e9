"""The tolerance matrix itself (tests/tolerance.py, benchmarks/tolerance_matrix.py): checks record
what they measured, the conditions do what they say, and the tool tabulates a real run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tolerance

ROOT = Path(__file__).resolve().parents[1]


def test_checks_record_the_error_the_bound_and_their_ratio(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(tolerance.LOG_ENV, str(log))
    tolerance.within(2e-6, 1e-5, "max error")
    tolerance.correlated([1.0, 2.0, 3.0], [1.0, 2.0, 3.1], 0.99)
    with pytest.raises(AssertionError, match="max error 0.002 > 0.001 .frame 3."):
        tolerance.within(2e-3, 1e-3, "max error", at="frame 3")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["site"].split(":")[0] for r in records] == ["test_tolerance_tool.py"] * 3
    assert records[0]["test"].endswith("test_checks_record_the_error_the_bound_and_their_ratio")
    assert records[0]["usage"] == pytest.approx(0.2) and records[0]["what"] == "max error ≤ 1e-05"
    r = float(np.corrcoef([1.0, 2.0, 3.0], [1.0, 2.0, 3.1])[0, 1])
    assert records[1]["kind"] == "1 - pearson" and records[1]["usage"] == pytest.approx((1 - r) / 0.01)
    assert records[2]["usage"] == pytest.approx(2.0)
    # elementwise allclose: the worst element's |a - d| / (atol + rtol |d|)
    usage, err, allowed = tolerance._closeness([1.0, 10.5], [1.0, 10.0], rtol=0.01, atol=0.1)
    assert (usage, err, allowed) == (pytest.approx(0.5 / 0.2), 0.5, pytest.approx(0.2))


def _run(code: str, **env) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True,
                          cwd=ROOT / "tests", env={**os.environ, **env}).stdout


def test_batch_condition_runs_each_network_input_inside_a_batch_of_two(tmp_path):
    torch = pytest.importorskip("torch")  # noqa: F841
    code = """
import torch, tolerance
tolerance.install()
seen = []
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
net[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
x = torch.randn(3, 3, 8, 8)
with torch.no_grad():
    out = net(x)
with torch.no_grad():
    torch.testing.assert_close(out, torch.nn.functional.relu(net[0]._conv_forward(x, net[0].weight, net[0].bias)))
print(out.shape[0], seen, torch.get_num_threads())
"""
    plain = _run(code, **{tolerance.LOG_ENV: str(tmp_path / "a.jsonl")})
    batched = _run(code, **{tolerance.LOG_ENV: str(tmp_path / "b.jsonl"), tolerance.BATCH_ENV: "2",
                            tolerance.THREADS_ENV: "2"})
    assert plain.split()[:2] == ["3", "[3]"]
    assert batched.split() == ["3", "[6]", "2"]  # the input twice, the first half back; two threads


def test_the_matrix_tabulates_a_run(tmp_path):
    report = tmp_path / "report"
    done = subprocess.run([sys.executable, "benchmarks/tolerance_matrix.py", "tests/test_postprocess.py",
                           "--conditions", "base,batch2", "--report", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((report / "tolerances.json").read_text())
    sites = {r["site"] for r in rows}
    assert sites and all(s.startswith("test_postprocess.py:") for s in sites)
    assert all(set(r["worst"]) == {"base", "batch2"} and max(w["usage"] for w in r["worst"].values()) <= 1
               for r in rows)
    table = (report / "tolerances.md").read_text()
    assert "| 1 thread | batch 2 |" in table and "`test_postprocess.py:" in table


#: a numeric check that tests/tolerance.py records
_RECORDED = re.compile(r"from tolerance import|assert_allclose\(|assert_close\(|\bapprox\(|np\.allclose\(")
#: ``assert <value> < 1e-5``: an upper bound on an error that nothing records (write ``within``)
_BARE_BOUND = re.compile(r"^\s*assert .*[^<]<=?\s*\(?[0-9]*\.?[0-9]+e-[0-9]+")


def test_every_test_file_with_numeric_checks_is_in_the_matrix():
    """A new test file's tolerances are measured like the others: the matrix runs every file that
    makes a numeric check, and no file bounds an error by a literal (``1e-5``) in a bare ``assert``."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import tolerance_matrix
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    files = sorted((ROOT / "tests").glob("test_*.py"))
    checked = {f.name for f in files if _RECORDED.search(f.read_text())} - {Path(__file__).name}
    missing = sorted(checked - set(tolerance_matrix.DEFAULT_FILES))
    assert not missing, f"add to DEFAULT_FILES in benchmarks/tolerance_matrix.py, then measure: {missing}"
    assert not set(tolerance_matrix.DEFAULT_FILES) - {f.name for f in files}, "DEFAULT_FILES names a missing file"
    bare = [f"{f.name}:{n}" for f in files for n, line in enumerate(f.read_text().splitlines(), 1)
            if _BARE_BOUND.match(line)]
    assert not bare, f"bare error bounds (write within(error, bound, 'what')): {bare}"
