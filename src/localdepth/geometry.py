"""Camera geometry on depth maps: intrinsics, back-projection, projection, normals.

Pure functions on NumPy arrays. Conventions (the same as OpenCV and Open3D's
``create_from_rgbd_image``):

* **Pixels**: pixel ``(u, v)`` is column ``u``, row ``v``; its *centre* sits at the integer
  coordinates ``(u, v)``. The image spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``, so the
  principal point of an ideal centred camera is ``((W - 1) / 2, (H - 1) / 2)``.
* **Camera frame**: x right, y down, z forward (optical axis), metres for metric maps.
* **Intrinsics**: ``(fx, fy, cx, cy)`` in pixels, or the 3x3 matrix
  ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``; ``u = fx * x / z + cx``.
* **Depth**: *z-depth* (distance along the optical axis, what RGB-D sensors and metric
  models give) unless a function says ``ray=True``, where the map holds *ray length*
  (Euclidean distance from the camera centre, what some renderers and LiDAR give).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np

#: horizontal field of view assumed when nothing else is known (a typical phone main camera)
DEFAULT_FOV_DEG = 60.0


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels, for an image of ``width x height`` pixels.

    ``source`` records where they came from (``"intrinsics"``, ``"fov"``, ``"exif (...)"``,
    ``"model"``, ``"default (...)"``…), for sidecars; :attr:`origin` folds it into one of
    :data:`INTRINSICS_SOURCES`.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    source: str = "intrinsics"

    @property
    def K(self) -> np.ndarray:
        """The 3x3 camera matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def fov_deg(self) -> float:
        """Horizontal field of view in degrees (edge to edge of the image)."""
        if self.fx == 0:
            return 180.0
        return math.degrees(2.0 * math.atan(self.width / (2.0 * self.fx)))

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera for a resized image (pixel-centre convention kept)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                          width, height, self.source)

    @property
    def origin(self) -> str:
        """``"given"`` (``--intrinsics``/``--fov``/request), ``"exif"``, ``"model"`` or ``"default"``."""
        for prefix in ("exif", "model", "default"):
            if self.source.startswith(prefix):
                return prefix
        return "given"

    @property
    def problem(self) -> str | None:
        """Why this camera cannot be used, or ``None`` when it can: the one rule for every camera,
        :func:`localdepth.safety.check_camera` (finite, a focal of at least a pixel and of more than a
        minimal field of view, the principal point near the image)."""
        from .safety import InvalidValueError, check_camera

        try:
            check_camera(self.fx, self.fy, self.cx, self.cy, self.width, self.height, "the camera")
        except InvalidValueError as e:
            return str(e).removeprefix("the camera: ")
        return None

    def as_dict(self) -> dict:
        info = {**asdict(self), "origin": self.origin, "fov_deg": round(self.fov_deg, 4),
                "convention": "pixel centres at integer coordinates; u = fx*x/z + cx"}
        if self.problem:
            info["problem"] = self.problem
        return info

    def to_open3d(self):
        import open3d as o3d

        return o3d.camera.PinholeCameraIntrinsic(self.width, self.height, self.fx, self.fy, self.cx, self.cy)


def checked(cam: Intrinsics, what: str = "the camera") -> Intrinsics:
    """``cam`` itself once :attr:`Intrinsics.problem` finds nothing wrong
    (:func:`localdepth.safety.check_camera`); else ``InvalidValueError`` (a ``ValueError``) in one
    line. Every camera that comes from outside passes here."""
    from .safety import check_camera

    check_camera(cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, what)
    return cam


def from_matrix(K: np.ndarray, width: int, height: int, source: str = "intrinsics") -> Intrinsics:
    """Intrinsics from a 3x3 matrix ``K`` (row-major, as OpenCV)."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3x3, got {K.shape}")
    return Intrinsics(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), width, height, source)


def parse_intrinsics(text: str, width: int, height: int) -> Intrinsics:
    """``"fx,fy,cx,cy"`` (pixels) -> :class:`Intrinsics`. Raises ``ValueError`` with the expected form."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
        raise ValueError(f"--intrinsics wants fx,fy,cx,cy in pixels: four finite numbers, fx and fy positive "
                         f"(e.g. 525,525,319.5,239.5); got '{text}'")
    return checked(Intrinsics(*values, width=width, height=height, source="intrinsics"), "--intrinsics")


def from_fov(fov_deg: float, width: int, height: int, source: str = "fov", *, check: bool = True) -> Intrinsics:
    """Square pixels, centred principal point, horizontal field of view ``fov_deg`` (degrees).

    ``check=False`` builds the camera whatever the angle (a model's prediction, checked only if it is
    used: see :func:`resolve_intrinsics` and :attr:`Intrinsics.problem`)."""
    if check and not 0.0 < fov_deg < 180.0:
        raise ValueError(f"the field of view (fov) must be between 0 and 180 degrees (horizontal); got {fov_deg}")
    with np.errstate(divide="ignore", invalid="ignore"):  # unchecked: any angle, even 0 or NaN
        f = float(np.float64(width) / (2.0 * np.tan(np.radians(np.float64(fov_deg)) / 2.0)))
    return Intrinsics(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height, source)


def default_intrinsics(width: int, height: int) -> Intrinsics:
    """The stated default: a horizontal field of view of ``DEFAULT_FOV_DEG`` (60°), centred."""
    return from_fov(DEFAULT_FOV_DEG, width, height, source=f"default (horizontal FoV {DEFAULT_FOV_DEG:g} deg)")


def focal_35mm_to_pixels(focal_35mm: float, width: int, height: int) -> float:
    """Focal length in pixels from a 35 mm-equivalent focal length (mm).

    The 35 mm equivalent is defined on the diagonal: a 36x24 mm frame has a 43.27 mm
    diagonal, so ``f_px = f_35 / 43.27 * sqrt(W^2 + H^2)``.
    """
    return float(focal_35mm) / math.hypot(36.0, 24.0) * math.hypot(width, height)


def from_exif(image_path: str | os.PathLike, width: int, height: int) -> Intrinsics | None:
    """Intrinsics from a photo's EXIF ``FocalLengthIn35mmFilm`` (tag 0xA405), else ``None``.

    Falls back to ``FocalLength`` (0x920A) with ``FocalPlaneXResolution`` when the 35 mm
    equivalent is absent. ``width, height`` are the displayed (EXIF-oriented) size.
    """
    from PIL import Image

    try:
        with Image.open(image_path) as im:
            exif = im.getexif()
            sub = exif.get_ifd(0x8769)  # the Exif sub-IFD holds the focal lengths
    except Exception:
        return None
    f35 = sub.get(0xA405) or exif.get(0xA405)
    if f35:
        f = focal_35mm_to_pixels(float(f35), width, height)
        return _physical_or_none(Intrinsics(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height,
                                            f"exif (35 mm equivalent {float(f35):g} mm)"))
    focal, xres, unit = sub.get(0x920A), sub.get(0xA20E), sub.get(0xA210, 2)
    if focal and xres:
        mm_per_unit = {2: 25.4, 3: 10.0, 4: 1.0}.get(int(unit))
        if mm_per_unit:
            # FocalPlaneXResolution is pixels per unit of the *full-resolution* sensor image
            f = float(focal) * float(xres) / mm_per_unit
            return _physical_or_none(Intrinsics(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height,
                                                f"exif (focal length {float(focal):g} mm)"))
    return None


def _physical_or_none(cam: Intrinsics) -> Intrinsics | None:
    """An EXIF camera that is not physical (a focal length of 1e-9 mm) is as if the photo stated none."""
    try:
        return checked(cam)
    except ValueError:
        return None


#: where the camera of a map came from, as sidecars record it (``intrinsics_source``)
INTRINSICS_SOURCES = ("given", "exif", "model", "default")


def resolve_intrinsics(width: int, height: int, *, intrinsics: str | None = None, fov: float | None = None,
                       image_path: str | os.PathLike | None = None,
                       predicted: Intrinsics | None = None) -> Intrinsics:
    """The one rule for the camera of a ``width x height`` map, used by every command and the server.

    In order: given (``--intrinsics``, then ``--fov``), the photo's EXIF focal length, the camera
    the model predicted (``predicted``, e.g. Depth Pro's field of view, scaled to this size),
    the stated default (60° horizontal). :attr:`Intrinsics.origin` says which one was used.
    Only the camera used is checked: a model's invalid prediction does not matter when a camera is
    given (or in the EXIF), and is a ``ValueError`` naming ``--fov``/``--intrinsics`` when it would be used.
    """
    if intrinsics:
        return parse_intrinsics(intrinsics, width, height)
    if fov is not None:
        from .safety import NUMERIC_OPTIONS

        NUMERIC_OPTIONS["fov"].check("--fov", fov)
        return checked(from_fov(fov, width, height), f"--fov {fov:g}")
    if image_path is not None:
        exif = from_exif(image_path, width, height)
        if exif is not None and exif.problem is None:  # a nonsensical EXIF focal is no focal at all
            return exif
    if predicted is not None:
        if (predicted.width, predicted.height) != (width, height):
            predicted = predicted.scaled(width, height)
        if predicted.problem:
            raise ValueError(f"the camera the model predicted is unusable ({predicted.problem}); give the camera "
                             "with --fov DEGREES or --intrinsics FX,FY,CX,CY")
        return predicted
    return default_intrinsics(width, height)


# ----------------------------------------------------------------------------- relative maps

#: pseudo-depth spans 1 (nearest) to 1 / RELATIVE_NEAR_FRACTION = 10 (farthest)
RELATIVE_NEAR_FRACTION = 0.1
#: the part of a relative map that spans the pseudo-depth range (1st..99th percentile)
PSEUDO_DEPTH_PERCENTILES = (1.0, 99.0)
#: what a point cloud (or render) of a relative disparity map holds, for sidecars and PLY headers
PSEUDO_DEPTH_FORMULA = ("z = 1 / (0.1 + 0.9 t), t = clip((d - p1) / (p99 - p1), 0, 1), d the disparity, p1 and p99 "
                        "its 1st and 99th percentiles: 1 = nearest, 10 = farthest")


def pseudo_depth_range(disparity: np.ndarray) -> tuple[float, float] | None:
    """``(p1, p99)``: the disparity percentiles :func:`pseudo_depth` normalises with (None: no finite value)."""
    disp = np.asarray(disparity, dtype=np.float64)
    finite = np.isfinite(disp)
    if not finite.any():
        return None
    lo, hi = np.percentile(disp[finite], PSEUDO_DEPTH_PERCENTILES)
    return float(lo), float(hi)


def pseudo_depth(disparity: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Relative inverse depth -> a positive depth-like map in arbitrary units (1 = nearest, 10 = farthest).

    ``value_range`` ``(lo, hi)`` of the disparity (default: :func:`pseudo_depth_range`, its 1st..99th
    percentile; a video passes its clip's range so that every frame uses one mapping) is normalised to
    ``t`` in [0, 1] (clipped) and ``z = 1 / (0.1 + 0.9 t)`` (:data:`PSEUDO_DEPTH_FORMULA`). Why not
    ``1 / disparity``: the shift of a relative disparity is unknown, so ``1 / d`` is no truer a depth,
    and it breaks where ``d`` nears or crosses 0 (sky, a negative shift): points at infinity or behind
    the camera. This map keeps the order of the pixels (nearer = smaller ``z``) and every point in
    front of the camera, within 1..10; the shape is only indicative. Non-finite disparities give NaN.
    ``(H, W)`` in, ``(H, W)`` float32 out.
    """
    disp = np.asarray(disparity, dtype=np.float64)
    value_range = value_range if value_range is not None else pseudo_depth_range(disp)
    if value_range is None:
        return np.full(disp.shape, np.nan, np.float32)
    lo, hi = value_range
    finite = np.isfinite(disp)
    span = hi - lo if hi > lo else 1.0
    t = np.clip((np.where(finite, disp, lo) - lo) / span, 0.0, 1.0)
    z = 1.0 / (RELATIVE_NEAR_FRACTION + (1.0 - RELATIVE_NEAR_FRACTION) * t)
    return np.where(finite, z, np.nan).astype(np.float32)


# ----------------------------------------------------------------------------- rays and points

def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(u, v)`` float64 arrays of shape ``(H, W)``: pixel-centre coordinates (integers)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return u, v


def unproject(depth: np.ndarray, K: np.ndarray, *, ray: bool = False) -> np.ndarray:
    """Back-project a depth map to camera-frame points.

    Args:
        depth: ``(H, W)`` z-depth (or ray length with ``ray=True``); 0/NaN/inf give NaN points.
        K: ``(3, 3)`` intrinsics.
    Returns:
        ``(H, W, 3)`` float64 points ``(x, y, z)`` with ``x = (u - cx) z / fx``,
        ``y = (v - cy) z / fy``.
    """
    depth = np.asarray(depth, dtype=np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u, v = pixel_grid(*depth.shape)
    dx, dy = (u - cx) / fx, (v - cy) / fy
    valid = np.isfinite(depth) & (depth > 0)
    d = np.where(valid, depth, np.nan)
    z = d / np.sqrt(dx * dx + dy * dy + 1.0) if ray else d
    return np.stack([dx * z, dy * z, z], axis=-1)


def project(points: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points to pixels.

    Args:
        points: ``(..., 3)`` points ``(x, y, z)``.
        K: ``(3, 3)`` intrinsics.
    Returns:
        ``(uv, z)``: ``(..., 2)`` pixel coordinates (centre convention) and ``(...)`` z-depth.
        Points with ``z <= 0`` get NaN coordinates.
    """
    p = np.asarray(points, dtype=np.float64)
    z = p[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        zi = np.where(z > 0, 1.0 / z, np.nan)
    u = K[0, 0] * p[..., 0] * zi + K[0, 2]
    v = K[1, 1] * p[..., 1] * zi + K[1, 2]
    return np.stack([u, v], axis=-1), z


def ray_to_z(ray_length: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Ray length (distance to the camera centre) -> z-depth, per pixel ``(H, W)``."""
    return unproject(ray_length, K, ray=True)[..., 2]


def z_to_ray(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """z-depth -> ray length, per pixel ``(H, W)``."""
    return np.linalg.norm(unproject(depth, K), axis=-1)


def normals_from_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Unit surface normals ``(H, W, 3)`` in the camera frame, facing the camera (``n_z < 0``).

    Cross product of central differences of the back-projected points (one-sided at the
    borders). Pixels without valid depth, or whose neighbours lack it, get ``(0, 0, 0)``.
    """
    pts = unproject(depth, K)
    du = np.gradient(pts, axis=1)
    dv = np.gradient(pts, axis=0)
    n = np.cross(du, dv)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = n / norm
    # x right, y down, z forward: du x dv points away from the camera; flip to face it
    flip = np.where(np.sum(n * pts, axis=-1, keepdims=True) > 0, -1.0, 1.0)
    n = n * flip
    return np.where(np.isfinite(n).all(axis=-1, keepdims=True) & (norm > 0), n, 0.0)


def encode_normals(normals: np.ndarray) -> np.ndarray:
    """Normals ``(H, W, 3)`` in [-1, 1] -> RGB uint8 ``(H, W, 3)``: ``rgb = (n + 1) / 2 * 255``.

    Channels are (x right, y down, z forward) of the camera frame; invalid normals
    ``(0, 0, 0)`` encode as black ``(0, 0, 0)`` (a valid unit normal never does).
    """
    valid = np.any(normals != 0, axis=-1, keepdims=True)
    rgb = np.rint((np.clip(normals, -1.0, 1.0) + 1.0) * 127.5)
    return np.where(valid, rgb, 0).astype(np.uint8)


def decode_normals(rgb: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_normals` (within quantisation), re-normalised."""
    n = rgb.astype(np.float64) / 127.5 - 1.0
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    valid = np.any(rgb != 0, axis=-1, keepdims=True)
    return np.where(valid, n / np.maximum(norm, 1e-12), 0.0)


def depth_discontinuities(depth: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Boolean ``(H, W)``: pixels next to a depth jump.

    A pixel is at a discontinuity when the relative depth difference to a 4-neighbour,
    ``|d1 - d2| / min(d1, d2)``, exceeds ``threshold`` (0.05 = 5 %).
    """
    d = np.asarray(depth, dtype=np.float64)
    d = np.where(np.isfinite(d) & (d > 0), d, np.nan)
    edge = np.zeros(d.shape, dtype=bool)
    for axis in (0, 1):
        a = d[:-1, :] if axis == 0 else d[:, :-1]
        b = d[1:, :] if axis == 0 else d[:, 1:]
        with np.errstate(invalid="ignore"):
            jump = np.abs(a - b) / np.minimum(a, b) > threshold
        if axis == 0:
            edge[:-1, :] |= jump
            edge[1:, :] |= jump
        else:
            edge[:, :-1] |= jump
            edge[:, 1:] |= jump
    return edge


#: how the ``normals`` format encodes a normal: the convention of ControlNet's normal models
#: (NormalBAE, DSINE: "blue is front, red is left, green is top")
NORMALS_ENCODING = ("rgb = (n + 1) / 2 * 255 with n in the frame x left, y up, z towards the camera (ControlNet "
                    "normal maps, NormalBAE/DSINE: blue = facing the camera, red = facing left, green = facing up); "
                    "black = no normal")


def normals_picture(depth: np.ndarray, kind: str, intrinsics: dict | None = None, *,
                    predicted: Intrinsics | None = None, image_path=None) -> tuple[np.ndarray, dict]:
    """The ``normals`` output format: RGB uint8 ``(H, W, 3)`` and its sidecar entry.

    The camera-frame normals of :func:`normals_from_depth` (x right, y down, z forward, facing the
    camera) are negated, which puts them in the frame ControlNet's normal models read (x left, y
    up, z towards the camera), then encoded by :func:`encode_normals`: a wall facing the camera is
    ``(128, 128, 255)``, a floor ``(128, 255, 128)`` (:data:`NORMALS_ENCODING`).

    The camera: ``intrinsics`` when the user gave one (see :func:`camera_from_dict`), else the rule of
    :func:`resolve_intrinsics` (the photo's EXIF, the camera the model ``predicted``, the default).
    A relative disparity map is inverted first (``z = 1 / d``): its normals are only as right as that
    guess of the unknown shift.
    """
    h, w = depth.shape
    if intrinsics:
        cam = camera_from_dict(intrinsics, w, h)
    else:
        path = image_path if image_path is not None and os.path.isfile(str(image_path)) else None
        cam = resolve_intrinsics(w, h, image_path=path, predicted=predicted)
    d = np.asarray(depth, dtype=np.float64)
    if kind != "depth":
        with np.errstate(divide="ignore"):
            d = np.where(np.isfinite(d) & (d > 0), 1.0 / np.where(d > 0, d, 1.0), 0.0)
    rgb = encode_normals(-normals_from_depth(d, cam.K))  # camera frame -> x left, y up, z towards the camera
    return rgb, {"encoding": NORMALS_ENCODING,
                 "intrinsics": cam.as_dict(), "intrinsics_source": cam.origin,
                 "depth": "z-depth" if kind == "depth" else "1 / relative disparity (shift unknown: approximate)"}


def camera_from_dict(info: dict | None, width: int, height: int, what: str | None = None, *,
                     check: bool = True) -> Intrinsics:
    """Intrinsics for a ``width x height`` map from a sidecar-style dict.

    ``{"fx", "fy", "cx", "cy"[, "width", "height"]}`` (scaled when the stated size differs),
    ``{"fov": degrees}``, or ``None`` for :func:`default_intrinsics`. Read from files (sidecars,
    datasets), so checked as every outside camera is (:func:`checked`); ``what`` names it in messages.
    ``check=False`` for a camera a model predicted: kept as it is and checked only where it is used
    (:func:`resolve_intrinsics`), so that a camera the user gives still wins over a nonsensical one.
    """
    if not info:
        return default_intrinsics(width, height)
    what = what or f"the camera ({info.get('source') or 'given'})"
    if "fx" in info:
        w0, h0 = int(info.get("width") or width), int(info.get("height") or height)
        cam = Intrinsics(float(info["fx"]), float(info["fy"]), float(info["cx"]), float(info["cy"]), w0, h0,
                         info.get("source", "intrinsics"))
        cam = checked(cam, what) if check else cam
        return cam if (w0, h0) == (width, height) else cam.scaled(width, height)
    if not check:
        return from_fov(float(info["fov"]), width, height, check=False)
    from .safety import NUMERIC_OPTIONS

    NUMERIC_OPTIONS["fov"].check(f"{what}: fov", float(info["fov"]))
    return checked(from_fov(float(info["fov"]), width, height), what)


# ----------------------------------------------------------------------------- poses
#
# A pose is a 4x4 rigid transform ``[[R, t], [0, 0, 0, 1]]`` acting on column vectors of
# homogeneous points. ``camera_from_world`` (what models predict and COLMAP stores, "extrinsics",
# world-to-camera) maps world points to the camera frame (x right, y down, z forward):
# ``p_cam = R p_world + t``; its inverse ``world_from_camera`` (camera-to-world, what TUM and
# Redwood trajectories store) has the camera centre ``-R^T t`` as its translation.

def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of a rigid ``(..., 4, 4)`` pose: ``[[R^T, -R^T t], [0, 1]]`` (float64)."""
    pose = np.asarray(pose, dtype=np.float64)
    R, t = pose[..., :3, :3], pose[..., :3, 3]
    Rt = np.swapaxes(R, -1, -2)
    out = np.zeros(pose.shape, dtype=np.float64)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, t)
    out[..., 3, 3] = 1.0
    return out


def transform_points(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Apply a ``(4, 4)`` transform to ``(..., 3)`` points: ``R p + t`` (float64)."""
    pose = np.asarray(pose, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ pose[:3, :3].T + pose[:3, 3]


def camera_centre(camera_from_world: np.ndarray) -> np.ndarray:
    """The camera centre in world coordinates, ``-R^T t``, ``(..., 3)``."""
    return invert_pose(camera_from_world)[..., :3, 3]


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """A rotation matrix ``(3, 3)`` -> unit quaternion ``(w, x, y, z)`` (Hamilton, as COLMAP and
    Eigen write it), with ``w >= 0``. Shepperd's method: stable for every rotation."""
    R = np.asarray(R, dtype=np.float64)
    trace = np.trace(R)
    diag = np.diag(R)
    i = int(np.argmax([trace, *diag]))
    if i == 0:
        w = math.sqrt(1.0 + trace) / 2.0
        q = np.array([w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)])
    else:
        a = i - 1
        b, c = (a + 1) % 3, (a + 2) % 3
        s = math.sqrt(max(0.0, 1.0 + R[a, a] - R[b, b] - R[c, c])) * 2.0  # s = 4 |q_a|
        q = np.empty(4)
        q[0] = (R[c, b] - R[b, c]) / s
        q[1 + a] = s / 4.0
        q[1 + b] = (R[a, b] + R[b, a]) / s
        q[1 + c] = (R[a, c] + R[c, a]) / s
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def quaternion_to_rotation(q: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` (normalised here) -> ``(3, 3)`` rotation matrix."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle of rotation matrices ``(..., 3, 3)`` in degrees, in [0, 180].

    ``atan2(sin, cos)`` with ``sin`` from the antisymmetric part and ``cos`` from the trace:
    accurate for tiny angles too, where ``arccos`` of the trace alone loses half the digits.
    """
    R = np.asarray(R, dtype=np.float64)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    axis = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], axis=-1)
    sin = np.linalg.norm(axis, axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))


def umeyama(source: np.ndarray, target: np.ndarray, *, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """The similarity ``(s, R, t)`` minimising ``sum_i |target_i - (s R source_i + t)|^2``.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point
    patterns": closed form from the SVD of the cross-covariance, with the reflection fix
    (``det R = +1``). ``source``, ``target``: ``(N, 3)`` corresponding points, ``N >= 3`` not all
    on a line for a unique rotation. ``with_scale=False`` fixes ``s = 1`` (a rigid fit).
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 2:
        raise ValueError(f"umeyama wants two (N, 3) arrays of corresponding points, N >= 2; got {src.shape}, {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    var_s = float((xs * xs).sum() / len(src))
    s = float(np.trace(np.diag(D) @ S) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def similarity_matrix(s: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(4, 4)`` matrix ``[[s R, t], [0, 1]]`` of a similarity transform."""
    M = np.eye(4)
    M[:3, :3] = s * np.asarray(R, dtype=np.float64)
    M[:3, 3] = t
    return M


def frustum_corners(K: np.ndarray, width: int, height: int, depth: float) -> np.ndarray:
    """The image's four outer corners at z-depth ``depth``, in the camera frame, ``(4, 3)``:
    top-left, top-right, bottom-right, bottom-left (pixel edges, ``-0.5`` and ``W - 0.5``)."""
    u = np.array([-0.5, width - 0.5, width - 0.5, -0.5])
    v = np.array([-0.5, -0.5, height - 0.5, height - 0.5])
    x = (u - K[0, 2]) / K[0, 0] * depth
    y = (v - K[1, 2]) / K[1, 1] * depth
    return np.stack([x, y, np.full(4, float(depth))], axis=-1)
