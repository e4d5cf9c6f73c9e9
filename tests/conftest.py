"""Shared fixtures: paths to ../shared, and tiny randomly initialised models of the real architectures.

Tiny models are built from the real configs with small sizes (as Transformers' own tests do)
and saved in the Hugging Face format, so every code path that loads real weights is exercised.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOCALDEPTH_SHARED", ROOT.parent / "shared"))
IMAGES = SHARED / "data" / "images"
RGBD = SHARED / "data" / "rgbd"
PYDNET = SHARED / "models" / "pydnet" / "optimized_pydnet++.tflite"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared test data lives in ../shared beside the repository)")
    return path


@pytest.fixture(scope="session")
def shared_images() -> Path:
    return _need(IMAGES)


@pytest.fixture(scope="session")
def rgbd_dir() -> Path:
    return _need(RGBD)


@pytest.fixture(scope="session")
def pydnet_file() -> Path:
    return _need(PYDNET)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's caches or reaches the network."""
    home = tmp_path_factory.mktemp("ldhome")
    monkeypatch.setenv("LOCALDEPTH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))


@pytest.fixture(autouse=True, scope="session")
def _auto_backend_on_pytorch():
    """`--backend auto` would pick OpenVINO (bf16) on x86 CPUs where it is installed; the suite's
    references are PyTorch's, so auto stays on PyTorch here, session fixtures and subprocesses
    included (tests/test_openvino.py tests auto itself)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCALDEPTH_AUTO_OPENVINO", "0")
        yield


def tiny_depth_anything_config(depth_estimation_type: str = "relative", max_depth: int = 20):
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2, patch_size=14,
        image_size=518, out_indices=[1, 2, 3, 4], reshape_hidden_states=False, apply_layernorm=True,
        initializer_range=0.1,
    )
    return DepthAnythingConfig(
        backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32], reassemble_hidden_size=32,
        fusion_hidden_size=16, head_hidden_size=8, patch_size=14,
        depth_estimation_type=depth_estimation_type, max_depth=max_depth, initializer_range=0.1,
    )


def _lift_relative_head(model) -> None:
    """Random weights give a last layer whose outputs are small and mostly negative, so the map
    would be mostly ReLU zeros. Rescaling the last 1x1 convolution to unit spread around 4 keeps
    the random network's full output visible, at a realistic magnitude (fp16 included)."""
    import torch

    captured = {}
    hook = model.head.conv3.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    with torch.no_grad():
        model(pixel_values=torch.randn(1, 3, 126, 168, generator=torch.Generator().manual_seed(0)))
    hook.remove()
    out = captured["out"]
    mean, std = float(out.mean()), float(out.std())
    with torch.no_grad():
        model.head.conv3.weight /= std
        model.head.conv3.bias.copy_((model.head.conv3.bias - mean) / std + 4.0)


def save_tiny_depth_anything(folder: Path, depth_estimation_type: str = "relative", max_depth: int = 20,
                             seed: int = 0) -> Path:
    """A randomly initialised Depth Anything of the real architecture, saved with its image processor."""
    import torch
    from transformers import DepthAnythingForDepthEstimation

    try:  # Transformers 5 without torchvision: the PIL processor, same config file
        from transformers import DPTImageProcessorPil as DPTImageProcessor
    except ImportError:
        from transformers import DPTImageProcessor

    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(tiny_depth_anything_config(depth_estimation_type, max_depth)).eval()
    if depth_estimation_type == "relative":
        _lift_relative_head(model)
    model.save_pretrained(folder)
    DPTImageProcessor(
        do_resize=True, size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
        resample=3, do_rescale=True, do_normalize=True,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_pad=False,
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_da_dir(tmp_path_factory) -> Path:
    """Tiny relative Depth Anything (V2 architecture) in Hugging Face format."""
    return save_tiny_depth_anything(tmp_path_factory.mktemp("tiny-da"))


@pytest.fixture(scope="session")
def tiny_metric_dir(tmp_path_factory) -> Path:
    """Tiny metric Depth Anything (sigmoid head, max_depth 20 m)."""
    return save_tiny_depth_anything(tmp_path_factory.mktemp("tiny-da-metric"), "metric", 20, seed=1)


@pytest.fixture(scope="session")
def tiny_estimator(tiny_da_dir):
    import localdepth

    return localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu")


@pytest.fixture
def photo(shared_images) -> Path:
    return shared_images / "demo01.jpg"


def rng_image(h: int = 60, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
