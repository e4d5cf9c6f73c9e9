"""Depth Pro, ZoeDepth and Prompt Depth Anything: the same tiny random weights through localdepth and
through Transformers' own image processors, models and ``post_process_depth_estimation``.

Each family is compared twice on a real photo (640 x 425): the network input (the processor's
``pixel_values``) and the final map at the image's resolution. Tolerances are the measured
differences with a 10x margin (measured on this machine: ZoeDepth input 5.5e-5, map mean relative
error 2.0e-7; Prompt DA 7.2e-7 and 1.3e-6; Depth Pro 6.8e-5 and 9.4e-6). The mutation tests
show that the same checks fail for a BGR image, the wrong normalisation, the wrong interpolation,
a missing padding or flip average, and a mirrored output: the checks pin each of those.

torchvision: Transformers' torchvision-backed code cannot run here (only CUDA builds of torchvision
exist for torch 2.13, and they do not load against the CPU build). So, when torchvision does not
import: ZoeDepth and Prompt DA use Transformers' PIL processors (real code); ZoeDepth's
post-processing calls ``torchvision...functional.resize`` on float tensors, which is exactly
``torch.nn.functional.interpolate(..., align_corners=False, antialias=...)`` (torchvision's own
``resize_image`` for float tensors), so that one call is stood in; Depth Pro's processor exists only
in the torchvision flavour: its two documented steps (rescale + normalise with mean/std 0.5, then
bilinear resize to 1536 x 1536 without antialiasing) are restated with PyTorch, and its
``post_process_depth_estimation`` (pure PyTorch) is compiled from Transformers' own source file.
Where torchvision works, the real classes are used throughout.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import localdepth  # noqa: E402
from localdepth.cli.main import main as cli  # noqa: E402
from localdepth.depthfile import read_prompt_depth  # noqa: E402
from localdepth.images import load_image  # noqa: E402
from localdepth.preprocess import preprocess  # noqa: E402
from tolerance import within  # noqa: E402

PHOTO = "demo08.jpg"  # 640 x 425: upsampled by every family here


def _torchvision_works() -> bool:
    try:
        import torchvision.transforms.v2.functional  # noqa: F401
    except Exception:  # absent, or a CUDA build that cannot load against CPU PyTorch
        return False
    return True


TORCHVISION = _torchvision_works()
_TV_STANDIN = types.SimpleNamespace(
    InterpolationMode=types.SimpleNamespace(BICUBIC="bicubic", BILINEAR="bilinear"),
    resize=lambda x, size, interpolation, antialias=True: F.interpolate(
        x[None], size=list(size), mode=interpolation, align_corners=False, antialias=antialias)[0],
)


def compare(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(Pearson correlation, mean relative error) of two maps of the same shape."""
    a, b = np.asarray(ours, np.float64).ravel(), np.asarray(reference, np.float64).ravel()
    assert a.shape == b.shape
    return float(np.corrcoef(a, b)[0, 1]), float(np.mean(np.abs(a - b) / np.maximum(np.abs(b), 1e-6)))


def input_error(ours: np.ndarray, reference) -> float:
    reference = np.asarray(reference, np.float32)
    return float(np.abs(ours - reference).max()) if ours.shape == reference.shape else float("inf")


@pytest.fixture(scope="module")
def photo(shared_images):
    from PIL import Image

    path = shared_images / PHOTO
    return path, load_image(path), Image.open(path).convert("RGB")


# ----------------------------------------------------------------------------- ZoeDepth

ZOE_INPUT_ATOL, ZOE_MAP_REL = 5e-4, 2e-6


@pytest.fixture(scope="module")
def zoe(tiny_zoedepth_dir, photo):
    from transformers import AutoModelForDepthEstimation, ZoeDepthImageProcessorPil
    from transformers.models.zoedepth import image_processing_pil_zoedepth as module

    path, rgb, pil = photo
    h, w = rgb.shape[:2]
    processor = ZoeDepthImageProcessorPil.from_pretrained(tiny_zoedepth_dir)
    model = AutoModelForDepthEstimation.from_pretrained(str(tiny_zoedepth_dir)).eval()
    pixel_values = processor(pil, return_tensors="pt").pixel_values
    with torch.no_grad():
        out = model(pixel_values=pixel_values)
        out_flipped = model(pixel_values=torch.flip(pixel_values, dims=[3]))
    saved = getattr(module, "tvF", None)
    if not TORCHVISION:
        module.tvF = _TV_STANDIN
    try:
        post = functools.partial(processor.post_process_depth_estimation, source_sizes=[(h, w)])
        reference = post(out, outputs_flipped=out_flipped)[0]["predicted_depth"].numpy()
        unflipped = post(out)[0]["predicted_depth"].numpy()
    finally:
        if not TORCHVISION:
            module.tvF = saved
    est = localdepth.load("zoedepth-nyu", weights=tiny_zoedepth_dir, device="cpu")
    return types.SimpleNamespace(est=est, rgb=rgb, path=path, pixel_values=pixel_values[0].numpy(),
                                 reference=reference, unflipped=unflipped, result=est.predict(path))


def test_zoedepth_input_equals_transformers_processor(zoe):
    ours = zoe.est.preprocess(zoe.rgb)
    assert ours.shape == zoe.pixel_values.shape  # padding, then the aspect-preserving resize to multiples of 32
    within(input_error(ours, zoe.pixel_values), ZOE_INPUT_ATOL, "max input difference")


def test_zoedepth_map_matches_transformers_post_processing(zoe):
    r = zoe.result
    assert r.kind == "depth" and r.units == "m" and r.map.shape == zoe.rgb.shape[:2] == zoe.reference.shape
    assert r.input_size == zoe.pixel_values.shape[1:]
    pearson, rel = compare(r.map, zoe.reference)
    within(1 - pearson, 1e-3, "1 - Pearson r")
    within(rel, ZOE_MAP_REL, "mean relative error")


def test_zoedepth_map_check_catches_a_missing_flip_average_and_a_mirrored_output(zoe):
    assert compare(zoe.unflipped, zoe.reference)[1] > ZOE_MAP_REL  # the flip average is not a no-op here
    assert compare(zoe.result.map[:, ::-1], zoe.reference)[1] > ZOE_MAP_REL
    assert compare(zoe.result.map[::-1], zoe.reference)[1] > ZOE_MAP_REL


# ----------------------------------------------------------------------------- Prompt Depth Anything

PDA_INPUT_ATOL, PDA_MAP_REL = 1e-5, 1e-5


def synthetic_lidar(h: int = 24, w: int = 32) -> np.ndarray:
    """A phone-LiDAR-like prompt in millimetres (uint16): a floor plane rising to a wall, 0.8-3.2 m."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    metres = 3.2 - 2.0 * (v / (h - 1)) ** 1.5 + 0.3 * np.sin(u / w * np.pi)
    return np.round(metres * 1000).astype(np.uint16)


@pytest.fixture(scope="module")
def pda(tiny_prompt_da_dir, photo, tmp_path_factory):
    from PIL import Image
    from transformers import AutoModelForDepthEstimation, PromptDepthAnythingImageProcessorPil

    path, rgb, pil = photo
    h, w = rgb.shape[:2]
    lidar_mm = synthetic_lidar()
    lidar_png = tmp_path_factory.mktemp("lidar") / "lidar.png"
    Image.fromarray(lidar_mm).save(lidar_png)
    processor = PromptDepthAnythingImageProcessorPil.from_pretrained(tiny_prompt_da_dir)
    model = AutoModelForDepthEstimation.from_pretrained(str(tiny_prompt_da_dir)).eval()
    inputs = processor(pil, prompt_depth=Image.open(lidar_png), return_tensors="pt")  # 0.001 m per unit
    with torch.no_grad():
        out = model(**inputs)
    reference = processor.post_process_depth_estimation(out, target_sizes=[(h, w)])[0]["predicted_depth"].numpy()
    est = localdepth.load("prompt-depth-anything-vits", weights=tiny_prompt_da_dir, device="cpu")
    result = est.predict(path, prompt_depth=lidar_png, prompt_scale=0.001)
    return types.SimpleNamespace(est=est, rgb=rgb, path=path, lidar_png=lidar_png, lidar_mm=lidar_mm,
                                 pixel_values=inputs.pixel_values[0].numpy(),
                                 prompt=inputs.prompt_depth[0].numpy(), reference=reference, result=result)


def test_prompt_depth_anything_inputs_equal_transformers_processor(pda):
    ours = pda.est.preprocess(pda.rgb)
    within(input_error(ours, pda.pixel_values), PDA_INPUT_ATOL, "max input difference")
    prompt = pda.est.preprocess_prompt(read_prompt_depth(pda.lidar_png, 0.001))
    assert prompt.shape == pda.prompt.shape == (1, 24, 32)  # the prompt keeps its own resolution, in metres
    np.testing.assert_allclose(prompt, pda.prompt, rtol=1e-6)


def test_prompt_depth_anything_map_matches_transformers_post_processing(pda):
    r = pda.result
    assert r.kind == "depth" and r.units == "m" and r.map.shape == pda.rgb.shape[:2] == pda.reference.shape
    pearson, rel = compare(r.map, pda.reference)
    within(1 - pearson, 1e-3, "1 - Pearson r")
    within(rel, PDA_MAP_REL, "mean relative error")
    # the network maps its output back to the prompt's range in metres (bicubic may overshoot a little)
    lo, hi = pda.lidar_mm.min() / 1000, pda.lidar_mm.max() / 1000
    assert lo - 0.1 * (hi - lo) <= r.map.min() and r.map.max() <= hi + 0.1 * (hi - lo)
    assert r.notes["prompt_depth"]["range_m"] == pytest.approx([lo, hi], rel=1e-6)


def test_prompt_depth_anything_map_check_catches_a_mirrored_output_and_wrong_prompt_units(pda):
    assert compare(pda.result.map[:, ::-1], pda.reference)[1] > PDA_MAP_REL
    assert compare(pda.result.map[::-1], pda.reference)[1] > PDA_MAP_REL
    centimetres = pda.est.predict(pda.rgb, prompt_depth=pda.lidar_mm.astype(np.float32) * 0.01)
    assert compare(centimetres.map, pda.reference)[1] > PDA_MAP_REL


# ----------------------------------------------------------------------------- Depth Pro

DP_INPUT_ATOL, DP_MAP_REL = 5e-4, 5e-5


def depth_pro_transformers_steps():
    """Transformers' Depth Pro preprocessing and ``post_process_depth_estimation`` (see module docstring)."""
    if TORCHVISION:
        from transformers import DepthProImageProcessor

        processor = DepthProImageProcessor()
        return (lambda pil: processor(pil, return_tensors="pt").pixel_values), processor.post_process_depth_estimation
    import transformers.models.depth_pro as package
    from transformers.image_utils import PILImageResampling
    from transformers.utils import TensorType

    source = Path(package.__path__[0]) / "image_processing_depth_pro.py"
    text = source.read_text()
    # the processor's settings that the restated preprocessing below relies on
    for fact in ('size = {"height": 1536, "width": 1536}', "resample = PILImageResampling.BILINEAR",
                 "image_mean = IMAGENET_STANDARD_MEAN", "rescale_and_normalize", "antialias=False"):
        assert fact in text, f"Transformers' Depth Pro processor changed: {fact!r} is gone"
    tree = ast.parse(text)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DepthProImageProcessor")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "post_process_depth_estimation")
    namespace = {"torch": torch, "TensorType": TensorType,
                 "pil_torch_interpolation_mapping": {PILImageResampling.BILINEAR: types.SimpleNamespace(value="bilinear")}}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(source), "exec"), namespace)
    post = functools.partial(namespace["post_process_depth_estimation"],
                             types.SimpleNamespace(resample=PILImageResampling.BILINEAR))

    def pixel_values(pil):
        x = torch.from_numpy(np.array(pil)).permute(2, 0, 1)[None].float() / 255.0
        x = (x - 0.5) / 0.5  # IMAGENET_STANDARD_MEAN / _STD, before the resize as the processor does
        return F.interpolate(x, size=(1536, 1536), mode="bilinear", align_corners=False, antialias=False)

    return pixel_values, post


@pytest.fixture(scope="module")
def depth_pro(tiny_depth_pro_dir, photo):
    from transformers import AutoModelForDepthEstimation

    path, rgb, pil = photo
    h, w = rgb.shape[:2]
    pixel_values_of, post = depth_pro_transformers_steps()
    pixel_values = pixel_values_of(pil)
    model = AutoModelForDepthEstimation.from_pretrained(str(tiny_depth_pro_dir)).eval()
    with torch.no_grad():
        out = model(pixel_values=pixel_values)
    processed = post(out, target_sizes=[(h, w)])[0]
    # metric inverse depth at the network's resolution (canonical inverse depth x width / focal)
    inverse = (out.predicted_depth[0] * w / processed["focal_length"]).numpy()
    est = localdepth.load("depth-pro", weights=tiny_depth_pro_dir, device="cpu")
    return types.SimpleNamespace(est=est, rgb=rgb, path=path, pixel_values=pixel_values[0].numpy(),
                                 reference=processed["predicted_depth"].numpy(), inverse=inverse,
                                 fov=float(processed["field_of_view"]), focal=float(processed["focal_length"]),
                                 result=est.predict(path))


def test_depth_pro_input_equals_transformers_processor(depth_pro):
    ours = depth_pro.est.preprocess(depth_pro.rgb)
    assert ours.shape == (3, 1536, 1536)
    within(input_error(ours, depth_pro.pixel_values), DP_INPUT_ATOL, "max input difference")


def test_depth_pro_map_and_camera_match_transformers_post_processing(depth_pro):
    r = depth_pro.result
    h, w = depth_pro.rgb.shape[:2]
    assert r.kind == "depth" and r.units == "m" and r.map.shape == (h, w) == depth_pro.reference.shape
    pearson, rel = compare(r.map, depth_pro.reference)
    within(1 - pearson, 1e-3, "1 - Pearson r")
    within(rel, DP_MAP_REL, "mean relative error")
    cam = r.intrinsics
    assert cam.origin == "model" and (cam.width, cam.height) == (w, h)
    assert cam.fx == pytest.approx(depth_pro.focal, rel=1e-5) and cam.fy == cam.fx  # square pixels of the photo
    assert (cam.cx, cam.cy) == ((w - 1) / 2, (h - 1) / 2)
    assert r.notes["predicted_field_of_view_deg"] == pytest.approx(depth_pro.fov, rel=1e-5)


def test_depth_pro_map_check_catches_a_mirrored_output_and_depth_space_resizing(depth_pro):
    r = depth_pro.result
    assert compare(r.map[:, ::-1], depth_pro.reference)[1] > DP_MAP_REL
    # the reference resizes inverse depth, then inverts; resizing depth instead is measurably different
    from localdepth.postprocess import to_original_size

    spec_post = depth_pro.est.spec.postprocessing
    assert compare(to_original_size(depth_pro.inverse, *r.map.shape, "depth", spec_post), depth_pro.reference)[1] \
        < DP_MAP_REL
    depth_space = to_original_size(1.0 / np.clip(depth_pro.inverse, 1e-4, 1e4), *r.map.shape, "depth",
                                   dataclasses.replace(spec_post, inverse_range=None))
    assert compare(depth_space, depth_pro.reference)[1] > DP_MAP_REL


def test_depth_pro_field_of_view_reaches_the_point_cloud(depth_pro, tiny_depth_pro_dir, tmp_path):
    """`localdepth run --pointcloud` with no --intrinsics: the sidecar's focal is the one Transformers
    computes from the model's field of view, and the points unproject with it."""
    o3d = pytest.importorskip("open3d")
    from localdepth import geometry

    cloud = tmp_path / "photo.ply"
    code = cli(["run", str(depth_pro.path), "--model", "depth-pro", "--weights", str(tiny_depth_pro_dir),
                "--device", "cpu", "-f", "npy", "--outdir", str(tmp_path / "out"), "--pointcloud", str(cloud), "-q"])
    assert code == 0
    meta = json.loads((tmp_path / "out" / "demo08.json").read_text())
    assert meta["kind"] == "depth" and meta["units"] == "m" and (meta["height"], meta["width"]) == (425, 640)
    assert meta["intrinsics_source"] == "model"
    assert meta["intrinsics"]["fx"] == pytest.approx(depth_pro.focal, rel=1e-5)
    assert meta["intrinsics"]["fy"] == pytest.approx(depth_pro.focal, rel=1e-5)
    assert meta["predicted_intrinsics"]["fx"] == pytest.approx(depth_pro.focal, rel=1e-5)
    depth = np.load(tmp_path / "out" / "demo08.npy")
    np.testing.assert_allclose(depth, depth_pro.result.map, rtol=1e-5)
    K = np.array([[depth_pro.focal, 0, 319.5], [0, depth_pro.focal, 212.0], [0, 0, 1]])
    expected = geometry.unproject(depth, K).reshape(-1, 3)
    expected = expected[np.isfinite(expected).all(axis=1)]
    points = np.asarray(o3d.io.read_point_cloud(str(cloud)).points)
    assert points.shape == expected.shape
    np.testing.assert_allclose(points, expected, rtol=1e-5, atol=1e-6)
    # and they land back on the pixel grid through the predicted camera, not the 60-degree default
    uv, _ = geometry.project(points, K)
    within(np.abs(uv - np.round(uv)).max(), 1e-3, "max distance to the pixel grid (px)")
    default = geometry.default_intrinsics(640, 425).K
    assert np.abs(geometry.project(points, default)[0] - uv).max() > 10
    # `localdepth pointcloud` on that map: the model's camera comes from the map's sidecar
    assert cli(["pointcloud", str(tmp_path / "out" / "demo08.npy"), "-o", str(tmp_path / "again.ply")]) == 0
    report = json.loads((tmp_path / "again.ply.json").read_text())
    assert report["intrinsics_source"] == "model"
    assert report["intrinsics"]["fx"] == pytest.approx(depth_pro.focal, rel=1e-5)
    assert cli(["pointcloud", str(tmp_path / "out" / "demo08.npy"), "-o", str(tmp_path / "g.ply"), "--fov", "60"]) == 0
    assert json.loads((tmp_path / "g.ply.json").read_text())["intrinsics_source"] == "given"


# ----------------------------------------------------------------------------- a camera given wins (issue 19)

@pytest.fixture(scope="module")
def bad_fov(tiny_depth_pro_bad_fov_dir, photo):
    """A Depth Pro whose own field of view is invalid (-1.9 degrees), and the official answer for a given
    60-degree camera: ``infer(f_px=...)`` scales the canonical inverse depth by width / the given focal,
    which is Transformers' post-processing with the field of view replaced by the given one."""
    from transformers import AutoModelForDepthEstimation

    path, rgb, pil = photo
    h, w = rgb.shape[:2]
    pixel_values_of, post = depth_pro_transformers_steps()
    model = AutoModelForDepthEstimation.from_pretrained(str(tiny_depth_pro_bad_fov_dir)).eval()
    with torch.no_grad():
        out = model(pixel_values=pixel_values_of(pil))
    assert float(out.field_of_view[0]) == pytest.approx(-1.9, abs=1e-3)
    out.field_of_view = torch.tensor([60.0])
    reference = post(out, target_sizes=[(h, w)])[0]["predicted_depth"].numpy()
    est = localdepth.load("depth-pro", weights=tiny_depth_pro_bad_fov_dir, device="cpu")
    return types.SimpleNamespace(est=est, path=path, rgb=rgb, reference=reference, dir=tiny_depth_pro_bad_fov_dir,
                                 focal_60=w / (2 * np.tan(np.radians(30.0))))


def test_a_given_camera_wins_over_an_invalid_predicted_one_on_the_command_line(bad_fov, tmp_path, capsys):
    """`run --fov 60` on a Depth Pro that predicts -1.9 degrees: the map is the official one for the given
    focal, the cloud and the sidecar use the given camera, and `pointcloud` later uses the camera the
    metres were made with. Without a camera: one line per image that names --fov and --intrinsics."""
    pytest.importorskip("open3d")
    out = tmp_path / "out"
    common = [str(bad_fov.path), "--model", "depth-pro", "--weights", str(bad_fov.dir), "--device", "cpu",
              "-f", "npy", "--outdir", str(out), "-q"]
    assert cli(["run", *common, "--fov", "60", "--pointcloud", str(tmp_path / "given.ply")]) == 0
    depth = np.load(out / "demo08.npy")
    pearson, rel = compare(depth, bad_fov.reference)
    # measured 9.4e-6 with 1 and 2 threads, ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 and AVX2, ATEN_CPU_CAPABILITY=avx2
    # (the same as the predicted-camera path): DP_MAP_REL holds a 5x margin
    assert pearson >= 0.999 and rel < DP_MAP_REL, (pearson, rel)
    meta = json.loads((out / "demo08.json").read_text())
    assert meta["intrinsics_source"] == "given" and meta["metric_scale"]["intrinsics_source"] == "given"
    assert meta["intrinsics"]["fx"] == pytest.approx(bad_fov.focal_60)
    assert meta["predicted_field_of_view_deg"] == pytest.approx(-1.9, abs=1e-3)
    assert "problem" in meta["predicted_intrinsics"]  # the prediction is kept, marked unusable
    assert (tmp_path / "given.ply").stat().st_size > 0
    assert cli(["pointcloud", str(out / "demo08.npy"), "-o", str(tmp_path / "later.ply")]) == 0
    later = json.loads((tmp_path / "later.ply.json").read_text())
    assert later["intrinsics"]["fx"] == pytest.approx(bad_fov.focal_60)
    capsys.readouterr()

    assert cli(["run", *common, "--outdir", str(tmp_path / "none")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "--fov" in errors[0] and "--intrinsics" in errors[0], errors
    assert not (tmp_path / "none" / "demo08.json").exists()


def test_a_given_camera_wins_in_the_python_api_and_the_server(bad_fov):
    from localdepth.errors import CameraError

    result = bad_fov.est.predict(str(bad_fov.path), fov=60.0)
    assert compare(result.map, bad_fov.reference)[1] < DP_MAP_REL
    assert result.intrinsics.problem and result.notes["metric_scale"]["intrinsics_source"] == "given"
    with pytest.raises(CameraError, match="--fov"):
        bad_fov.est.predict(str(bad_fov.path))

    pytest.importorskip("fastapi")
    from localdepth.server import create_app
    from test_server_api import run, serving

    data = bad_fov.path.read_bytes()

    async def scenario():
        async with serving(create_app([bad_fov.est])) as client:
            given = await client.post("/v1/depth?format=ply&fov=60&max_points=1000", content=data)
            npy = await client.post("/v1/depth?format=npy&fov=60", content=data)
            none = await client.post("/v1/depth?format=json", content=data)
            return given, npy, none

    given, npy, none = run(scenario())
    assert given.status_code == 200, given.text
    assert given.headers["X-Intrinsics-Source"] == "given"
    assert npy.status_code == 200
    import io

    assert compare(np.load(io.BytesIO(npy.content)), bad_fov.reference)[1] < DP_MAP_REL  # metres of the given focal
    assert none.status_code == 400 and "fov=" in none.json()["detail"], none.text


# ----------------------------------------------------------------------------- the input checks can fail

_IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
#: (family fixture, tolerance, mutation name, change to the entry's preprocessing or "bgr")
MUTATIONS = [
    *[("zoe", ZOE_INPUT_ATOL, name, change) for name, change in {
        "bgr": "bgr", "imagenet-normalisation": _IMAGENET,
        "bicubic": {"interpolation": "bicubic", "align_corners": False},
        "no-align-corners": {"align_corners": False}, "no-padding": {"reflect_pad_factor": 0.0}}.items()],
    *[("pda", PDA_INPUT_ATOL, name, change) for name, change in {
        "bgr": "bgr", "half-normalisation": {"mean": (0.5,) * 3, "std": (0.5,) * 3},
        "opencv-bicubic": {"interpolation": "bicubic"}, "bilinear": {"interpolation": "bilinear"}}.items()],
    *[("depth_pro", DP_INPUT_ATOL, name, change) for name, change in {
        "bgr": "bgr", "imagenet-normalisation": _IMAGENET, "bicubic": {"interpolation": "bicubic"}}.items()],
]


@pytest.mark.parametrize("family,tolerance,mutation,change", MUTATIONS, ids=[f"{m[0]}-{m[2]}" for m in MUTATIONS])
def test_input_checks_catch_each_mutation(request, family, tolerance, mutation, change):
    """A BGR image, another normalisation, interpolation or padding gives an input over the tolerance."""
    fx = request.getfixturevalue(family)
    pre, rgb = fx.est.spec.preprocessing, fx.rgb
    if change == "bgr":
        rgb = np.ascontiguousarray(rgb[:, :, ::-1])
    else:
        pre = dataclasses.replace(pre, **change)
    assert input_error(preprocess(rgb, pre), fx.pixel_values) > tolerance


# ----------------------------------------------------------------------------- through `localdepth run`

@pytest.mark.parametrize("family", ["zoe", "pda"])
def test_run_command_writes_metric_maps_for_each_family(family, request, tmp_path):
    fx = request.getfixturevalue(family)
    folder = {"zoe": "tiny_zoedepth_dir", "pda": "tiny_prompt_da_dir"}[family]
    model = {"zoe": "zoedepth-nyu", "pda": "prompt-depth-anything-vits"}[family]
    args = ["run", str(fx.path), "--model", model, "--weights", str(request.getfixturevalue(folder)),
            "--device", "cpu", "-f", "npy,png16", "--outdir", str(tmp_path), "-q"]
    if family == "pda":
        args += ["--prompt-depth", str(fx.lidar_png), "--prompt-scale", "0.001"]
    assert cli(args) == 0
    meta = json.loads((tmp_path / "demo08.json").read_text())
    assert meta["kind"] == "depth" and meta["units"] == "m" and (meta["height"], meta["width"]) == (425, 640)
    assert meta["model"]["model"] == model
    np.testing.assert_allclose(np.load(tmp_path / "demo08.npy"), fx.result.map, rtol=1e-5, atol=1e-6)
    if family == "pda":
        assert meta["prompt_depth"]["file"] == str(fx.lidar_png) and meta["prompt_depth"]["shape"] == [24, 32]
