"""ONNX: the network's ``torch.export`` -> an ONNX graph, and its fp16 and int8 variants.

The graph takes ``pixel_values`` and returns the network's outputs by name (``depth`` first),
with dynamic batch, height and width. Precisions:

* ``fp32``: the exported graph;
* ``fp16``: weights and activations in half precision, float32 inputs and outputs (ONNX
  Runtime's ``convert_float_to_float16`` with ``keep_io_types``), for GPUs;
* ``int8``: ONNX Runtime dynamic quantization of the MatMul weights, for CPUs.

Each is compared with PyTorch fp32 on one image before it is cached.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..runtimes import onnx_session, require as _require
from . import ConversionError, Target
from .calibration import Parity
from .source import first_line, quiet

PRECISIONS = ("fp32", "fp16", "int8")
OPSET = 18
MODEL_FILE = "model.onnx"
#: what shapes each precision's graph (the cache key hashes it)
OPTIONS = {
    "fp32": {"exporter": "torch.export+torch.onnx", "opset": OPSET},
    "fp16": {"exporter": "torch.export+torch.onnx", "opset": OPSET, "fp16": "onnxruntime float16, io fp32"},
    "int8": {"exporter": "torch.export+torch.onnx", "opset": OPSET, "int8": "onnxruntime dynamic, MatMul, per-channel"},
}
#: largest error relative to the output range (max: worst pixel, mean: average). int8 is judged
#: on the mean: a few pixels move more.
TOLERANCES = {
    "fp32": {"max": 1e-3, "mean": 1e-4},
    "fp16": {"max": 5e-2, "mean": 1e-2},
    "int8": {"max": 0.5, "mean": 5e-2},
}


def require() -> None:
    _require("onnx")


def export_graph(exported, output_names: list[str], path: Path, *, opset: int = OPSET) -> Path:
    """Write ``exported`` (a ``torch.export`` program) as an ONNX graph at ``path``."""
    import torch

    try:
        with quiet():
            program = torch.onnx.export(exported, input_names=["pixel_values"], output_names=output_names,
                                        dynamo=True, opset_version=opset, verbose=False)
            program.save(str(path))
    except Exception as e:
        raise ConversionError(f"torch.onnx.export cannot export the network: {first_line(e)[:300]}") from None
    return path


def derive(fp32_path: Path, precision: str, path: Path) -> Path:
    """The ``fp16`` or ``int8`` graph derived from the fp32 one."""
    import onnx

    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True), str(path))
        return path
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # MatMul only: the ViT's linear layers carry most FLOPs and have fast int8 kernels on CPUs;
        # ConvInteger is slower than float convolutions in ONNX Runtime.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs advice about pre-processing to the root logger
        try:
            quantize_dynamic(str(fp32_path), str(path), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul"], per_channel=True)
        finally:
            root.setLevel(level)
        return path
    raise ConversionError(f"unknown ONNX precision '{precision}'; choose one of {', '.join(PRECISIONS)}")


def parity(path: Path, precision: str, source) -> Parity:
    """The graph at ``path`` against PyTorch fp32 on the source's check input."""
    x, label = source.check
    reference = source.reference(x)["depth"]
    session = onnx_session(path, device="cpu")
    out = session.run(["depth"], {"pixel_values": x})[0]
    return Parity.of(f"onnx {precision} vs PyTorch fp32", label, x, out, reference, TOLERANCES[precision])


def make(job, folder: Path) -> dict:
    """Convert ``job`` into ``folder/model.onnx``; returns the report (see :mod:`localdepth.conversion`)."""
    precision = job.target.precision
    if job.spec.format == "tflite":
        raise ConversionError(f"{job.spec.name} is a TFLite model; only PyTorch networks export to ONNX")
    target = folder / MODEL_FILE
    lines = []
    if precision == "fp32":
        job.log(f"exporting {job.spec.name} to ONNX (opset {OPSET}, dynamic batch/height/width)")
        export_graph(job.source.exported, job.source.output_names, target)
    else:
        fp32 = job.ensure(Target("onnx", "fp32"))
        lines += fp32.lines()
        job.log(f"making the ONNX {precision} model")
        derive(fp32.path, precision, target)
    job.log(f"checking the ONNX {precision} model against PyTorch on {job.source.check[1].split(' (')[0]}")
    p = parity(target, precision, job.source)
    if not p.ok:
        raise ConversionError(f"refusing to cache the ONNX {precision} model: {p.line()}")
    import onnxruntime
    import torch

    return {"outputs": job.source.output_names, "parity": p.as_dict(), "lines": [*lines, p.line()],
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}}
