"""Network sizes and normalisation as the reference implementations do them."""

from __future__ import annotations

import numpy as np
import pytest

from localdepth import registry
from localdepth.preprocess import network_size, preprocess

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


def test_normalisation_and_layout():
    rgb = np.full((28, 28, 3), 255, np.uint8)
    x = preprocess(rgb, DA, 28)
    assert x.shape == (3, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], (1 - np.array(DA.mean)) / np.array(DA.std), rtol=1e-5)
    y = preprocess(rgb, PYDNET)
    assert y.shape == (448, 640, 3) and np.allclose(y, 1.0)


def test_matches_transformers_processor_on_large_images():
    """Same size and values (up to the resampling kernels) as Transformers' DPT processor."""
    try:
        from transformers import DPTImageProcessorPil as Processor
    except ImportError:
        from transformers import DPTImageProcessor as Processor
    proc = Processor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                     resample=3, image_mean=list(DA.mean), image_std=list(DA.std))
    rng = np.random.default_rng(0)
    smooth = (np.kron(rng.integers(0, 256, (30, 40, 3)), np.ones((40, 40, 1)))).astype(np.uint8)
    ours = preprocess(smooth, DA)
    theirs = np.asarray(proc(images=smooth, return_tensors="np")["pixel_values"][0])
    assert ours.shape == theirs.shape
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.99
