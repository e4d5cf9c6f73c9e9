"""``localdepth bench``: the quick CI mode, the real architecture's random weights, FLOP counting."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from localdepth import registry
from localdepth.bench.arch import architecture_config, count_flops


def test_bench_quick_writes_json_with_ratio_fields(tiny_da_dir, tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    cmd = [sys.executable, "-m", "localdepth", "bench", "--quick", "--weights", str(tiny_da_dir),
           "--backend", "torch,onnx", "--dtype", "fp32,int8", "--device", "cpu",
           "--json", str(out_json), "--markdown", str(out_md)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out_json.read_text())
    assert report["quick"] is True
    assert report["machine"]["cpu"] and report["machine"]["physical_cores"] >= 1 and report["machine"]["torch"]
    assert report["matmul_fp32_flops"] > 0
    model = report["models"]["depth-anything-v2-small"]
    assert model["random_weights"] is False and model["flops"]["140"] > 0
    assert model["pipeline"]["140"]["e2e_images_per_s"] > 0
    rows = {(r["backend"], r["dtype"]): r for r in report["results"]}
    assert set(rows) == {("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")}
    assert {(s["backend"], s["dtype"]) for s in report["skipped"]} == {("torch", "int8")}
    for r in rows.values():
        for key in ("e2e_vs_pipeline", "model_vs_roofline", "model_ms_per_image", "model_p90_ms_per_image",
                    "model_images_per_s", "e2e_images_per_s", "peak_rss_mb"):
            assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] > 0, key
        assert r["model_ms_per_batch"]["p90_ms"] >= r["model_ms_per_batch"]["median_ms"]
        assert r["peak_gpu_mb"] is None  # CPU run
        assert r["deviation_vs_fp32"]["mean_rel"] < 0.05
    assert rows[("torch", "fp32")]["deviation_vs_fp32"]["max_rel"] == 0.0
    table = out_md.read_text()
    assert "× pipeline" in table and "| depth-anything-v2-small | onnx | int8 | cpu | 140 | 1 |" in table
    assert "localdepth bench --quick" in table and "matmul throughput" in table


def test_random_weights_have_the_released_architecture():
    from transformers import DepthAnythingForDepthEstimation

    spec = registry.get("depth-anything-v2-small")
    config = architecture_config(spec)
    assert config.backbone_config.hidden_size == 384 and config.backbone_config.num_hidden_layers == 12
    assert config.backbone_config.num_attention_heads == 6
    assert config.neck_hidden_sizes == [48, 96, 192, 384] and config.fusion_hidden_size == 64
    model = DepthAnythingForDepthEstimation(config)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert params == pytest.approx(spec.params_millions, rel=0.01)  # 24.8 M, as released
    assert architecture_config(registry.get("pydnet")) is None


def test_flop_count_grows_with_the_input(tiny_da_dir):
    small, large = count_flops(tiny_da_dir, 70, 70), count_flops(tiny_da_dir, 140, 140)
    assert 0 < small < large
    assert 3.5 < large / small < 6  # 4x the pixels; attention grows faster than linearly
