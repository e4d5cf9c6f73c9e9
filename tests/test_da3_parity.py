"""Depth Anything 3: localdepth's own network and input path against the official code (a test oracle).

The official model gets seeded random weights (constant-initialised parameters randomised, the
camera readouts lifted to a usable camera: see ``da3_reference.randomize_``) and is saved with its
own ``save_pretrained``; localdepth loads that folder strictly. Both run the same input in fp32.
Measured differences are 0 (the same operations in the same order); the tolerances are the
issue's 1e-4 relative.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from da3_reference import no_autocast, official, official_model, official_tiny, save_official

torch = pytest.importorskip("torch")

from localdepth import registry  # noqa: E402
from localdepth.errors import BackendError  # noqa: E402
from localdepth.networks import load_network  # noqa: E402
from localdepth.networks.da3 import DepthAnything3Network, load_checkpoint  # noqa: E402
from localdepth.networks.da3.config import Architecture  # noqa: E402
from tolerance import within  # noqa: E402

SMALL_HW = (126, 182)  # 9 x 13 patches: the full-size Small runs in about a second per view here
REL = 1e-4
TINY = {
    # the Mono / Metric design: no camera, no alternating attention, DPT head with a sky map
    "single-view": Architecture(32, 4, 2, (0, 1, 2, 3), -1, -1, -1, False, "dpt", 16, (8, 16, 32, 32), False),
    # the Giant design: SwiGLU feed-forward, alternation from an odd block
    "swiglu-any-view": Architecture(48, 6, 3, (2, 3, 4, 5), 3, 3, 3, True, "dualdpt", 16, (8, 16, 32, 32), True,
                                    ffn="swiglu"),
}


def centred(K):
    """The official intrinsics (principal point ``W/2`` in continuous coordinates) in localdepth's
    convention (pixel centres at integers): half a pixel less."""
    K = torch.as_tensor(K).clone()
    K[..., :2, 2] -= 0.5
    return K


def rel_err(ours, ref) -> float:
    ours, ref = torch.as_tensor(ours).double(), torch.as_tensor(ref).double()
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(official da3-small, its Hub folder, localdepth's network strictly loaded from that folder)."""
    off = official_model("da3-small", seed=0)
    folder = save_official(off, tmp_path_factory.mktemp("da3-small-official"))
    ours = load_network(registry.get("da3-small"), folder)
    return off, folder, ours


def _record_reference_choice(monkeypatch) -> list[int]:
    """Patch the official reference-view selection to record what it picks."""
    import depth_anything_3.model.dinov2.vision_transformer as vt

    chosen: list[int] = []
    select = vt.select_reference_view

    def recording(x, strategy="saddle_balanced"):
        idx = select(x, strategy=strategy)
        chosen.extend(int(i) for i in idx)
        return idx

    monkeypatch.setattr(vt, "select_reference_view", recording)
    return chosen


def _run_both(off_net, ours, x, **conditioning):
    captured = {}
    hook = off_net.head.register_forward_hook(
        lambda m, i, o: captured.update({k: v.clone() for k, v in o.items()}))  # before the rays are dropped
    try:
        with torch.inference_mode():
            ref = off_net(x, **{k: v[None] for k, v in conditioning.items()})
            out = ours(x[0], same_scene=True, rays=True,
                       **{{"extrinsics": "camera_from_world"}.get(k, k): v for k, v in conditioning.items()})
    finally:
        hook.remove()
    return ref, captured, out


@pytest.mark.parametrize("views", [1, 4])
def test_full_size_small_matches_official_network(small, views, monkeypatch):
    off, _, ours = small
    chosen = _record_reference_choice(monkeypatch)
    x = torch.randn(1, views, 3, *SMALL_HW, generator=torch.Generator().manual_seed(views))
    ref, head, out = _run_both(off.model, ours, x)
    within(rel_err(out["depth"], ref["depth"][0]), REL, "depth: max error / max")
    within(rel_err(out["confidence"], ref["depth_conf"][0]), REL, "confidence: max error / max")
    within(rel_err(out["rays"], head["ray"][0]), REL, "rays: max error / max")
    within(rel_err(out["ray_confidence"], head["ray_conf"][0]), REL, "ray_confidence: max error / max")
    within(rel_err(out["camera_from_world"][:, :3], ref["extrinsics"][0]), REL, "camera_from_world: max error / max")
    within(rel_err(out["intrinsics"], centred(ref["intrinsics"][0])), REL, "intrinsics: max error / max")
    if views == 4:  # the reordering path ran: a view other than the first became the reference
        assert chosen and chosen[0] != 0
    # a usable camera (the lifted readouts): fields of view of about a radian, not the 1e-6 clamp
    assert 0.3 < float(out["intrinsics"][0, 0, 0]) / SMALL_HW[1] < 3.0


def test_full_size_small_with_given_cameras_matches_official(small):
    """Known cameras go through the camera encoder and replace the learnt camera tokens."""
    off, _, ours = small
    g = torch.Generator().manual_seed(7)
    views = 3
    x = torch.randn(1, views, 3, *SMALL_HW, generator=g)
    angles = 0.2 * torch.randn(views, 3, generator=g)
    poses = torch.eye(4).repeat(views, 1, 1)
    for i, (a, b, c) in enumerate(angles):
        rx = torch.tensor([[1, 0, 0], [0, torch.cos(a), -torch.sin(a)], [0, torch.sin(a), torch.cos(a)]])
        rz = torch.tensor([[torch.cos(c), -torch.sin(c), 0], [torch.sin(c), torch.cos(c), 0], [0, 0, 1]])
        poses[i, :3, :3] = rx @ rz
        poses[i, :3, 3] = torch.randn(3, generator=g)
    K = torch.tensor([[150.0, 0, 91.0], [0, 140.0, 63.0], [0, 0, 1]]).repeat(views, 1, 1)
    ref, _, out = _run_both(off.model, ours, x, extrinsics=poses, intrinsics=K)
    within(rel_err(out["depth"], ref["depth"][0]), REL, "depth: max error / max")
    within(rel_err(out["confidence"], ref["depth_conf"][0]), REL, "confidence: max error / max")
    within(rel_err(out["camera_from_world"][:, :3], ref["extrinsics"][0]), REL, "camera_from_world: max error / max")
    # the cameras made a difference (bypassing the encoder would give exactly the free prediction)
    with torch.inference_mode():
        free = ours(x[0], same_scene=True)
    assert rel_err(free["depth"], out["depth"]) > 1e-5
    assert rel_err(free["camera_from_world"], out["camera_from_world"]) > 1e-5


@pytest.mark.parametrize("design", list(TINY))
def test_tiny_designs_match_official_network(design, monkeypatch):
    arch = TINY[design]
    off = official_tiny(arch, seed=3)
    g = torch.Generator().manual_seed(11)
    inputs = {views: torch.randn(1, views, 3, 70, 98, generator=g) for views in (1, 3)}
    if arch.head == "dpt":  # centre the random sky readout on the 0.3 threshold, so both branches run
        last = off.head.scratch.sky_output_conv2[2]
        probe = {}
        hook = last.register_forward_hook(lambda m, i, o: probe.setdefault("logits", o))
        with torch.inference_mode():
            off(inputs[1])
        hook.remove()
        with torch.no_grad():
            last.bias += 0.3 - float(probe["logits"].median())
    ours = DepthAnything3Network(arch).eval()
    load_checkpoint(ours, off.state_dict())
    chosen = _record_reference_choice(monkeypatch)
    for views, x in inputs.items():
        chosen.clear()
        ref, head, out = _run_both(off, ours, x)
        within(rel_err(out["depth"], ref["depth"][0]), REL, "depth: max error / max")
        if arch.head == "dualdpt":
            within(rel_err(out["confidence"], ref["depth_conf"][0]), REL, "confidence: max error / max")
            within(rel_err(out["rays"], head["ray"][0]), REL, "rays: max error / max")
            within(rel_err(out["camera_from_world"][:, :3], ref["extrinsics"][0]), REL,
                   "camera_from_world: max error / max")
            within(rel_err(out["intrinsics"], centred(ref["intrinsics"][0])), REL, "intrinsics: max error / max")
            assert (views < 3) == (not chosen)
        else:  # the sky map was used: some pixels were set to the far value
            sky = head["sky"][0]
            assert int((sky >= 0.3).sum()) > 10 and int((sky < 0.3).sum()) > 10
            assert set(out.keys()) == {"depth"}


# ----------------------------------------------------------------------------- checkpoints


def _one_line_error(excinfo, *needles):
    text = str(excinfo.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, text


def test_mismatched_state_dict_fails_with_one_line_naming_the_first_differing_key(small):
    off, _, _ = small
    state = off.state_dict()  # with the official wrapper's "model." prefix
    fresh = DepthAnything3Network(TINY["swiglu-any-view"])
    missing = dict(state)
    del missing["model.backbone.pretrained.blocks.5.attn.q_norm.weight"]
    target = load_network(registry.get("da3-small"), small[1])
    with pytest.raises(BackendError) as e:
        load_checkpoint(target, missing)
    _one_line_error(e, "backbone.pretrained.blocks.5.attn.q_norm.weight", "missing")
    reshaped = dict(state)
    reshaped["model.head.projects.0.weight"] = torch.zeros(48, 768, 1, 2)
    with pytest.raises(BackendError) as e:
        load_checkpoint(target, reshaped)
    _one_line_error(e, "head.projects.0.weight", "(48, 768, 1, 2)")
    extra = {**state, "model.head.extra.weight": torch.zeros(1)}
    with pytest.raises(BackendError) as e:
        load_checkpoint(target, extra)
    _one_line_error(e, "head.extra.weight", "unexpected")
    with pytest.raises(BackendError) as e:  # another architecture altogether
        load_checkpoint(fresh, state)
    _one_line_error(e, "first differing key")


def test_cli_refuses_a_mismatched_checkpoint_in_one_line(small, tmp_path, shared_images, capsys):
    from safetensors.torch import load_file, save_file

    from localdepth.cli.main import main

    _, folder, _ = small
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((folder / "config.json").read_text())
    state = load_file(str(folder / "model.safetensors"))
    del state["model.cam_dec.fc_t.weight"]
    save_file(state, str(bad / "model.safetensors"))
    command = ["run", str(shared_images / "demo08.jpg"), "--model", "da3-small", "--weights", str(bad),
               "--outdir", str(tmp_path / "out"), "--device", "cpu"]
    assert main(command) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("localdepth: error")]
    assert len(lines) == 1 and "cam_dec.fc_t.weight" in lines[0], lines
    (bad / "config.json").write_text(json.dumps({"model_name": "da3-base"}))
    assert main(command) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("localdepth: error")]
    assert len(lines) == 1 and "--model da3-base" in lines[0], lines


# ----------------------------------------------------------------------------- the input path


def _official_input(paths, process_res=504):
    from depth_anything_3.utils.io.input_processor import InputProcessor

    batch, _, _ = InputProcessor()([str(p) for p in paths], process_res=process_res, num_workers=1)
    return batch.numpy()


def test_input_path_matches_the_official_input_processor(shared_images, tmp_path):
    """Channel order, normalisation, the two resizes (area down, bicubic up) and rounding to 14, at
    the default 504: equal to float precision. A BGR or un-normalised input fails the same check."""
    from PIL import Image

    from localdepth.images import load_image
    from localdepth.preprocess import preprocess

    official()
    pre = registry.get("da3-small").preprocessing
    small_photo = tmp_path / "small.png"  # enlarged: the bicubic path
    Image.open(shared_images / "demo08.jpg").crop((100, 50, 400, 250)).save(small_photo)
    for path in (shared_images / "demo01.jpg", shared_images / "demo04.jpg", small_photo):
        ref = _official_input([path])[0]
        rgb = load_image(path)
        ours = preprocess(rgb, pre)
        assert ours.shape == ref.shape
        within(np.abs(ours - ref).max(), 1e-5, "max input difference")
        assert np.abs(preprocess(np.ascontiguousarray(rgb[..., ::-1]), pre) - ref).max() > 0.1  # BGR
        plain = preprocess(rgb, registry.Preprocessing(resize="upper_bound", input_size=504, interpolation="auto",
                                                       mean=(0, 0, 0), std=(1, 1, 1)))
        assert np.abs(plain - ref).max() > 0.1  # no ImageNet normalisation
        bilinear = cv2.resize(rgb, (ref.shape[2], ref.shape[1]), interpolation=cv2.INTER_LINEAR)
        assert np.abs(preprocess(bilinear, pre) - ref).max() > 1e-2  # one bilinear resize instead


def test_input_path_applies_exif_orientation(tmp_path):
    """localdepth shows the network the photo as a viewer shows it (EXIF orientation applied); the
    official loader reads raw pixels, so for rotated photos the two differ on purpose."""
    from PIL import Image

    from localdepth.images import load_image
    from localdepth.preprocess import preprocess

    pixels = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    pre = registry.get("da3-small").preprocessing
    decoded = load_image(tmp_path / "rotated.jpg")
    assert decoded.shape == (90, 60, 3)
    upright = np.asarray(Image.open(tmp_path / "rotated.jpg").transpose(Image.Transpose.ROTATE_270))
    np.testing.assert_array_equal(preprocess(decoded, pre), preprocess(upright, pre))


# ----------------------------------------------------------------------------- files end to end


def _pearson(a, b) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok].ravel(), b[ok].ravel())[0, 1])


def _to_original(K, grid_hw, image_hw) -> np.ndarray:
    """An official camera on a network grid -> ``fx, fy, cx, cy`` on the image it was resized from:
    scaled per axis as the official code scales intrinsics when it resizes images
    (``InputProcessor._resize_ixt``), then moved to pixel centres at integers (see :func:`centred`)."""
    sy, sx = image_hw[0] / grid_hw[0], image_hw[1] / grid_hw[1]
    return np.array([K[0, 0] * sx, K[1, 1] * sy, K[0, 2] * sx - 0.5, K[1, 2] * sy - 0.5])


RES = 280  # processing resolution of the end-to-end tests (504 by default; the input test pins 504)


def test_run_on_photos_matches_official_inference(small, shared_images, tmp_path, monkeypatch):
    from localdepth.cli.main import main

    off, folder, _ = small
    photos = [shared_images / "demo01.jpg"]  # the other photos go through predict_views below
    out = tmp_path / "out"
    assert main(["run", *map(str, photos), "--model", "da3-small", "--weights", str(folder), "--device", "cpu",
                 "--input-size", str(RES), "--format", "npy,conf", "--outdir", str(out), "--quiet"]) == 0
    monkeypatch.setattr(torch, "autocast", no_autocast())
    for photo in photos:
        ref = off.inference([str(photo)], process_res=RES)  # one image: a single view, as `run` does
        depth = np.load(out / f"{photo.stem}.npy")
        conf = np.load(out / f"{photo.stem}_conf.npy")
        meta = json.loads((out / f"{photo.stem}.json").read_text())
        h, w = depth.shape
        grid = ref.depth.shape[1:]
        assert meta["input_size"] == list(grid)
        within(1 - _pearson(depth, cv2.resize(ref.depth[0], (w, h), interpolation=cv2.INTER_LINEAR)), 1e-4,
               "depth: 1 - Pearson r")
        within(1 - _pearson(conf, cv2.resize(ref.conf[0], (w, h), interpolation=cv2.INTER_LINEAR)), 1e-4,
               "confidence: 1 - Pearson r")
        cam = meta["predicted_intrinsics"]
        expected = _to_original(ref.intrinsics[0], grid, (h, w))
        np.testing.assert_allclose([cam["fx"], cam["fy"], cam["cx"], cam["cy"]], expected, rtol=1e-3)
        np.testing.assert_allclose(np.array(meta["camera_from_world"])[:3], ref.extrinsics[0], atol=1e-3)
        assert meta["kind"] == "depth" and meta["units"] == "relative"


def test_predict_views_on_photos_matches_official_inference(small, shared_images, tmp_path, monkeypatch):
    """Several views at once, one of another size (centre-cropped to the common grid, as upstream)."""
    from PIL import Image

    import localdepth

    off, folder, _ = small
    square = tmp_path / "square.png"
    Image.open(shared_images / "demo04.jpg").crop((300, 100, 1000, 800)).save(square)
    paths = [shared_images / "demo04.jpg", shared_images / "demo11.jpg", square, shared_images / "demo17.jpg"]
    est = localdepth.load("da3-small", weights=folder, device="cpu", input_size=RES)
    chosen = _record_reference_choice(monkeypatch)
    results = est.predict_views(paths)
    monkeypatch.setattr(torch, "autocast", no_autocast())
    ref = off.inference([str(p) for p in paths], process_res=RES)
    assert len(results) == len(paths) and chosen and chosen[0] != 0  # a reference other than the first
    th, tw = ref.depth.shape[1:]
    for j, (r, path) in enumerate(zip(results, paths)):
        h, w = r.map.shape
        grid = tuple(r.input_size)
        top, left = int(round((grid[0] - th) / 2.0)), int(round((grid[1] - tw) / 2.0))
        full = np.full(grid, np.nan, np.float32)
        full[top:top + th, left:left + tw] = ref.depth[j]
        expected = cv2.resize(full, (w, h), interpolation=cv2.INTER_LINEAR)
        within(1 - _pearson(r.map, expected), 1e-4, "depth: 1 - Pearson r")
        assert np.isnan(r.map).any() == (path == square)
        K = ref.intrinsics[j].copy()
        K[0, 2] += left
        K[1, 2] += top
        cam = r.intrinsics
        np.testing.assert_allclose([cam.fx, cam.fy, cam.cx, cam.cy], _to_original(K, grid, (h, w)), rtol=1e-3)
        np.testing.assert_allclose(r.camera_from_world[:3], ref.extrinsics[j], atol=1e-3)
        assert r.notes["views"]["count"] == len(paths)
