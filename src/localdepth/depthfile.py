"""Reading depth maps written by ``localdepth run`` (or anyone) back, with their sidecar.

``read_depth_map(path)`` understands ``.npy``/``.npz`` (float maps), ``.pfm`` and localdepth's
16-bit ``.png`` (decoded with the mapping in the ``.json`` sidecar beside it). The kind
(``"depth"`` = z-depth, ``"disparity"`` = relative inverse depth) comes from the sidecar,
else from the caller's ``kind``; depth is in metres unless the sidecar's ``units`` say
``relative`` (:func:`is_metric`).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .errors import LocalDepthError
from .writers import decode_png16

MAP_SUFFIXES = (".npy", ".npz", ".pfm", ".png")


def sidecar_for(path: Path) -> dict | None:
    """The ``stem.json`` sidecar next to a map, if any (only that name: a guess could pick another map's)."""
    candidate = Path(path).with_suffix(".json")
    if candidate.is_file():
        try:
            return json.loads(candidate.read_text())
        except (OSError, ValueError):
            return None
    return None


def read_depth_map(path: str | Path, kind: str | None = None) -> tuple[np.ndarray, str, dict]:
    """``(map (H, W) float32, kind, sidecar or {})``; raises :class:`LocalDepthError` in one line."""
    path = Path(path)
    if not path.is_file():
        raise LocalDepthError(f"{path}: no such depth map")
    meta = sidecar_for(path) or {}
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        data = np.load(path)
        arr = data[data.files[0]] if hasattr(data, "files") else data
    elif suffix == ".pfm":
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    elif suffix == ".png":
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        mapping = (meta.get("outputs") or {}).get("png16")
        if raw is None or raw.dtype != np.uint16:
            raise LocalDepthError(f"{path}: not a 16-bit depth PNG")
        if mapping is None:
            raise LocalDepthError(f"{path}: a 16-bit PNG without its localdepth sidecar; "
                                  "give the map as .npy, or use `--reference-scale` style metres yourself")
        arr = decode_png16(raw, mapping)
    else:
        raise LocalDepthError(f"{path}: unsupported depth map type; use one of {', '.join(MAP_SUFFIXES)}")
    if arr is None:
        raise LocalDepthError(f"{path}: cannot read the depth map")
    arr = np.asarray(arr, dtype=np.float32).squeeze()
    if arr.ndim != 2:
        raise LocalDepthError(f"{path}: a depth map must be 2-D, got shape {arr.shape}")
    found = meta.get("kind") or kind or "disparity"
    if found not in ("depth", "disparity"):
        raise LocalDepthError(f"{path}: unknown map kind '{found}' (depth or disparity)")
    return arr, found, meta


def is_metric(kind: str, meta: dict) -> bool:
    """A map of ``kind`` with sidecar ``meta`` is in metres: depth, unless its sidecar says relative units."""
    return kind == "depth" and (meta.get("units") or "m") == "m"


def predicted_camera(meta: dict, width: int, height: int):
    """The camera the model predicted, from a sidecar's ``predicted_intrinsics`` (sized to the map), or None."""
    from .geometry import camera_from_dict

    info = meta.get("predicted_intrinsics")
    return camera_from_dict(info, width, height) if info and "fx" in info else None
