"""Network sizes and normalisation as the reference implementations do them."""

from __future__ import annotations

import numpy as np
import pytest

from localdepth import registry
from localdepth.preprocess import network_size, preprocess

from tolerance import within

DA = registry.get("depth-anything-v2-small").preprocessing
MIDAS = registry.get("midas-dpt-large").preprocessing
PYDNET = registry.get("pydnet").preprocessing


@pytest.mark.parametrize("hw,expected", [
    ((1362, 2048), (518, 784)),   # landscape: short side to 518, long side to a multiple of 14
    ((2048, 1362), (784, 518)),   # portrait
    ((518, 518), (518, 518)),
    ((425, 640), (518, 784)),     # small images are scaled up: lower bound
    ((480, 640), (518, 686)),
])
def test_depth_anything_lower_bound(hw, expected):
    h, w = network_size(*hw, DA)
    assert (h, w) == expected
    assert h % 14 == 0 and w % 14 == 0 and min(h, w) >= 518


def test_input_size_override_rounds_to_multiple():
    assert network_size(480, 640, DA, 256) == (266, 336)  # 252 < 256 is rounded up to 266


def test_midas_minimal_and_fixed_pydnet():
    h, w = network_size(480, 640, MIDAS)
    assert h % 32 == 0 and w % 32 == 0 and (h, w) == (384, 512)
    assert network_size(100, 900, PYDNET) == (448, 640)
    with pytest.raises(ValueError):
        network_size(100, 900, PYDNET, 256)


# The values the models' own cards publish (preprocessor_config.json), written out here rather
# than read from the registry: depth-anything/Depth-Anything-V2-*-hf (ImageNet statistics, bicubic,
# lower bound 518, multiples of 14) and Intel/dpt-large (DPTImageProcessor defaults: 0.5/0.5).
# PyDNet++ has no card: its Android app feeds RGB / 255 at 640x448.
CARD_MEAN = {"depth-anything": (0.485, 0.456, 0.406), "midas": (0.5, 0.5, 0.5)}
CARD_STD = {"depth-anything": (0.229, 0.224, 0.225), "midas": (0.5, 0.5, 0.5)}


def _distinct_channels(h: int, w: int) -> np.ndarray:
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[...] = (255, 0, 51)  # red 1.0, green 0.0, blue 0.2: a channel swap shows
    return rgb


def test_normalisation_channel_order_and_layout_by_hand():
    """Images already at the network size (no resize), pixel (255, 0, 51), values worked out by hand."""
    da = preprocess(_distinct_channels(28, 28), DA, 28)
    assert da.shape == (3, 28, 28) and da.dtype == np.float32  # CHW
    # (1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225
    np.testing.assert_allclose(da[:, 5, 7], [2.2489083, -2.0357143, -0.9155556], rtol=1e-6)
    midas = preprocess(_distinct_channels(384, 384), MIDAS)
    assert midas.shape == (3, 384, 384)
    np.testing.assert_allclose(midas[:, 100, 200], [1.0, -1.0, -0.6], rtol=1e-6)  # (x - 0.5) / 0.5
    pydnet = preprocess(_distinct_channels(448, 640), PYDNET)
    assert pydnet.shape == (448, 640, 3)  # HWC for the TFLite graph
    np.testing.assert_allclose(pydnet[300, 600], [1.0, 0.0, 0.2], rtol=1e-6)  # x / 255, no mean/std


def _torch_resize(rgb: np.ndarray, hw: tuple[int, int], mode: str) -> np.ndarray:
    """An independent resize: PyTorch's bicubic (Keys a = -0.75, pixel centres aligned), the
    same definition as OpenCV's INTER_CUBIC that the reference implementations use."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    return F.interpolate(x, size=hw, mode=mode, align_corners=False)[0].numpy()


@pytest.mark.parametrize(("family", "pre", "hw", "expected_hw"), [
    ("depth-anything", DA, (20, 30), (518, 784)),     # lower bound: scaled up 25.9x
    ("depth-anything", DA, (700, 1100), (518, 812)),  # scaled down
    ("midas", MIDAS, (100, 150), (256, 384)),         # minimal: the side nearer 384 decides
])
def test_resize_is_bicubic_and_normalised_with_the_card_values(family, pre, hw, expected_hw):
    rgb = np.random.default_rng(hw[0]).integers(0, 256, (*hw, 3), dtype=np.uint8)  # noise: any kernel change shows
    ours = preprocess(rgb, pre)
    assert ours.shape == (3, *expected_hw)
    mean = np.array(CARD_MEAN[family], np.float32)[:, None, None]
    std = np.array(CARD_STD[family], np.float32)[:, None, None]
    expected = (_torch_resize(rgb, expected_hw, "bicubic") - mean) / std
    # measured: mean 1e-6 / max 9e-6 scaled up, mean 2.8e-5 / max 4.3e-4 scaled down (OpenCV keeps
    # float32 coefficients); bilinear instead of bicubic differs by 0.1 to 0.24 on average here
    difference = np.abs(ours - expected)
    within(difference.mean(), 5e-5, "mean difference")
    within(difference.max(), 4e-3, "max difference")


def test_pydnet_resize_is_area_averaging():
    """PyDNet++ (the TUM evaluation script of mobilePydnet) shrinks with area averaging: at exactly
    twice the network size each input pixel is the mean of a 2x2 block."""
    rgb = np.random.default_rng(5).integers(0, 256, (896, 1280, 3), dtype=np.uint8)
    blocks = rgb.astype(np.float64).reshape(448, 2, 640, 2, 3).mean(axis=(1, 3)) / 255.0
    np.testing.assert_allclose(preprocess(rgb, PYDNET), blocks, atol=1e-6)


def test_matches_transformers_processor_with_the_model_card_values():
    """Size, channel order and normalisation as Transformers' DPT processor configured as the
    Depth-Anything-V2-Small-hf card publishes. The kernels differ (PIL's bicubic antialiases when it
    shrinks, the reference's OpenCV bicubic does not), so the values agree only on average."""
    try:
        from transformers import DPTImageProcessorPil as Processor
    except ImportError:
        from transformers import DPTImageProcessor as Processor
    proc = Processor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                     resample=3, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                     image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    rng = np.random.default_rng(0)
    smooth = (np.kron(rng.integers(0, 256, (30, 40, 3)), np.ones((40, 40, 1)))).astype(np.uint8)
    ours = preprocess(smooth, DA)
    theirs = np.asarray(proc(images=smooth, return_tensors="np")["pixel_values"][0])
    assert ours.shape == theirs.shape == (3, 518, 686)
    # measured 0.046 mean absolute difference (every condition of docs/testing.md: PIL against
    # OpenCV); with the channels swapped it is 1.03
    within(np.abs(ours - theirs).mean(), 0.15, "mean difference")
