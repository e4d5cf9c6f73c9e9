"""Images to calibrate and check converted models with, and how far two outputs are apart.

The built-in calibration set is synthetic and generated here (no photo is bundled): scenes
with the cues a depth network reacts to (a textured ground plane receding to a horizon, a sky
gradient, shaded boxes and discs that occlude each other, fine texture). Held-out check images
come from the same generator with other seeds. Real photos of the kind you will run are
better: ``localdepth quantize --calibration FOLDER``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: default number of calibration images (synthetic set, or at most this many from a folder)
DEFAULT_CALIBRATION = 16
#: default number of held-out check images
DEFAULT_CHECK = 4
_CHECK_SEED = 1000  # check scenes never share a seed with calibration scenes


def synthetic_image(height: int = 480, width: int = 640) -> np.ndarray:
    """A smooth scene with edges (a ramp, a disc and a bar), uint8 RGB."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin(xx / 37.0) * np.cos(yy / 23.0)], -1)
    disc = (xx - width * 0.6) ** 2 + (yy - height * 0.45) ** 2 < (height * 0.2) ** 2
    img[disc] = (0.9, 0.2, 0.1)
    img[int(height * 0.7):int(height * 0.8), width // 8: width // 2] = (0.1, 0.1, 0.8)
    return (img * 255).astype(np.uint8)


def synthetic_scene(seed: int, height: int = 480, width: int = 640) -> np.ndarray:
    """A random outdoor-like scene, uint8 RGB, the same for the same seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = height * rng.uniform(0.3, 0.55)
    sky_top, sky_low = rng.uniform(0.3, 0.9, 3), rng.uniform(0.6, 1.0, 3)
    t = np.clip(yy / max(horizon, 1.0), 0, 1)[..., None]
    img = sky_top * (1 - t) + sky_low * t
    # ground plane: checker texture in perspective (u = x / depth, v = 1 / depth)
    below = yy > horizon
    depth = np.where(below, (height - horizon) / np.maximum(yy - horizon, 1.0), 0)
    u = (xx - width / 2) * depth / width * rng.uniform(4, 12)
    v = depth * rng.uniform(2, 6)
    checker = ((np.floor(u) + np.floor(v)) % 2)[..., None]
    ground_a, ground_b = rng.uniform(0.1, 0.7, 3), rng.uniform(0.2, 0.9, 3)
    ground = ground_a * checker + ground_b * (1 - checker)
    fog = np.clip(depth / 30.0, 0, 1)[..., None]
    img = np.where(below[..., None], ground * (1 - fog) + sky_low * fog, img)
    # objects standing on the ground, far to near (nearer ones occlude)
    for _ in range(int(rng.integers(3, 8))):
        base = rng.uniform(horizon + 5, height)
        size = (base - horizon) * rng.uniform(0.3, 1.2)
        cx = rng.uniform(0, width)
        colour = rng.uniform(0, 1, 3)
        shade = 0.6 + 0.4 * np.clip((xx - cx) / max(size, 1) + 0.5, 0, 1)[..., None]
        if rng.random() < 0.5:
            mask = (np.abs(xx - cx) < size / 2) & (yy < base) & (yy > base - size * rng.uniform(0.8, 2.0))
        else:
            mask = (xx - cx) ** 2 + (yy - (base - size / 2)) ** 2 < (size / 2) ** 2
        img = np.where(mask[..., None], colour * shade, img)
    img = img + rng.normal(0, 0.02, img.shape)  # sensor noise and fine texture
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@dataclass
class ImageSet:
    """Decoded images and a description of where they came from (for reports)."""

    images: list  # uint8 RGB arrays
    source: str  # "synthetic" or the folder
    count: int
    identity: str  # a hash of the files (names, sizes) or of the generator's seeds

    def describe(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "images"}


def image_set(folder: str | os.PathLike | None, count: int, *, check: bool = False) -> ImageSet:
    """``count`` images from ``folder`` (sorted, the first ones) or the synthetic set.

    ``check``: the held-out synthetic seeds (never the calibration ones).
    """
    if folder is None:
        first = _CHECK_SEED if check else 0
        seeds = list(range(first, first + count))
        ident = hashlib.sha256(f"synthetic:{seeds}".encode()).hexdigest()[:16]
        return ImageSet([synthetic_scene(s) for s in seeds], "synthetic", count, ident)
    from ..errors import LocalDepthError
    from ..inputs import expand_inputs

    # files on disk only: the set is identified by their sizes (a URL has none to stat)
    items = [it for it in expand_inputs([str(folder)]) if not it.error and it.path is not None][:count]
    if not items:
        raise LocalDepthError(f"no images found in {folder}; give a folder of photos")
    digest = hashlib.sha256()
    for it in items:
        digest.update(f"{it.rel}:{Path(it.path).stat().st_size}".encode())
    return ImageSet([it.load() for it in items], str(folder), len(items), digest.hexdigest()[:16])


# ----------------------------------------------------------------------------- comparing outputs

def deviation(out: np.ndarray, ref: np.ndarray) -> dict:
    """|out - ref| relative to the reference's range (max - min): ``max_rel`` (worst pixel) and
    ``mean_rel``. Shapes must match."""
    ref64 = ref.astype(np.float64)
    scale = float(ref64.max() - ref64.min()) or 1.0
    err = np.abs(out.astype(np.float64) - ref64)
    return {"max_rel": float(err.max() / scale), "mean_rel": float(err.mean() / scale)}


def pooled(deviations: list[dict]) -> dict:
    """Several images' deviations as one: the worst max and the mean of means."""
    return {"max_rel": max(d["max_rel"] for d in deviations),
            "mean_rel": float(np.mean([d["mean_rel"] for d in deviations])), "images": len(deviations)}


@dataclass
class Parity:
    """One converted model against its source on one input, with the tolerance it was held to."""

    what: str  # e.g. "openvino fp32 vs PyTorch fp32"
    image: str
    input_shape: tuple
    max_rel: float
    mean_rel: float
    tolerance: dict  # {"max": ..., "mean": ...} relative to the range

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.max_rel) and self.max_rel <= self.tolerance["max"]
                    and self.mean_rel <= self.tolerance["mean"])

    @classmethod
    def of(cls, what: str, image: str, x: np.ndarray, out: np.ndarray, ref: np.ndarray, tolerance: dict) -> Parity:
        if out.shape != ref.shape or not np.isfinite(out).all():
            return cls(what, image, tuple(x.shape), float("inf"), float("inf"), tolerance)
        d = deviation(out, ref)
        return cls(what, image, tuple(x.shape), d["max_rel"], d["mean_rel"], tolerance)

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (f"parity {self.what} on {self.image} {tuple(self.input_shape)}: max {self.max_rel:.2e}, "
                f"mean {self.mean_rel:.2e} of the output range (tolerance {self.tolerance['max']:g} / "
                f"{self.tolerance['mean']:g}) {verdict}")

    def as_dict(self) -> dict:
        return {**asdict(self), "input_shape": list(self.input_shape), "ok": self.ok}
