"""Several views -> one consistent scene on disk (``localdepth scene``).

The views go through the any-view model together (:meth:`DepthEstimator.predict_views`), which
returns per view a depth map and a confidence at the view's resolution, the intrinsics in its
pixels and its pose (``camera_from_world``, OpenCV axes, all views in one world frame). Then,
under the output folder::

    depth/<stem>.npy   float32 z-depth (with its sidecar depth/<stem>.json)
    conf/<stem>.npy    float32 confidence (larger = more confident)
    images/<name>      the view as the model saw it (photos copied, video frames as JPEG)
    cameras.json       {"model", "views": [{"image", "width", "height", "intrinsics", "camera_from_world"}]}
    points.ply         fused, confidence-filtered, voxel-downsampled, coloured points (world frame)
    scene.glb          the points and a frustum per camera (glTF axes: see scene.glb's module)
    colmap/            cameras.txt, images.txt, points3D.txt (COLMAP's text format)
    scene.json         how it was made: model, units, limits, thresholds, counts, timings (written last)

Every file is written atomically, and only under the output folder (:func:`localdepth.safety.under_root`),
never over an input (:func:`localdepth.safety.check_outputs`). ``scene.json`` marks a complete
scene: an existing one is removed before the first file is written and the new one is written
last, so a scene that fails half-way (a full disk) is never taken for a complete one.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LocalDepthError, storage_error
from ..safety import check_outputs, under_root
from ..writers import WriteOptions, atomic_path, atomic_write_bytes, write_result
from .colmap import Camera, write_colmap_text
from .fuse import DEFAULT_CONF_PERCENTILE, DEFAULT_MAX_POINTS, MAX_SAMPLES_PER_VIEW, fuse, sample_view
from .views import View

JPEG_QUALITY = 95


@dataclass
class SceneSettings:
    conf_percentile: float = DEFAULT_CONF_PERCENTILE
    voxel_size: float | None = None  # None: automatic (see fuse)
    max_points: int = DEFAULT_MAX_POINTS
    max_samples_per_view: int = MAX_SAMPLES_PER_VIEW

    def check(self) -> SceneSettings:
        if not 0.0 <= self.conf_percentile < 100.0:
            raise LocalDepthError(f"--conf-percentile must be in [0, 100), got {self.conf_percentile}")
        if self.voxel_size is not None and not (np.isfinite(self.voxel_size) and self.voxel_size > 0):
            raise LocalDepthError(f"--voxel-size must be a positive number, got {self.voxel_size}")
        if self.max_points < 1:
            raise LocalDepthError(f"--max-points must be 1 or more, got {self.max_points}")
        return self


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, dtype=np.float32))
    return buf.getvalue()


def _file_is_the_view(view: View) -> bool:
    """The photo's file holds exactly the view's pixels: no EXIF rotation, not shrunk (--max-res)."""
    from PIL import Image

    try:
        with Image.open(view.file) as im:
            rotated = im.getexif().get(0x0112, 1) not in (1, None)
            return not rotated and im.size == (view.image.shape[1], view.image.shape[0])
    except OSError:
        return False


def view_image_name(view: View) -> Path:
    """The view's name under ``images/``: a photo whose file holds exactly the view keeps its
    name; a rotated (EXIF) or shrunk (``--max-res``) photo, or an image from a URL, becomes PNG;
    a video frame stays JPEG."""
    if view.file is not None and _file_is_the_view(view):
        return view.rel
    return view.rel if view.frame_index is not None else view.rel.with_suffix(".png")


def write_view_image(view: View, output: Path) -> str:
    """The view under ``images/`` as the model saw it; returns its name there (COLMAP's ``NAME``).

    A photo whose file holds exactly the view is copied byte for byte; otherwise the view is
    encoded (:func:`view_image_name`), a video frame as JPEG (quality 95)."""
    import cv2

    name = view_image_name(view)
    if view.file is not None and name == view.rel:
        with atomic_path(under_root(output, Path("images") / name)) as tmp:
            shutil.copyfile(view.file, tmp)
        return name.as_posix()
    ext = name.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(view.image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise LocalDepthError(f"cannot encode {name}")
    atomic_write_bytes(under_root(output, Path("images") / name), buf.tobytes())
    return name.as_posix()


def takes_views(estimator) -> bool:
    """The model sees several views of one scene together and predicts their cameras (Depth Anything 3)."""
    return "views" in getattr(getattr(estimator, "spec", None), "predicts", ())


def _check_results(results, estimator, count: int) -> None:
    if len(results) != count:
        raise LocalDepthError(f"{estimator.name} returned {len(results)} results for {count} views")
    if any(r.intrinsics is None or r.camera_from_world is None for r in results):
        raise LocalDepthError(f"{estimator.name} predicts no camera poses, so it cannot build a scene; "
                              "use a Depth Anything 3 model (e.g. --model da3-base)")
    # a scene places every view by its predicted camera, so here the prediction is used and checked
    bad = next(((i, r.intrinsics.problem) for i, r in enumerate(results) if r.intrinsics.problem), None)
    if bad is not None:
        raise LocalDepthError(f"{estimator.name} predicted an unusable camera for view {bad[0]} ({bad[1]}); "
                              "no scene can be built from it")


def view_camera(result) -> Camera:
    """The predicted camera of one view's result, in pixels of its map."""
    h, w = result.map.shape
    cam = result.intrinsics
    if (cam.width, cam.height) != (w, h):
        cam = cam.scaled(w, h)
    return Camera(cam.K, w, h, np.asarray(result.camera_from_world, dtype=np.float64))


def predict_scene(estimator, images: list[np.ndarray], settings: SceneSettings | None = None):
    """Views -> ``(cameras, fused cloud, units, refused)`` in memory, nothing written (the server's
    scene view). ``refused``: ``{index: reason}`` of the views that could not share the scene's
    network grid, left out (:func:`localdepth.multiview.grid_outcasts`); the rest make the scene."""
    from ..multiview import grid_outcasts

    settings = (settings or SceneSettings()).check()
    refused = grid_outcasts(estimator, [image.shape[:2] for image in images])
    images = [image for i, image in enumerate(images) if i not in refused]
    results = estimator.predict_views(list(images))
    _check_results(results, estimator, len(images))
    units = results[0].units
    cameras, samples = [], []
    for i, (image, result) in enumerate(zip(images, results)):
        cam = view_camera(result)
        cameras.append(cam)
        samples.append(sample_view(result.map, cam.K, cam.camera_from_world, image, result.confidence,
                                   settings.max_samples_per_view))
        results[i] = None
    cloud = fuse(samples, conf_percentile=settings.conf_percentile, voxel_size=settings.voxel_size,
                 max_points=settings.max_points)
    return cameras, cloud, units, refused


def reconstruct(estimator, views: list[View], output: str | Path, settings: SceneSettings | None = None,
                *, given_output: str | None = None, progress=None) -> dict:
    """Predict every view together and write the scene (see the module). Returns ``scene.json``'s content.

    ``given_output``: the output folder as the user wrote it, for the ``image`` path of video frames
    in ``cameras.json`` (default: ``output``). ``progress``: called with the name of each stage as
    it starts (a :class:`localdepth.progress.Status`).
    """
    progress = progress or (lambda step: None)
    settings = (settings or SceneSettings()).check()
    output = Path(output)
    if not views:
        raise LocalDepthError("no views to build a scene from")
    marker = under_root(output, "scene.json")
    check_outputs(_planned_files(views, output), [("the input", v.file) for v in views])
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    progress(f"predicting depth and cameras of {len(views)} views together")
    results = estimator.predict_views([v.image for v in views], sources=[v.given for v in views])
    timings["predict_ms"] = (time.perf_counter() - t0) * 1000.0
    _check_results(results, estimator, len(views))
    units = results[0].units
    try:  # from here on the folder is not a complete scene until the new marker is written
        marker.unlink(missing_ok=True)
    except OSError as e:
        raise storage_error(e, marker) from None

    t0 = time.perf_counter()
    progress(f"writing {len(views)} depth maps, confidences and views")
    model_info = estimator.describe()
    cameras, names, samples, entries = [], [], [], []
    for i, (view, result) in enumerate(zip(views, results)):
        name = write_view_image(view, output)
        given = view.given or (Path(given_output or output) / "images" / name).as_posix()
        depth_path = under_root(output, f"depth/{view.stem.as_posix()}.npy")
        conf_path = under_root(output, f"conf/{view.stem.as_posix()}.npy")
        if result.confidence is not None:
            atomic_write_bytes(conf_path, _npy_bytes(result.confidence))
        extra = {"image": Path(os.path.relpath(output / "images" / name, depth_path.parent)).as_posix(),
                 "scene": {"view": i, "image": given, "confidence": f"../conf/{view.stem.as_posix()}.npy"
                           if result.confidence is not None else None, "cameras": "../cameras.json"}}
        write_result(result, {"npy": depth_path, "json": depth_path.with_suffix(".json")},
                     WriteOptions(formats=("npy",), extra_sidecar=extra), model_info)
        cam = view_camera(result)
        cameras.append(cam)
        names.append(name)
        entries.append({"image": given, "width": cam.width, "height": cam.height, "intrinsics": cam.K.round(9).tolist(),
                        "camera_from_world": cam.camera_from_world.round(12).tolist()})
        samples.append(sample_view(result.map, cam.K, cam.camera_from_world, view.image, result.confidence,
                                   settings.max_samples_per_view))
        results[i] = None  # the full-resolution maps are on disk: let them go
    atomic_write_bytes(under_root(output, "cameras.json"),
                       (json.dumps({"model": estimator.name, "views": entries}, indent=2) + "\n").encode())
    timings["views_ms"] = (time.perf_counter() - t0) * 1000.0

    t0 = time.perf_counter()
    progress("fusing the points; writing points.ply, scene.glb and colmap/")
    cloud = fuse(samples, conf_percentile=settings.conf_percentile, voxel_size=settings.voxel_size,
                 max_points=settings.max_points)
    del samples
    _write_ply(under_root(output, "points.ply"), cloud.points, cloud.colors)
    from .glb import scene_glb

    atomic_write_bytes(under_root(output, "scene.glb"), scene_glb(cloud.points, cloud.colors, cameras))
    colmap = write_colmap_text(under_root(output, "colmap"), cameras, names, cloud)
    timings["fuse_and_write_ms"] = (time.perf_counter() - t0) * 1000.0

    from .. import __version__
    from .views import MAX_SCENE_PIXELS

    report = {
        "localdepth_version": __version__,
        "model": model_info,
        "views": len(views),
        "units": units,
        "convention": "depth: z-depth along the optical axis; poses: camera_from_world (world -> camera), "
                      "OpenCV axes x right, y down, z forward; intrinsics in pixels of each image, "
                      "pixel centres at integer coordinates",
        "files": {"cameras": "cameras.json", "points": "points.ply", "glb": "scene.glb", "colmap": "colmap/",
                  "depth": "depth/", "confidence": "conf/", "images": "images/"},
        "fusion": {**cloud.as_dict(), "conf_percentile": settings.conf_percentile,
                   "max_samples_per_view": settings.max_samples_per_view, "max_points": settings.max_points,
                   "units": units},
        "colmap": colmap,
        "limits": {"max_scene_pixels": MAX_SCENE_PIXELS},
        "timings_ms": {k: round(v, 1) for k, v in timings.items()},
    }
    atomic_write_bytes(marker, (json.dumps(report, indent=2) + "\n").encode())
    return report


def _planned_files(views: list[View], output: Path) -> list[tuple[str, Path]]:
    """``(label, path)`` of every file a scene writes (checked against the inputs before any is)."""
    files = [(f"the scene's {name}", under_root(output, name)) for name in
             ("scene.json", "cameras.json", "points.ply", "scene.glb", "colmap/cameras.txt", "colmap/images.txt",
              "colmap/points3D.txt")]
    for view in views:
        stem = view.stem.as_posix()
        files += [("a view's image", under_root(output, Path("images") / view_image_name(view))),
                  ("a view's depth", under_root(output, f"depth/{stem}.npy")),
                  ("a view's sidecar", under_root(output, f"depth/{stem}.json")),
                  ("a view's confidence", under_root(output, f"conf/{stem}.npy"))]
    return files


def _write_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    from ..pointcloud import cloud_from_arrays, write_point_cloud

    write_point_cloud(path, cloud_from_arrays(points, colors))
