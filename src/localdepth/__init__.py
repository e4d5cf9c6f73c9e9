"""localdepth: monocular depth estimation on your own CPU or GPU.

>>> import localdepth
>>> model = localdepth.load("depth-anything-v2-small")
>>> result = model.predict("photo.jpg")
>>> result.map.shape, result.kind          # (H, W) float32, "disparity" or "depth"
"""

from .runtimes import enable_mps_fallback

enable_mps_fallback()  # before PyTorch is imported, which reads it once (macOS only)

from .errors import LocalDepthError  # noqa: E402
from .estimator import DepthEstimator, NonCommercialLicenceWarning, load  # noqa: E402
from .postprocess import DepthResult  # noqa: E402
from .registry import DEFAULT_MODEL, MODELS  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL", "MODELS", "DepthEstimator", "DepthResult", "LocalDepthError",
    "NonCommercialLicenceWarning", "__version__", "load",
]
