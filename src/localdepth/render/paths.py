"""Camera paths for 3D photos: a list of :class:`~localdepth.render.warp.View` per video.

Pure functions on arrays, the conventions of :mod:`localdepth.geometry`. Every path moves the
camera by ``amplitude * focus`` at most, where ``focus`` is the scene's focus depth (by default
its median depth, for a dolly zoom the near subject's: "a fraction of the scene depth"), without
turning it:

* ``circle``: the centre goes round a circle in the image plane, ``t = A (cos 2 pi s, sin 2 pi s, 0)``,
  and the principal point shifts with it (``c' = c + f t / focus``) so that the focus plane stays
  still while nearer things swing one way and farther things the other (loops);
* ``swing``: the same, left and right only, ``t = A (sin 2 pi s, 0, 0)`` (loops);
* ``zoom-in``: the camera moves forward, ``t = (0, 0, A e(s))`` with ``e(s) = (1 - cos pi s) / 2``;
* ``dolly-zoom``: the camera moves back, ``t = (0, 0, -A e(s))``, while the focal length grows as
  ``f' = f (focus + A e(s)) / focus``: the focus plane keeps its size and the field of view
  narrows, so the background seems to approach (the "vertigo" effect).

``s`` runs over ``[0, 1)`` for loops and ``[0, 1]`` otherwise. :func:`border_zoom` then zooms all
views alike, about the picture's centre, just enough that the photo's border never shows.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .warp import View

PATHS = ("circle", "swing", "zoom-in", "dolly-zoom")
#: camera movement as a fraction of the focus depth, per path, when none is given
DEFAULT_AMPLITUDE = {"circle": 0.02, "swing": 0.03, "zoom-in": 0.1, "dolly-zoom": 0.3}
LOOPS = {"circle": True, "swing": True, "zoom-in": False, "dolly-zoom": False}
#: the border zoom never exceeds this (a larger one would crop most of the photo: lower the amplitude)
MAX_BORDER_ZOOM = 1.5


def _ease(s: float) -> float:
    return (1.0 - math.cos(math.pi * s)) / 2.0


def camera_path(path: str, frames: int, K: np.ndarray, width: int, height: int, *, amplitude: float | None,
                focus: float, near: float | None = None) -> list[View]:
    """``frames`` views along ``path`` (see the module docstring) for a ``width x height`` picture with
    intrinsics ``K``. ``amplitude``: the camera's largest movement as a fraction of ``focus`` (the
    focus depth); None: :data:`DEFAULT_AMPLITUDE`. ``near``: the nearest depth of the scene; a
    ``zoom-in`` that would reach it is refused (``ValueError``)."""
    if path not in PATHS:
        raise ValueError(f"unknown camera path '{path}'; choose from {', '.join(PATHS)}")
    if frames < 1:
        raise ValueError("a camera path needs at least one frame")
    amplitude = DEFAULT_AMPLITUDE[path] if amplitude is None else float(amplitude)
    A = amplitude * focus
    if path == "zoom-in" and near is not None and A >= 0.8 * near:
        raise ValueError(f"--amplitude {amplitude:g} moves the camera {A:.3g} forward, too close to the nearest "
                         f"depth ({near:.3g}); use at most {0.8 * near / focus:.3g}")
    K = np.asarray(K, dtype=np.float64)
    views = []
    for k in range(frames):
        s = k / frames if LOOPS[path] else (k / (frames - 1) if frames > 1 else 0.0)
        Kv = K.copy()
        if path == "circle":
            t = (A * math.cos(2 * math.pi * s), A * math.sin(2 * math.pi * s), 0.0)
        elif path == "swing":
            t = (A * math.sin(2 * math.pi * s), 0.0, 0.0)
        elif path == "zoom-in":
            t = (0.0, 0.0, A * _ease(s))
        else:
            t = (0.0, 0.0, -A * _ease(s))
            Kv[0, 0] *= (focus - t[2]) / focus
            Kv[1, 1] *= (focus - t[2]) / focus
        # off-axis: the principal point follows the camera, so the focus plane does not move
        Kv[0, 2] += Kv[0, 0] * t[0] / (focus - t[2])
        Kv[1, 2] += Kv[1, 1] * t[1] / (focus - t[2])
        views.append(View(t, Kv, width, height))
    return views


def project_pixels(u: np.ndarray, v: np.ndarray, z: np.ndarray, K: np.ndarray, view: View) -> tuple[np.ndarray, np.ndarray]:
    """Where the photo's pixels ``(u, v)`` at depths ``z`` (arrays of one shape) land in ``view``."""
    X = (u - K[0, 2]) / K[0, 0] * z - view.t[0]
    Y = (v - K[1, 2]) / K[1, 1] * z - view.t[1]
    Z = z - view.t[2]
    return view.K[0, 0] * X / Z + view.K[0, 2], view.K[1, 1] * Y / Z + view.K[1, 2]


def parallax_map(views: list[View], K: np.ndarray, width: int, height: int, near: float, far: float,
                 grid: int = 9) -> np.ndarray:
    """Pixels of parallax per unit of inverse depth, over the picture: ``(height, width)`` float32.

    At each node of a ``grid x grid`` lattice of the photo's pixels (intrinsics ``K``), the largest
    difference between the displacements of a near (``near``) and a far (``far``) point, over every
    view, divided by ``1/near - 1/far``; bilinear in between. ``f |t|`` everywhere for a sideways move
    ``t``; for a move forward it grows from the principal point to the border.
    """
    u, v = np.meshgrid(np.linspace(0, width - 1, grid), np.linspace(0, height - 1, grid))
    widest = np.zeros(u.shape)
    for view in views:
        un, vn = project_pixels(u, v, np.full(u.shape, near), K, view)
        uf, vf = project_pixels(u, v, np.full(u.shape, far), K, view)
        widest = np.maximum(widest, np.hypot(un - uf, vn - vf))
    span = 1.0 / near - 1.0 / far
    scale = (widest / span if span > 0 else np.zeros(u.shape)).astype(np.float32)
    return cv2.resize(scale, (width, height), interpolation=cv2.INTER_LINEAR)


def disocclusion_width(parallax: float, near: float, far: float) -> int:
    """The widest gap, in pixels, that views of ``parallax`` pixels per unit of inverse depth open between
    a near (``near``) and a far (``far``) surface side by side in the photo, plus a margin of 2."""
    return int(math.ceil(parallax * (1.0 / near - 1.0 / far))) + 2


def border_zoom(views: list[View], K: np.ndarray, depth: np.ndarray) -> float:
    """The zoom (>= 1, about the picture's centre) that keeps the photo's border out of every view.

    ``depth``: the ``(H, W)`` z-depth of the photo. Its border pixels are projected into each view; the
    zoom is the smallest that puts the view's border outside what they enclose. At most
    :data:`MAX_BORDER_ZOOM` (a few pixels of border then stay, filled like any hole).
    """
    h, w = depth.shape
    step = max(1, max(h, w) // 256)
    rows, columns = np.arange(0, h, step, dtype=float), np.arange(0, w, step, dtype=float)
    # the photo's border, half a pixel beyond its edge pixels' centres, at their depths
    sides = {
        "left": (np.full(len(rows), -0.5), rows, depth[::step, 0]),
        "right": (np.full(len(rows), w - 0.5), rows, depth[::step, -1]),
        "top": (columns, np.full(len(columns), -0.5), depth[0, ::step]),
        "bottom": (columns, np.full(len(columns), h - 0.5), depth[-1, ::step]),
    }
    zoom = 1.0
    for view in views:
        cx, cy = (view.width - 1) / 2.0, (view.height - 1) / 2.0
        for side, (u, v, z) in sides.items():
            up, vp = project_pixels(u, v, z.astype(np.float64), K, view)
            # reach: the view's border, inside: the photo's, both from the picture's centre
            if side == "left":
                reach, inside = -0.5 - cx, float(up.max()) - cx
            elif side == "right":
                reach, inside = view.width - 0.5 - cx, float(up.min()) - cx
            elif side == "top":
                reach, inside = -0.5 - cy, float(vp.max()) - cy
            else:
                reach, inside = view.height - 0.5 - cy, float(vp.min()) - cy
            if reach * inside <= 0:  # the photo's border crosses the centre: no zoom is enough
                return MAX_BORDER_ZOOM
            if abs(inside) < abs(reach):
                zoom = max(zoom, reach / inside)
    return min(zoom, MAX_BORDER_ZOOM)


def zoomed(views: list[View], zoom: float) -> list[View]:
    """The views magnified by ``zoom`` about the picture's centre: focal lengths times ``zoom``, principal
    points moved away from the centre by as much."""
    out = []
    for view in views:
        K = view.K.copy()
        cx, cy = (view.width - 1) / 2.0, (view.height - 1) / 2.0
        K[0, 0] *= zoom
        K[1, 1] *= zoom
        K[0, 2] = cx + zoom * (K[0, 2] - cx)
        K[1, 2] = cy + zoom * (K[1, 2] - cy)
        out.append(View(view.t, K, view.width, view.height))
    return out
