"""OpenVINO: the network's ``torch.export`` -> OpenVINO IR (fp32), and int8 by NNCF.

* ``fp32``: ``openvino.convert_model`` of the exported program, dynamic batch, height and
  width, fp32 weights; ``--dtype bf16`` runs this model with bf16 arithmetic (a compile
  option, :func:`localdepth.runtimes.openvino_config`). Checked against PyTorch fp32.
* ``int8``: NNCF post-training quantization (``nncf.quantize``: 8-bit weights and activations,
  statistics from calibration images) of the fp32 IR, or of the TFLite file read directly.
  Its cost is measured, not assumed: the deviation from fp32 on the calibration images and on
  held-out check images, stored in ``report.json`` and printed.

TFLite entries (PyDNet++) need no fp32 conversion: OpenVINO reads the ``.tflite`` file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runtimes import openvino_config, openvino_core, require as _require
from . import ConversionError, Target
from .calibration import DEFAULT_CALIBRATION, DEFAULT_CHECK, Parity, deviation, image_set, pooled
from .source import first_line, quiet

PRECISIONS = ("fp32", "int8")
MODEL_FILE = "model.xml"
OPTIONS = {
    "fp32": {"converter": "torch.export+openvino.convert_model", "weights": "fp32"},
    "int8": {"quantizer": "nncf.quantize", "preset": "performance", "fast_bias_correction": True},
}
#: relative to the output range; int8 is refused when its mean deviation on the check images is over
TOLERANCES = {"fp32": {"max": 1e-3, "mean": 1e-4}, "int8": {"max": 0.5, "mean": 5e-2}}


def require() -> None:
    _require("openvino")


def read_tflite(path: Path):
    """A TFLite model as OpenVINO reads it, with a dynamic batch (its height and width are fixed)
    and its weights as float32 constants (:func:`fold_weight_dequantization`)."""
    import openvino

    model = openvino_core().read_model(str(path))
    fold_weight_dequantization(model)
    shape = model.inputs[0].get_partial_shape()
    shape[0] = openvino.Dimension(-1)
    model.reshape({model.inputs[0]: shape})
    return model


def fold_weight_dequantization(model) -> int:
    """Replace the weights' dequantization (an int8 ``Constant`` -> ``Convert`` -> ``Multiply``
    by a scale, as OpenVINO reads a TFLite file's quantized weights) by the float32 weights
    themselves, in place; returns how many were folded.

    OpenVINO marks those subgraphs to keep them (``DisableConstantFolding``: compressed weights),
    and its CPU plugin computes them wrongly when a model is compiled for more than one stream
    (throughput mode): PyDNet++ gave all-NaN maps with two streams and the right ones with one
    (OpenVINO 2026.4; issue 19). Folded, the arithmetic is the same and every stream is right.
    The weights take 4 bytes instead of 1 (PyDNet++: 2 MB more).
    """
    from openvino import passes

    folded = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Convert" and op.input_value(0).get_node().get_type_name() == "Constant":
            info = op.get_rt_info()
            for key in [k for k in info.keys() if k.startswith("DisableConstantFolding")]:
                del info[key]
                folded += 1
    if folded:
        manager = passes.Manager()
        manager.register_pass(passes.ConstantFolding())
        manager.run_passes(model)
    return folded


def convert_exported(exported, output_names: list[str]):
    """``openvino.convert_model`` of a ``torch.export`` program, inputs and outputs named."""
    import openvino

    try:
        with quiet():
            model = openvino.convert_model(exported)
    except Exception as e:
        raise ConversionError(f"OpenVINO cannot convert the network: {first_line(e)[:300]}") from None
    model.inputs[0].get_tensor().set_names({"pixel_values"})
    for output, name in zip(model.outputs, output_names):
        output.get_tensor().set_names({name})
    return model


def run(compiled, x: np.ndarray) -> np.ndarray:
    """The first output (depth) of a compiled model for ``x``, as a float32 array ``(N, h, w)``."""
    out = np.array(compiled({0: np.ascontiguousarray(x, dtype=np.float32)})[compiled.outputs[0]], dtype=np.float32)
    return squeeze_channel(out)


def squeeze_channel(out: np.ndarray) -> np.ndarray:
    """``(N, 1, h, w)`` or ``(N, h, w, 1)`` (TFLite) -> ``(N, h, w)``."""
    if out.ndim == 4:
        return out[..., 0] if out.shape[-1] == 1 else out[:, 0]
    return out


def _fp32_model(job):
    """The fp32 model an int8 one is made from, and the lines its conversion reported."""
    if job.spec.format == "tflite":
        return read_tflite(Path(job.weights.path)), []
    fp32 = job.ensure(Target("openvino", "fp32"))
    return openvino_core().read_model(str(fp32.path)), fp32.lines()


def make(job, folder: Path) -> dict:
    import openvino

    precision = job.target.precision
    target = folder / MODEL_FILE
    if precision == "fp32":
        if job.spec.format == "tflite":
            raise ConversionError(f"{job.spec.name} needs no conversion: OpenVINO reads its TFLite file directly")
        job.log(f"converting {job.spec.name} to OpenVINO IR (dynamic batch/height/width)")
        model = convert_exported(job.source.exported, job.source.output_names)
        x, label = job.source.check
        job.log(f"checking the OpenVINO fp32 model against PyTorch on {_short(label)}")
        compiled = openvino_core().compile_model(model, "CPU", openvino_config("fp32"))
        p = Parity.of("openvino fp32 vs PyTorch fp32", label, x, run(compiled, x), job.source.reference(x)["depth"],
                      TOLERANCES["fp32"])
        if not p.ok:
            raise ConversionError(f"refusing to cache the OpenVINO fp32 model: {p.line()}")
        openvino.save_model(model, str(target), compress_to_fp16=False)
        return {"outputs": job.source.output_names, "parity": p.as_dict(), "lines": [p.line()],
                "versions": {"openvino": openvino.__version__}}
    return _quantize(job, target)


def _quantize(job, target: Path) -> dict:
    import openvino

    _require("nncf")
    import nncf

    from ..preprocess import preprocess

    settings = job.settings
    model, lines = _fp32_model(job)
    job.log("reading the calibration and check images")
    calibration = image_set(settings.calibration, settings.calibration_count or DEFAULT_CALIBRATION)
    check = image_set(settings.check_images, DEFAULT_CHECK, check=True)
    pre = job.spec.preprocessing
    cal_inputs = [preprocess(rgb, pre, settings.input_size)[None] for rgb in calibration.images]
    check_inputs = [preprocess(rgb, pre, settings.input_size)[None] for rgb in check.images]
    job.log(f"quantizing {job.spec.name} to int8 with NNCF on {calibration.count} calibration images "
            f"({'the built-in synthetic set' if calibration.source == 'synthetic' else calibration.source})")
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if settings.model_type == "transformer" else {}
    try:
        with quiet():
            quantized = nncf.quantize(model, nncf.Dataset(cal_inputs), subset_size=len(cal_inputs),
                                      preset=nncf.QuantizationPreset.PERFORMANCE, fast_bias_correction=True,
                                      **kwargs)
    except Exception as e:
        raise ConversionError(f"NNCF cannot quantize {job.spec.name}: {first_line(e)[:300]}") from None
    core = openvino_core()
    reference = core.compile_model(model, "CPU", openvino_config("fp32"))
    compiled = core.compile_model(quantized, "CPU", openvino_config("int8"))
    measured = {}
    job.log(f"measuring the int8 deviation from fp32 on {len(cal_inputs) + len(check_inputs)} images")
    for name, inputs in (("calibration", cal_inputs), ("check", check_inputs)):
        measured[name] = pooled([deviation(run(compiled, x), run(reference, x)) for x in inputs])
    tol = TOLERANCES["int8"]
    ok = measured["check"]["mean_rel"] <= tol["mean"] and measured["check"]["max_rel"] <= tol["max"]
    line = (f"deviation int8 vs fp32 (of the output range): {_dev(measured['calibration'])} on the "
            f"{calibration.count} calibration images, {_dev(measured['check'])} on {check.count} check images"
            f" ({'synthetic' if check.source == 'synthetic' else check.source}); tolerance "
            f"{tol['mean']:g} mean {'ok' if ok else 'FAILED'}")
    if not ok:
        raise ConversionError(f"refusing to cache the int8 model: {line}")
    openvino.save_model(quantized, str(target), compress_to_fp16=False)
    return {"outputs": [o.get_any_name() for o in model.outputs],
            "calibration": calibration.describe(), "check_images": check.describe(),
            "deviation": measured, "nncf_model_type": settings.model_type or "default",
            "inference_precision": openvino_config("int8")["INFERENCE_PRECISION_HINT"],
            "lines": [*lines, line], "versions": {"openvino": openvino.__version__, "nncf": nncf.__version__}}


def _short(label: str) -> str:
    """The check image's name, without the advice a synthetic one carries."""
    return label.split(" (")[0]


def _dev(d: dict) -> str:
    return f"mean {d['mean_rel']:.2e}, max {d['max_rel']:.2e}"
