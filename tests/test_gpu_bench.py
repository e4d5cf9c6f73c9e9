"""The GPU suite of ``localdepth bench`` and its prepared script ``benchmarks/gpu.sh``, checked on the CPU
before a GPU runs them: a dry run of the script end to end, the suite without the image libraries,
the time guard, the released Depth Pro architecture, the report and the README's GPU block."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED

from localdepth import registry
from localdepth.bench import gpu
from localdepth.bench.report import GPU_COMMAND, GPU_README_END, GPU_README_START, gpu_markdown, gpu_readme_table


def _env(tmp_path, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", LOCALDEPTH_HOME=str(tmp_path / "home"),
               HF_HUB_OFFLINE="1", PYTHON=sys.executable, LOCALDEPTH_SHARED=str(SHARED))
    env.update(extra)
    return env


def test_the_prepared_script_runs_dry_on_the_cpu(tmp_path):
    """``bash benchmarks/gpu.sh --dry-run``: the GPU tests collected (they skip without CUDA), every part
    of the suite at tiny sizes, the report in both forms. A Python error anywhere fails here, not on
    the lent GPU."""
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", "--out", str(out)],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "gpu-cpu-depth-anything-v2-small.json").read_text())
    assert (out / "gpu-cpu-depth-anything-v2-small.md").read_text().startswith("Measured")
    assert report["suite"] == "gpu" and report["device"] == "cpu" and report["quick"]
    failed = [s for s in report["skipped"] if "failed" in s["why"]]
    assert not failed, failed
    rows = {(r["variant"], r["kind"], r["batch"]) for r in report["results"]}
    assert {("eager", "model", 1), ("eager", "model", 2), ("eager", "folder", 1), ("compiled", "model", 1),
            ("compiled", "folder", 1)} <= rows  # the folder's batches: 1 where no GPU memory is known
    assert {(r["variant"], r["dtype"]) for r in report["results"] if r["variant"] == "transformers pipeline"} == \
        {("transformers pipeline", "fp32"), ("transformers pipeline", "fp16")}
    if (SHARED / "reference" / "depth-anything-v2").is_dir():
        assert ("official infer_image", "folder", 1) in rows and ("official infer_image", "model", 1) in rows
    other = {(r["model"], r["what"].split(", ")[1]) for r in report["other_models"]}
    assert {("depth-pro", "batch 1"), ("da3-small", "1 view together"), ("da3-small", "8 views together"),
            ("video-depth-anything-small", "streaming")} <= other
    assert {s["part"] for s in report["skipped"]} == {"compiled + CUDA graphs", "folder compiled + CUDA graphs"}
    assert all(s["why"] == "CUDA graphs need a CUDA device" for s in report["skipped"])
    assert any(n.startswith("GPU tests:") and "skipped" in n for n in report["notes"])
    assert report["deviation_half_vs_fp32"]["dtype"] == "bf16"
    assert [t["met"] for t in report["targets"]] == [None] * 4  # no verdict from a CPU


BLOCKER = """
import sys
class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("PIL", "cv2", "matplotlib", "platformdirs"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, _Missing())
"""


def test_the_suite_runs_its_model_rows_without_the_image_libraries(tmp_path):
    """A bare machine with PyTorch and Transformers only: the file rows are skipped with one line that
    names what is missing, and the model-only rows still run."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = _env(tmp_path, PYTHONPATH=f"{site}{os.pathsep}{ROOT / 'src'}")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "localdepth.bench.gpu", "--device", "cpu", "--quick",
                           "--compile-backend", "aot_eager", "--out-dir", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Pillow, OpenCV, matplotlib missing" in proc.stderr
    report = json.loads((out / "gpu-cpu-depth-anything-v2-small.json").read_text())
    assert {r["variant"] for r in report["results"] if r["kind"] == "model"} == {"eager", "compiled"}
    assert not [r for r in report["results"] if r["kind"] == "folder"]
    why = {s["part"]: s["why"] for s in report["skipped"]}
    assert why["pipelines"].startswith("needs Pillow, OpenCV, matplotlib")
    assert why["folder eager"].startswith("needs Pillow") and why["folder compiled"].startswith("needs Pillow")
    assert "deviation_half_vs_fp32" in report, report["skipped"]  # on synthetic scenes: no decoding needed
    assert len(report["other_models"]) == 4


def test_the_time_guard_skips_parts_that_would_not_fit(monkeypatch):
    clock = iter([0.0, 100.0, 390.0, 400.0])
    with monkeypatch.context() as m:
        m.setattr(gpu.time, "monotonic", lambda: next(clock))
        guard = gpu.TimeGuard(420.0, quick=False)
        assert guard.allows("matmul")  # 100 s used, 10 s needed
        assert not guard.allows("compiled")  # 390 s used, 150 s needed
        assert guard.allows("deviation")  # 400 s used, 15 s needed
    report = gpu.run_gpu_bench(gpu.GpuBenchConfig.quick_config(device="cpu", time_budget_s=1e-9))
    assert report["results"] == [] and report["skipped"]
    assert all(s["why"].startswith("time budget") for s in report["skipped"])


def test_the_depth_pro_row_is_the_released_architecture():
    """Built on the meta device: the parameter count of the registry entry (952.0 M, from the model card)."""
    pytest.importorskip("transformers")
    model = gpu.depth_pro_model(device="meta")
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert params == pytest.approx(registry.get("depth-pro").params_millions, abs=0.5)


def _gpu_report(**values) -> dict:
    """A GPU report as the suite writes it, with chosen numbers."""
    rows = [
        {"model": "depth-anything-v2-small", "variant": "transformers pipeline", "dtype": "fp16", "kind": "folder",
         "batch": 1, "images_per_s": 40.0},
        {"model": "depth-anything-v2-small", "variant": "eager", "dtype": "fp16", "kind": "model", "batch": 1,
         "model_ms_per_image": values.get("latency", 3.0), "images_per_s": 300.0, "peak_gpu_mb": 400.0},
        {"model": "depth-anything-v2-small", "variant": "compiled + CUDA graphs", "dtype": "fp16", "kind": "model",
         "batch": 1, "model_ms_per_image": values.get("graphs_latency", 2.0), "images_per_s": 500.0},
        {"model": "depth-anything-v2-small", "variant": "eager", "dtype": "fp16", "kind": "model", "batch": 32,
         "model_ms_per_image": 0.5, "images_per_s": 2000.0, "bf16_fraction": values.get("fraction", 0.3)},
        {"model": "depth-anything-v2-small", "variant": "eager", "dtype": "fp16", "kind": "folder", "batch": 16,
         "images_per_s": 200.0, "folder_vs_pipeline_fp16": 5.0},
    ]
    report = {"suite": "gpu", "command": "localdepth bench --device cuda", "date": "2027-01-01 00:00:00 UTC",
              "quick": False, "device": "cuda", "half": "fp16", "time_budget_s": 420, "seconds": 300,
              "machine": {"cpu": "x", "logical_cpus": 16, "torch": "2.13.0", "transformers": "5",
                          "gpu": {"name": "NVIDIA H100 80GB HBM3", "memory_gb": 79.1, "cuda": "12.8"}},
              "matmul_bf16_flops": 7e14, "matmul_n": 8192, "results": rows, "skipped": [], "notes": [],
              "other_models": [{"model": "depth-pro", "what": "1536x1536, batch 1, eager", "ms": values.get("pro", 70.0),
                                "p90_ms": 71.0, "per_s": 14.0, "dtype": "fp16"}],
              "models": {"depth-anything-v2-small": {"weights": "random", "size": 518, "network_input": [518, 518],
                                                     "flops_per_image": 115.3e9}}}
    report["targets"] = gpu.target_verdicts(report)
    return report


def test_targets_take_the_best_variant_and_say_met_or_missed():
    report = _gpu_report()
    verdicts = {t["target"].split(",")[0]: (t["value"], t["met"]) for t in report["targets"]}
    assert verdicts["Depth Anything V2 Small"] == (2.0, True)  # the CUDA-graph variant, not eager's 3.0
    assert verdicts["a folder end to end"] == (5.0, True)
    assert verdicts["batch 32 and above"] == (0.3, True)
    assert verdicts["Depth Pro"] == (70.0, False)
    assert gpu.card_slug(report) == "nvidia-h100-80gb-hbm3"
    text = gpu_markdown(report)
    assert "| eager | fp16 | 3.00 | 300 | 2000 | 30% | 200.0 | 5.00 | 400 |" in text
    assert "Depth Pro, 1536x1536, batch 1, fp16 (ms): 70; target ≤ 60: missed" in text
    slow = _gpu_report(latency=3.0, graphs_latency=2.6, fraction=0.2)
    assert [t["met"] for t in slow["targets"]][0] is False and [t["met"] for t in slow["targets"]][2] is False


def test_readme_gpu_block_is_generated_from_the_committed_report_or_says_not_measured():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(GPU_README_START) + len(GPU_README_START) + 1:readme.index(GPU_README_END)]
    reports = sorted((ROOT / "docs" / "bench").glob("gpu-*.json"))
    report = json.loads(reports[-1].read_text()) if reports else None
    assert block == gpu_readme_table(report, GPU_COMMAND)
    if report is None:
        assert "Not measured yet" in block and GPU_COMMAND in block


def test_official_weights_convert_both_ways():
    """The renaming the official-code rows use, official -> Transformers -> official, on the official
    model's own state dict (the reference fidelity tests check it against the official outputs)."""
    da2_reference = pytest.importorskip("da2_reference")
    import torch

    from localdepth.bench.official import official_to_transformers, transformers_to_official

    model = da2_reference.build_reference("relative")
    state = model.state_dict()
    back = transformers_to_official(state.keys(), official_to_transformers(state))
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)
