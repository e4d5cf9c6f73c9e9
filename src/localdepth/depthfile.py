"""Reading depth maps written by ``localdepth run`` (or anyone) back, with their sidecar.

``read_depth_map(path)`` understands ``.npy``/``.npz`` (float maps), ``.pfm`` and localdepth's
16-bit ``.png`` (decoded with the mapping in the ``.json`` sidecar beside it). The kind
(``"depth"`` = metres, ``"disparity"`` = relative inverse depth) comes from the sidecar,
else from the caller's ``kind``.
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


def as_2d_map(array) -> np.ndarray:
    """A stored map as ``(H, W)`` float32: leading or trailing length-1 axes (``(1, H, W)``,
    ``(H, W, 1)``) are dropped, but never H or W themselves, so a 1x1 map stays 1x1 (a plain
    ``squeeze`` made it a scalar)."""
    arr = np.asarray(array, dtype=np.float32)
    while arr.ndim > 2 and (arr.shape[0] == 1 or arr.shape[-1] == 1):
        arr = arr[0] if arr.shape[0] == 1 else arr[..., 0]
    return arr


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
    arr = as_2d_map(arr)
    if arr.ndim != 2:
        raise LocalDepthError(f"{path}: a depth map must be 2-D (height x width), got shape {arr.shape}")
    if arr.size == 0:
        raise LocalDepthError(f"{path}: the depth map is empty ({arr.shape[1]}x{arr.shape[0]} pixels)")
    found = meta.get("kind") or kind or "disparity"
    if found not in ("depth", "disparity"):
        raise LocalDepthError(f"{path}: unknown map kind '{found}' (depth or disparity)")
    return arr, found, meta
