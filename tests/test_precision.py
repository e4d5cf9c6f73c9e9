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


# ----------------------------------------------------------------------------- PyTorch on MPS (a Mac)
# PyTorch's texts (aten/src/ATen/mps/MPSFallback.mm): the warning with PYTORCH_ENABLE_MPS_FALLBACK=1
# and the error without it. Linux has no MPS: the backend's guard is exercised with those texts.
_FALLBACK = ("The operator 'aten::{}' is not currently supported on the MPS backend and will fall back to run on "
             "the CPU. This may have performance implications.")
_MISSING = ("The operator 'aten::{}' is not currently implemented for the MPS device. If you want this op to be "
            "considered for addition please comment on https://github.com/pytorch/pytorch/issues/141287 ...")


def test_mps_fallback_is_switched_on_on_macos_unless_the_user_says_otherwise():
    from localdepth.runtimes import MPS_FALLBACK, enable_mps_fallback

    env: dict = {}
    assert enable_mps_fallback(env, "darwin") is True and env == {MPS_FALLBACK: "1"}
    env = {MPS_FALLBACK: "0"}  # the user's value wins
    assert enable_mps_fallback(env, "darwin") is False and env == {MPS_FALLBACK: "0"}
    env = {}
    assert enable_mps_fallback(env, "linux") is False and env == {}


def test_import_sets_the_fallback_before_torch_is_imported():
    """PyTorch reads the switch once, when it is imported: localdepth sets it on import, first."""
    import ast
    from pathlib import Path

    import localdepth as package

    tree = ast.parse(Path(package.__file__).read_text())
    calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module != "runtimes"]
    assert calls and calls[0].value.func.id == "enable_mps_fallback"
    assert all(calls[0].lineno < n.lineno for n in imports)  # before anything that could import torch


def test_an_operation_falling_back_to_the_cpu_is_said_once_in_one_line(tiny_da_dir, monkeypatch):
    """The backend on MPS turns PyTorch's fallback warning into one line per operation (once per
    process); other warnings pass through as they were."""
    import warnings

    import torch

    from localdepth.backends import torch_backend

    est = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="torch", device="cpu")
    backend = est.backend
    backend.device = "mps"  # as on a Mac; tensors stay on the CPU here
    monkeypatch.setattr(backend, "_to_device", lambda a: torch.from_numpy(np.ascontiguousarray(a)))
    monkeypatch.setattr(backend, "_on_device", lambda x: x)
    lines: list[str] = []
    monkeypatch.setattr(torch_backend, "_fallbacks_noticed", set())
    monkeypatch.setattr(torch_backend, "mps_fallback_notice",
                        lambda log=None, real=torch_backend.mps_fallback_notice: real(lines.append))
    model = backend.model

    def forward(pixel_values, **kw):
        warnings.warn(_FALLBACK.format("upsample_bicubic2d.out"), UserWarning)
        warnings.warn("something else", UserWarning)
        return model(pixel_values, **kw)

    monkeypatch.setattr(backend, "model", forward)
    x = np.zeros((1, 3, 56, 56), np.float32)
    with pytest.warns(UserWarning, match="something else"):
        out = backend.run(x)
        backend.run(x)
    assert out.depth.shape == (1, 56, 56)
    assert lines == ["localdepth: warning: PyTorch on MPS runs aten::upsample_bicubic2d.out on the CPU (MPS lacks "
                     "it): same results, slower; PYTORCH_ENABLE_MPS_FALLBACK=0 makes it an error instead"]


def test_an_operation_mps_lacks_without_the_fallback_is_one_line():
    from localdepth.backends.torch_backend import mps_fallback_notice

    with pytest.raises(BackendError) as info, mps_fallback_notice(lambda line: None):
        raise NotImplementedError(_MISSING.format("_linalg_eigh"))
    message = str(info.value)
    assert "\n" not in message and "aten::_linalg_eigh" in message
    assert "PYTORCH_ENABLE_MPS_FALLBACK=1" in message and "--device cpu" in message
    with pytest.raises(NotImplementedError, match="something else"), mps_fallback_notice(lambda line: None):
        raise NotImplementedError("something else")
