"""Stand-ins with the interface of an any-view estimator (``predict_views``), shared by the scene tests.

``GroundTruthViews`` answers with the living-room ground truth (sensor depth, its intrinsics and
the poses of ``trajectory.log``); ``PlaneViews`` with a world plane seen from cameras stepping
sideways; ``ServedPlaneViews`` wraps a real estimator so that the server can batch it too.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from localdepth import geometry
from localdepth.evaluation.poses import read_trajectory
from localdepth.postprocess import DepthResult

LIVINGROOM_K = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])


#: what an any-view model's registry entry says it predicts (``localdepth scene`` checks for "views")
ANY_VIEW = SimpleNamespace(predicts=("confidence", "intrinsics", "camera_from_world", "views"))


class GroundTruthViews:
    """An any-view "model" that answers with the living room's ground truth for its frames.

    ``relative_scale``: answer as a relative model does (Depth Anything 3's any-view models): the
    same scene scaled by this factor, depth and camera translations alike, not in metres."""

    name = "gt-livingroom"
    spec = ANY_VIEW

    def __init__(self, folder: Path, relative_scale: float | None = None):
        self.folder = folder
        self.relative_scale = relative_scale
        self.trajectory = read_trajectory(folder / "trajectory.log")
        self.calls: list[int] = []

    def describe(self) -> dict:
        return {"model": self.name, "kind": "depth"}

    def predict_views(self, images, *, sources=None):
        self.calls.append(len(images))
        results = []
        for image, source in zip(images, sources):
            frame = Path(source).stem
            depth = cv2.imread(str(self.folder / "depth" / f"{frame}.png"), cv2.IMREAD_UNCHANGED) / 1000.0
            assert depth.shape == image.shape[:2]
            confidence = np.where(depth > 0, 2.0, 1.0).astype(np.float32)  # the filter keeps every valid pixel
            pose = geometry.invert_pose(self.trajectory.world_from_camera[int(frame)])
            if self.relative_scale:
                depth = depth * self.relative_scale
                pose[:3, 3] *= self.relative_scale
            results.append(DepthResult(
                map=depth.astype(np.float32), kind="depth", model=self.name, input_size=depth.shape,
                source=source, confidence=confidence,
                intrinsics=geometry.from_matrix(LIVINGROOM_K, 640, 480, source="model"),
                camera_from_world=pose, metric=not self.relative_scale))
        return results


class PlaneViews:
    """Any views of the world plane z = 2 + 0.3 x, from cameras at x = 0.1 i looking along z;
    confidence rises from left to right."""

    name = "plane"
    spec = ANY_VIEW

    def describe(self) -> dict:
        return {"model": self.name, "kind": "depth"}

    def predict_views(self, images, *, sources=None):
        results = []
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            u, v = geometry.pixel_grid(h, w)
            cam = geometry.from_fov(60.0, w, h, "model")
            pose = np.eye(4)
            pose[0, 3] = -0.1 * i  # camera_from_world of a camera centred at x = 0.1 i
            # the ray (dx, dy, 1) from (0.1 i, 0, 0) meets the plane at z = (2 + 0.03 i) / (1 - 0.3 dx)
            depth = (2.0 + 0.03 * i) / (1.0 - 0.3 * (u - cam.cx) / cam.fx)
            results.append(DepthResult(
                map=depth.astype(np.float32), kind="depth", model=self.name, input_size=(h, w),
                confidence=(1.0 + u / w).astype(np.float32), intrinsics=cam, camera_from_world=pose))
        return results


class ServedPlaneViews(PlaneViews):
    """:class:`PlaneViews` for ``localdepth serve``: the rest (single images, batching) is ``base``'s."""

    name = "plane-views"

    def __init__(self, base):
        self._base = base
        self.spec = SimpleNamespace(**{**vars(base.spec), "name": self.name, "predicts": ANY_VIEW.predicts})

    def __getattr__(self, name):
        return getattr(self._base, name)

    def describe(self) -> dict:
        return {**self._base.describe(), "model": self.name}
