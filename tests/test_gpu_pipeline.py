"""The GPU-resident pipeline, checked on the CPU (CI has no GPU): its preprocessing and final resize
run on CPU tensors against the OpenCV/Pillow path, every model family through the device path
against the NumPy path, compiled against eager, the size buckets and their compilation count, the
automatic batch size against a memory budget, and SDPA in every attention. The same paths on a real
GPU: the tests marked ``gpu`` at the end (skipped without CUDA).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import localdepth  # noqa: E402
from localdepth import preprocess_torch as pt  # noqa: E402
from localdepth import registry  # noqa: E402
from localdepth.images import load_image  # noqa: E402
from localdepth.inputs import expand_inputs  # noqa: E402
from localdepth.postprocess import to_original_size  # noqa: E402
from localdepth.preprocess import preprocess  # noqa: E402
from localdepth.runner import Runner, SizeBuckets, batch_size_for_memory  # noqa: E402
from localdepth.writers import WriteOptions  # noqa: E402

from conftest import IMAGES, rng_image  # noqa: E402
from tolerance import at_least, within  # noqa: E402

CUDA = torch.cuda.is_available()
#: one entry per preprocessing rule the PyTorch backend runs (V1, V2 and its metric entries share one)
FAMILIES = ["depth-anything-v2-small", "midas-dpt-large", "depth-pro", "zoedepth-nyu", "prompt-depth-anything-vits",
            "da3-small", "video-depth-anything-small"]

# Measured differences (network input units; ImageNet-normalised inputs span about 4.5), GPU-side
# preprocessing on CPU tensors vs preprocess.py, the 3 first shared photos plus random 61x83 and
# 700x300 uint8 and a 90x130 float image, input sizes default and 140, 2026-12 on the Intel VM
# (the same with 1 and 2 threads, ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2/AVX512_CORE_BF16:
# no oneDNN kernel runs here):
#   float interpolation (DA, MiDaS, Depth Pro, ZoeDepth; float images of every family): max 4.1e-4
#     (DA, 8-bit input), mean <= 2.4e-5;
#   8-bit Pillow bicubic (Prompt DA): max 0.07 (one 8-bit level where the two roundings differ,
#     0.04 % of a photo's pixels; up to 4 levels on random noise), mean 3.5e-3;
#   8-bit OpenCV resizes twice (DA3): max 0.0175 (one level), mean 4.9e-6.
# Tolerances: about 5x the worst measured.
MAX_DIFF = {"prompt-depth-anything-vits": 0.35, "da3-small": 0.09}
MEAN_DIFF = {"prompt-depth-anything-vits": 0.02}
FLOAT_MAX, FLOAT_MEAN = 2e-3, 1.2e-4


def _test_images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    images = [rng_image(61, 83, seed=1), rng_image(700, 300, seed=2), rng.random((90, 130, 3), dtype=np.float32)]
    photos = sorted(IMAGES.glob("*.jpg"))[:2] if IMAGES.is_dir() else []  # real photos where ../shared has them
    return images + [load_image(p) for p in photos]


@pytest.mark.parametrize("name", FAMILIES)
def test_gpu_preprocessing_on_cpu_tensors_matches_the_cpu_path(name):
    pre = registry.get(name).preprocessing
    for image in _test_images():
        for input_size in [None] if pre.resize == "fixed" else [None, 140]:
            expected = preprocess(image, pre, input_size)
            got = pt.preprocess_image(pt.image_tensor(image), pre, input_size).numpy()
            assert got.shape == expected.shape and got.dtype == np.float32
            diff = np.abs(got - expected)
            within(diff.max(), MAX_DIFF.get(name, FLOAT_MAX), "max difference", at=(image.shape, input_size))
            within(diff.mean(), MEAN_DIFF.get(name, FLOAT_MEAN), "mean difference", at=(image.shape, input_size))


def test_gpu_preprocessing_fails_on_a_changed_rule():
    """The comparison above can fail: the wrong interpolation, a missed padding, or no rounding of
    Pillow's 8-bit passes are each far outside its tolerances."""
    image = rng_image(61, 83, seed=1)
    for name, change in (("depth-anything-v2-small", {"interpolation": "bilinear"}),
                         ("zoedepth-nyu", {"reflect_pad_factor": 0.0}),
                         ("midas-dpt-large", {"std": (0.25, 0.25, 0.25)})):
        pre = registry.get(name).preprocessing
        from dataclasses import replace

        got = pt.preprocess_image(pt.image_tensor(image), replace(pre, **change)).numpy()
        expected = preprocess(image, pre)
        if got.shape == expected.shape:
            at_least(np.abs(got - expected).max(), 50 * FLOAT_MAX, "a changed rule: max difference", at=name)
    pre = registry.get("prompt-depth-anything-vits").preprocessing
    x = pt.image_tensor(image).permute(2, 0, 1)[None].float()
    one_pass = pt._resize(x, 70, 98, "pil-bicubic").round().clamp(0, 255)
    two_passes = pt._pil_bicubic(x, 70, 98, True)
    at_least((one_pass - two_passes).abs().max(), 1, "one Pillow pass vs two: max difference (levels)")


@pytest.mark.parametrize("name", FAMILIES)
def test_gpu_final_resize_on_cpu_tensors_matches_the_cpu_path(name):
    """Measured: max 3.6e-5 of the map's largest value (Depth Pro's inverse depth, inverted after the
    resize), <= 1e-5 for the others; tolerance 2e-4."""
    spec = registry.get(name)
    rng = np.random.default_rng(3)
    for h, w in ((480, 640), (37, 1001), (301, 217)):
        raw = (rng.random((98, 126)) * 3 + 0.5).astype(np.float32)
        expected = to_original_size(raw, h, w, spec.output, spec.postprocessing, spec.preprocessing)
        got = pt.to_original_size(torch.from_numpy(raw), h, w, spec.output, spec.postprocessing,
                                  spec.preprocessing).numpy()
        assert got.shape == (h, w)
        within(np.abs(got - expected).max() / np.abs(expected).max(), 2e-4, "max difference / max", at=(h, w))


def test_area_shrink_is_opencv_inter_area():
    """Depth Anything 3 shrinks by area averaging: integer and fractional factors, float images.
    Measured: max 5.1e-7 (float rounding, values in [0, 1]); tolerance 5e-6."""
    import cv2

    image = np.random.default_rng(4).random((97, 131, 3), dtype=np.float32)
    for h, w in ((48, 65), (31, 50), (97, 40), (1, 1)):
        expected = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        got = pt._area_shrink(torch.from_numpy(image).permute(2, 0, 1)[None], h, w)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got.reshape(expected.shape), expected, atol=5e-6)


# ----------------------------------------------------------------------------- every family through the device path

def _on_device_path(estimator):
    """The estimator with its pre- and postprocessing on tensors (CPU tensors here)."""
    estimator.backend.device_pipeline = True
    return estimator


def _both(name, folder, images, **kwargs):
    """Maps of ``images`` through the NumPy path and through the device path (same weights)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = localdepth.load(name, weights=folder, backend="torch", device="cpu", **kwargs)
    cpu = est.predict(images)
    _on_device_path(est)
    dev = est.predict(images)
    return cpu, dev


def _close(a, b, rel):
    a, b = np.asarray(a), np.asarray(b)
    finite = np.isfinite(a)
    assert np.array_equal(finite, np.isfinite(b))
    scale = np.abs(a[finite]).max()
    within(np.abs(a[finite] - b[finite]).max() / scale, rel, "max difference / max")


# Measured (device path on CPU tensors vs the NumPy path, the same tiny networks; the same with 1 and
# 2 threads, ATEN_CPU_CAPABILITY=avx2 + ONEDNN_MAX_CPU_ISA=AVX2, and ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16),
# max difference over the map's largest value: VDA, metric DA, ZoeDepth, MiDaS, DA V1/V2 and the batch
# stages <= 5.9e-6, DA3 (views) 1.9e-5, Depth Pro 1.3e-4, Prompt DA 4.6e-4 (its 8-bit Pillow rounding
# reaches the network). Tolerance 2e-3: about 4x the worst.
FAMILY_TOLERANCE = 2e-3


def test_fp16_network_agrees_with_fp32_on_the_cpu(tiny_da_dir):
    """fp16, the GPU default, computed by PyTorch's CPU kernels (the backend keeps the CPU on fp32 and
    bf16; the network itself is cast here): the map within a measured tolerance of fp32. Measured on
    4 images at batch 1 and 2: mean 2.9e-4, max 1.4e-3 of the map's range (1 and 2 threads, AVX2
    and AVX512_CORE_BF16 kernels); the released Small architecture on the 6 shared photos at 518: mean
    2.6e-4, max 2.0e-3 (bf16: mean 2.1e-3, max 1.5e-2). Tolerance: mean 2e-3, max 1e-2."""
    from localdepth.networks import load_network

    spec = registry.get("depth-anything-v2-small")
    nets = {d: load_network(spec, tiny_da_dir, dtype=d) for d in (torch.float32, torch.float16)}
    for batch in (1, 2):
        for seed in range(3):
            x = pt.preprocess_batch([pt.image_tensor(rng_image(60, 80, seed=seed))] * batch, spec.preprocessing, 56)
            with torch.inference_mode():
                a, b = (nets[d](x.to(d))["depth"].float().numpy() for d in (torch.float32, torch.float16))
            diff = np.abs(a - b) / (a.max() - a.min())
            within(diff.mean(), 2e-3, "fp16: mean difference / range")
            within(diff.max(), 1e-2, "fp16: max difference / range")


@pytest.mark.parametrize("fixture,name", [
    ("tiny_da_dir", "depth-anything-v2-small"), ("tiny_da_dir", "depth-anything-v1-small"),
    ("tiny_metric_dir", "depth-anything-v2-metric-indoor-small"), ("tiny_depth_pro_dir", "depth-pro"),
    ("tiny_zoedepth_dir", "zoedepth-nyu")])
def test_each_family_gives_the_same_maps_through_the_device_path(request, fixture, name):
    folder = request.getfixturevalue(fixture)
    images = [rng_image(60, 80, seed=5), rng_image(45, 70, seed=6)]
    cpu, dev = _both(name, folder, images, **({} if name == "depth-pro" else {"input_size": 56}))
    for a, b in zip(cpu, dev):
        assert b.map.shape == a.map.shape and b.map.dtype == np.float32
        _close(a.map, b.map, FAMILY_TOLERANCE)
        if a.intrinsics is not None:  # Depth Pro's field of view
            assert b.intrinsics.fx == pytest.approx(a.intrinsics.fx, rel=1e-4)


def test_prompt_depth_anything_through_the_device_path(tiny_prompt_da_dir):
    image = rng_image(60, 80, seed=7)
    prompt = np.random.default_rng(8).random((12, 16)).astype(np.float32) * 3 + 0.5
    est = localdepth.load("prompt-depth-anything-vits", weights=tiny_prompt_da_dir, backend="torch", device="cpu",
                          input_size=56)
    a = est.predict(image, prompt_depth=prompt)
    b = _on_device_path(est).predict(image, prompt_depth=prompt)
    _close(a.map, b.map, FAMILY_TOLERANCE)
    assert b.notes["prompt_depth"] == a.notes["prompt_depth"]


@pytest.fixture
def tiny_any_view(tmp_path, monkeypatch):
    from test_da3_outputs import TINY_ANY_VIEW, save_tiny

    from localdepth.networks.da3 import ARCHITECTURES

    monkeypatch.setitem(ARCHITECTURES, "da3-small", TINY_ANY_VIEW)
    return save_tiny(tmp_path / "da3", "da3-small", TINY_ANY_VIEW)


def test_depth_anything_3_single_and_many_views_through_the_device_path(tiny_any_view):
    images = [rng_image(60, 80, seed=9), rng_image(70, 70, seed=10), rng_image(56, 84, seed=11)]
    est = localdepth.load("da3-small", weights=tiny_any_view, backend="torch", device="cpu", input_size=56)
    single = est.predict(images[0])
    views = est.predict_views(images)
    _on_device_path(est)
    single_dev = est.predict(images[0])
    views_dev = est.predict_views(images)
    _close(single.map, single_dev.map, FAMILY_TOLERANCE)
    _close(single.confidence, single_dev.confidence, FAMILY_TOLERANCE)
    for a, b in zip(views, views_dev):  # views cropped to the smallest grid: NaN outside, in both
        _close(a.map, b.map, FAMILY_TOLERANCE)
        _close(a.confidence, b.confidence, FAMILY_TOLERANCE)
        # measured 3.1e-4 (the tiny random camera head feels DA3's one-level 8-bit rounding differences)
        np.testing.assert_allclose(b.camera_from_world, a.camera_from_world, atol=2e-3)
        assert b.intrinsics.cx == pytest.approx(a.intrinsics.cx, rel=1e-3)
        assert b.notes["views"] == a.notes["views"]


def tiny_vda_checkpoint(path):
    """A tiny Video Depth Anything (12 blocks of width 64, as the smallest DINOv2 head count allows),
    random weights, its output lifted so that ReLU keeps most of the map; saved as a ``.pth``."""
    from localdepth.networks.dinov2 import ViTConfig
    from localdepth.networks.vda import VDAConfig, VideoDepthAnything

    torch.manual_seed(3)
    net = VideoDepthAnything(VDAConfig(ViTConfig(64, 12, 1, 128), 32, (32, 32, 64, 64), (2, 5, 8, 11))).eval()
    with torch.no_grad():
        net.head.scratch.output_conv2[2].bias.fill_(2.0)
    torch.save(net.state_dict(), path)
    return path


def test_video_depth_anything_windows_and_streaming_through_the_device_path(tmp_path):
    from localdepth.video.readers import Frame
    from localdepth.video.temporal import StreamingDepth, WindowedDepth

    path = tiny_vda_checkpoint(tmp_path / "video_depth_anything_vits.pth")
    frames = [Frame(i, i / 24, rng_image(54, 72, seed=20 + i % 5), f"f{i}") for i in range(40)]  # 2 windows
    maps = {}
    for device_path in (False, True):
        est = localdepth.load("video-depth-anything-small", weights=path, device="cpu", input_size=42)
        est.backend.device_pipeline = device_path
        maps[device_path, "windows"] = [d for _, d, _ in WindowedDepth(est)(frames)]
        maps[device_path, "stream"] = [d for _, d, _ in StreamingDepth(est)(frames[:6])]
    for mode in ("windows", "stream"):
        assert len(maps[True, mode]) == len(maps[False, mode])
        for a, b in zip(maps[False, mode], maps[True, mode]):
            _close(a, b, FAMILY_TOLERANCE)


@pytest.fixture
def tiny_dpt(tmp_path):
    """A tiny DPT of the Intel/dpt-large design (plain ViT/16), random weights (MiDaS 3.0)."""
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(5)
    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                       image_size=384, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
                       neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, initializer_range=0.1)
    DPTForDepthEstimation(config).eval().save_pretrained(tmp_path / "dpt")
    return tmp_path / "dpt"


def test_midas_through_the_device_path(tiny_dpt):
    cpu, dev = _both("midas-dpt-large", tiny_dpt, [rng_image(60, 80, seed=12)], input_size=64)
    _close(cpu[0].map, dev[0].map, FAMILY_TOLERANCE)


# ----------------------------------------------------------------------------- runner: buckets, batches, compile

def test_size_buckets_fill_batches_across_interleaved_sizes_and_stay_bounded():
    buckets = SizeBuckets(lambda key: 3, hold=6)
    keys = ["a", "b", "a", "b", "a", "c", "b", "a"]
    ready = [batch for i, k in enumerate(keys) for batch in buckets.add((i, k), k)]
    assert ready == [[(0, "a"), (2, "a"), (4, "a")], [(1, "b"), (3, "b"), (6, "b")]]
    assert buckets.flush() == [[(5, "c")], [(7, "a")]]
    held = SizeBuckets(lambda key: 100, hold=4)  # nothing fills: the oldest bucket goes when 4 wait
    out = [batch for i in range(6) for batch in held.add(i, i % 3)]
    assert out == [[0, 3]] and held.flush() == [[1, 4], [2, 5]]


def test_batch_size_follows_free_memory_within_the_cap():
    gib = 2**30
    assert batch_size_for_memory(10 * gib, gib, cap=64, fraction=0.5) == 5
    assert batch_size_for_memory(100 * gib, gib, cap=16, fraction=0.5) == 16
    assert batch_size_for_memory(gib // 2, gib, cap=16) == 1  # one image always runs
    assert batch_size_for_memory(gib, 0, cap=8) == 8


def _folder(tmp_path, sizes):
    import cv2

    folder = tmp_path / "in"
    folder.mkdir()
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(folder / f"im{i:02d}.png"), rng_image(h, w, seed=i))
    return folder


def test_automatic_batches_respect_a_memory_budget(tiny_da_dir, tmp_path):
    """With no batch size, each size bucket's batch comes from the free memory over the measured
    activations of one image at that size (a fake GPU: 1 GB free, 100 kB per network pixel)."""
    est = _on_device_path(localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="torch",
                                          device="cpu", input_size=28))
    backend = est.backend
    backend.free_memory = lambda: 2**30  # a GPU's memory is known; the CPU's is not
    backend.activation_bytes = lambda shape: 100_000 * shape[2] * shape[3]
    budget = {}
    seen = []
    real = backend.run_tensor
    backend.run_tensor = lambda x, **kw: (seen.append(tuple(x.shape)), real(x, **kw))[1]
    sizes = [(40, 40), (40, 80)] * 10  # network inputs 28x28 (78 MB a image) and 28x56 (157 MB), interleaved
    for hw in ((28, 28), (28, 56)):
        budget[hw] = batch_size_for_memory(2**30, 100_000 * hw[0] * hw[1])
    summary = Runner(est, tmp_path / "out", WriteOptions(formats=("npy",)), batch_size=None, progress=False,
                     workers=1).run(expand_inputs([str(_folder(tmp_path, sizes))]))
    assert summary.ok == 20
    assert budget == {(28, 28): 5, (28, 56): 2}  # 0.4 GiB of activations at most, per batch
    for n, _, h, w in seen:
        assert n <= budget[(h, w)]
    assert max(n for n, _, h, w in seen if (h, w) == (28, 28)) == 5


def test_compiled_matches_eager_and_never_recompiles_a_known_size(tiny_da_dir, tmp_path):
    """``torch.compile`` with the aot_eager backend (inductor's C++ compile of this tiny network took
    98 s on the loaded 2-core VM; the GPU tests and the GPU script run inductor): maps equal to eager's
    (both on the device path, CPU tensors) within 5e-6 of their range (measured 6.9e-7 at batch 1 and
    2, with 1 and 2 threads, AVX2 and AVX512_CORE_BF16 kernels), and one graph per (network size,
    batch): a folder of two sizes at batch 2, with a last, partly full batch of each, compiles twice."""
    est = _on_device_path(localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="torch",
                                          device="cpu", input_size=28))
    compiled = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="torch", device="cpu",
                               input_size=28, compile="aot_eager")
    _on_device_path(compiled)
    folder = _folder(tmp_path, [(40, 40)] * 5 + [(40, 80)] * 3)  # 28x28 and 28x56 inputs
    items = expand_inputs([str(folder)])
    Runner(est, tmp_path / "eager", WriteOptions(formats=("npy",)), batch_size=2, progress=False).run(items)
    summary = Runner(compiled, tmp_path / "compiled", WriteOptions(formats=("npy",)), batch_size=2,
                     progress=False).run(items)
    assert summary.ok == 8
    assert compiled.backend.compilations == 2
    for f in sorted((tmp_path / "eager").glob("*.npy")):
        a, b = np.load(f), np.load(tmp_path / "compiled" / f.name)
        within(np.abs(a - b).max() / (a.max() - a.min()), 5e-6, "compiled vs eager: max difference / range")
    compiled.predict([rng_image(41, 41, seed=30)])  # a new image of a known network size (batch 1 < 2: padded)
    assert compiled.backend.compilations == 2
    compiled.predict([rng_image(40, 120, seed=31)])  # a new network size: one more graph
    assert compiled.backend.compilations == 3


def test_serve_takes_the_accelerator_options(tiny_da_dir):
    from localdepth.cli.main import build_parser
    from localdepth.cli.serve import _loaders

    # the weights are resolved before the server starts (a missing model is one line then): give some
    args = build_parser().parse_args(["serve", "--model", "depth-anything-v2-small", "--weights", str(tiny_da_dir),
                                      "--compile", "--cuda-graphs"])
    loader = _loaders(args)[0]
    assert loader.keywords["compile"] is True and loader.keywords["cuda_graphs"] is True


def test_compile_option_reaches_the_backend_from_the_cli(tiny_da_dir, tmp_path):
    """``--compile`` runs through the same buckets from ``localdepth run`` (sidecar says so)."""
    from localdepth.cli.main import main

    folder = _folder(tmp_path, [(40, 40), (40, 40)])
    code = main(["run", str(folder), "--weights", str(tiny_da_dir), "--backend", "torch", "--device", "cpu",
                 "--input-size", "28", "--compile", "--outdir", str(tmp_path / "out"), "-q", "--format", "npy"])
    assert code == 0
    sidecar = json.loads((tmp_path / "out" / "im00.json").read_text())
    assert sidecar["model"]["compile"] is True


def test_batch_stages_send_decoded_images_to_gpu_actors(tiny_da_dir, tmp_path):
    """``localdepth batch`` with GPUs per actor: the decoding tasks send the 8-bit image, the actor
    runs the device path (CPU tensors here) and sends maps at the image's size, which the writing
    tasks take as they are. The stages run in this process, without Ray, against the CPU stages."""
    pd = pytest.importorskip("pandas")
    from localdepth.distributed.outputs import OutputTarget
    from localdepth.distributed.pipeline import BatchConfig, InferenceActor, decode_stage, write_stage

    folder = _folder(tmp_path, [(40, 40), (40, 80), (40, 40)])
    rows = pd.DataFrame({"index": [0, 1, 2], "input": [str(p) for p in sorted(folder.iterdir())],
                         "rel": ["a", "b", "c"], "error": ["", "", ""]})
    written = {}
    for gpu in (False, True):
        cfg = BatchConfig(model="depth-anything-v2-small", weights=str(tiny_da_dir), device="auto", input_size=28,
                          formats=("npy",), gpus_per_worker=1.0 if gpu else 0.0, batch_size=None if gpu else 1)
        target = OutputTarget(str(tmp_path / f"out{gpu}"), cfg.options)
        decoded = decode_stage(rows, cfg, target)
        sent = [np.load(__import__("io").BytesIO(t)) for t in decoded["tensor"]]
        assert all(t.dtype == (np.uint8 if gpu else np.float32) for t in sent)
        actor = InferenceActor(cfg)
        if gpu:
            actor.estimator.backend.device_pipeline = True
        manifest = write_stage(actor(decoded), cfg, target)
        assert list(manifest["status"]) == ["ok"] * 3
        written[gpu] = [np.load(tmp_path / f"out{gpu}" / f"{rel}.npy") for rel in "abc"]
    for a, b in zip(written[False], written[True]):
        assert a.shape == b.shape
        _close(a, b, FAMILY_TOLERANCE)


# ----------------------------------------------------------------------------- SDPA in every attention

def _attention_modules(model):
    """The innermost modules whose class is an attention (no attention module inside them)."""
    found = [m for m in model.modules() if type(m).__name__.endswith("Attention")]
    return [m for m in found if not any(c is not m and type(c).__name__.endswith("Attention") for c in m.modules())]


def _sdpa_per_attention(network, *args, **kwargs) -> list[int]:
    """How many SDPA calls each attention module that ran made during one forward pass (modules the
    pass does not use, such as a camera encoder without given cameras, are left out)."""
    import torch.nn.functional as F

    modules = _attention_modules(network)
    calls = {}
    active = []

    def enter(module, args):
        active.append(id(module))
        calls.setdefault(id(module), 0)

    def leave(module, args, output):  # returns None: the output stays as it is
        active.pop()

    hooks = [m.register_forward_pre_hook(enter) for m in modules] + [m.register_forward_hook(leave) for m in modules]
    real = F.scaled_dot_product_attention

    def counting(*a, **k):
        if active:
            calls[active[-1]] += 1
        return real(*a, **k)

    F.scaled_dot_product_attention = counting
    try:
        with torch.no_grad():
            network(*args, **kwargs)
    finally:
        F.scaled_dot_product_attention = real
        for h in hooks:
            h.remove()
    return list(calls.values())


@pytest.mark.parametrize("fixture,name,size", [
    ("tiny_da_dir", "depth-anything-v2-small", 56), ("tiny_da_dir", "depth-anything-v1-small", 56),
    ("tiny_dpt", "midas-dpt-large", 64), ("tiny_depth_pro_dir", "depth-pro", 1536),
    ("tiny_zoedepth_dir", "zoedepth-nyu", 64), ("tiny_prompt_da_dir", "prompt-depth-anything-vits", 56),
    ("tiny_any_view", "da3-small", 56)])
def test_every_attention_runs_through_sdpa(request, fixture, name, size):
    """Transformers' models load with ``attn_implementation="sdpa"`` (their default, checked here in
    every attention layer, backbones included) and localdepth's own networks call SDPA directly."""
    folder = request.getfixturevalue(fixture)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = localdepth.load(name, weights=folder, backend="torch", device="cpu")
    network = est.backend.model
    extra = {"prompt_depth": torch.rand(1, 1, 12, 16) + 0.5} if name.startswith("prompt") else {}
    per_module = _sdpa_per_attention(network, torch.randn(1, 3, size, size), **extra)
    assert per_module and all(n >= 1 for n in per_module), per_module
    for m in network.modules():
        config = getattr(m, "config", None)
        if _attention_modules(m) and getattr(config, "_attn_implementation", "sdpa") != "sdpa":
            assert not any(type(c).__name__.endswith("Attention") for c in m.children()), type(m).__name__


def test_video_depth_anything_attention_runs_through_sdpa(tmp_path):
    path = tiny_vda_checkpoint(tmp_path / "video_depth_anything_vits.pth")
    network = localdepth.load("video-depth-anything-small", weights=path, device="cpu").backend.model
    per_module = _sdpa_per_attention(network, torch.randn(1, 4, 3, 42, 56))
    assert len(per_module) > 4 and all(n >= 1 for n in per_module), per_module


# ----------------------------------------------------------------------------- on a GPU

needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
def test_gpu_preprocessing_on_the_gpu_matches_the_cpu_path():
    for name in FAMILIES:
        pre = registry.get(name).preprocessing
        for image in _test_images():
            expected = preprocess(image, pre)
            got = pt.preprocess_image(pt.image_tensor(image, pin=True).cuda(), pre).cpu().numpy()
            diff = np.abs(got - expected)
            within(diff.max(), MAX_DIFF.get(name, FLOAT_MAX), "max difference (CUDA)")
            within(diff.mean(), MEAN_DIFF.get(name, FLOAT_MEAN), "mean difference (CUDA)")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("options", [{}, {"cuda_graphs": True}, {"compile": True, "cuda_graphs": True}])
def test_gpu_run_matches_the_cpu_in_fp16(tiny_da_dir, tmp_path, options):
    """A folder through ``localdepth run`` on the GPU pipeline (fp16, automatic batches, each
    accelerator option) against the CPU in fp32: mean within 5e-3 of the map's range (fp16 on the CPU
    measured 2.9e-4, test_fp16_network_agrees_with_fp32_on_the_cpu; not yet measured on a GPU)."""
    folder = _folder(tmp_path, [(40, 40), (40, 80)] * 3)
    items = expand_inputs([str(folder)])
    cpu = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="torch", device="cpu", input_size=56)
    gpu = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cuda", input_size=56, **options)
    assert gpu.device_pipeline and gpu.backend.dtype == "fp16"
    Runner(cpu, tmp_path / "cpu", WriteOptions(formats=("npy",)), progress=False).run(items)
    summary = Runner(gpu, tmp_path / "gpu", WriteOptions(formats=("npy",)), batch_size=None, progress=False).run(items)
    assert summary.ok == 6
    for f in (tmp_path / "cpu").glob("*.npy"):
        a, b = np.load(f), np.load(tmp_path / "gpu" / f.name)
        within(np.abs(a - b).mean() / (a.max() - a.min()), 5e-3, "GPU fp16 vs CPU fp32: mean difference / range")
    if options.get("compile"):
        assert gpu.backend.compilations >= 2


@pytest.mark.gpu
@needs_cuda
def test_gpu_streaming_with_cuda_graphs_matches_eager(tmp_path):
    from localdepth.video.readers import Frame
    from localdepth.video.temporal import StreamingDepth

    path = tiny_vda_checkpoint(tmp_path / "video_depth_anything_vits.pth")
    frames = [Frame(i, i / 24, rng_image(54, 72, seed=i), f"f{i}") for i in range(6)]
    out = {}
    for graphs in (False, True):
        est = localdepth.load("video-depth-anything-small", weights=path, device="cuda", input_size=42,
                              cuda_graphs=graphs)
        out[graphs] = [d for _, d, _ in StreamingDepth(est)(frames)]
    for a, b in zip(out[False], out[True]):
        within(np.abs(a - b).max() / np.abs(a).max(), 1e-2, "CUDA graphs vs eager: max difference / max")
