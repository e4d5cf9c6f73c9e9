"""The MLX backend: localdepth's MLX networks against the PyTorch networks on the same weights.

MLX's Linux CPU build runs the same code as the Metal build on a Mac, so every line is checked
here; it is slow (a reference BLAS), so inputs are small: the full-size Depth Anything V2 Small
(random weights of the released configuration) at 70 x 70 and 98 x 140, tiny configurations
otherwise. The reference is PyTorch fp32 (Transformers' model for Depth Anything V1/V2,
localdepth's own networks for Video Depth Anything and Depth Anything 3, both checked against
the official code elsewhere).

Tolerances are mean relative errors, ``mean|mlx - torch| / mean|torch|``, measured with
tests' inputs (full-size Small at 70x70 and 98x140, the tiny relative and metric models at
126x126 and 154x210, batch 1 and 2) under every condition of docs/testing.md (Tolerances) on an
Intel Xeon with AMX: worst fp32 5.1e-7, 1.2e-6 through the estimator (the bound is the issue's
1e-5), fp16 4.4e-4 (bound 2e-3), bf16 4.1e-3 (bound 2e-2). Video Depth Anything (clips and
streaming) measured 8.7e-7 and Depth Anything 3 Mono 1.1e-7 in fp32. MLX's own kernels follow
none of the conditions' variables; the PyTorch reference does.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core", reason="MLX is not installed: pip install -e '.[mlx]' (mlx[cpu] on Linux)")
torch = pytest.importorskip("torch")

from conftest import _lift_relative_head, rng_image  # noqa: E402
from tolerance import at_least, within  # noqa: E402

import localdepth  # noqa: E402
from localdepth import registry  # noqa: E402
from localdepth.conversion import Target, find  # noqa: E402
from localdepth.errors import LocalDepthError  # noqa: E402
from localdepth.networks import load_network  # noqa: E402
from localdepth.networks.mlx import convert, load, mlx_arrays  # noqa: E402
from localdepth.weights import ResolvedWeights  # noqa: E402

FP32 = 1e-5  # the bound; measured worst 5.1e-7 (module docstring)
HALF = {"float16": 2e-3, "bfloat16": 2e-2}  # measured worst 4.5e-4 and 4.3e-3
DA2 = registry.get("depth-anything-v2-small")
METRIC = registry.get("depth-anything-v2-metric-indoor-small")


def mean_relative_error(ours, reference) -> float:
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float(np.abs(ours - reference).mean() / np.abs(reference).mean())


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    """Random weights of the released Depth Anything V2 Small configuration, the head lifted so
    the random map has a visible spread (conftest's tiny models do the same)."""
    from transformers import DepthAnythingForDepthEstimation

    from localdepth.bench.arch import architecture_config

    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(architecture_config(DA2)).eval()
    _lift_relative_head(model)
    folder = tmp_path_factory.mktemp("da2-small-random")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pairs(small_dir, tiny_da_dir, tiny_metric_dir):
    """name -> (PyTorch network, MLX conversion folder), each converted once."""
    made = {}
    for name, spec, folder in (("small", DA2, small_dir), ("tiny", DA2, tiny_da_dir),
                               ("tiny-metric", METRIC, tiny_metric_dir)):
        out = Path(tempfile.mkdtemp(prefix=f"mlx-{name}-"))
        convert(spec, folder, out)
        made[name] = (load_network(spec, folder), out)
    return made


def _torch(network, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return network(torch.from_numpy(x))["depth"].float().numpy()


def _mlx(network, x: np.ndarray, dtype=None) -> np.ndarray:
    layout = (0, 2, 3, 1) if x.ndim == 4 else (0, 1, 3, 4, 2)
    inputs = mx.array(np.ascontiguousarray(x.transpose(layout)))
    out = network(inputs.astype(dtype) if dtype is not None else inputs)["depth"]
    return np.array(out.astype(mx.float32))


SIZES = {"small": [(70, 70), (98, 140)], "tiny": [(126, 126), (154, 210)], "tiny-metric": [(126, 126), (154, 210)]}


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("shape", ["square", "not square"])
@pytest.mark.parametrize("name", ["small", "tiny", "tiny-metric"])
def test_depth_anything_matches_pytorch_fp32(pairs, name, shape, batch):
    network, folder = pairs[name]
    h, w = SIZES[name][0 if shape == "square" else 1]
    x = np.random.default_rng(h + batch).standard_normal((batch, 3, h, w)).astype(np.float32)
    reference = _torch(network, x)
    assert np.ptp(reference) > 0  # a map with a spread, not ReLU zeros
    within(mean_relative_error(_mlx(load(folder), x), reference), FP32, "fp32: mean error / mean")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["small", "tiny", "tiny-metric"])
def test_half_precisions_stay_within_their_measured_tolerance(pairs, name, dtype):
    network, folder = pairs[name]
    h, w = SIZES[name][1]
    x = np.random.default_rng(7).standard_normal((2, 3, h, w)).astype(np.float32)
    half = load(folder, dtype=getattr(mx, dtype))
    assert half.pretrained.blocks[0].attn.qkv.weight.dtype == getattr(mx, dtype)
    error = mean_relative_error(_mlx(half, x, getattr(mx, dtype)), _torch(network, x))
    assert error > 0  # the precision really changed
    within(error, HALF[dtype], f"{dtype}: mean error / mean")


def test_every_weight_is_placed_the_same_as_pytorch(pairs):
    """Swapping one trained tensor of the conversion changes the output: nothing is silently unused."""
    network, folder = pairs["tiny"]
    x = np.random.default_rng(0).standard_normal((1, 3, 70, 84)).astype(np.float32)
    mlx_net = load(folder)
    before = _mlx(mlx_net, x)
    conv = mlx_net.head.scratch.refinenet4.resConfUnit2.conv1
    conv.weight = conv.weight * 1.5  # measured: the map moves by 1.1e-2 of its mean
    at_least(mean_relative_error(_mlx(mlx_net, x), before), 1e-4, "change from one scaled tensor: mean / mean")


def test_a_mismatched_checkpoint_is_refused_in_one_line(tiny_da_dir, tmp_path, photo, capsys):
    from safetensors.torch import load_file, save_file

    from localdepth.cli.main import main

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_da_dir / "config.json").read_text())
    tensors = load_file(str(tiny_da_dir / "model.safetensors"))
    del tensors["head.conv3.bias"]  # Transformers initialises it anew (with a warning); MLX refuses
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["run", str(photo), "--weights", str(broken), "--backend", "mlx", "--outdir", str(tmp_path / "o"),
                     "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("localdepth: error:")]
    assert code == 2 and len(errors) == 1 and errors[0] == err[-1], err  # the conversion's progress line before it
    assert "first differing key 'head.scratch.output_conv2.2.bias' is missing" in errors[0]


# ----------------------------------------------------------------------------- the backend, end to end

def _run(args: list[str]):
    from localdepth.cli.main import main

    return main(args)


def test_run_on_a_photo_equals_pytorch_and_the_sidecar_names_mlx(tiny_da_dir, photo, tmp_path, capsys):
    outs = {}
    for backend in ("torch", "mlx"):
        outdir = tmp_path / backend
        assert _run(["run", str(photo), "--weights", str(tiny_da_dir), "--backend", backend, "--input-size", "252",
                     "--outdir", str(outdir), "--format", "npy"]) == 0
        outs[backend] = (np.load(outdir / "demo01.npy"), json.loads((outdir / "demo01.json").read_text()))
    err = capsys.readouterr().err
    assert "converting depth-anything-v2-small to MLX arrays" in err and "mlx fp32 on cpu" in err
    (mlx_map, sidecar), (torch_map, _) = outs["mlx"], outs["torch"]
    assert mlx_map.shape == torch_map.shape
    within(mean_relative_error(mlx_map, torch_map), FP32, "fp32: mean error / mean")
    model = sidecar["model"]
    assert model["backend"] == "mlx" and model["device"] == "cpu" and model["dtype"] == "fp32"
    assert model["conversion"]["runtime"] == "mlx"


def test_conversion_is_cached_and_keyed_by_the_weights_content(tiny_da_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    first = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="mlx")
    weights = ResolvedWeights(tiny_da_dir, "argument")
    cached = find(DA2, weights, Target("mlx", "fp32"))
    assert cached is not None and cached.report["parity"]["ok"]
    assert first.backend.conversion["weights_id"] == cached.report["weights_id"]
    mtime = cached.path.stat().st_mtime_ns
    localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="mlx")
    assert cached.path.stat().st_mtime_ns == mtime  # reused, not converted again
    changed = tmp_path / "changed"
    shutil.copytree(tiny_da_dir, changed)
    tensors = load_file(str(changed / "model.safetensors"))
    tensors["head.conv3.bias"] = tensors["head.conv3.bias"] + 1.0
    save_file(tensors, str(changed / "model.safetensors"), metadata={"format": "pt"})
    assert find(DA2, ResolvedWeights(changed, "argument"), Target("mlx", "fp32")) is None
    other = localdepth.load("depth-anything-v2-small", weights=changed, backend="mlx")
    assert other.backend.conversion["weights_id"] != cached.report["weights_id"]
    image = rng_image(56, 70)  # measured: the changed bias moves the map by 0.25 of its mean
    at_least(mean_relative_error(other.predict(image).map, first.predict(image).map), 1e-3, "changed weights' change")


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_through_the_estimator(tiny_da_dir, dtype):
    image = rng_image(98, 126)
    reference = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="torch").predict(image).map
    half = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="mlx", dtype=dtype)
    assert half.backend.describe()["dtype"] == dtype
    error = mean_relative_error(half.predict(image).map, reference)
    assert error > 0  # the precision really changed
    within(error, HALF[{"fp16": "float16", "bf16": "bfloat16"}[dtype]], f"{dtype}: mean error / mean")


def test_depth_anything_v1_entry_runs_on_mlx(tiny_da_dir):
    """Depth Anything V1's Hub folders hold the same Transformers architecture (its own resize back)."""
    image = rng_image(70, 98)
    ref = localdepth.load("depth-anything-v1-small", weights=tiny_da_dir, backend="torch").predict(image).map
    out = localdepth.load("depth-anything-v1-small", weights=tiny_da_dir, backend="mlx").predict(image).map
    within(mean_relative_error(out, ref), FP32, "fp32: mean error / mean")


def test_bench_has_mlx_rows(tiny_da_dir, tmp_path):
    report = tmp_path / "bench.json"
    assert _run(["bench", "--quick", "--backend", "torch,mlx", "--no-baseline", "--weights", str(tiny_da_dir),
                 "--json", str(report), "--markdown", str(tmp_path / "bench.md")]) == 0
    rows = json.loads(report.read_text())["results"]
    row = next(r for r in rows if r["backend"] == "mlx")
    assert row["dtype"] == "fp32" and row["device"] == "cpu" and row["model_ms_per_image"] > 0
    within(row["deviation_vs_fp32"]["mean_rel"], FP32 * 10, "bench fp32: mean error / range")  # the range, not the mean
    assert "| mlx | fp32 |" in (tmp_path / "bench.md").read_text()


# ----------------------------------------------------------------------------- Video Depth Anything

def _tiny_vda(folder: Path, seed: int = 0) -> Path:
    """localdepth's PyTorch Video Depth Anything in a tiny configuration (12 blocks of width 64,
    as the official tiny test model), random weights with the head lifted, saved as safetensors."""
    from safetensors.torch import save_file

    from localdepth.networks.dinov2 import ViTConfig
    from localdepth.networks.vda import LAYERS_BY_DEPTH, VDAConfig, VideoDepthAnything

    torch.manual_seed(seed)
    network = VideoDepthAnything(VDAConfig(ViTConfig(64, 12, 1, 256), 32, (32, 32, 64, 64), LAYERS_BY_DEPTH[12])).eval()
    g = torch.Generator().manual_seed(seed + 1)
    head = network.head.scratch.output_conv2
    for conv, centre in ((head[0], 0.5), (head[2], 4.0)):  # standardised, so ReLU keeps a spread
        captured = {}
        hook = conv.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
        with torch.no_grad():
            network(torch.randn(1, 4, 3, 42, 56, generator=g))
        hook.remove()
        out = captured["out"].transpose(0, 1).flatten(1)
        mean, std = out.mean(dim=1), out.std(dim=1).clamp_min(1e-6)
        with torch.no_grad():
            conv.weight /= std[:, None, None, None]
            conv.bias.copy_((conv.bias - mean) / std + centre)
    path = folder / "video_depth_anything_vits.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_vda(tmp_path_factory) -> Path:
    return _tiny_vda(tmp_path_factory.mktemp("vda-tiny"))


def test_video_depth_anything_clips_and_streaming_match_pytorch(tiny_vda):
    from localdepth.networks.mlx import vda as mlx_vda

    spec = registry.get("video-depth-anything-small")
    network = load_network(spec, tiny_vda)
    out = Path(tempfile.mkdtemp(prefix="mlx-vda-"))
    convert(spec, tiny_vda, out)
    ours = load(out)
    assert isinstance(ours, mlx_vda.VideoDepthAnything)
    clip = np.random.default_rng(0).standard_normal((1, 6, 3, 42, 56)).astype(np.float32)
    within(mean_relative_error(_mlx(ours, clip), _torch(network, clip)), FP32, "clip: mean error / mean")
    theirs_state, ours_state = network.new_stream(), ours.new_stream()
    for i in range(5):  # the first frame fills the window; the rest attend to the cache
        frame = np.random.default_rng(10 + i).standard_normal((1, 3, 42, 56)).astype(np.float32)
        with torch.inference_mode():
            expected = network.stream_step(torch.from_numpy(frame), theirs_state).numpy()
        got = np.array(ours.stream_step(mx.array(frame.transpose(0, 2, 3, 1)), ours_state))
        within(mean_relative_error(got, expected), FP32, "stream step: mean error / mean", at=i)
    assert len(ours_state.entries) == len(theirs_state.entries)


@pytest.mark.parametrize("mode", ["windows", "streaming"])
def test_video_through_the_backend(tiny_vda, photo, mode):
    """``localdepth video`` offline (a window of clips through ``run``) and ``--streaming`` (the
    backend's stream): MLX's frames equal PyTorch's."""
    import cv2

    from localdepth.video.readers import Frame
    from localdepth.video.temporal import StreamingDepth, WindowedDepth

    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    frames = [Frame(i, i / 24, cv2.resize(np.roll(rgb, 9 * i, axis=1), (72, 54)), f"f{i}") for i in range(5)]
    maps = {}
    for backend in ("torch", "mlx"):
        estimator = localdepth.load("video-depth-anything-small", weights=tiny_vda, backend=backend, input_size=42)
        predictor = StreamingDepth(estimator) if mode == "streaming" else WindowedDepth(estimator)
        maps[backend] = [m for _, m, _ in predictor(frames)]
        assert estimator.backend.name == backend and len(maps[backend]) == len(frames)
    for ours, theirs in zip(maps["mlx"], maps["torch"]):
        within(mean_relative_error(ours, theirs), FP32, "frame: mean error / mean")


# ----------------------------------------------------------------------------- Depth Anything 3 Mono / Metric

TINY_SINGLE_VIEW = dict(embed_dim=32, depth=4, num_heads=2, out_layers=(0, 1, 2, 3), alt_start=-1, qknorm_start=-1,
                        rope_start=-1, cat_token=False, head="dpt", head_features=16,
                        head_out_channels=(8, 16, 32, 32), camera=False)


@pytest.mark.parametrize("name", ["da3-mono-large", "da3-metric-large"])
def test_depth_anything_3_single_view_matches_pytorch(name, tmp_path, monkeypatch):
    """The registry's path (a Hub folder naming its model, converted through the cache), with the
    single-view design's row shrunk to a tiny one: the released Large is 334M parameters."""
    from safetensors.torch import save_model

    from localdepth.networks.da3 import build
    from localdepth.networks.da3.config import ARCHITECTURES, Architecture

    spec = registry.get(name)
    monkeypatch.setitem(ARCHITECTURES, spec.architecture, Architecture(**TINY_SINGLE_VIEW))
    torch.manual_seed(0)
    network = build(spec.architecture)
    with torch.no_grad():  # a sky map with sky and ground in it, so the sky rule runs
        network.head.scratch.sky_output_conv2[2].bias.fill_(0.3)
    save_model(network, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_name": spec.architecture}))
    image = rng_image(84, 112)
    maps = {}
    for backend in ("torch", "mlx"):
        estimator = localdepth.load(name, weights=tmp_path, backend=backend)
        maps[backend] = estimator.predict(image).map
    within(mean_relative_error(maps["mlx"], maps["torch"]), FP32, "fp32: mean error / mean")


def test_mlx_arrays_names_the_first_differing_key():
    from localdepth.networks.da3.config import Architecture
    from localdepth.networks.mlx import da3 as mlx_da3

    network = mlx_da3.build(mlx_da3.Config("tiny", Architecture(**TINY_SINGLE_VIEW)).as_dict())
    with pytest.raises(LocalDepthError, match="'backbone.pretrained.blocks.0.attn.proj.bias' is missing"):
        mlx_arrays(network, {"backbone.pretrained.cls_token": np.zeros((1, 1, 32))}, "tiny")
    from localdepth.networks.da3.network import DepthAnything3Network

    state = {k: v.numpy() for k, v in DepthAnything3Network(Architecture(**TINY_SINGLE_VIEW)).state_dict().items()}
    assert mlx_arrays(network, state, "tiny").keys() == state.keys()  # PyTorch's names and layouts, all placed
    state["head.projects.0.weight"] = np.zeros((8, 32, 1, 2))
    with pytest.raises(LocalDepthError, match="'head.projects.0.weight' has shape"):
        mlx_arrays(network, state, "tiny")
