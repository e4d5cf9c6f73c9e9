"""Training data: the evaluator's datasets, a split by scene, and augmented crops.

The frames come from :func:`localdepth.evaluation.open_dataset`, the readers ``localdepth eval -d``
uses (``folder:``, ``manifest:``, ``nyu:``, ``kitti:``, ``diode:``, ``stray:``). One training
item is made from one frame, as the Depth Anything V2 metric recipe makes it:

1. valid pixels: finite depth > 0 inside the frame's depth range and the model's (a metric head
   cannot predict beyond its ``max_depth``), and the dataset's own mask (DIODE's, a Stray
   capture's confidence); missing depth is 0 (sparse LiDAR keeps only its points);
2. photometric jitter (brightness, contrast, saturation, hue), on the RGB in [0, 1];
3. the model's own preprocessing (:func:`localdepth.preprocess.preprocess`: the short side to
   ``input_size``, a multiple of the patch size, ImageNet mean/std), so training sees what
   inference sees; depth and mask follow with nearest-neighbour resizing (the official
   ``Resize(resize_target=True)``: no value is invented between a surface and its background);
4. a random ``input_size x input_size`` crop (a multiple of the patch size) and a horizontal flip.

Everything random in an item comes from a generator seeded by ``(seed, epoch, frame)``, so an item
is the same whoever loads it and whenever: a resumed run and every data-parallel worker see
exactly the frames and crops of an uninterrupted single-process run.

The order of the frames is a seeded permutation per epoch (:class:`Cursor`). A frame that cannot be
read or has no valid depth costs one line, the first time, and becomes an item with an empty mask,
which the losses leave out (:mod:`localdepth.training.losses`); the batch keeps its shape, so
workers stay in step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import LocalDepthError
from ..evaluation.datasets import Dataset, Sample, open_dataset
from ..evaluation.metrics import valid_mask
from ..images import to_float
from ..preprocess import preprocess
from ..registry import Preprocessing
from .losses import MIN_PIXELS

#: share of the frames held out for validation when no --val is given
VAL_FRACTION = 0.1


def open_training_data(spec: str, *, depth_scale: float | None = None, data_root: str | None = None) -> Dataset:
    """A dataset spec (``KIND:PATH``) through the evaluator's readers."""
    return open_dataset(spec, depth_scale=depth_scale, data_root=data_root)


# ----------------------------------------------------------------------------- the split

def _scene_rank(scene: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{scene}".encode()).hexdigest()


def split_by_scene(samples: list[Sample], fraction: float = VAL_FRACTION, seed: int = 0
                   ) -> tuple[list[Sample], list[Sample], dict]:
    """Hold out whole scenes (sequences) for validation: frames of one sequence are near copies of
    each other, so random frames would validate on what the model trained on.

    Scenes are taken in a seeded order until they hold ``fraction`` of the frames (at least one
    scene, never all). With a single scene, its last ``fraction`` of frames (one contiguous block
    at its end) is held out instead, and the record says so. Returns ``(train, val, record)``."""
    if fraction <= 0:
        return list(samples), [], {"method": "none", "note": "no validation split (--val-fraction 0)"}
    scenes: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        scenes.setdefault(s.scene, []).append(i)
    want = max(1, int(round(fraction * len(samples))))
    held: set[int] = set()
    if len(scenes) >= 2:
        chosen = []
        for scene in sorted(scenes, key=lambda name: _scene_rank(name, seed)):
            if len(held) >= want or len(chosen) == len(scenes) - 1:
                break
            chosen.append(scene)
            held.update(scenes[scene])
        record = {"method": "by scene", "fraction": fraction, "val_scenes": sorted(chosen),
                  "train_scenes": sorted(set(scenes) - set(chosen))}
    else:
        if len(samples) < 2:
            raise LocalDepthError("one frame cannot be split into training and validation; give --val or more data")
        want = min(want, len(samples) - 1)
        held = set(range(len(samples) - want, len(samples)))
        record = {"method": "end of the only sequence", "fraction": fraction,
                  "note": f"one scene ({next(iter(scenes)) or 'unnamed'}): its last {want} frames, one contiguous "
                          "block, are held out (frames next to each other are alike; a second scene, or --val, "
                          "gives a fairer check)"}
    train = [s for i, s in enumerate(samples) if i not in held]
    val = [s for i, s in enumerate(samples) if i in held]
    record.update(train_frames=len(train), val_frames=len(val), val_names=[s.name for s in val])
    return train, val, record


# ----------------------------------------------------------------------------- items

@dataclass
class Item:
    """One training example: ``image`` ``(3, S, S)`` float32 network input, ``depth`` ``(S, S)``
    float32 metres (0 where missing), ``mask`` ``(S, S)`` bool."""

    image: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    name: str


@dataclass(frozen=True)
class Augment:
    flip: bool = True
    jitter: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue_degrees: float = 10.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def jitter_colours(rgb: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Brightness, contrast, saturation and hue changed by random amounts; RGB ``(H, W, 3)`` in [0, 1]."""
    x = rgb * np.float32(rng.uniform(1 - aug.brightness, 1 + aug.brightness))
    grey = x @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    x = (x - grey.mean()) * np.float32(rng.uniform(1 - aug.contrast, 1 + aug.contrast)) + grey.mean()
    x = grey[..., None] + (x - grey[..., None]) * np.float32(rng.uniform(1 - aug.saturation, 1 + aug.saturation))
    hsv = cv2.cvtColor(np.clip(x, 0, 1).astype(np.float32), cv2.COLOR_RGB2HSV)  # hue in degrees
    hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(rng.uniform(-aug.hue_degrees, aug.hue_degrees)), 360.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


class FrameLoader:
    """Frames -> :class:`Item`\\ s for one model's preprocessing (see the module docstring)."""

    def __init__(self, samples: list[Sample], pre: Preprocessing, input_size: int, *, seed: int = 0,
                 augment: Augment | None = Augment(), max_depth: float | None = None,
                 warn: Callable[[str], None] | None = None):
        self.samples = samples
        self.pre = pre
        self.crop = max(pre.multiple_of, input_size // pre.multiple_of * pre.multiple_of)
        self.input_size = input_size
        self.seed = seed
        self.augment = augment
        self.max_depth = max_depth
        self.warn = warn
        self.bad: dict[str, str] = {}  # frame name -> why it is skipped (said once)

    def __len__(self) -> int:
        return len(self.samples)

    def empty(self, name: str) -> Item:
        s = self.crop
        return Item(np.zeros((3, s, s), np.float32), np.zeros((s, s), np.float32), np.zeros((s, s), bool), name)

    def load(self, index: int, epoch: int) -> Item:
        sample = self.samples[index]
        try:
            return self._load(sample, np.random.default_rng([self.seed, epoch, index]))
        except Exception as e:  # one unreadable frame costs its own line, never the run
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if sample.name not in self.bad:
                self.bad[sample.name] = reason
                if self.warn:
                    self.warn(f"{sample.name}: skipped ({reason})")
            return self.empty(sample.name)

    def _load(self, sample: Sample, rng: np.random.Generator) -> Item:
        rgb = sample.rgb()
        depth = np.asarray(sample.depth(), dtype=np.float32)
        if depth.ndim != 2:
            raise LocalDepthError(f"depth has shape {depth.shape}, expected (H, W)")
        limits = [v for v in (sample.max_depth, self.max_depth) if v is not None]
        hi = min(limits) if limits else None
        mask = valid_mask(depth, sample.valid() if sample.valid else None, min_depth=sample.min_depth, max_depth=hi)
        if int(mask.sum()) < MIN_PIXELS:
            raise LocalDepthError(f"no valid depth ({int(mask.sum())} pixels in range)")
        x = to_float(rgb)
        if self.augment and self.augment.jitter:
            x = jitter_colours(x, rng, self.augment)
        image = preprocess(x, self.pre, self.input_size)  # (3, h, w)
        h, w = image.shape[1:]
        if min(h, w) < self.crop:
            raise LocalDepthError(f"network input {w}x{h} is smaller than the {self.crop}-pixel crop")
        depth = cv2.resize(np.where(mask, depth, 0.0).astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
        mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        top = int(rng.integers(0, h - self.crop + 1))
        left = int(rng.integers(0, w - self.crop + 1))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        image, depth, mask = image[:, window[0], window[1]], depth[window], mask[window]
        if self.augment and self.augment.flip and rng.random() < 0.5:
            image, depth, mask = image[:, :, ::-1], depth[:, ::-1], mask[:, ::-1]
        return Item(np.ascontiguousarray(image), np.ascontiguousarray(depth), np.ascontiguousarray(mask), sample.name)


# ----------------------------------------------------------------------------- the order

@dataclass
class Cursor:
    """Where the run is in its data: ``epoch`` and ``position`` in that epoch's permutation."""

    epoch: int = 0
    position: int = 0

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}


def permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the frames in one epoch (the same for every worker and every resume)."""
    return np.random.default_rng([seed, 7919, epoch]).permutation(n)


def draw(cursor: Cursor, n: int, count: int, seed: int) -> list[tuple[int, int]]:
    """The next ``count`` ``(frame, epoch)`` pairs, advancing ``cursor`` (epochs roll over)."""
    out: list[tuple[int, int]] = []
    order = permutation(n, seed, cursor.epoch)
    while len(out) < count:
        if cursor.position >= n:
            cursor.epoch, cursor.position = cursor.epoch + 1, 0
            order = permutation(n, seed, cursor.epoch)
        out.append((int(order[cursor.position]), cursor.epoch))
        cursor.position += 1
    return out
