"""``localdepth export --format coreml``: an ML Program for apps, read back here (coremltools' Linux
wheel converts and reads packages; running one needs macOS, where the export also predicts once).

The expected input sizes are written out by hand from Depth Anything's published resize rule
(both sides at least 518, the aspect ratio kept, each side the nearest multiple of 14): 4:3 ->
518 x 690.7 -> 686; 3:2 -> 777 -> 784; 16:9 -> 920.9 -> 924. The JSON is compared with the
registry entry's fields.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

ct = pytest.importorskip("coremltools", reason="coremltools is not installed: pip install -e '.[coreml]'")
torch = pytest.importorskip("torch")

from localdepth import registry  # noqa: E402
from localdepth.conversion import ConversionError, coreml  # noqa: E402

DA2 = registry.get("depth-anything-v2-small")
#: (height, width): 1:1, 4:3, 3:4, 3:2, 2:3, 16:9, 9:16
DA_SIZES = [[518, 518], [518, 686], [686, 518], [518, 784], [784, 518], [518, 924], [924, 518]]


def _float_types(facts: dict) -> set[str]:
    return {kind for kind in facts["weights_by_type"] if kind.startswith("FLOAT")}


def _export(*args: str) -> int:
    from localdepth.cli.main import main

    return main(["export", "--format", "coreml", *args])


@pytest.fixture(scope="module")
def package(tiny_da_dir, tmp_path_factory):
    """The tiny Depth Anything exported once (fp16, the default): the package, its JSON, what export printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("coreml") / "da2s.mlpackage"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert _export("--model", "depth-anything-v2-small", "--weights", str(tiny_da_dir), "-o", str(out)) == 0
    return out, out.with_suffix(".json"), printed.getvalue()


def test_input_sizes_are_the_network_sizes_of_the_common_aspect_ratios():
    assert [list(s) for s in coreml.input_shapes(DA2)] == DA_SIZES
    assert coreml.input_shapes(registry.get("depth-pro")) == [(1536, 1536)]  # a fixed size: one


def test_package_reads_back_with_the_expected_inputs_outputs_and_precision(package):
    path, _, printed = package
    facts = coreml.read_back(path)
    assert facts["type"] == "mlProgram" and facts["specification_version"] >= 7  # iOS 16 / macOS 13
    (image,) = facts["inputs"]
    assert image["name"] == "image" and image["type"] == "imageType" and image["color_space"] == "RGB"
    assert image["sizes"] == DA_SIZES and image["default"] == [518, 518]
    (depth,) = facts["outputs"]
    assert depth["name"] == "depth" and depth["data_type"] == "FLOAT32"
    # fp16 by default; the one integer constant is the 37 cell indices of DINOv2's position-embedding grid
    assert _float_types(facts) == {"FLOAT16"} and facts["weights_by_type"].get("INT32", 0) <= 1
    assert facts["operations"] > 500 and facts["operation_types"]["conv"] >= 20  # the DPT head's convolutions
    assert "read back" in printed and "7 sizes" in printed


def test_the_json_beside_it_matches_the_registry_entry(package, tiny_da_dir):
    path, info_path, _ = package
    info = json.loads(info_path.read_text())
    pre = DA2.preprocessing
    assert (info["model"], info["licence"], info["source"]) == (DA2.name, DA2.licence, DA2.source)
    assert info["precision"] == "fp16" and info["format"].startswith("Core ML ML Program")
    assert [[s["height"], s["width"]] for s in info["input"]["sizes"]] == DA_SIZES
    assert info["input"]["resize"]["resize"] == pre.resize and info["input"]["resize"]["multiple_of"] == 14
    assert info["normalisation"]["inside_model"] is True
    assert info["normalisation"]["mean"] == list(pre.mean) and info["normalisation"]["std"] == list(pre.std)
    out = info["output"]
    assert (out["kind"], out["units"], out["metric"], out["max_depth"]) == ("disparity", DA2.units, False, None)
    assert out["resize_to_image"]["align_corners"] is True  # the entry's own resize back
    stored = json.loads(ct.utils.load_spec(str(path)).description.metadata.userDefined["localdepth"])
    assert stored == {k: v for k, v in info.items() if k != "weights_id"}  # the package carries the same


def test_metric_entries_say_metres():
    info = coreml.describe(registry.get("depth-anything-v2-metric-indoor-small"), "fp16", DA_SIZES, ["depth"])
    assert (info["output"]["kind"], info["output"]["units"], info["output"]["max_depth"]) == ("depth", "metres", 20.0)
    da3 = registry.get("da3-metric-large")
    info = coreml.describe(da3, "fp16", coreml.input_shapes(da3), ["depth"])
    assert "focal_px * output / 300" in info["output"]["metres"]


def test_on_linux_export_says_why_it_made_no_prediction(package):
    import sys

    _, _, printed = package
    assert sys.platform != "darwin"
    assert "prediction not checked here: Core ML runs models on macOS only" in printed


def test_on_macos_export_predicts_once_and_refuses_a_deviation(monkeypatch, tmp_path):
    """The macOS path (its prediction needs Core ML itself): the parity is printed, and one over
    tolerance refuses the package."""
    from localdepth.conversion.calibration import Parity

    x = np.zeros((1, 3, 2, 2), np.float32)
    ref = np.arange(4, dtype=np.float32).reshape(1, 2, 2)
    monkeypatch.setattr(coreml, "can_predict", lambda: True)
    for out, ok in ((ref + 0.01, True), (ref + 1.0, False)):
        monkeypatch.setattr(coreml, "predict_parity", lambda *a, out=out: Parity.of(
            "core ml fp16 vs PyTorch fp32", "photo", x, out, ref, coreml.TOLERANCES["fp16"]))
        if ok:
            parity, line = coreml.prediction_check(tmp_path, None, "fp16", DA_SIZES, ["depth"])
            assert parity["ok"] and line.startswith("parity core ml fp16 vs PyTorch fp32") and line.endswith("ok")
        else:
            with pytest.raises(ConversionError, match="refusing to cache the Core ML fp16 package"):
                coreml.prediction_check(tmp_path, None, "fp16", DA_SIZES, ["depth"])


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize(("size_in", "size_out"), [((5, 7), (10, 14)), ((3, 3), (5, 6)), ((37, 37), (518, 518)),
                                                   ((19, 25), (37, 49)), ((8, 9), (4, 3))])
def test_bilinear_as_products_equals_pytorch(align_corners, size_in, size_out):
    """The resize the export writes as products gives PyTorch's bilinear values (odd sizes too), to
    float rounding: measured at most 8.5e-6 on these unit-normal maps (37 -> 518, pixel centres)."""
    import torch.nn.functional as F

    x = torch.randn(2, 3, *size_in, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(x, size=size_out, mode="bilinear", align_corners=align_corners)
    with coreml.bilinear_as_products():
        got = F.interpolate(x, size=size_out, mode="bilinear", align_corners=align_corners)
        doubled = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    assert F.interpolate is not None and got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=3e-5)
    torch.testing.assert_close(doubled, F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True),
                               rtol=0, atol=3e-5)


def test_fp32_package(tiny_da_dir, tmp_path):
    out = tmp_path / "fp32.mlpackage"
    assert _export("--weights", str(tiny_da_dir), "--precision", "fp32", "-o", str(out)) == 0
    facts = coreml.read_back(out)
    assert _float_types(facts) == {"FLOAT32"}
    assert json.loads(out.with_suffix(".json").read_text())["precision"] == "fp32"


@pytest.mark.parametrize(("args", "message"), [
    (["--quantize", "int8"], "--quantize and --input-size apply to ONNX"),
    (["--model", "video-depth-anything-small"], "does not export to Core ML"),
    (["--model", "prompt-depth-anything-vits"], "prompt depth"),
])
def test_what_cannot_be_a_core_ml_package_is_one_line(args, message, tiny_da_dir, tiny_prompt_da_dir, tmp_path,
                                                      capsys):
    weights = tiny_prompt_da_dir if "prompt-depth-anything-vits" in args else tiny_da_dir
    code = _export("--weights", str(weights), *args, "-o", str(tmp_path / "x.mlpackage"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "x.mlpackage").exists()
