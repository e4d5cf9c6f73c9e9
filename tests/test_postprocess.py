"""The final resize of a network map to the image, per model, against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from localdepth import registry
from localdepth.backends.base import Backend
from localdepth.estimator import DepthEstimator
from localdepth.postprocess import to_original_size
from localdepth.registry import Postprocessing

CHECKERBOARD = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)

# A 2-pixel row [0, 1] resized to 4 pixels. Pixel centres aligned (align_corners=False): the
# output centres sit at -0.25, 0.25, 0.75, 1.25 in input pixels (edges clamped). Corners aligned
# (align_corners=True): at 0, 1/3, 2/3, 1. Bicubic (Keys, a = -0.75) at -0.25 uses the weight
# of the far tap at distance 1.25, (a x^3 - 5a x^2 + 8a x - 4a) = -0.10546875; at 0.25 the taps
# at 0.75 and 1.75 give 0.26171875 - 0.03515625 = 0.2265625; the rest by symmetry.
ROW = {
    "bilinear": [0.0, 0.25, 0.75, 1.0],
    "bilinear-corners": [0.0, 1 / 3, 2 / 3, 1.0],
    "bicubic": [-0.10546875, 0.2265625, 0.7734375, 1.10546875],
}
POST = {
    "bilinear": Postprocessing(interpolation="bilinear"),
    "bilinear-corners": Postprocessing(interpolation="bilinear", align_corners=True),
    "bicubic": Postprocessing(interpolation="bicubic"),
}


def _checkerboard_4x4(method: str) -> np.ndarray:
    """Every method here is separable and reproduces a constant, so the 2x2 checkerboard
    f(i, j) = i + j - 2ij becomes u_i + u_j - 2 u_i u_j with u the resized row above."""
    u = np.array(ROW[method])
    return u[:, None] + u[None, :] - 2 * u[:, None] * u[None, :]


@pytest.mark.parametrize("method", sorted(ROW))
def test_checkerboard_resized_by_each_method(method):
    out = to_original_size(CHECKERBOARD, 4, 4, "disparity", POST[method])
    np.testing.assert_allclose(out, _checkerboard_4x4(method), atol=1e-6)


def test_metric_depth_is_never_negative_after_bicubic_overshoot():
    out = to_original_size(CHECKERBOARD, 4, 4, "depth", POST["bicubic"])
    assert out.min() == 0.0 and out[0, 0] == 0.0  # -0.1055 * 2 overshoot at the corner, clipped


class _FixedMap(Backend):
    """Stands in for a network whose output at network resolution is a given 2x2 map."""

    name = "fixed"

    def __init__(self, raw: np.ndarray):
        self.raw = raw

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.repeat(self.raw[None], len(batch), axis=0)


@pytest.mark.parametrize(("model", "method"), [
    ("depth-anything-v2-small", "bilinear-corners"),          # DepthAnythingV2.infer_image
    ("depth-anything-v2-metric-indoor-base", "bilinear-corners"),
    ("depth-anything-v1-small", "bilinear"),                  # Depth Anything V1 run.py
    ("midas-dpt-large", "bicubic"),                           # MiDaS run.py
    ("pydnet", "bilinear"),                                   # mobilePydnet inference.py (cv2.resize)
])
def test_each_model_resizes_its_map_as_its_reference_does(model, method):
    spec = registry.get(model)
    # PyDNet++ returns depth-like values: its reciprocal is the disparity checkerboard (+1)
    raw = 1.0 / (1.0 + CHECKERBOARD) if spec.reciprocal_output else CHECKERBOARD + 1.0
    estimator = DepthEstimator(spec, _FixedMap(raw.astype(np.float32)))
    result = estimator.predict(np.zeros((4, 4, 3), np.uint8))
    np.testing.assert_allclose(result.map, 1.0 + _checkerboard_4x4(method), atol=1e-6)


def test_depth_like_output_becomes_its_reciprocal_and_failures_are_filled():
    """A smooth depth-like field (8..12) whose network output dips through zero along part of the
    top row, as PyDNet++'s does on some photos: away from the dip the disparity is exactly 1/raw;
    in it, the filled values follow the field the dip replaced (measured within 0.4 %; 2 % asked),
    with no spike."""
    from localdepth.postprocess import depth_like_to_disparity

    y, x = np.mgrid[0:48, 0:64].astype(np.float32)
    field = 8.0 + 4.0 * (x / 63) * (0.5 + y / 94)
    raw = field.copy()
    raw[0, 20:30] = [1.3, 0.2, 0.1, -0.1, -0.3, -0.5, -0.4, -0.2, 0.2, 0.9]
    raw[1, 20:30] *= 0.6
    disparity = depth_like_to_disparity(raw)
    assert disparity.shape == raw.shape and np.isfinite(disparity).all() and (disparity > 0).all()
    far_from_dip = np.ones(raw.shape, bool)
    far_from_dip[:3, 18:32] = False
    np.testing.assert_array_equal(disparity[far_from_dip], 1.0 / raw[far_from_dip])
    np.testing.assert_allclose(disparity[:2, 20:30], 1.0 / field[:2, 20:30], rtol=0.02)
    # batches convert map by map; a map with nothing plausible (all <= 0) has no disparity at all
    both = depth_like_to_disparity(np.stack([raw, -np.ones_like(raw)]))
    np.testing.assert_array_equal(both[0], disparity)
    assert (both[1] == 0).all()
