"""localdepth: monocular depth estimation on your own CPU or GPU.

>>> import localdepth
>>> model = localdepth.load("depth-anything-v2-small")
>>> result = model.predict("photo.jpg")
>>> result.map.shape, result.kind          # (H, W) float32, "disparity" or "depth"
"""

from .runtimes import enable_mps_fallback

enable_mps_fallback()  # before PyTorch is imported, which reads it once (macOS only)

from .errors import LocalDepthError  # noqa: E402
from .registry import DEFAULT_MODEL, MODELS  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL", "MODELS", "DepthEstimator", "DepthResult", "LocalDepthError",
    "NonCommercialLicenceWarning", "__version__", "load",
]

#: imported on first use, so that parts that need neither (the networks, backends and the GPU
#: benchmark's model-only rows) import without the image libraries (Pillow, OpenCV)
_LAZY = {"DepthEstimator": "estimator", "NonCommercialLicenceWarning": "estimator", "load": "estimator",
         "DepthResult": "postprocess"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'localdepth' has no attribute {name!r}")
