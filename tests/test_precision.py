"""Reduced precision and the PyTorch accelerator options (GPU parts skip without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest

import localdepth
from localdepth.errors import BackendError

from tolerance import within


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_bf16_on_cpu_stays_close_to_fp32(tiny_da_dir):
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    fp32 = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu", dtype="fp32").predict(image)
    bf16_est = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu", dtype="bf16")
    assert bf16_est.backend.dtype == "bf16"
    bf16 = bf16_est.predict(image)
    assert bf16.map.dtype == np.float32
    within(np.abs(bf16.map - fp32.map).mean() / np.abs(fp32.map).max(), 0.05, "bf16: mean error / max")


def test_accelerator_options_are_checked(tiny_da_dir):
    est = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu", compile=True)
    assert est.backend.describe()["compile"] is True  # compiled lazily, on the first batch
    with pytest.raises(BackendError, match="CUDA"):
        localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu", cuda_graphs=True)
    with pytest.raises(BackendError, match="PyTorch options"):
        localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="onnx", device="cpu", compile=True)
    with pytest.raises(BackendError, match="ONNX"):
        localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="torch", device="cpu", dtype="int8")


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_cuda_half_precision_and_graphs_match_fp32(tiny_da_dir, dtype):
    x = np.random.default_rng(0).standard_normal((4, 3, 98, 126)).astype(np.float32)
    ref = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu").backend.infer(x)
    eager = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cuda", dtype=dtype)
    graphs = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cuda", dtype=dtype,
                             cuda_graphs=True)
    out_eager = eager.backend.infer(x)
    out_graph_1, out_graph_2 = graphs.backend.infer(x), graphs.backend.infer(x[::-1].copy())
    scale = np.abs(ref).max()
    within(np.abs(out_eager - ref).mean() / scale, 0.02, "mean error / max")
    np.testing.assert_allclose(out_graph_1, out_eager, rtol=0, atol=1e-2 * scale)
    np.testing.assert_allclose(out_graph_2, out_eager[::-1], rtol=0, atol=1e-2 * scale)
