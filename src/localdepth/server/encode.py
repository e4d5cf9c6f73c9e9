"""Depth results -> HTTP response bodies (json, npy, png16, color, ply).

Each encoder returns ``(body, media_type, headers)``; headers describe the map
(``X-Depth-Kind``, ``X-Depth-Units``, range, and how to read PNG16 values back).
"""

from __future__ import annotations

import base64
import io
import math

import cv2
import numpy as np

from .. import __version__, geometry
from ..geometry import Intrinsics
from ..geometry import pseudo_depth
from ..images import to_uint8
from ..postprocess import DepthResult
from ..writers import colorize, encode_png16, encode_rgb_png

RESPONSE_FORMATS = ("json", "npy", "png16", "color", "ply")
DEFAULT_FOV_DEG = geometry.DEFAULT_FOV_DEG


def _range(depth: np.ndarray) -> tuple[float | None, float | None]:
    finite = depth[np.isfinite(depth)]
    return (float(finite.min()), float(finite.max())) if finite.size else (None, None)


def describe(result: DepthResult) -> dict:
    lo, hi = _range(result.map)
    h, w = result.map.shape
    return {
        "model": result.model, "kind": result.kind, "units": result.units,
        "convention": result.convention,
        "height": int(h), "width": int(w), "input_size": [int(v) for v in result.input_size],
        "range": {"min": lo, "max": hi},
        "timings_ms": {k: round(v, 3) for k, v in result.timings.items()},
    }


def base_headers(result: DepthResult) -> dict[str, str]:
    lo, hi = _range(result.map)
    h, w = result.map.shape
    return {"X-Depth-Model": result.model, "X-Depth-Kind": result.kind, "X-Depth-Units": result.units,
            "X-Depth-Shape": f"{h},{w}", "X-Depth-Min": f"{lo!r}", "X-Depth-Max": f"{hi!r}"}


def as_json(result: DepthResult) -> tuple[bytes, str, dict]:
    """Metadata + the map as base64 of little-endian float32, row-major, shape (height, width)."""
    import json

    body = describe(result)
    body["dtype"] = "float32"
    body["encoding"] = "base64, little-endian float32, row-major (height, width)"
    body["data"] = base64.b64encode(np.ascontiguousarray(result.map, dtype="<f4").tobytes()).decode("ascii")
    return json.dumps(body).encode(), "application/json", base_headers(result)


def as_npy(result: DepthResult) -> tuple[bytes, str, dict]:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(result.map, dtype=np.float32))
    return buf.getvalue(), "application/octet-stream", base_headers(result)


def as_png16(result: DepthResult) -> tuple[bytes, str, dict]:
    png, mapping = encode_png16(result.map, result.kind, result.metric)
    headers = base_headers(result)
    note = "value = offset + scale * png"
    if result.kind != "depth":  # relative maps span a robust range (writers.PNG16_PERCENTILES)
        note += "; 0 and 65535 also hold values beyond the 0.1st..99.9th percentile"
    headers.update({"X-Depth-Scale": f"{mapping['scale']!r}", "X-Depth-Offset": f"{mapping['offset']!r}",
                    "X-Depth-Note": note})
    ok, buf = cv2.imencode(".png", png)
    if not ok:
        raise OSError("OpenCV could not encode the 16-bit PNG")
    return buf.tobytes(), "image/png", headers


def as_color(result: DepthResult, cmap: str) -> tuple[bytes, str, dict]:
    rgb, info = colorize(result.map, result.kind, cmap)
    headers = base_headers(result)
    headers.update({"X-Depth-Colormap": cmap, "X-Depth-Vmin": f"{info['vmin']!r}", "X-Depth-Vmax": f"{info['vmax']!r}"})
    return encode_rgb_png(rgb), "image/png", headers


# ----------------------------------------------------------------------------- point clouds

def request_intrinsics(width: int, height: int, fx=None, fy=None, cx=None, cy=None, fov=None) -> Intrinsics:
    """The camera of a request: explicit ``fx, fy, cx, cy``, or a horizontal ``fov`` (degrees),
    or the stated default (:func:`localdepth.geometry.default_intrinsics`, 60°).

    A missing ``fy`` equals ``fx``; a missing ``cx, cy`` is the image centre ((W - 1) / 2,
    (H - 1) / 2: pixel centres at integer coordinates). Raises ValueError with a one-line reason.
    """
    if fov is not None and (fx is not None or fy is not None):
        raise ValueError("give either fov or fx/fy, not both")
    if fx is None and fy is None:
        k = (geometry.checked(geometry.from_fov(float(fov), width, height), f"fov={float(fov):g}") if fov is not None
             else geometry.default_intrinsics(width, height))
        if cx is None and cy is None:
            return k
        fx = fy = k.fx
    fx = fy if fx is None else fx
    fy = fx if fy is None else fy
    cx = (width - 1) / 2.0 if cx is None else cx
    cy = (height - 1) / 2.0 if cy is None else cy
    values = [float(v) for v in (fx, fy, cx, cy)]
    return geometry.checked(Intrinsics(*values, width=width, height=height, source="request"), "the request's camera")


def back_project(depth: np.ndarray, k: Intrinsics, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Every ``stride``-th row and column of a z-depth map -> points ``(N, 3)`` float32 and their
    ``(N,)`` flat pixel indices in the full map, through :func:`localdepth.geometry.unproject`.

    Taking pixel ``(stride * i, stride * j)`` is the same camera with ``fx, fy, cx, cy`` divided
    by ``stride`` (pixel centres at integer coordinates). Invalid depths are left out.
    """
    h, w = depth.shape
    sub = depth[::stride, ::stride]
    points = geometry.unproject(sub, k.K / np.array([[stride], [stride], [1.0]]))
    keep = np.isfinite(points[..., 2])
    v, u = np.mgrid[0:h:stride, 0:w:stride]
    return points[keep].astype(np.float32), (v[keep] * w + u[keep]).astype(np.int64)


def ply_bytes(points: np.ndarray, colors: np.ndarray, comments: list[str]) -> bytes:
    """Binary little-endian PLY: float x, y, z and uchar red, green, blue per vertex."""
    vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                          ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    header = ["ply", "format binary_little_endian 1.0"]
    header += [f"comment {c}" for c in comments]
    header += [f"element vertex {len(points)}", "property float x", "property float y", "property float z",
               "property uchar red", "property uchar green", "property uchar blue", "end_header"]
    return ("\n".join(header) + "\n").encode("ascii") + vertex.tobytes()


def as_ply(result: DepthResult, image: np.ndarray, k: Intrinsics, max_points: int) -> tuple[bytes, str, dict]:
    """A coloured point cloud of the map (subsampled on a regular grid to at most ``max_points``)."""
    h, w = result.map.shape
    stride = max(1, math.ceil(math.sqrt(h * w / max_points)))
    while math.ceil(h / stride) * math.ceil(w / stride) > max_points:  # the grid's edges round up
        stride += 1
    metric = result.metric
    z = result.map if result.kind == "depth" else pseudo_depth(result.map)
    points, pixels = back_project(z, k, stride)
    colors = to_uint8(image).reshape(-1, 3)[pixels]
    units = ("metres" if metric else "arbitrary (relative depth: scale unknown)" if result.kind == "depth" else
             "arbitrary (relative model: pseudo-depth 1/(0.1+0.9t) from normalised disparity t; scale and shift unknown)")
    comments = [f"localdepth {__version__} model {result.model} kind {result.kind}",
                f"units {units}",
                "frame OpenCV camera: x right, y down, z forward",
                f"intrinsics fx {k.fx:.6g} fy {k.fy:.6g} cx {k.cx:.6g} cy {k.cy:.6g} image {w}x{h} stride {stride}",
                f"intrinsics_source {k.origin}"]
    headers = base_headers(result)
    headers.update({"X-Point-Units": "m" if metric else "arbitrary", "X-Point-Count": str(len(points)),
                    "X-Point-Stride": str(stride),
                    "X-Intrinsics": f"{k.fx:.6g},{k.fy:.6g},{k.cx:.6g},{k.cy:.6g}",
                    "X-Intrinsics-Source": k.origin,
                    "Content-Disposition": 'attachment; filename="depth.ply"'})
    return ply_bytes(points, colors, comments), "application/octet-stream", headers


def scene_json(model: str, units: str, cameras, cloud, refused: dict | None = None) -> bytes:
    """Cameras (as ``cameras.json`` has them) and the fused points, base64 little-endian
    (positions float32 ``(P, 3)``, colours uint8 ``(P, 3)``), world frame, OpenCV axes.
    ``refused``: ``{upload index: reason}`` of the images left out of the scene."""
    import json

    views = [{"width": c.width, "height": c.height, "intrinsics": np.asarray(c.K).round(9).tolist(),
              "camera_from_world": np.asarray(c.camera_from_world).round(12).tolist()} for c in cameras]
    body = {"model": model, "units": units, "views": views,
            "convention": "camera_from_world: world -> camera, OpenCV axes (x right, y down, z forward); "
                          "intrinsics in pixels of each image, pixel centres at integer coordinates",
            "points": {"count": int(len(cloud.points)), "encoding": "base64, little-endian, row-major",
                       "positions": base64.b64encode(np.ascontiguousarray(cloud.points, dtype="<f4").tobytes()).decode(),
                       "colors": base64.b64encode(np.ascontiguousarray(cloud.colors, dtype=np.uint8).tobytes()).decode()},
            "fusion": cloud.as_dict(),
            "refused": [{"image": i + 1, "reason": reason} for i, reason in sorted((refused or {}).items())]}
    return json.dumps(body).encode()


# ----------------------------------------------------------------------------- 3D photos and stereo

def photo3d_video(image: np.ndarray, result: DepthResult, camera: Intrinsics, options, format: str) -> tuple[bytes, dict]:
    """A 3D photo of one result as ``format`` (mp4, gif, webp) bytes, and what was rendered."""
    import tempfile
    from pathlib import Path

    from ..render import prepare, render_to_file

    photo = prepare(image, result.map, result.kind, camera, options, metric=result.metric)
    with tempfile.TemporaryDirectory(prefix="localdepth-photo3d-") as folder:
        target = Path(folder) / f"photo_3d.{format}"
        written = render_to_file(photo, target)
        return target.read_bytes(), {**photo.info, "frames": written["frames"]}


def stereo_png(image: np.ndarray, result: DepthResult, budget: float, format: str, exif,
               size: int) -> tuple[bytes, dict]:
    """The stereo pair (``sbs``: left | right) or the anaglyph of one result, each view's short side at most
    ``size`` pixels, as PNG bytes, and its description (``width``, ``height``: one view's)."""
    import dataclasses

    from ..render import anaglyph, side_by_side_pair
    from ..render.photo3d import output_size, resize_map
    from ..writers import WriteOptions, stereo_pair

    h, w = result.map.shape
    camera = geometry.resolve_intrinsics(w, h, image_path=exif, predicted=result.intrinsics)
    vw, vh = output_size(w, h, size) if min(w, h) > size else (w, h)
    if (vw, vh) != (w, h):
        image = cv2.resize(to_uint8(image), (vw, vh), interpolation=cv2.INTER_AREA)
        result = dataclasses.replace(result, map=resize_map(result.map, result.kind, vw, vh))
        camera = camera.scaled(vw, vh)
    with_image = dataclasses.replace(result, image=image)
    options = WriteOptions(formats=(), stereo_budget=budget, extra_sidecar={"intrinsics": dataclasses.asdict(camera)})
    left, right, info = stereo_pair(with_image, options)
    picture = side_by_side_pair(left, right) if format == "sbs" else anaglyph(left, right)
    return encode_rgb_png(picture), {**info, "width": vw, "height": vh}
