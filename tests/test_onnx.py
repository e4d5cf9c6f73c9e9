"""ONNX export (dynamic shapes, parity, refusal, cache) and the ONNX Runtime backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the ONNX tests need the onnx extra: pip install 'localdepth[onnx]'")

from localdepth import conversion, registry  # noqa: E402
from localdepth.conversion import Settings, Target  # noqa: E402
from localdepth.conversion import onnx as onnx_conversion  # noqa: E402
from localdepth.conversion.calibration import deviation  # noqa: E402
from localdepth.weights import ResolvedWeights  # noqa: E402
from tolerance import within  # noqa: E402

SPEC = registry.get("depth-anything-v2-small")


@pytest.fixture(scope="module")
def exported(tiny_da_dir, tmp_path_factory) -> dict[str, Path]:
    """The tiny model exported once (fp32) and its fp16 and int8 variants."""
    from localdepth.conversion.source import Source

    folder = tmp_path_factory.mktemp("onnx")
    source = Source(SPEC, ResolvedWeights(tiny_da_dir, "argument"), Settings())
    paths = {"fp32": onnx_conversion.export_graph(source.exported, source.output_names, folder / "fp32.onnx")}
    for precision in ("fp16", "int8"):
        paths[precision] = onnx_conversion.derive(paths["fp32"], precision, folder / f"{precision}.onnx")
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
    assert graph.input[0].name == "pixel_values" and graph.output[0].name == "depth"


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 98, 126), (3, 154, 70)])
def test_onnx_equals_pytorch_at_several_sizes_and_batches(exported, tiny_da_dir, batch, height, width):
    from localdepth.backends.onnx_backend import OnnxBackend

    x = np.random.default_rng(batch).standard_normal((batch, 3, height, width)).astype(np.float32)
    reference = _torch_reference(tiny_da_dir, x)
    out = OnnxBackend(exported["fp32"], device="cpu", threads=1).infer(x)
    assert out.shape == (batch, height, width)
    scale = np.ptp(reference)
    assert scale > 0
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-4 * scale)


#: measured on the tiny model, synthetic check image at 140 px, batch of 2 (max / mean of the
#: output range): fp16 7e-4 / 1.5e-4, int8 1.5e-3 / 3e-4; the tolerances allow 7-10x that
REDUCED = {"fp16": {"max": 5e-3, "mean": 1e-3}, "int8": {"max": 1.5e-2, "mean": 3e-3}}


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_variants_load_and_run(exported, tiny_da_dir, precision):
    from localdepth.backends.onnx_backend import OnnxBackend
    from localdepth.conversion.calibration import synthetic_image
    from localdepth.preprocess import preprocess

    backend = OnnxBackend(exported[precision], device="cpu", dtype=precision, threads=1)
    x = preprocess(synthetic_image(), SPEC.preprocessing, 140)[None]
    x = np.concatenate([x, x[:, :, ::-1].copy()])  # batch of 2
    out = backend.infer(x)
    assert out.shape == (2, *x.shape[2:]) and np.isfinite(out).all()
    d = deviation(out, _torch_reference(tiny_da_dir, x))
    within(d["max_rel"], REDUCED[precision]["max"], f"{precision}: max error / range")
    within(d["mean_rel"], REDUCED[precision]["mean"], f"{precision}: mean error / range")
    assert d["mean_rel"] > 1e-6, "a reduced precision that equals fp32 exactly was not reduced"
    assert backend.describe()["dtype"] == precision


def test_export_refuses_a_model_whose_parity_fails(exported, tiny_da_dir, monkeypatch):
    import shutil

    def broken_export(exported_program, names, path, opset=onnx_conversion.OPSET):
        shutil.copyfile(exported["int8"], path)  # a graph that computes something else than fp32 PyTorch
        return path

    monkeypatch.setattr(onnx_conversion, "export_graph", broken_export)
    monkeypatch.setitem(onnx_conversion.TOLERANCES, "fp32", {"max": 1e-9, "mean": 1e-10})
    resolved = ResolvedWeights(tiny_da_dir, "argument")
    with pytest.raises(conversion.ConversionError, match="refusing to cache the ONNX fp32 model"):
        conversion.convert(SPEC, resolved, Target("onnx", "fp32"))
    folder = conversion.slot(SPEC, resolved, Target("onnx", "fp32"))
    assert not folder.exists() and not list(folder.parent.glob(".*")), "nothing may be left in the cache"


def test_backend_choice_ignores_the_cache_and_onnx_reuses_it(exported, tiny_da_dir, monkeypatch):
    import shutil

    import localdepth

    calls = []

    def fast_export(exported_program, names, path, opset=onnx_conversion.OPSET):
        calls.append(path)
        shutil.copyfile(exported["fp32"], path)
        return path

    monkeypatch.setattr(onnx_conversion, "export_graph", fast_export)
    resolved = ResolvedWeights(tiny_da_dir, "argument")
    converted = conversion.convert(SPEC, resolved, Target("onnx", "fp32"))
    assert converted.report["parity"]["ok"] and converted.path.is_file() and not converted.cached
    assert converted.path.parent.parent == conversion.converted_root(SPEC, resolved)
    auto = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu")
    assert auto.backend.name == "torch", "a cached export must not change what auto picks"
    onnx = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="onnx", device="cpu")
    assert onnx.backend.name == "onnx" and onnx.describe()["conversion"]["weights_id"] == converted.report["weights_id"]
    assert len(calls) == 1, "the cached export must be reused, not exported again"
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    a, b = onnx.predict(image), auto.predict(image)
    np.testing.assert_allclose(a.map, b.map, rtol=0, atol=1e-4 * np.ptp(b.map))
    assert conversion.convert(SPEC, resolved, Target("onnx", "fp32")).cached


def test_int8_without_openvino_goes_to_onnx_runtime(exported, tiny_da_dir, monkeypatch):
    import shutil

    import localdepth

    monkeypatch.setattr(onnx_conversion, "export_graph",
                        lambda ep, names, path, opset=18: Path(shutil.copyfile(exported["fp32"], path)))
    est = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu", dtype="int8")
    assert (est.backend.name, est.backend.dtype) == ("onnx", "int8")


def test_onnx_file_as_weights(exported):
    import localdepth

    est = localdepth.load("depth-anything-v2-small", weights=exported["int8"], device="cpu")
    assert est.backend.name == "onnx" and est.backend.dtype == "int8"
    assert est.backend.threads >= 1
    result = est.predict(np.zeros((56, 70, 3), np.uint8))
    assert result.map.shape == (56, 70)
    with pytest.raises(localdepth.errors.BackendError, match="--backend onnx"):
        localdepth.load("depth-anything-v2-small", weights=exported["fp32"], backend="torch", device="cpu")
    with pytest.raises(localdepth.errors.BackendError, match="not an int8 model"):
        localdepth.load("depth-anything-v2-small", weights=exported["fp32"], device="cpu", dtype="int8")


def test_export_cli_prints_parity_on_a_photo_and_writes(tiny_da_dir, photo, tmp_path):
    out = tmp_path / "da2s.onnx"
    cmd = [sys.executable, "-m", "localdepth", "export", "--weights", str(tiny_da_dir), "--output", str(out),
           "--check-image", str(photo), "--input-size", "140"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "parity onnx fp32 vs PyTorch fp32 on demo01.jpg (1, 3, 140, 210)" in done.stdout
    assert "max " in done.stdout and "mean " in done.stdout and " ok" in done.stdout
    assert out.is_file() and out.stat().st_size > 0
    q = subprocess.run(cmd[:-4] + ["--quantize", "int8"], capture_output=True, text=True, timeout=300)
    assert q.returncode == 0, q.stderr
    assert "parity onnx int8" in q.stdout and "parity onnx fp32" in q.stdout and "onnx-int8-" in q.stdout


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
