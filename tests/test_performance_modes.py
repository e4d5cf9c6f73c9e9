"""Every backend x performance mode x model family the backend takes, against the latency path.

``localdepth run a.jpg`` loads a model in latency mode and predicts one image; ``localdepth run
a.jpg b.jpg`` loads it in throughput mode and runs the pipelined runner (OpenVINO then keeps
several infer requests in flight, one per stream). Both must write the same maps. The reference
of each case is the same backend and precision in latency mode, predicting one image at a time
(``DepthEstimator.predict``); the case runs the runner over a folder in the given mode, as the
CLI does, with batches of two.

OpenVINO gets two streams in throughput mode here whatever the machine (its own choice depends
on the core count: one on a one-core machine, many on CI's): the defect this file was written
for (all-zero PyDNet++ maps, issue 19) needs two or more.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import localdepth
from localdepth import runtimes
from localdepth.conversion.calibration import synthetic_scene
from localdepth.inputs import expand_inputs
from localdepth.runner import Runner
from localdepth.writers import WriteOptions

from tolerance import within

#: (backend, dtype, family): what each backend takes. Converted backends (ONNX Runtime, OpenVINO)
#: take the PyTorch networks that export with dynamic shapes (Depth Anything and its metric head;
#: Depth Anything 3 does not export, and says so in one line) and OpenVINO reads the TFLite file
#: too; LiteRT runs the TFLite file only; PyTorch runs every PyTorch network.
CASES = [
    ("torch", "fp32", "relative"), ("torch", "fp32", "metric"), ("torch", "fp32", "da3"),
    ("onnx", "fp32", "relative"), ("onnx", "fp32", "metric"),
    ("openvino", "fp32", "relative"), ("openvino", "fp32", "metric"), ("openvino", "fp32", "pydnet"),
    ("openvino", "bf16", "relative"), ("openvino", "int8", "relative"),
    ("tflite", "fp32", "pydnet"),
]
MODES = ("latency", "throughput")
INPUT_SIZE = 70
# measured (max |mode - latency| / range over the three images; docs/testing.md, Tolerances): 0
# for ONNX Runtime, OpenVINO and LiteRT; PyTorch 5.9e-6 (metric head; the runner's batch of two
# against predict's batch of one: other kernels). Broken OpenVINO streams gave all-zero maps.
TOLERANCE = 5e-5


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One localdepth home for the module, so each model is converted once."""
    return tmp_path_factory.mktemp("modes-home")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three scenes, two of one size (a batch of two) and one of another."""
    folder = tmp_path_factory.mktemp("modes-in")
    for i, (h, w) in enumerate([(60, 80), (60, 80), (72, 56)]):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(synthetic_scene(i, h, w), cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def da3_folder(tmp_path_factory):
    from test_da3_outputs import TINY_ANY_VIEW, save_tiny

    return save_tiny(tmp_path_factory.mktemp("modes-da3") / "tiny", "da3-small", TINY_ANY_VIEW), TINY_ANY_VIEW


@pytest.fixture
def model(request, home, monkeypatch, tiny_da_dir, tiny_metric_dir, da3_folder):
    """``(registry name, weights, input size)`` of a family, with the module's home."""
    monkeypatch.setenv("LOCALDEPTH_HOME", str(home))
    family = request.param
    if family == "relative":
        return "depth-anything-v2-small", tiny_da_dir, INPUT_SIZE
    if family == "metric":
        return "depth-anything-v2-metric-indoor-small", tiny_metric_dir, INPUT_SIZE
    if family == "da3":
        from localdepth.networks.da3 import ARCHITECTURES

        folder, arch = da3_folder
        monkeypatch.setitem(ARCHITECTURES, "da3-small", arch)
        return "da3-small", folder, INPUT_SIZE
    return "pydnet", request.getfixturevalue("pydnet_file"), None


@pytest.fixture
def two_streams(monkeypatch):
    """OpenVINO's throughput mode with two streams on any machine (see the module docstring)."""
    config = runtimes.openvino_config

    def with_two_streams(precision, *, performance="latency", **kwargs):
        settings = config(precision, performance=performance, **kwargs)
        if performance != "throughput":
            return settings
        threads = max(2, int(settings.get("INFERENCE_NUM_THREADS", 2)))  # a stream needs a thread
        return {**settings, "NUM_STREAMS": 2, "INFERENCE_NUM_THREADS": threads}

    monkeypatch.setattr(runtimes, "openvino_config", with_two_streams)
    from localdepth.backends import openvino_backend

    monkeypatch.setattr(openvino_backend, "openvino_config", with_two_streams)


def _load(name, weights, input_size, backend, dtype, performance):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyDNet++'s research-only licence
        return localdepth.load(name, weights=weights, backend=backend, dtype=dtype, device="cpu",
                               input_size=input_size, performance=performance, threads=2)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("backend", "dtype", "model"), [(b, d, f) for b, d, f in CASES],
                         indirect=["model"], ids=[f"{b}-{d}-{f}" for b, d, f in CASES])
def test_each_mode_writes_the_latency_maps(backend, dtype, model, mode, images, tmp_path, two_streams):
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    if backend == "openvino":
        pytest.importorskip("openvino")
        if dtype == "int8":
            pytest.importorskip("nncf")
        if dtype == "bf16" and not runtimes.cpu_has_bf16():
            pytest.skip("this CPU has no native bf16 (OpenVINO would run fp32)")
    name, weights, input_size = model
    reference = _load(name, weights, input_size, backend, dtype, "latency")
    est = _load(name, weights, input_size, backend, dtype, mode)
    assert (est.backend.name, est.backend.dtype) == (backend, dtype)
    if backend == "openvino" and mode == "throughput":
        assert est.backend.parallel_requests >= 2, "throughput mode must keep several requests in flight"
    items = expand_inputs([str(images)])
    summary = Runner(est, tmp_path, WriteOptions(formats=("npy",)), batch_size=2, progress=False).run(items)
    assert summary.ok == 3, [o.error for o in summary.outcomes]
    for item in items:
        stem = item.rel.with_suffix("").as_posix()
        want = reference.predict(item.source).map
        got = np.load(tmp_path / f"{stem}.npy")
        sidecar = json.loads((tmp_path / f"{stem}.json").read_text())
        assert got.shape == want.shape and np.isfinite(got).all()
        assert np.ptp(want) > 0 and sidecar["range"]["max"] > sidecar["range"]["min"], sidecar["range"]
        within(np.abs(got - want).max() / np.ptp(want), TOLERANCE, "max |mode - latency| / range", at=stem)
    reference.backend.close()
    est.backend.close()
