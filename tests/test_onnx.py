"""ONNX export (dynamic shapes, parity, refusal, cache) and the ONNX Runtime backend."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the ONNX tests need the onnx extra: pip install 'localdepth[onnx]'")

from localdepth import export, registry  # noqa: E402
from localdepth.weights import ResolvedWeights  # noqa: E402

SPEC = registry.get("depth-anything-v2-small")


@pytest.fixture(scope="module")
def exported(tiny_da_dir, tmp_path_factory) -> dict[str, Path]:
    """The tiny model exported once (fp32) and its fp16 and int8 variants."""
    from localdepth.backends.torch_backend import TorchBackend

    folder = tmp_path_factory.mktemp("onnx")
    model = TorchBackend(SPEC, tiny_da_dir, device="cpu", dtype="fp32").model
    paths = {"fp32": export.export_fp32(model, SPEC, folder / "fp32.onnx")}
    for variant in ("fp16", "int8"):
        paths[variant] = export.make_variant(paths["fp32"], variant, folder / f"{variant}.onnx")
    return paths


def _torch_reference(tiny_da_dir, x: np.ndarray) -> np.ndarray:
    """The PyTorch network the graph was exported from (Transformers' Depth Anything with the
    official DINOv2 position-embedding rule, see localdepth.networks.dinov2), on other sizes
    than the export's example."""
    import torch

    from localdepth.networks import load_network

    model = load_network(SPEC, tiny_da_dir, device="cpu")
    with torch.inference_mode():
        return model(torch.from_numpy(x))["depth"].numpy()


def test_graph_has_dynamic_batch_height_width(exported):
    import onnx

    graph = onnx.load(str(exported["fp32"]), load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]
    out_dims = graph.output[0].type.tensor_type.shape.dim
    assert all(d.dim_param for d in out_dims), "the output's batch, height and width must be symbolic too"


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 98, 126), (3, 154, 70)])
def test_onnx_equals_pytorch_at_several_sizes_and_batches(exported, tiny_da_dir, batch, height, width):
    from localdepth.backends.onnx_backend import OnnxBackend

    x = np.random.default_rng(batch).standard_normal((batch, 3, height, width)).astype(np.float32)
    reference = _torch_reference(tiny_da_dir, x)
    out = OnnxBackend(exported["fp32"], device="cpu", threads=1).infer(x)
    assert out.shape == (batch, height, width)
    scale = np.abs(reference).max()
    assert scale > 0
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_reduced_precision_variants_load_and_run(exported, tiny_da_dir, variant):
    from localdepth.backends.onnx_backend import OnnxBackend

    backend = OnnxBackend(exported[variant], device="cpu", dtype=variant, threads=1)
    x, _ = export.check_input(SPEC, None, input_size=140)
    x = np.concatenate([x, x[:, :, ::-1].copy()])  # batch of 2
    out = backend.infer(x)
    assert out.shape == (2, *x.shape[2:]) and np.isfinite(out).all()
    p = export.parity(exported[variant], variant, _torch_reference(tiny_da_dir, x[:1]), x[:1], "synthetic")
    assert p.ok, p.line()
    assert backend.describe()["dtype"] == variant


def test_export_refuses_a_model_whose_parity_fails(exported, tiny_da_dir, monkeypatch):
    def broken_export(model, spec, output, opset=export.OPSET):
        shutil.copyfile(exported["int8"], output)  # a graph that computes something else than fp32 PyTorch
        return output

    monkeypatch.setattr(export, "export_fp32", broken_export)
    monkeypatch.setitem(export.TOLERANCES, "fp32", {"max": 1e-9, "mean": 1e-10})
    resolved = ResolvedWeights(tiny_da_dir, "argument")
    with pytest.raises(export.ExportError, match="refusing to write the fp32 model"):
        export.export(SPEC, resolved, "fp32")
    folder = export.cache_path(SPEC, resolved, "fp32").parent
    assert not list(folder.glob("*.onnx")) and not list(folder.glob(".export.*"))


def test_cached_export_is_used_by_backend_auto_and_onnx(exported, tiny_da_dir, monkeypatch):
    import localdepth

    calls = []

    def fast_export(model, spec, output, opset=export.OPSET):
        calls.append(output)
        shutil.copyfile(exported["fp32"], output)
        return output

    monkeypatch.setattr(export, "export_fp32", fast_export)
    torch_est = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu")
    assert torch_est.backend.name == "torch"  # nothing exported yet: auto is PyTorch
    report = export.export(SPEC, ResolvedWeights(tiny_da_dir, "argument"), "fp32")
    assert report.parity.ok and report.path.is_file() and not report.cached
    assert report.path.parent.parent == localdepth.weights.model_dir(SPEC) / "onnx"
    auto = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu")
    onnx = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="onnx", device="cpu")
    assert auto.backend.name == "onnx" and onnx.backend.name == "onnx"
    assert len(calls) == 1, "the cached export must be reused, not exported again"
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    a, b = auto.predict(image), torch_est.predict(image)
    np.testing.assert_allclose(a.map, b.map, rtol=0, atol=1e-4 * np.abs(b.map).max())
    again = export.export(SPEC, ResolvedWeights(tiny_da_dir, "argument"), "fp32")
    assert again.cached


def test_onnx_file_as_weights(exported):
    import localdepth

    est = localdepth.load("depth-anything-v2-small", weights=exported["int8"], device="cpu")
    assert est.backend.name == "onnx" and est.backend.dtype == "int8"
    assert est.backend.threads >= 1
    result = est.predict(np.zeros((56, 70, 3), np.uint8))
    assert result.map.shape == (56, 70)
    with pytest.raises(localdepth.errors.BackendError, match="--backend onnx"):
        localdepth.load("depth-anything-v2-small", weights=exported["fp32"], backend="torch", device="cpu")


def test_export_cli_prints_parity_on_a_photo_and_writes(tiny_da_dir, photo, tmp_path):
    out = tmp_path / "da2s.onnx"
    cmd = [sys.executable, "-m", "localdepth", "export", "--weights", str(tiny_da_dir), "--output", str(out),
           "--check-image", str(photo), "--input-size", "140"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "parity fp32 vs PyTorch fp32 on demo01.jpg" in done.stdout
    assert "max abs" in done.stdout and "mean abs" in done.stdout and " ok" in done.stdout
    assert out.is_file() and out.stat().st_size > 0
    q = subprocess.run(cmd[:-4] + ["--quantize", "int8"], capture_output=True, text=True, timeout=300)
    assert q.returncode == 0, q.stderr
    assert "parity int8" in q.stdout and "parity fp32" in q.stdout and "int8.onnx" in q.stdout


def _cuda_onnx() -> bool:
    try:
        import onnxruntime as ort
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_onnx(), reason="needs a CUDA GPU and onnxruntime-gpu")
def test_onnx_cuda_io_binding_matches_cpu(exported):
    from localdepth.backends.onnx_backend import OnnxBackend

    x = np.random.default_rng(0).standard_normal((2, 3, 98, 126)).astype(np.float32)
    cpu = OnnxBackend(exported["fp32"], device="cpu").infer(x)
    gpu = OnnxBackend(exported["fp32"], device="cuda").infer(x)
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-3 * np.abs(cpu).max())
