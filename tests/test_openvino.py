"""The OpenVINO backend: conversion with dynamic shapes, bf16, NNCF int8, throughput mode, auto choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("openvino", reason="the OpenVINO tests need the openvino extra: pip install 'localdepth[openvino]'")

import localdepth  # noqa: E402
from localdepth import conversion, registry, runtimes  # noqa: E402
from localdepth.conversion import Settings, Target  # noqa: E402
from localdepth.conversion.calibration import deviation, image_set, pooled  # noqa: E402
from localdepth.weights import ResolvedWeights  # noqa: E402
from tolerance import within  # noqa: E402

SPEC = registry.get("depth-anything-v2-small")
PYDNET_SPEC = registry.get("pydnet")


@pytest.fixture(scope="module")
def ov_home(tiny_da_dir, tmp_path_factory):
    """A localdepth home where the tiny model is converted to OpenVINO fp32 (once for the module)."""
    home = tmp_path_factory.mktemp("ov-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCALDEPTH_HOME", str(home))
        converted = conversion.convert(SPEC, ResolvedWeights(tiny_da_dir, "argument"), Target("openvino", "fp32"))
    return home, converted


@pytest.fixture
def in_ov_home(ov_home, monkeypatch):
    """Run the test with the module's home, so the conversions made there are found."""
    monkeypatch.setenv("LOCALDEPTH_HOME", str(ov_home[0]))
    return ov_home[1]


def _torch_reference(tiny_da_dir, x: np.ndarray) -> np.ndarray:
    """PyTorch fp32, eager, as localdepth's torch backend runs the network (Transformers' model with
    the official DINOv2 position rule, F.interpolate; the conversion exports its matrix form)."""
    import torch

    from localdepth.networks import load_network

    model = load_network(SPEC, tiny_da_dir, device="cpu")
    with torch.inference_mode():
        return model(torch.from_numpy(x))["depth"].numpy()


def test_conversion_keeps_batch_height_and_width_dynamic(ov_home):
    converted = ov_home[1]
    model = runtimes.openvino_core().read_model(str(converted.path))
    assert str(model.inputs[0].get_partial_shape()) == "[?,3,?,?]"
    assert model.outputs[0].get_any_name() == "depth" and str(model.outputs[0].get_partial_shape()).startswith("[?,")
    assert converted.report["parity"]["ok"]
    within(converted.report["parity"]["max_rel"], 1e-4, "parity: max error / range")


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 98, 126), (3, 154, 70)])
def test_openvino_equals_pytorch_at_two_sizes_and_batches(ov_home, tiny_da_dir, batch, height, width):
    from localdepth.backends.openvino_backend import OpenVINOBackend

    x = np.random.default_rng(batch).standard_normal((batch, 3, height, width)).astype(np.float32)
    reference = _torch_reference(tiny_da_dir, x)
    backend = OpenVINOBackend(ov_home[1].path, precision="fp32", threads=1)
    assert backend.inference_precision == "fp32"
    out = backend.infer(x)
    assert out.shape == (batch, height, width)
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-4 * np.ptp(reference))


@pytest.mark.parametrize("batch", [1, 2])
def test_pydnet_openvino_equals_the_float_network(pydnet_file, shared_images, batch):
    """PyDNet++'s graph has a fixed 448x640 input, so two batch sizes and one input size. The
    reference is the graph computed in float64 from its dequantized weights (tflite_reference):
    OpenVINO matches it; LiteRT departs from it by its int8 arithmetic in the int8-weight layers."""
    from localdepth.backends.openvino_backend import OpenVINOBackend
    from localdepth.backends.tflite_backend import TFLiteBackend
    from localdepth.images import load_image
    from localdepth.preprocess import preprocess
    from tflite_reference import tflite_float_reference

    photos = sorted(shared_images.glob("*.jpg"))[:batch]
    x = np.stack([preprocess(load_image(p), PYDNET_SPEC.preprocessing) for p in photos])
    reference = tflite_float_reference(pydnet_file, x)
    backend = OpenVINOBackend(pydnet_file, precision="fp32", threads=2)
    assert backend.max_batch is None  # the batch was made dynamic
    out = backend.infer(x)
    assert out.shape == (batch, 448, 640)
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-4 * np.ptp(reference))
    lite = TFLiteBackend(pydnet_file, threads=2).infer(x)
    # measured: LiteRT mean 4e-3, max 2.7e-2 of the range on demo01 (int8 activations)
    assert deviation(lite, reference)["mean_rel"] > 10 * deviation(out, reference)["mean_rel"]


class _CameraNet:
    """A stand-in network of a format of its own that predicts, beside depth, a confidence, a camera
    (depending on the input's size) and a field of view, each from the pixels (so a wrong output
    wiring shows); built from tensor operations that export with symbolic sizes."""

    @staticmethod
    def build():
        import torch

        class CameraNet(torch.nn.Module):
            extra_outputs = True

            def forward(self, pixel_values, **conditioning):
                _, _, h, w = pixel_values.shape
                ones = torch.ones_like(pixel_values[:, 0, 0, 0])
                zeros = torch.zeros_like(ones)
                fx = 50.0 + pixel_values[:, 1].mean(dim=(1, 2))
                cx = ones * torch.arange(w, dtype=torch.float32).mean()
                cy = ones * torch.arange(h, dtype=torch.float32).mean()
                K = torch.stack([torch.stack([fx, zeros, cx], -1), torch.stack([zeros, fx, cy], -1),
                                 torch.stack([zeros, zeros, ones], -1)], -2)
                return {"depth": 1.0 + pixel_values.mean(dim=1), "confidence": torch.sigmoid(pixel_values[:, 2]),
                        "intrinsics": K, "field_of_view": 60.0 + pixel_values[:, 0].mean(dim=(1, 2))}

        return CameraNet().eval()


@pytest.mark.parametrize("runtime", ["openvino", "onnx"])
def test_converted_models_keep_every_output_of_the_network(runtime, monkeypatch, tmp_path):
    """Both runtimes run the conversion of the network's every output (by name), as PyTorch does."""
    import dataclasses
    import sys
    import types

    if runtime == "onnx":
        pytest.importorskip("onnxruntime")
    from localdepth import networks
    from localdepth.backends import choose_backend, open_backend

    module = types.ModuleType("localdepth_test_camera_net")
    module.load = lambda spec, path, *, device, dtype=None: _CameraNet.build()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(networks.LOADERS, "camera-test", module.__name__)
    monkeypatch.setenv("LOCALDEPTH_HOME", str(tmp_path / "home"))
    spec = dataclasses.replace(registry.get("depth-anything-v2-metric-indoor-small"), name="camera-test",
                               format="camera-test", family="camera-test")
    weights = ResolvedWeights(tmp_path, "argument")
    x = np.random.default_rng(0).standard_normal((2, 3, 70, 98)).astype(np.float32)
    outputs = {}
    for backend in ("torch", runtime):
        choice = choose_backend(spec, weights, backend=backend, device="cpu", dtype="fp32")
        outputs[backend] = open_backend(spec, weights, choice, log=lambda line: None).run(x)
    converted, reference = outputs[runtime], outputs["torch"]
    for name in ("depth", "confidence", "intrinsics", "field_of_view"):
        ours, theirs = getattr(converted, name), getattr(reference, name)
        assert ours is not None and ours.shape == theirs.shape and ours.dtype == theirs.dtype, name
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5, err_msg=name)
    assert converted.intrinsics[0, 0, 2] == pytest.approx(97 / 2) and converted.intrinsics[0, 1, 2] == pytest.approx(69 / 2)


@pytest.mark.skipif(not runtimes.cpu_has_bf16(), reason="this CPU has no native bf16")
def test_bf16_runs_bf16_and_stays_close(ov_home, tiny_da_dir):
    from localdepth.backends.openvino_backend import OpenVINOBackend

    x = np.random.default_rng(0).standard_normal((2, 3, 98, 126)).astype(np.float32)
    reference = _torch_reference(tiny_da_dir, x)
    backend = OpenVINOBackend(ov_home[1].path, precision="bf16", threads=1)
    assert backend.inference_precision == "bf16" and backend.describe()["dtype"] == "bf16"
    d = deviation(backend.infer(x), reference)
    # measured on this input: max 8.0e-3, mean 1.2e-3 of the range (bf16 keeps 8 bits of mantissa)
    assert d["mean_rel"] > 1e-5, d  # bf16 really ran
    within(d["mean_rel"], 5e-3, "bf16: mean error / range")
    within(d["max_rel"], 3e-2, "bf16: max error / range")


def test_int8_quantizes_on_calibration_images_and_loads_from_the_cache(in_ov_home, tiny_da_dir, monkeypatch):
    resolved = ResolvedWeights(tiny_da_dir, "argument")
    settings = Settings(calibration_count=3, input_size=70)
    converted = conversion.convert(SPEC, resolved, Target("openvino", "int8"), settings=settings, force=True)
    report = converted.report
    assert report["calibration"]["count"] == 3 and report["calibration"]["source"] == "synthetic"
    assert "deviation int8 vs fp32" in converted.lines()[-1]

    import nncf

    def no_quantizing(*args, **kwargs):
        raise AssertionError("the cached int8 model must be used, not quantized again")

    monkeypatch.setattr(nncf, "quantize", no_quantizing)
    int8 = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="openvino", dtype="int8",
                           input_size=70)
    fp32 = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="openvino", dtype="fp32",
                           input_size=70)
    assert (int8.backend.name, int8.backend.dtype) == ("openvino", "int8")
    assert int8.describe()["conversion"]["deviation"] == report["deviation"]
    # the reported deviation is what the outputs give: recompute it on the same check images
    check = image_set(None, report["check_images"]["count"], check=True)
    mine = pooled([deviation(int8.backend.infer(x), fp32.backend.infer(x))
                   for x in (int8.preprocess(rgb)[None] for rgb in check.images)])
    assert mine["mean_rel"] == pytest.approx(report["deviation"]["check"]["mean_rel"], rel=1e-3)
    assert mine["max_rel"] == pytest.approx(report["deviation"]["check"]["max_rel"], rel=1e-3)
    assert mine["mean_rel"] > 0  # quantized
    within(mine["mean_rel"], 0.05, "int8: mean error / range")  # the tolerance it was accepted under


def test_auto_chooses_openvino_on_a_cpu_and_the_sidecar_records_it(in_ov_home, tiny_da_dir, photo, tmp_path,
                                                                     monkeypatch, capsys):
    from localdepth.cli.main import main

    monkeypatch.setenv("LOCALDEPTH_AUTO_OPENVINO", "1")
    monkeypatch.setattr(runtimes, "installed_runtimes", lambda: frozenset({"torch", "tflite", "onnx"}))
    assert localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu").backend.name == "torch"
    monkeypatch.setattr(runtimes, "installed_runtimes", lambda: frozenset({"torch", "tflite", "onnx", "openvino"}))
    precision = "bf16" if runtimes.cpu_has_bf16() else "fp32"
    assert main(["run", str(photo), "--weights", str(tiny_da_dir), "--device", "cpu", "--input-size", "70",
                 "--outdir", str(tmp_path), "-q"]) == 0
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"openvino {precision} on cpu" in summary, summary
    sidecar = json.loads((tmp_path / "demo01.json").read_text())
    assert sidecar["model"]["backend"] == "openvino" and sidecar["model"]["dtype"] == precision
    assert sidecar["model"]["inference_precision"] == precision
    assert sidecar["model"]["conversion"]["weights_id"] == in_ov_home.report["weights_id"]
    assert list((in_ov_home.folder / "compiled").iterdir()), "OpenVINO's model cache keeps the compiled blob"


def test_throughput_mode_keeps_requests_in_flight_and_writes_the_same_maps(in_ov_home, tiny_da_dir, tmp_path):
    import cv2

    from localdepth.inputs import expand_inputs
    from localdepth.runner import Runner
    from localdepth.writers import WriteOptions
    from server_support import smooth_image

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i}.png"), smooth_image(56, 70, seed=i))
    items = expand_inputs([str(folder)])
    common = dict(weights=tiny_da_dir, backend="openvino", dtype="fp32", input_size=70)
    latency = localdepth.load("depth-anything-v2-small", **common)
    throughput = localdepth.load("depth-anything-v2-small", performance="throughput", **common)
    requests = throughput.backend.parallel_requests
    assert requests == int(throughput.backend.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) >= 1
    assert latency.backend.parallel_requests == 1

    outstanding, peak = [0], [0]
    submit = throughput.backend.submit

    def counting_submit(batch):
        outstanding[0] += 1
        peak[0] = max(peak[0], outstanding[0])
        future = submit(batch)
        future.add_done_callback(lambda f: outstanding.__setitem__(0, outstanding[0] - 1))
        return future

    throughput.backend.submit = counting_submit
    for est, out in ((latency, "lat"), (throughput, "tp")):
        summary = Runner(est, tmp_path / out, WriteOptions(formats=("npy",)), progress=False).run(items)
        assert summary.ok == 6
    if requests > 1:
        assert peak[0] > 1, "throughput mode must have several requests in flight"
    for i in range(6):
        a, b = np.load(tmp_path / "lat" / f"{i}.npy"), np.load(tmp_path / "tp" / f"{i}.npy")
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.ptp(a))


def test_ray_actor_gives_openvino_its_cpu_share(in_ov_home, tiny_da_dir):
    pytest.importorskip("ray")
    from localdepth.distributed.pipeline import BatchConfig, InferenceActor

    cfg = BatchConfig(model="depth-anything-v2-small", weights=str(tiny_da_dir), backend="openvino", dtype="fp32")
    actor = InferenceActor(cfg, cpus=1.0)
    assert actor.estimator.backend.threads == 1
    assert json.loads(actor.model_info)["backend"] == "openvino"


def test_quantize_cli_prints_and_stores_the_accuracy_cost(in_ov_home, tiny_da_dir, rgbd_dir, tmp_path, capsys):
    from localdepth.cli.main import main

    code = main(["quantize", "--weights", str(tiny_da_dir), "--count", "2", "--input-size", "70",
                 "--eval-dataset", f"folder:{rgbd_dir / 'livingroom'}", "--eval-limit", "2", "-o", str(tmp_path / "q")])
    out = capsys.readouterr().out
    assert code == 0
    assert "deviation int8 vs fp32" in out and "AbsRel fp32" in out and "δ1" in out
    saved = json.loads((tmp_path / "q" / "report.json").read_text())
    assert saved["precision"] == "int8" and set(saved["eval"]["change"]) == {"abs_rel", "d1"}
    assert saved["eval"]["change"]["abs_rel"] == pytest.approx(saved["eval"]["int8"]["abs_rel"]
                                                               - saved["eval"]["fp32"]["abs_rel"])
    est = localdepth.load("depth-anything-v2-small", weights=tmp_path / "q", input_size=70)
    assert (est.backend.name, est.backend.dtype) == ("openvino", "int8")


def test_server_runs_the_openvino_backend_in_latency_mode(in_ov_home, tiny_da_dir):
    pytest.importorskip("fastapi")
    import asyncio
    import io

    import httpx

    from localdepth.cli.main import build_parser
    from localdepth.cli.serve import _loaders
    from localdepth.server import create_app
    from server_support import png_bytes, smooth_image

    args = build_parser().parse_args(["serve", "--weights", str(tiny_da_dir), "--backend", "openvino",
                                      "--dtype", "fp32", "--input-size", "70"])
    loaded = []

    def loader():  # what `localdepth serve` would load
        loaded.append(_loaders(args)[0]())
        return loaded[-1]

    app = create_app([loader])
    image = smooth_image(42, 56, seed=3)

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localdepth") as client:
                return await client.post("/v1/depth?format=npy", content=png_bytes(image))

    response = asyncio.run(scenario())
    assert response.status_code == 200, response.text
    backend = loaded[0].backend
    assert (backend.name, backend.performance, backend.parallel_requests) == ("openvino", "latency", 1)
    expected = localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, backend="openvino", dtype="fp32",
                               input_size=70).predict(image).map
    served = np.load(io.BytesIO(response.content))
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5 * np.ptp(expected))
