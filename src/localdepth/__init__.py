"""localdepth: monocular depth estimation on your own CPU or GPU.

>>> import localdepth
>>> model = localdepth.load("depth-anything-v2-small")
>>> result = model.predict("photo.jpg")
>>> result.map.shape, result.kind          # (H, W) float32, "disparity" or "depth"
"""

from .errors import LocalDepthError
from .estimator import DepthEstimator, NonCommercialLicenceWarning, load
from .postprocess import DepthResult
from .registry import DEFAULT_MODEL, MODELS

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL", "MODELS", "DepthEstimator", "DepthResult", "LocalDepthError",
    "NonCommercialLicenceWarning", "__version__", "load",
]
