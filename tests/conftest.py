"""Shared fixtures: paths to ../shared, and tiny randomly initialised models of the real architectures.

Tiny models are built from the real configs with small sizes (as Transformers' own tests do)
and saved in the Hugging Face format, so every code path that loads real weights is exercised.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOCALDEPTH_SHARED", ROOT.parent / "shared"))
IMAGES = SHARED / "data" / "images"
RGBD = SHARED / "data" / "rgbd"
PYDNET = SHARED / "models" / "pydnet" / "optimized_pydnet++.tflite"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the real test data lives in shared/ beside the checkout, or where "
                    f"LOCALDEPTH_SHARED points (README, Tests)")
    return path


def pytest_configure(config) -> None:
    """With LOCALDEPTH_TOLERANCE_LOG set, every numeric check records what it measured, under the
    conditions tests/tolerance.py describes (benchmarks/tolerance_matrix.py); otherwise nothing."""
    import tolerance

    tolerance.install()


def pytest_report_header(config) -> list[str]:
    """Say up front whether the real data was found, so its tests never skip unnoticed."""
    if SHARED.is_dir():
        return [f"localdepth shared test data: {SHARED}"]
    return [f"localdepth shared test data: ABSENT at {SHARED}; the tests that need real photos, RGB-D frames, "
            f"PyDNet++ or the reference code skip (README, Tests, says what goes there)"]


OPEN3D_SYSTEM_PACKAGES = "apt-get update && apt-get install -y libusb-1.0-0"


def need_open3d():
    """Open3D, or a skip that says why. Its Linux wheel loads libusb with ctypes, so a machine
    without ``libusb-1.0-0`` raises OSError, not ImportError: ``pytest.importorskip`` lets that
    through and the whole run aborts at collection. Call at module level or in a test."""
    try:
        import open3d
    except ImportError as e:
        pytest.skip(f"Open3D is not installed ({e}); pip install -e '.[geometry]'", allow_module_level=True)
    except OSError as e:
        pytest.skip(f"Open3D cannot load a system library ({str(e).splitlines()[0]}); on Debian/Ubuntu: "
                    f"{OPEN3D_SYSTEM_PACKAGES}", allow_module_level=True)
    return open3d


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
    out = captured["out"][:1]  # the one input's (tests/tolerance.py may run it inside a batch of two)
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


#: ``python -m localdepth`` that Ctrl-C reaches, as in a terminal, also when the suite runs as a
#: background job of a non-interactive shell (CI's runners, nohup ... &): such a job starts with
#: SIGINT ignored, a child inherits that, and Python then never raises KeyboardInterrupt
INTERRUPTIBLE_LOCALDEPTH = [sys.executable, "-c", "import runpy, signal; signal.signal(signal.SIGINT, "
                            "signal.default_int_handler); runpy.run_module('localdepth', run_name='__main__', "
                            "alter_sys=True)"]


# ----------------------------------------------------------------------------- Depth Pro, ZoeDepth, Prompt DA

def _rescale_output(conv, run, mean_target: float, std_target: float) -> None:
    """Rescale a random network's last layer so that its output has a realistic magnitude
    (``mean_target +- std_target``), as :func:`_lift_relative_head` does for Depth Anything."""
    import torch

    captured = {}
    hook = conv.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    with torch.no_grad():
        run()
    hook.remove()
    out = captured["out"][:1]  # the one input's (tests/tolerance.py may run it inside a batch of two)
    mean = float(out.mean())
    std = float(out.std()) if out.numel() > 1 else abs(mean) + 1.0  # one value (a field of view): no spread
    with torch.no_grad():
        conv.weight *= std_target / (std or 1.0)
        conv.bias.copy_((conv.bias - mean) * std_target / (std or 1.0) + mean_target)


def _tiny_dinov2(image_size: int, patch_size: int, layers: int = 2) -> dict:
    return dict(model_type="dinov2", hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, mlp_ratio=2,
                patch_size=patch_size, image_size=image_size, initializer_range=0.1)


def save_tiny_depth_pro(folder: Path, seed: int = 0, fov_deg: float = 55.0, fov_spread: float = 5.0) -> Path:
    """A randomly initialised Depth Pro (the real multi-scale architecture, 1536 x 1536 input, with its
    field-of-view head), tiny widths. Its canonical inverse depth is lifted to about 4 +- 1 and its
    field of view to about ``fov_deg`` +- ``fov_spread`` degrees (55: the metric map and the camera are
    realistic; a negative one is the invalid camera a random network can predict)."""
    import torch
    from transformers import DepthProConfig, DepthProForDepthEstimation

    torch.manual_seed(seed)
    config = DepthProConfig(
        fusion_hidden_size=16, intermediate_hook_ids=[1, 0], intermediate_feature_dims=[8, 8],
        scaled_images_feature_dims=[16, 16, 8], use_fov_model=True, num_fov_head_layers=2,
        image_model_config=_tiny_dinov2(384, 16), patch_model_config=_tiny_dinov2(384, 16),
        fov_model_config=_tiny_dinov2(384, 16), initializer_range=0.1)
    model = DepthProForDepthEstimation(config, use_fov_model=True).eval()
    x = torch.randn(1, 3, 1536, 1536, generator=torch.Generator().manual_seed(0)) * 0.5
    _rescale_output(model.head.layers[4], lambda: model(pixel_values=x), 4.0, 1.0)
    _rescale_output(model.fov_model.head.layers[-1], lambda: model(pixel_values=x), fov_deg, fov_spread)
    model.save_pretrained(folder)
    return folder


def save_tiny_zoedepth(folder: Path, seed: int = 0, bins: tuple[str, float] = ("nyu", 10.0)) -> Path:
    """A randomly initialised ZoeDepth (BEiT backbone with relative position bias, one metric-bins
    head, ``bins``: its name and deepest depth, NYU's by default, KITTI's ``("kitti", 80.0)``), tiny
    widths, saved with Transformers' image processor configuration."""
    import torch
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation, ZoeDepthImageProcessorPil

    torch.manual_seed(seed)
    backbone = BeitConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=384,
        patch_size=16, use_relative_position_bias=True, reshape_hidden_states=False,
        out_features=["stage1", "stage2", "stage3", "stage4"], initializer_range=0.1)
    config = ZoeDepthConfig(
        backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, bottleneck_features=16,
        num_relative_features=8, bin_embedding_dim=8, num_attractors=[4, 4, 2, 1],
        bin_configurations=[{"name": bins[0], "n_bins": 8, "min_depth": 1e-3, "max_depth": bins[1]}],
        initializer_range=0.1)
    model = ZoeDepthForDepthEstimation(config).eval()
    model.save_pretrained(folder)
    ZoeDepthImageProcessorPil(
        do_resize=True, size={"height": 384, "width": 512}, keep_aspect_ratio=True, ensure_multiple_of=32,
        do_pad=True, do_rescale=True, do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        resample=2,
    ).save_pretrained(folder)
    return folder


def save_tiny_prompt_depth_anything(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised Prompt Depth Anything (DINOv2 + DPT head with prompt fusion, metric
    sigmoid head), tiny widths, saved with the processor configuration of the released checkpoints
    (756, multiples of 14, aspect kept, bicubic, ImageNet mean/std, prompt in metres)."""
    import torch
    from transformers import (PromptDepthAnythingConfig, PromptDepthAnythingForDepthEstimation,
                              PromptDepthAnythingImageProcessorPil)

    torch.manual_seed(seed)
    da = tiny_depth_anything_config("metric")  # the same DINOv2 + DPT sizes, with the prompt fusion added
    config = PromptDepthAnythingConfig(
        backbone_config=da.backbone_config, neck_hidden_sizes=da.neck_hidden_sizes,
        reassemble_hidden_size=da.reassemble_hidden_size, fusion_hidden_size=da.fusion_hidden_size,
        head_hidden_size=da.head_hidden_size, patch_size=14, depth_estimation_type="metric", max_depth=None,
        initializer_range=0.1)
    model = PromptDepthAnythingForDepthEstimation(config).eval()
    # the sigmoid head of a random network sits near 0.5 everywhere: spread its input to use its range
    x = torch.randn(1, 3, 252, 336, generator=torch.Generator().manual_seed(0))
    prompt = torch.rand(1, 1, 24, 32, generator=torch.Generator().manual_seed(1)) * 3 + 0.5
    _rescale_output(model.head.conv3, lambda: model(pixel_values=x, prompt_depth=prompt), 0.0, 1.5)
    model.save_pretrained(folder)
    # the processor of the released checkpoints (Transformers' conversion script): 756, x14, aspect kept, bicubic
    PromptDepthAnythingImageProcessorPil(size={"height": 756, "width": 756}, ensure_multiple_of=14,
                                         keep_aspect_ratio=True, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
                                         resample=3, prompt_scale_to_meter=0.001).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_depth_pro_dir(tmp_path_factory) -> Path:
    return save_tiny_depth_pro(tmp_path_factory.mktemp("tiny-depth-pro"))


@pytest.fixture(scope="session")
def tiny_depth_pro_bad_fov_dir(tmp_path_factory) -> Path:
    """A tiny Depth Pro whose field of view is invalid (-1.9 degrees for every photo), as a random one predicted."""
    return save_tiny_depth_pro(tmp_path_factory.mktemp("tiny-depth-pro-bad-fov"), fov_deg=-1.9, fov_spread=0.0)


@pytest.fixture(scope="session")
def tiny_zoedepth_dir(tmp_path_factory) -> Path:
    return save_tiny_zoedepth(tmp_path_factory.mktemp("tiny-zoedepth"))


@pytest.fixture(scope="session")
def tiny_prompt_da_dir(tmp_path_factory) -> Path:
    return save_tiny_prompt_depth_anything(tmp_path_factory.mktemp("tiny-prompt-da"))
