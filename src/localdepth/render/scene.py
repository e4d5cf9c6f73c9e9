"""A photo and its depth as a layered scene that nearby virtual cameras can see.

Pure functions on arrays; conventions of :mod:`localdepth.geometry` (pixel centres at integer
coordinates, camera frame x right / y down / z forward, z-depth).

The scene has two layers of points:

* the **front layer**: every pixel of the photo at its depth, after the depth edges are cut
  (:func:`cut_depth_edges`): a pixel on a blurred edge takes the depth of one side or the other,
  never a value in between, so no "rubber sheet" of in-between points stretches from a near
  object to what is behind it;
* the **background layer**: for the pixels of near objects within ``band`` pixels of a depth
  edge, what is probably behind them: the depth of the nearest pixel on the far side of the edge,
  and the colour of OpenCV's inpainting (Telea) of the photo with the near side masked out. A
  camera that moves sees these points where the near object no longer hides them.

Relative maps have no scale: :func:`depth_for_rendering` turns them into a pseudo-depth (the
documented rule of :func:`localdepth.geometry.pseudo_depth`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..geometry import RELATIVE_NEAR_FRACTION, pseudo_depth

#: a depth edge: two neighbouring pixels whose parallax differs by more than this many pixels (the
#: renderer closes gaps of up to two pixels between neighbours as cracks; wider ones are edges)
EDGE_PX = 2.0
#: a blurred depth edge: the parallax within a 5x5 window spans more than this many pixels
SNAP_PX = 4.0
#: background points sort as if this much farther, so that a real pixel at nearly the same depth wins
BACKGROUND_BIAS = 0.02
#: the bits of :attr:`LayeredScene.flags`
BACKGROUND, EDGE = 1, 2
#: colour inpainting radius (pixels), OpenCV's Telea method
INPAINT_RADIUS = 5

RELATIVE_DEPTH_NOTE = (f"relative map: pseudo-depth z = 1 / ({RELATIVE_NEAR_FRACTION:g} + "
                       f"{1 - RELATIVE_NEAR_FRACTION:g} t), t the disparity normalised over its 1st..99th percentile "
                       f"(1 = nearest, {1 / RELATIVE_NEAR_FRACTION:g} = farthest); the true scale and shift are unknown")


def depth_for_rendering(depth: np.ndarray, kind: str, metric: bool | None = None,
                        value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, str, str]:
    """A map -> ``(z (H, W) float32 > 0, units, note)``: the z-depth a renderer uses.

    * depth (metric or relative depth): used as it is (``units`` ``"m"`` or ``"relative"``);
    * disparity (relative inverse depth): :func:`~localdepth.geometry.pseudo_depth`, 1 = nearest,
      10 = farthest (``value_range``: the disparity range to normalise, e.g. a clip's; default the
      map's 1st..99th percentile).

    Pixels without a valid depth (NaN, infinite, not positive) get the farthest valid depth, so
    that they stay behind everything.
    """
    d = np.asarray(depth, dtype=np.float32)
    if kind == "depth":
        z = d.copy()
        units = "m" if (metric if metric is not None else True) else "relative"
        note = "z-depth as predicted" + ("" if units == "m" else " (relative: scale unknown)")
    else:
        z = pseudo_depth(d, value_range)
        units, note = "relative", RELATIVE_DEPTH_NOTE
    valid = np.isfinite(z) & (z > 0)
    far = float(z[valid].max()) if valid.any() else 1.0
    return np.where(valid, z, far).astype(np.float32), units, note


def depth_percentiles(z: np.ndarray, lo: float = 1.0, hi: float = 99.0) -> tuple[float, float]:
    """``(near, far)``: robust extremes of a z-depth map (a regular subsample of large maps)."""
    flat = np.asarray(z, dtype=np.float32).ravel()
    flat = flat[:: max(1, flat.size // 200_000)]
    near, far = np.percentile(flat, (lo, hi))
    return float(near), float(max(far, near))


def cut_depth_edges(z: np.ndarray, parallax, threshold: float = SNAP_PX, radius: int = 2,
                    iterations: int = 2) -> np.ndarray:
    """Sharpen blurred depth edges: ``(H, W)`` z-depth in, the same with each pixel of a blurred edge
    moved to the nearer of its window's extremes.

    Networks smooth depth across object boundaries; rendered as they are, the in-between pixels
    form a sheet joining the object to the background. ``parallax``: pixels of parallax per unit
    of inverse depth, a number or an ``(H, W)`` map (:func:`localdepth.render.paths.parallax_map`). A
    pixel whose
    ``(2 radius + 1)^2`` window spans more than ``threshold`` pixels of parallax
    (``parallax * (1/z_min - 1/z_max)``) takes the window's nearest or farthest depth, whichever is
    closer in inverse depth (repeated ``iterations`` times). Smooth surfaces (a floor, a slanted
    wall) span far less in 5 pixels and are left alone.
    """
    out = np.asarray(z, dtype=np.float32).copy()
    if np.max(parallax) <= 0:
        return out
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    for _ in range(iterations):
        lo = cv2.erode(out, kernel, borderType=cv2.BORDER_REPLICATE)
        hi = cv2.dilate(out, kernel, borderType=cv2.BORDER_REPLICATE)
        blurred = (1.0 / lo - 1.0 / hi) * parallax > threshold
        if not blurred.any():
            break
        # nearer to the window's nearest depth in inverse depth: 1/z - 1/hi > 1/lo - 1/z
        snapped = np.where(2.0 / out > 1.0 / lo + 1.0 / hi, lo, hi)
        out = np.where(blurred, snapped, out)
    return out


def edge_sides(z: np.ndarray, parallax, threshold: float = EDGE_PX) -> tuple[np.ndarray, np.ndarray]:
    """``(near_side, far_side)``: boolean ``(H, W)`` masks of the pixels on either side of a depth edge.

    An edge is a 4-neighbour pair whose parallax differs by more than ``threshold`` pixels,
    ``parallax * |1/z1 - 1/z2|`` (``parallax``: pixels per unit of inverse depth, a number or an
    ``(H, W)`` map); its nearer pixel
    is on the near side, the other on the far side. In parallax, not in relative depth: a jump
    matters when a moving camera shows it, and far away a large relative jump moves nothing.
    """
    d = 1.0 / np.asarray(z, dtype=np.float32)
    P = np.broadcast_to(np.asarray(parallax, dtype=np.float32), d.shape)
    near = np.zeros(d.shape, bool)
    far = np.zeros(d.shape, bool)
    for a, b, sa, sb in ((d[:, :-1], d[:, 1:], (slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                         (d[:-1, :], d[1:, :], (slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        jump = np.abs(a - b) * P[sa] > threshold
        a_near = jump & (a > b)
        b_near = jump & (b > a)
        near[sa] |= a_near
        far[sb] |= a_near
        near[sb] |= b_near
        far[sa] |= b_near
    return near, far


def background_layer(image: np.ndarray, z: np.ndarray, band: int, parallax, threshold: float = EDGE_PX
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What is behind the near side of depth edges: ``(mask (H, W) bool, colour (H, W, 3) uint8,
    depth (H, W) float32)``.

    Every pixel is paired with its nearest far-side edge pixel (:func:`edge_sides`; a distance
    transform with labels). ``mask``: the pixels that a camera can uncover, those whose parallax
    exceeds that far-side pixel's by more than ``threshold`` pixels and by more than their distance
    to it (the gap an edge opens is as wide as its jump in parallax), within ``band`` pixels.
    ``depth``: there, the far-side pixel's depth (nothing leaks in from the near object).
    ``colour``: the photo inpainted by OpenCV (Telea) over the mask widened into the near object (to
    twice the gap), so that the pixels near the far side are filled from the far side before the
    inpainting front from the near object's inside reaches them. Outside ``mask`` the colour and depth
    are the photo's own.
    """
    z = np.asarray(z, dtype=np.float32)
    h, w = z.shape
    _, far_side = edge_sides(z, parallax, threshold)
    if band < 1 or not far_side.any():
        return np.zeros((h, w), bool), image.copy(), z.copy()
    distance, labels = cv2.distanceTransformWithLabels((~far_side).astype(np.uint8), cv2.DIST_L2, 5,
                                                       labelType=cv2.DIST_LABEL_PIXEL)
    far_values = np.zeros(int(labels.max()) + 1, np.float32)
    far_values[labels[far_side]] = z[far_side]
    far_depth = far_values[labels]
    jump = (1.0 / z - 1.0 / far_depth) * parallax  # the gap, in pixels, this pixel's edge can open
    edge = jump > threshold
    mask = edge & (distance <= np.minimum(jump + 1.0, band))
    paint = mask | (edge & (distance <= np.minimum(2.0 * jump + 2.0, 2 * band)))
    colour = inpaint(image, paint)
    depth = np.where(mask, np.maximum(far_depth, z), z).astype(np.float32)
    return mask, colour, depth


def inpaint(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """OpenCV's inpainting (Telea) of ``image`` ``(H, W, 3)`` uint8 over ``mask`` ``(H, W)`` bool.

    Beyond 0.5 megapixels it runs at half the size (the cost grows with the masked area, and what
    it fills is smooth anyway) and the result, enlarged, replaces the masked pixels only.
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = mask.shape
    if h * w <= 500_000:
        return cv2.inpaint(image, mask.astype(np.uint8), INPAINT_RADIUS, cv2.INPAINT_TELEA)
    half = (max(1, w // 2), max(1, h // 2))
    small = cv2.resize(image, half, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask.astype(np.uint8), half, interpolation=cv2.INTER_NEAREST)
    small_mask |= cv2.resize(mask.astype(np.uint8), half, interpolation=cv2.INTER_AREA) > 0
    painted = cv2.resize(cv2.inpaint(small, small_mask.astype(np.uint8), INPAINT_RADIUS // 2 + 1, cv2.INPAINT_TELEA),
                         (w, h), interpolation=cv2.INTER_LINEAR)
    return np.where(mask[..., None], painted, image)


@dataclass
class LayeredScene:
    """The points a renderer projects (:func:`localdepth.render.warp.render_view`).

    ``image`` ``(H, W, 3)`` uint8 and ``depth`` ``(H, W)`` float32 (z, edges cut) are the photo's;
    ``K`` its ``(3, 3)`` intrinsics. ``X, Y, Z`` ``(N,)`` float32 are the points in the photo's camera
    frame (the photo's pixels and the background layer's), in depth order, from the farthest
    (index 0) to the nearest (background points count as a little farther:
    :data:`BACKGROUND_BIAS`), so that the largest index landing on a pixel is the nearest point
    there. ``colours`` ``(2H, W, 3)`` uint8 stacks the photo over the background layer's colour and
    ``depths`` ``(2H, W)`` their depths; ``source`` ``(N,)`` int64 is each point's flat index in them,
    ``row``, ``col`` ``(N,)`` int32 its pixel there, ``inverse_depth`` its ``1 / Z``. ``flags``
    ``(N,)`` uint8: bit :data:`BACKGROUND` for the points of the background layer, bit :data:`EDGE`
    for the photo's points beside a depth edge. ``band``: the background layer's width in pixels;
    ``parallax``: the largest number of pixels of parallax per unit of inverse depth that the edges
    were judged by.
    """

    image: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    Z: np.ndarray
    colours: np.ndarray
    depths: np.ndarray
    source: np.ndarray
    flags: np.ndarray
    band: int
    parallax: float
    inverse_depth: np.ndarray
    row: np.ndarray
    col: np.ndarray
    median_depth: float
    background_points: int = 0
    info: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]


def build_scene(image: np.ndarray, z: np.ndarray, K: np.ndarray, *, band: int, parallax,
                cut_edges: bool = True) -> LayeredScene:
    """A photo ``(H, W, 3)`` uint8 and its z-depth ``(H, W)`` (> 0, e.g. :func:`depth_for_rendering`)
    -> a :class:`LayeredScene`.

    ``K``: ``(3, 3)`` intrinsics of the photo at this size. ``parallax``: the views' largest
    displacement, in pixels, per unit of inverse depth (``f * |t|`` for a sideways move ``t``), a
    number or an ``(H, W)`` map (a move forward displaces the border more than the centre;
    :func:`localdepth.render.paths.parallax_map`): depth edges are judged by the parallax they
    show. ``band``: the widest gap, in pixels, that the views open between the two sides of an edge
    (:func:`localdepth.render.paths.disocclusion_width`); the background layer is that wide.
    ``cut_edges``: sharpen blurred depth edges first (:func:`cut_depth_edges`).
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    z = np.asarray(z, dtype=np.float32)
    h, w = z.shape
    if image.shape[:2] != (h, w):
        raise ValueError(f"the image ({image.shape[1]}x{image.shape[0]}) and its depth ({w}x{h}) differ in size")
    if not (np.isfinite(z).all() and (z > 0).all()):
        raise ValueError("the depth must be finite and positive everywhere (see depth_for_rendering)")
    if cut_edges:
        # a 5x5 median of the inverse depth first: it keeps edges and removes the speckle that a
        # strong parallax would turn into holes
        z = 1.0 / cv2.medianBlur(np.ascontiguousarray(1.0 / z, dtype=np.float32), 5)
        z = cut_depth_edges(z, parallax)
    near_side, far_side = edge_sides(z, parallax)
    mask, bg_colour, bg_depth = background_layer(image, z, band, parallax)

    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    back = np.flatnonzero(mask.ravel())
    z_all = np.concatenate([z.ravel(), bg_depth.ravel()[back]])
    u_all = np.concatenate([u.ravel(), u.ravel()[back]])
    v_all = np.concatenate([v.ravel(), v.ravel()[back]])
    X = ((u_all - cx) / fx * z_all).astype(np.float32)
    Y = ((v_all - cy) / fy * z_all).astype(np.float32)
    source = np.concatenate([np.arange(h * w, dtype=np.int64), h * w + back])
    # the points in depth order, far (index 0) to near, so that a z-buffer of indices is a z-buffer of
    # depths; background points count as a little farther, and a front point wins a tie
    key = z_all.astype(np.float64)
    key[h * w:] *= 1.0 + BACKGROUND_BIAS
    is_back = np.zeros(len(z_all), np.int8)
    is_back[h * w:] = 1
    order = np.lexsort((-is_back, -key))
    edge = np.zeros(len(z_all), bool)
    edge[: h * w] = (near_side | far_side).ravel()
    X, Y, z_all, source, edge = X[order], Y[order], z_all[order], source[order], edge[order]
    return LayeredScene(
        image=image, depth=z, K=np.asarray(K, dtype=np.float64), X=X, Y=Y, Z=z_all.astype(np.float32),
        colours=np.concatenate([image, bg_colour], axis=0), depths=np.concatenate([z, bg_depth], axis=0),
        source=source, flags=np.where(source >= h * w, BACKGROUND, 0).astype(np.uint8) | np.where(edge, EDGE, 0).astype(np.uint8),
        band=int(band), parallax=float(np.max(parallax)),
        inverse_depth=(1.0 / z_all).astype(np.float32), row=(source // w).astype(np.int32),
        col=(source % w).astype(np.int32), median_depth=float(np.median(z)),
        background_points=len(back),
        info={"band_px": int(band), "parallax_px_per_inverse_depth": round(float(np.max(parallax)), 6),
              "background_points": int(len(back)), "edge_px": EDGE_PX,
              "background": "OpenCV inpainting (Telea) behind the near side of depth edges; depth of the "
                            "nearest far-side pixel"})
