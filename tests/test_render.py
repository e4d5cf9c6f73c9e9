"""Rendering from a photo and its depth, against closed forms: 3D photo views, stereo, anaglyphs, ControlNet pictures.

A fronto-parallel plane at depth ``z`` seen from a camera moved by ``t`` sideways moves by
``-f t / z`` pixels (``baseline * f / z`` between two stereo eyes); a near square in front of a far
plane hides it and uncovers a strip ``f t (1/z_near - 1/z_far)`` wide; the camera at rest sees the
photo. Shifts are measured with OpenCV's phase correlation, an estimator independent of the renderer.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from localdepth.render import (View, anaglyph, build_scene, camera_path, controlnet_depth, controlnet_size,
                               render_view, stereo_views, write_frames)
from localdepth.render.paths import border_zoom, project_pixels, zoomed
from tolerance import at_least, within

F = 100.0
H, W = 120, 160


def camera(f: float = F, h: int = H, w: int = W) -> np.ndarray:
    return np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])


def texture(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """A smooth random texture (phase correlation needs structure at every scale but no aliasing)."""
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (h // 6, w // 6, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)


def shift_between(a: np.ndarray, b: np.ndarray, margin: int = 24) -> tuple[float, float]:
    """``(dx, dy)`` such that ``b(x) = a(x - d)``, from the central part of two pictures (phase correlation)."""
    crop = (slice(margin, -margin), slice(margin, -margin))
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)[crop].astype(np.float64)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)[crop].astype(np.float64)
    window = cv2.createHanningWindow(ga.shape[::-1], cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(ga, gb, window)
    return dx, dy


def plane_scene(z: float, band: int = 4, parallax: float = 10.0, image=None):
    image = texture() if image is None else image
    return build_scene(image, np.full((H, W), z, np.float32), camera(), band=band, parallax=parallax), image


# ----------------------------------------------------------------------------- 3D photo views

@pytest.mark.parametrize("t, z", [((0.13, 0.0, 0.0), 4.0), ((0.0, -0.07, 0.0), 2.0), ((0.05, 0.04, 0.0), 1.5)])
def test_a_fronto_parallel_plane_moves_by_the_disparity_of_the_camera_shift(t, z):
    scene, image = plane_scene(z)
    rendered = render_view(scene, View(t, camera(), W, H))
    expected = (-F * t[0] / z, -F * t[1] / z)  # u' = u - f t / z
    dx, dy = shift_between(image, rendered.image)
    # the tolerance; phase correlation itself errs by up to 0.16 px on this smooth texture (measured on
    # the closed-form shift below, which gives the same estimate to 0.01 px)
    within(abs(dx - expected[0]), 0.5, "shift error x (px)", at=(dx, dy, expected))
    within(abs(dy - expected[1]), 0.5, "shift error y (px)", at=(dx, dy, expected))
    # and closer: the picture is the photo translated by exactly that sub-pixel shift (OpenCV's affine warp,
    # bilinear); measured difference at most 1 grey level, mean 0.02
    shifted = cv2.warpAffine(image, np.array([[1.0, 0.0, expected[0]], [0.0, 1.0, expected[1]]]), (W, H),
                             flags=cv2.INTER_LINEAR)
    diff = np.abs(rendered.image.astype(int) - shifted.astype(int))[20:-20, 20:-20]
    within(diff.max(), 2, "max difference from the warped photo (levels)")
    within(diff.mean(), 0.2, "mean difference from the warped photo (levels)")
    assert rendered.filled[30:-30, 30:-30].sum() == 0  # inside, every pixel shows the plane itself


def test_the_camera_at_rest_reproduces_the_photo():
    image = texture(seed=3)
    rng = np.random.default_rng(1)
    z = cv2.resize(rng.uniform(1.0, 10.0, (6, 8)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    z = np.clip(z, 1.0, 10.0)
    z[40:80, 60:100] = 0.8  # and a sharp near square
    scene = build_scene(image, z, camera(), band=12, parallax=20.0)
    rendered = render_view(scene, View.at_rest(scene))
    assert np.array_equal(rendered.image, image)
    assert rendered.holes == 0 and not rendered.filled.any()


def square_scene(band: int = 16, parallax: float = 12.0):
    """A red square at depth 1 in front of a green-textured plane at depth 4."""
    image = texture(seed=2)
    image[..., 0] = image[..., 0] // 3  # red stays below 90 on the plane
    image[..., 1] = 128 + image[..., 1] // 2
    z = np.full((H, W), 4.0, np.float32)
    z[40:80, 60:100] = 1.0
    image[40:80, 60:100] = (255, 0, 0)
    return build_scene(image, z, camera(), band=band, parallax=parallax), image


def is_red(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] > 128) & (rgb[..., 1] < 100)


def test_a_near_square_hides_the_far_plane_and_what_it_uncovers_is_filled_with_background():
    scene, image = square_scene()
    t = 0.1
    rendered = render_view(scene, View((t, 0.0, 0.0), camera(), W, H))
    out = rendered.image
    near_shift, far_shift = -F * t / 1.0, -F * t / 4.0  # -10 px and -2.5 px
    # the square is where its depth puts it, whole: near hides far
    expected = np.zeros((H, W), bool)
    expected[40:80, int(60 + near_shift):int(100 + near_shift)] = True
    red = is_red(out)
    # 12 of its 1600 pixels are not red (3 at each corner), the same under every condition of docs/testing.md
    within(1 - red[expected].mean(), 0.03, "share of the moved square that is not red")
    # at most a column of mixed edge pixels on each side (measured 8, at the corners)
    within((red & ~expected).sum(), 2 * 40, "red pixels outside the square")
    # the strip it uncovers: the background moved less, so f t (1 - 1/4) = 7.5 px open on its right
    strip = np.zeros((H, W), bool)
    strip[42:78, int(100 + near_shift) + 1:int(100 + far_shift) - 1] = True
    assert strip.sum() > 0
    assert not is_red(out[strip]).any(), "the square was stretched into the uncovered background"
    # the plane's green is 128 and up, the square's 0 (measured at least 127 in the strip)
    at_least(out[strip][:, 1].min(), 100, "green of the uncovered strip (background-coloured)")
    assert rendered.background[strip].all()  # what shows there is the inpainted background layer
    assert rendered.filled[strip].all()
    assert rendered.holes > 0  # before filling there were holes; none is left in the picture
    assert (out.sum(axis=-1) > 0).all()


def test_without_the_background_layer_the_hole_grows_from_the_background_not_the_square():
    scene, image = square_scene(band=0)
    assert scene.background_points == 0
    rendered = render_view(scene, View((0.1, 0.0, 0.0), camera(), W, H))
    strip = (slice(42, 78), slice(91, 96))
    assert not is_red(rendered.image[strip]).any()
    # measured at least 162
    at_least(rendered.image[strip][..., 1].min(), 100, "green of the filled strip (background-coloured)")
    assert rendered.filled[strip].all() and not rendered.background.any()


def test_a_magnifying_view_leaves_no_crack():
    # forward by a third of the depth: the plane is magnified 1.5x, its points land 1.5 px apart
    scene, image = plane_scene(3.0)
    view = View((0.0, 0.0, 1.0), camera(), W, H)
    rendered = render_view(scene, view)
    assert rendered.holes > 1000  # the splat alone leaves a crack every other pixel
    expected = cv2.warpAffine(image, np.array([[1.5, 0, -0.5 * (W - 1) / 2], [0, 1.5, -0.5 * (H - 1) / 2]]), (W, H),
                              flags=cv2.INTER_LINEAR)
    diff = np.abs(rendered.image.astype(int) - expected.astype(int))[10:-10, 10:-10]
    # measured: mean 0.02, max 1 grey level (bilinear twice); a crack would show the far background's 0
    within(diff.mean(), 2.0, "mean difference from the magnified photo (levels)")
    within(diff.max(), 15, "max difference from the magnified photo (levels)")
    assert not rendered.filled[10:-10, 10:-10].any()


# ----------------------------------------------------------------------------- camera paths

def test_paths_keep_the_focus_plane_still_and_the_dolly_zoom_keeps_the_subject_size():
    K, focus = camera(), 3.0
    u = np.array([10.0, 80.0, 150.0])
    v = np.array([10.0, 60.0, 110.0])
    for path in ("circle", "swing", "dolly-zoom"):
        views = camera_path(path, 12, K, W, H, amplitude=0.2, focus=focus)
        for view in views:
            uf, vf = project_pixels(u, v, np.full(3, focus), K, view)
            np.testing.assert_allclose(uf, u, atol=1e-9)
            np.testing.assert_allclose(vf, v, atol=1e-9)
    dolly = camera_path("dolly-zoom", 12, K, W, H, amplitude=0.2, focus=focus)
    assert dolly[-1].t[2] == pytest.approx(-0.2 * focus) and dolly[-1].K[0, 0] == pytest.approx(F * 1.2)
    # the background grows: a far point moves away from the centre
    ub, _ = project_pixels(u, v, np.full(3, 30.0), K, dolly[-1])
    assert abs(ub[0] - (W - 1) / 2) > abs(u[0] - (W - 1) / 2)
    zoom = camera_path("zoom-in", 5, K, W, H, amplitude=0.2, focus=focus)
    assert zoom[0].t == (0.0, 0.0, 0.0) and zoom[-1].t[2] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="too close to the nearest"):
        camera_path("zoom-in", 5, K, W, H, amplitude=0.5, focus=focus, near=1.5)


def test_the_border_zoom_keeps_the_photo_border_out_of_every_view():
    K = camera()
    z = np.full((H, W), 2.0, np.float32)
    views = camera_path("circle", 16, K, W, H, amplitude=0.1, focus=4.0)
    zoom = border_zoom(views, K, z)
    # a plane at 2 with focus 4 moves by f A (1/2 - 1/4) = 100 * 0.4 * 0.25 = 10 px each way; about the image's
    # centre the top and bottom need the most: (59.5 + 0.5) / (59.5 - (10 - 0.5) - 0.5) = 60 / 50
    assert zoom == pytest.approx(1.2, rel=1e-6)
    for view in zoomed(views, zoom):  # then the photo's border (half a pixel beyond its edge pixels) stays out
        edges = {"left": (-0.5, 60.0), "right": (W - 0.5, 60.0), "top": (80.0, -0.5), "bottom": (80.0, H - 0.5)}
        for side, (u, v) in edges.items():
            up, vp = project_pixels(np.array([u]), np.array([v]), np.array([2.0]), K, view)
            border = up[0] if side in ("left", "right") else vp[0]
            limit = {"left": -0.5, "right": W - 0.5, "top": -0.5, "bottom": H - 0.5}[side]
            inside = border - limit if side in ("left", "top") else limit - border  # > 0: the border shows
            within(max(inside, 0.0), 1e-6, "photo border inside the view (px)", at=side)


# ----------------------------------------------------------------------------- stereo and anaglyphs

@pytest.mark.parametrize("z, baseline", [(4.0, 0.2), (2.5, 0.06)])
def test_the_stereo_pair_of_a_plane_is_shifted_by_baseline_times_f_over_z(z, baseline):
    image = texture(seed=5)
    left, right, info = stereo_views(image, np.full((H, W), z, np.float32), camera(), baseline=baseline)
    dx, dy = shift_between(left.image, right.image)
    # the right eye sees the plane baseline * f / z pixels further left (the 0.5 px; see above)
    assert dx == pytest.approx(-baseline * F / z, abs=0.5)
    within(abs(dy), 0.5, "vertical shift between the eyes (px)")
    d = baseline * F / z
    expected_right = cv2.warpAffine(left.image, np.array([[1.0, 0.0, -d], [0.0, 1.0, 0.0]]), (W, H),
                                    flags=cv2.INTER_LINEAR)
    diff = np.abs(right.image.astype(int) - expected_right.astype(int))[20:-20, 20:-20]
    # measured 0.03 at 5 px, 0.66 at 2.4 px (each eye a bilinear sample of the photo); 0.25 px off gives 3.3
    within(diff.mean(), 2.0, "mean difference from the shifted left eye (levels)")
    assert info["baseline"] == baseline and info["disparity_near_px"] == pytest.approx(baseline * F / z)


def test_the_disparity_budget_sets_the_baseline():
    image = texture(seed=6)
    z = np.full((H, W), 2.0, np.float32)
    left, right, info = stereo_views(image, z, camera(), budget=5.0)
    # 5 % of 160 px for the nearest depth: baseline = 0.05 * 160 * 2 / 100
    assert info["baseline"] == pytest.approx(0.16) and info["disparity_near_px"] == pytest.approx(8.0)
    dx, _ = shift_between(left.image, right.image)
    assert dx == pytest.approx(-8.0, abs=0.5)


def dubois_reference(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Dubois (2009), red-cyan, written out from the paper's matrices, in linear light (sRGB IEC 61966-2-1)."""
    Lm = np.array([[0.437, 0.449, 0.164], [-0.062, -0.062, -0.024], [-0.048, -0.050, -0.017]])
    Rm = np.array([[-0.011, -0.032, -0.007], [0.377, 0.761, 0.009], [-0.026, -0.093, 1.234]])

    def linear(c):
        c = c / 255.0
        return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)

    out = np.clip(np.einsum("ij,hwj->hwi", Lm, linear(left.astype(float))) +
                  np.einsum("ij,hwj->hwi", Rm, linear(right.astype(float))), 0, 1)
    srgb = np.where(out <= 0.0031308, 12.92 * out, 1.055 * out ** (1 / 2.4) - 0.055)
    return np.rint(srgb * 255).astype(np.uint8)


def test_the_anaglyph_of_a_zero_disparity_image_is_the_dubois_mix_of_the_image_in_both_eyes():
    image = texture(seed=7)
    left, right, info = stereo_views(image, np.full((H, W), 3.0, np.float32), camera(), baseline=0.0)
    assert np.array_equal(left.image, image) and np.array_equal(right.image, image)  # zero disparity
    glasses = anaglyph(left.image, right.image)
    assert np.array_equal(glasses, dubois_reference(image, image))
    # and two different views mix as the matrices say
    other = texture(seed=8)
    assert np.array_equal(anaglyph(image, other), dubois_reference(image, other))


# ----------------------------------------------------------------------------- ControlNet pictures

def test_controlnet_depth_is_inverse_depth_near_white_using_the_whole_range():
    z = np.linspace(1.0, 8.0, 60 * 80, dtype=np.float32).reshape(60, 80)
    picture, info = controlnet_depth(z, "depth")
    assert picture.shape == (60, 80, 3) and picture.dtype == np.uint8
    assert (picture[..., 0] == picture[..., 1]).all() and (picture[..., 0] == picture[..., 2]).all()
    grey = picture[..., 0].astype(int)
    assert grey[0, 0] == 255 and grey[-1, -1] == 0  # near = white
    assert grey.min() == 0 and grey.max() == 255
    # inverse depth, normalised: uint8(255 * (1/z - 1/8) / (1 - 1/8)), as ControlNet's preprocessors quantise
    expected = (255.0 * (1.0 / z - 1 / 8.0) / (1.0 - 1 / 8.0)).astype(np.uint8)
    within(np.abs(grey - expected).max(), 1, "max difference from ControlNet's quantisation (levels)")
    disparity, _ = controlnet_depth(1.0 / z, "disparity")  # a disparity map is used as it is
    within(np.abs(disparity.astype(int) - picture.astype(int)).max(), 1, "disparity vs depth input (levels)")


@pytest.mark.parametrize("shape, resolution, expected", [((400, 600), 512, (512, 768)), ((1000, 700), 512, (704, 512)),
                                                         ((480, 640), 1024, (1024, 1344))])
def test_controlnet_sizes_follow_controlnets_own_rounding_to_64(shape, resolution, expected):
    # ControlNet's resize_image: short side to the resolution, both sides rounded to multiples of 64
    assert controlnet_size(*shape, resolution) == expected
    picture, info = controlnet_depth(np.random.default_rng(0).uniform(1, 5, shape).astype(np.float32), "depth", resolution)
    assert picture.shape[:2] == expected and (info["height"], info["width"]) == expected
    with pytest.raises(ValueError, match="multiple of 64"):
        controlnet_size(*shape, 500)


# ----------------------------------------------------------------------------- encoding

@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".webp"])
def test_frames_are_written_as_video_gif_or_webp(tmp_path, suffix):
    pictures = [np.full((48, 64, 3), 40 * k, np.uint8) for k in range(5)]
    out = write_frames(tmp_path / f"a{suffix}", iter(pictures), fps=10.0)
    assert out["frames"] == 5
    path = tmp_path / f"a{suffix}"
    if suffix == ".mp4":
        import av

        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert len(frames) == 5 and frames[0].shape == (48, 64, 3)
        within(abs(int(frames[3].mean()) - 120), 3, "MP4 frame's mean level error")  # measured 1 (H.264)
    else:
        from PIL import Image

        with Image.open(io.BytesIO(path.read_bytes())) as im:
            assert im.n_frames == 5 and im.size == (64, 48)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
