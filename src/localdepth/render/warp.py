"""Rendering a layered scene from a nearby camera: a z-buffered forward splat, then backward sampling.

Pure functions on arrays, the conventions of :mod:`localdepth.geometry`. A virtual camera
(:class:`View`) has the photo's orientation, its centre moved by ``t`` (in the photo's camera
frame, depth units) and its own intrinsics ``K`` (so a zoom, a dolly zoom or an off-axis shift
of the principal point are all a ``K``). A point ``P`` of the photo's frame is seen at
``K (P - t)``. Without rotation the depth order of the points is the same from every such
camera (``z' = z - t_z``), which is what lets the scene sort its points once.

For each view:

1. **Splat with a z-buffer**: every point goes to its nearest target pixel; where several land,
   the nearest wins (``np.maximum.at`` over the points' indices, which the scene keeps in depth
   order), so near things hide far things.
2. **Fill the holes**: a crack one or two pixels wide between two points that are neighbours in
   the photo (where the view magnifies) takes a point of their surface, also where a farther
   point shows through it (:func:`close_cracks`). Other pixels that no point reached
   (uncovered background wider than the scene's background layer, the image border) take the
   *farthest* of the points that end them along their row and column
   (:func:`fill_from_background`), so a hole is filled from the background and never from the
   near object beside it.
3. **Sample the colour backwards**: from its point's depth, each target pixel's position in the
   photo follows exactly (``u = K (K'^-1 [u', v', 1] z' + t)``); the colour is read there with
   bilinear interpolation (``cv2.remap``), so a fronto-parallel plane moves by its sub-pixel
   disparity. Pixels whose point lies on a depth edge, and filled pixels whose sampled position
   lands on a surface at another depth, take their point's own colour instead: nothing is smeared
   across an edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .scene import BACKGROUND, EDGE, EDGE_PX, LayeredScene

#: points closer than this to the virtual camera's centre plane (depth units, relative) are dropped
NEAR_CLIP = 1e-3


@dataclass(frozen=True)
class View:
    """A virtual camera: centre ``t`` ``(3,)`` in the photo's camera frame (x right, y down, z forward;
    depth units), intrinsics ``K`` ``(3, 3)`` in pixels of a ``width x height`` picture."""

    t: tuple[float, float, float]
    K: np.ndarray
    width: int
    height: int

    @staticmethod
    def at_rest(scene: LayeredScene) -> View:
        """The photo's own camera."""
        return View((0.0, 0.0, 0.0), scene.K, scene.width, scene.height)


@dataclass
class Rendered:
    """One rendered view: ``image`` ``(H, W, 3)`` uint8; ``filled`` ``(H, W)`` bool, the pixels that show
    no point of the photo itself: ``background`` (the scene's inpainted background layer) or holes
    filled from their neighbours; ``holes`` the number of pixels no point reached before filling."""

    image: np.ndarray
    filled: np.ndarray
    background: np.ndarray
    holes: int


def splat(scene: LayeredScene, view: View) -> np.ndarray:
    """The z-buffer of a view: ``(H*W,)`` int64, the index of the nearest point landing on each pixel
    (its nearest pixel centre, rounding halves up), -1 where none does. The scene's points are in
    depth order, so the nearest is the largest index."""
    tx, ty, tz = (np.float32(c) for c in view.t)
    K = view.K
    w, h = view.width, view.height
    inv = np.subtract(scene.Z, tz)
    inv[inv <= np.float32(NEAR_CLIP * scene.median_depth)] = np.nan  # behind (or at) the camera
    np.reciprocal(inv, out=inv)
    u = np.subtract(scene.X, tx)
    u *= np.float32(K[0, 0])
    u *= inv
    u += np.float32(K[0, 2] + 1.5)  # +0.5 rounds half up, +1 keeps the pixels inside positive for truncation
    v = np.subtract(scene.Y, ty)
    v *= np.float32(K[1, 1])
    v *= inv
    v += np.float32(K[1, 2] + 1.5)
    with np.errstate(invalid="ignore"):
        ui = u.astype(np.int32)  # floor(u + 0.5) + 1 wherever it can land inside; NaN becomes negative
        vi = v.astype(np.int32)
    ui -= 1
    vi -= 1
    index = np.arange(len(u), dtype=np.int32)
    best = np.full(h * w + 1, -1, np.int32)
    np.maximum.at(best, _targets(ui, vi, w, h), index)
    return best[:-1].astype(np.int64)


def _targets(ui: np.ndarray, vi: np.ndarray, width: int, height: int) -> np.ndarray:
    """Flat pixel indices of integer coordinates; ``width * height`` (one extra slot) for those outside."""
    inside = ui.view(np.uint32) < width
    inside &= vi.view(np.uint32) < height
    target = vi * np.int32(width)
    target += ui
    target[~inside] = width * height
    return target


def fill_from_background(winner: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each hole (``winner < 0``) takes the farthest of the four points that end it along its row and its
    column (the nearest reached pixel to its left, right, top and bottom; the lowest index is the
    farthest, the scene's points being in depth order). A hole that a near object uncovered has the
    background at one end at least, so it is filled from the background, never from the near object.

    Returns ``(winner, still_empty)``: the filled point indices ``(H*W,)`` and a boolean ``(H, W)`` of the
    pixels with no point on their row nor their column.
    """
    grid = winner.reshape(height, width)
    reached = grid >= 0
    if reached.all():
        return winner.copy(), np.zeros((height, width), bool)
    rows, cols = np.nonzero(~reached)
    none = np.int64(np.iinfo(np.int64).max)
    best = np.full(rows.shape, none, np.int64)
    for axis, size in ((1, width), (0, height)):
        # only the rows (columns) that hold a hole: a few per cent of a frame
        lines = np.unique(rows if axis == 1 else cols)
        hit = np.searchsorted(lines, rows if axis == 1 else cols)
        ok = reached[lines, :] if axis == 1 else reached[:, lines].T
        position = np.arange(size, dtype=np.int32)[None, :]
        before = np.maximum.accumulate(np.where(ok, position, np.int32(-1)), axis=1)
        after = np.minimum.accumulate(np.where(ok, position, np.int32(size))[:, ::-1], axis=1)[:, ::-1]
        along = cols if axis == 1 else rows
        for ends, valid in ((before, lambda e: e >= 0), (after, lambda e: e < size)):
            end = ends[hit, along]
            found = valid(end)
            at = (rows[found], end[found]) if axis == 1 else (end[found], cols[found])
            best[found] = np.minimum(best[found], grid[at])
    out = winner.copy()
    filled = best < none
    out[rows[filled] * width + cols[filled]] = best[filled]
    still = np.zeros((height, width), bool)
    still[rows[~filled], cols[~filled]] = True
    return out, still


def close_cracks(winner: np.ndarray, scene: LayeredScene, height: int, width: int) -> np.ndarray:
    """Close the cracks of magnified surfaces: ``winner`` ``(H*W,)`` point indices (-1: none) in, a new
    array out.

    Where a view magnifies, or where two points round to the same pixel, points that are
    neighbours in the photo land with a pixel or two between them, which is empty or shows a farther
    point through the gap. A run of one or two such pixels between two points at most ``gap + 1``
    pixels apart in the photo (same layer), each empty or showing a farther point (by more than
    :data:`~localdepth.render.scene.EDGE_PX` of parallax) that does not lie between them in the
    photo, takes the farther of the two (across a small depth step the near side does not grow; a
    wider gap is a disocclusion, left to the background layer). A real gap in the photo (sky
    between two leaves) stays: the sky's point lies between its two sides.
    """
    win = winner.copy()
    reached = win >= 0
    inverse = np.where(reached, scene.inverse_depth[np.maximum(win, 0)], np.float32(0.0))  # nothing: infinitely far
    limit = np.float32(EDGE_PX / scene.parallax if scene.parallax > 0 else np.inf)
    # candidates (a few per cent of a frame): empty, or farther than a pixel at most two away along a row or column
    grid = inverse.reshape(height, width)
    nearest_around = np.maximum(cv2.dilate(grid, np.ones((1, 5), np.uint8)), cv2.dilate(grid, np.ones((5, 1), np.uint8)))
    nearest_around -= grid
    candidates = np.flatnonzero(~reached | (nearest_around.ravel() > limit))
    if candidates.size == 0:
        return win
    cand_row, cand_col = np.divmod(candidates, width)
    for gap in (1, 2):
        for step, along, size in ((1, cand_col, width), (width, cand_row, height)):
            p = candidates[(along >= 1) & (along + gap <= size - 1)]  # the run's first pixel
            a, b = p - step, p + gap * step
            wa, wb = win[a], win[b]
            da, db = inverse[a], inverse[b]
            farther_end = np.minimum(da, db) - limit
            # sandwiched: every pixel of the run empty, or farther than both ends by more than the limit
            crack = (wa >= 0) & (wb >= 0)
            for k in range(gap):
                crack &= inverse[p + k * step] < farther_end
            p, a, b, wa, wb, da, db = p[crack], a[crack], b[crack], wa[crack], wb[crack], da[crack], db[crack]
            ra, rb, ca, cb = scene.row[wa], scene.row[wb], scene.col[wa], scene.col[wb]
            crack = (np.abs(ra - rb) <= gap + 1) & (np.abs(ca - cb) <= gap + 1)
            lo_r, hi_r, lo_c, hi_c = np.minimum(ra, rb), np.maximum(ra, rb), np.minimum(ca, cb), np.maximum(ca, cb)
            for k in range(gap):
                wq = win[p + k * step]
                rq, cq = scene.row[np.maximum(wq, 0)], scene.col[np.maximum(wq, 0)]
                between = (rq >= lo_r) & (rq <= hi_r) & (cq >= lo_c) & (cq <= hi_c)
                crack &= (wq < 0) | ~between
            src = np.where(da <= db, a, b)[crack]  # the farther end: the near side does not grow
            p = p[crack]
            for k in range(gap):
                win[p + k * step] = win[src]
                inverse[p + k * step] = inverse[src]
    return win


def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    key = (height, width)
    if key not in _GRIDS:
        _GRIDS.clear()
        v, u = np.divmod(np.arange(height * width, dtype=np.int64), width)
        _GRIDS[key] = (u.astype(np.float32), v.astype(np.float32))
    return _GRIDS[key]


_GRIDS: dict = {}


def render_view(scene: LayeredScene, view: View) -> Rendered:
    """Render ``scene`` from ``view`` (see the module docstring): a :class:`Rendered` of
    ``view.height x view.width`` pixels, no hole left."""
    h, w = view.height, view.width
    winner = splat(scene, view)
    holes = int(np.count_nonzero(winner < 0))
    winner = close_cracks(winner, scene, h, w)
    reached = winner >= 0
    winner, still_empty = fill_from_background(winner, h, w)
    point = np.maximum(winner, 0)

    # backward sampling: the target pixel at its point's depth, seen from the photo's camera
    tx, ty, tz = (float(c) for c in view.t)
    K = view.K
    zt = scene.Z[point] - np.float32(tz)
    ut, vt = _pixel_grid(h, w)
    xs = (ut - np.float32(K[0, 2])) * (zt / np.float32(K[0, 0])) + np.float32(tx)
    ys = (vt - np.float32(K[1, 2])) * (zt / np.float32(K[1, 1])) + np.float32(ty)
    zs = zt + np.float32(tz)
    fx, fy, cx, cy = (np.float32(scene.K[i, j]) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    us = fx * xs / zs + cx
    vs = fy * ys / zs + cy
    src_h, src_w = scene.height, scene.width
    flags = scene.flags[point]
    back = (flags & BACKGROUND).astype(bool)  # the point is in the background layer
    np.clip(us, 0.0, src_w - 1.0, out=us)
    np.clip(vs, 0.0, src_h - 1.0, out=vs)
    vs[back] += src_h
    colour = cv2.remap(scene.colours, us.reshape(h, w), vs.reshape(h, w), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE).reshape(-1, 3)

    # a point on an edge keeps its own colour; a filled pixel keeps the sample only if it lands on a
    # surface at its point's depth (else the sample would come from the near object beside the hole)
    replace = np.flatnonzero((flags & EDGE).astype(bool) & reached)
    filled_px = np.flatnonzero(~reached)
    if filled_px.size:
        ri = np.rint(vs[filled_px]).astype(np.int64) * src_w + np.rint(us[filled_px]).astype(np.int64)
        found = scene.depths.reshape(-1)[ri]
        off = np.abs(1.0 / found - 1.0 / zs[filled_px]) * scene.parallax > EDGE_PX
        replace = np.concatenate([replace, filled_px[off]])
    if replace.size:
        colour[replace] = scene.colours.reshape(-1, 3)[scene.source[point[replace]]]
    image = colour.reshape(h, w, 3)
    filled = (back | ~reached).reshape(h, w)
    if still_empty.any():  # no point on the row nor the column: OpenCV's inpainting
        image = cv2.inpaint(image, still_empty.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    return Rendered(image=image, filled=filled, background=(back & reached).reshape(h, w), holes=holes)
