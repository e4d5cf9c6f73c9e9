"""Core ML: a registry model -> an ML Program (``model.mlpackage``) for apps on Apple devices.

The network is exported with ``torch.export`` behind the image normalisation, so the package
takes an RGB image (0-255; Core ML's ``ImageType`` scales it by 1/255) and returns the network's
outputs by name (``depth`` ``(1, h, w)`` first). Its input sizes are the network sizes of the
common aspect ratios (:data:`ASPECTS`, by the entry's own resize rule: 518 x 518, 518 x 686,
686 x 518 ... for Depth Anything), as Core ML ``EnumeratedShapes``; a fixed-size entry has one.
fp16 (the default: the Neural Engine and the GPU compute in half precision) or fp32.

Two things differ from the PyTorch graph, so that one graph serves every size: the bilinear
resizes are written as products with interpolation matrices computed from the sizes
(coremltools maps PyTorch's resize only when its scale is a constant, which the DPT fusion of
an odd-sized grid is not), and the position embeddings are resampled the same way
(:func:`localdepth.networks.dinov2.bicubic_matrix`). The exported graph is compared with
PyTorch before the conversion: the same values to float rounding.

``model.json`` beside the package says what a caller needs: the input sizes, the
normalisation inside the model, the output's kind and units, from the registry entry. Reading
the package back (inputs, outputs, shapes, precision, operation count) works everywhere;
running it needs macOS (coremltools' Linux wheel converts only), where the conversion also
runs one prediction and compares it with PyTorch.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from ..registry import ModelSpec
from ..runtimes import require as _require
from . import ConversionError, weights_identity
from .calibration import Parity
from .source import Outputs, _symbolic_output_size, first_line, quiet

PRECISIONS = ("fp16", "fp32")
MODEL_FILE = "model.mlpackage"
INFO_FILE = "model.json"
#: width:height of the images the enumerated input sizes are made for (landscape and portrait)
ASPECTS = ((1, 1), (4, 3), (3, 4), (3, 2), (2, 3), (16, 9), (9, 16))
#: iOS 16 / macOS 13: ML Programs with enumerated image sizes, fp16 weights
DEPLOYMENT_TARGET = "iOS16"
OPTIONS = {p: {"converter": "torch.export+coremltools", "format": "mlprogram", "precision": p,
               "input": "image RGB 0-255, normalised inside", "aspects": [f"{w}:{h}" for w, h in ASPECTS],
               "target": DEPLOYMENT_TARGET, "version": 1} for p in PRECISIONS}
#: the prediction on macOS against PyTorch fp32, relative to the output range (as ONNX's)
TOLERANCES = {"fp16": {"max": 5e-2, "mean": 1e-2}, "fp32": {"max": 1e-3, "mean": 1e-4}}
#: the exported graph (matrix resizes) against the network, both PyTorch fp32
EXPORT_TOLERANCE = {"max": 1e-4, "mean": 1e-5}
#: a Core ML program's weights are ``const`` operations; those with more values than this count as weights
_WEIGHT_MIN_VALUES = 16


def require() -> None:
    _require("coreml")


def import_coremltools():
    """``coremltools``, imported without its notes about untested versions and missing native parts
    (its Linux wheel has no runtime; that is expected here)."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            import coremltools
    finally:
        logger.setLevel(level)
    return coremltools


# ----------------------------------------------------------------------------- input sizes and the description

def input_shapes(spec: ModelSpec) -> list[tuple[int, int]]:
    """``(height, width)`` network sizes of the images of :data:`ASPECTS` (the first: the default),
    by the entry's own resize rule; one size for a fixed-size entry."""
    from ..preprocess import network_size

    pre = spec.preprocessing
    if pre.fixed_hw:
        return [tuple(pre.fixed_hw)]
    shapes: list[tuple[int, int]] = []
    for w, h in ASPECTS:
        size = network_size(h * 1200, w * 1200, pre)  # a photo of that aspect ratio (any size: the rule scales it)
        if size not in shapes:
            shapes.append(size)
    return shapes


def describe(spec: ModelSpec, precision: str, shapes: list[tuple[int, int]], output_names: list[str]) -> dict:
    """What ``model.json`` says: the registry entry's facts a caller of the package needs."""
    from dataclasses import asdict

    from ..postprocess import describe_map

    pre = spec.preprocessing
    aspects = [f"{w}:{h}" for w, h in ASPECTS] if not pre.fixed_hw else ["any (stretched to the fixed size)"]
    info = {
        "model": spec.name, "family": spec.family, "source": spec.source, "licence": spec.licence,
        "commercial_use": spec.commercial_use,
        "format": "Core ML ML Program (.mlpackage)", "precision": precision, "minimum_deployment_target": DEPLOYMENT_TARGET,
        "input": {
            "name": "image", "type": "image", "color_layout": "RGB", "pixel_range": [0, 255],
            "sizes": [{"height": h, "width": w, "aspect": a} for (h, w), a in zip(shapes, aspects)],
            "default": {"height": shapes[0][0], "width": shapes[0][1]},
            "resize": {k: v for k, v in pre.as_dict().items() if k not in ("mean", "std", "max_pixels", "max_aspect")},
        },
        "normalisation": {"inside_model": True, "scale": 1 / 255, "mean": list(pre.mean), "std": list(pre.std),
                          "formula": "(pixel / 255 - mean) / std, per RGB channel"},
        "output": {
            "name": output_names[0], "shape": "(1, height, width): the input's height and width",
            "kind": spec.output, "units": spec.units, "metric": spec.metric,
            "convention": describe_map(spec.output, spec.metric), "max_depth": spec.max_depth,
            "resize_to_image": asdict(spec.postprocessing),
        },
        "other_outputs": output_names[1:],
    }
    if spec.metric_focal:
        info["output"]["metres"] = (f"focal_px * output / {spec.metric_focal:g}, the focal length in pixels of the "
                                    "network input")
    return info


# ----------------------------------------------------------------------------- the export

def _bilinear_matrix(n_out, n_in, align_corners: bool, dtype):
    """``(n_out, n_in)`` weights of PyTorch's bilinear resize along one axis, from tensor operations
    on the sizes (symbolic under ``torch.export``): ``src = dst * (in - 1) / (out - 1)`` with aligned
    corners, else ``(dst + 0.5) * in / out - 0.5`` clamped at 0; the two nearest cells, linearly."""
    import torch

    dst = torch.arange(n_out, dtype=torch.float32)
    cells = torch.arange(n_in, dtype=torch.float32)
    total_in, total_out = cells[-1:] + 1.0, dst[-1:] + 1.0  # the sizes as tensors: nothing specialises on them
    if align_corners:
        src = dst * ((total_in - 1.0) / torch.clamp(total_out - 1.0, min=1.0))
    else:
        src = torch.clamp((dst + 0.5) * (total_in / total_out) - 0.5, min=0.0)
    i0 = torch.minimum(torch.floor(src), total_in - 1.0)
    i1 = torch.minimum(i0 + 1.0, total_in - 1.0)
    t = (src - i0)[:, None]
    return ((1.0 - t) * (cells == i0[:, None]) + t * (cells == i1[:, None])).to(dtype)


@contextlib.contextmanager
def bilinear_as_products():
    """Inside this block, ``F.interpolate(mode="bilinear")`` to a size (or by an integer factor)
    is two products with :func:`_bilinear_matrix` weights: the same values, and a graph Core ML
    can take for every input size. Other calls go to PyTorch's own."""
    import torch
    import torch.nn.functional as F

    original = F.interpolate

    def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None, **kwargs):
        if mode != "bilinear" or x.dim() != 4 or kwargs.get("antialias"):
            return original(x, size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners, **kwargs)
        height, width = x.shape[-2:]
        if size is None:
            factors = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
            if not all(float(f).is_integer() for f in factors):
                return original(x, scale_factor=scale_factor, mode=mode, align_corners=align_corners, **kwargs)
            size = (height * int(factors[0]), width * int(factors[1]))
        size = (size, size) if not isinstance(size, (tuple, list, torch.Size)) else tuple(size)
        rows = _bilinear_matrix(size[0], height, bool(align_corners), x.dtype)
        cols = _bilinear_matrix(size[1], width, bool(align_corners), x.dtype)
        return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))

    F.interpolate = interpolate
    try:
        yield
    finally:
        F.interpolate = original


def _normalised(network, spec: ModelSpec, names: list[str]):
    """The network with the image normalisation in front: RGB in [0, 1] -> its outputs by name."""
    import torch

    class ImageInput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.outputs = Outputs(network, names)
            self.register_buffer("mean", torch.tensor(spec.preprocessing.mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(spec.preprocessing.std, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, image):
            return self.outputs((image - self.mean) / self.std)

    return ImageInput().eval()


def export(spec: ModelSpec, network, names: list[str]):
    """``torch.export`` of the normalised network: batch 1, height and width dynamic multiples of the
    entry's ``multiple_of`` (unless the entry's size is fixed), resizes as products."""
    import torch

    pre = spec.preprocessing
    module = _normalised(network, spec, names)
    m = pre.multiple_of
    h, w = pre.fixed_hw if pre.fixed_hw else (m * 8, m * 10)  # neither square nor a listed size: nothing specialises
    example = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    dims = None if pre.fixed_hw else {"image": {2: m * torch.export.Dim("patches_h", min=1, max=4096 // m),
                                                3: m * torch.export.Dim("patches_w", min=1, max=4096 // m)}}
    try:
        with _symbolic_output_size(), bilinear_as_products(), torch.no_grad(), quiet():
            exported = torch.export.export(module, (example,), dynamic_shapes=dims)
            exported = exported.run_decompositions({})
    except Exception as e:
        raise ConversionError(f"torch.export cannot export {spec.name} for Core ML: {first_line(e)[:300]}") from None
    return exported, module


def _check_export(exported, module, shapes, names) -> Parity:
    """The exported graph (what Core ML converts) against the network, on a non-default size."""
    import torch

    h, w = shapes[-1]
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    try:
        with torch.no_grad():
            ref = module(x)[0].float().numpy()
            out = exported.module()(x)[0].float().numpy()
    except Exception as e:  # a graph specialised to the example's size (a guard) or another failure
        raise ConversionError(f"the graph exported for Core ML does not run at {w}x{h}: {first_line(e)[:200]}") \
            from None
    return Parity.of("exported graph vs PyTorch fp32", "a random image", x.numpy(), out, ref, EXPORT_TOLERANCE)


def convert_package(spec: ModelSpec, exported, shapes, names, precision: str, info: dict):
    """coremltools' ML Program of ``exported``, with the enumerated image sizes and the description."""
    ct = import_coremltools()
    shape = (ct.EnumeratedShapes(shapes=[(1, 3, h, w) for h, w in shapes], default=(1, 3, *shapes[0]))
             if len(shapes) > 1 else (1, 3, *shapes[0]))
    try:
        with quiet(), contextlib.redirect_stderr(io.StringIO()):  # progress bars and notes
            model = ct.convert(
                exported, inputs=[ct.ImageType(name="image", shape=shape, scale=1 / 255.0,
                                               color_layout=ct.colorlayout.RGB)],
                outputs=[ct.TensorType(name=n, dtype=np.float32) for n in names], convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
                minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET))
    except Exception as e:
        raise ConversionError(f"coremltools cannot convert {spec.name}: {first_line(e)[:300]}") from None
    model.short_description = f"{spec.description} ({spec.output}, {spec.units}); localdepth export"
    model.license = spec.licence
    model.input_description["image"] = (f"RGB image, one of the sizes in model.json "
                                        f"(default {shapes[0][1]}x{shapes[0][0]}); normalised inside")
    model.output_description[names[0]] = f"{spec.output}, {spec.units}: (1, height, width)"
    model.user_defined_metadata["localdepth"] = json.dumps(info)
    return model


# ----------------------------------------------------------------------------- reading a package back

def read_back(path: Path) -> dict:
    """What a saved package holds, from its specification (no Core ML runtime needed): inputs with
    their sizes, outputs with their types, the weights' precision and the operation count."""
    ct = import_coremltools()
    spec = ct.utils.load_spec(str(path))
    inputs = []
    for item in spec.description.input:
        kind = item.type.WhichOneof("Type")
        entry: dict = {"name": item.name, "type": kind}
        if kind == "imageType":
            image = item.type.imageType
            entry["color_space"] = ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image.colorSpace)
            sizes = [(s.height, s.width) for s in image.enumeratedSizes.sizes] or [(image.height, image.width)]
            entry["sizes"] = [list(s) for s in sizes]
            entry["default"] = [image.height, image.width]
        inputs.append(entry)
    outputs = []
    for item in spec.description.output:
        array = item.type.multiArrayType
        outputs.append({"name": item.name, "type": item.type.WhichOneof("Type"),
                        "data_type": ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType),
                        "shape": list(array.shape)})
    operations: Counter = Counter()
    weights: Counter = Counter()
    program = spec.mlProgram.functions["main"]

    def walk(block):
        for op in block.operations:
            operations[op.type] += 1
            if op.type == "const" and op.outputs:
                tensor = op.outputs[0].type.tensorType
                count = int(np.prod([d.constant.size for d in tensor.dimensions])) if tensor.dimensions else 1
                if count > _WEIGHT_MIN_VALUES:
                    weights[ct.proto.MIL_pb2.DataType.Name(tensor.dataType)] += 1
            for inner in op.blocks:
                walk(inner)

    walk(program.block_specializations[program.opset])
    metadata = dict(spec.description.metadata.userDefined)
    return {"specification_version": spec.specificationVersion, "type": spec.WhichOneof("Type"),
            "opset": program.opset, "inputs": inputs, "outputs": outputs,
            "operations": sum(operations.values()), "operation_types": dict(operations.most_common()),
            "weights_by_type": dict(weights), "metadata": metadata}


def read_back_line(facts: dict) -> str:
    image = facts["inputs"][0]
    sizes = ", ".join(f"{w}x{h}" for h, w in image.get("sizes", []))
    outputs = ", ".join(f"{o['name']} ({o['data_type'].lower()})" for o in facts["outputs"])
    weights = ", ".join(f"{n} {t.lower()}" for t, n in sorted(facts["weights_by_type"].items()))
    return (f"core ml package read back: {facts['type']} ({facts['opset']}), input {image['name']} "
            f"({image['type']}, {image.get('color_space', '?')}) at {len(image.get('sizes', []))} sizes ({sizes}); "
            f"outputs {outputs}; weights {weights or 'none'}; {facts['operations']} operations")


# ----------------------------------------------------------------------------- on macOS: one prediction

def can_predict() -> bool:
    """Core ML runs models on macOS only (coremltools' Linux wheel has no runtime)."""
    return sys.platform == "darwin"


def predict_parity(path: Path, source, precision: str, shapes, names) -> Parity:
    """One prediction of the saved package against PyTorch fp32 on the same image (macOS only)."""
    import cv2
    import torch
    from PIL import Image

    ct = import_coremltools()
    h, w = shapes[0]
    rgb, label = source.check_rgb
    from ..images import to_uint8

    image = cv2.resize(to_uint8(rgb), (w, h), interpolation=cv2.INTER_AREA)
    pre = source.spec.preprocessing
    x = ((image.astype(np.float32) / 255.0 - np.float32(pre.mean)) / np.float32(pre.std)).transpose(2, 0, 1)[None]
    with torch.inference_mode():
        reference = source.network(torch.from_numpy(np.ascontiguousarray(x)))[names[0]].float().numpy()
    model = ct.models.MLModel(str(path))
    out = np.asarray(model.predict({"image": Image.fromarray(image)})[names[0]], dtype=np.float32)
    return Parity.of(f"core ml {precision} vs PyTorch fp32", label, x, out.reshape(reference.shape), reference,
                     TOLERANCES[precision])


# ----------------------------------------------------------------------------- the conversion

def check_exportable(spec: ModelSpec) -> None:
    """Refuse, in one line, what a Core ML package (one image in, maps out) cannot hold."""
    from ..networks import LOADERS

    if spec.format not in LOADERS or spec.temporal:
        raise ConversionError(f"{spec.name} does not export to Core ML: only image networks PyTorch runs do "
                              f"(video models keep state between frames; TFLite files are not PyTorch networks)")
    if spec.prompt is not None:
        raise ConversionError(f"{spec.name} takes a prompt depth, which the Core ML package (image only) has no "
                              "input for")
    if spec.preprocessing.layout != "nchw":
        raise ConversionError(f"{spec.name} takes NHWC input; Core ML export takes NCHW networks")


def make(job, folder: Path) -> dict:
    """Convert ``job`` into ``folder/model.mlpackage`` and ``model.json``; returns the report."""
    spec, precision = job.spec, job.target.precision
    check_exportable(spec)
    ct = import_coremltools()
    import torch

    names = job.source.output_names
    shapes = input_shapes(spec)
    info = describe(spec, precision, shapes, names)
    job.log(f"exporting {spec.name} to Core ML ({precision}, {len(shapes)} input sizes) ...")
    exported, module = export(spec, job.source.network, names)
    graph = _check_export(exported, module, shapes, names)
    if not graph.ok:
        raise ConversionError(f"refusing to convert for Core ML: {graph.line()}")
    model = convert_package(spec, exported, shapes, names, precision, info)
    target = folder / MODEL_FILE
    model.save(str(target))
    facts = read_back(target)
    info["weights_id"] = weights_identity(job.weights)
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    lines = [graph.line(), read_back_line(facts)]
    report = {"outputs": names, "input_sizes": [list(s) for s in shapes], "export_parity": graph.as_dict(),
              "package": {k: v for k, v in facts.items() if k != "metadata"},
              "versions": {"torch": torch.__version__, "coremltools": ct.__version__}}
    parity, line = prediction_check(target, job.source, precision, shapes, names)
    if parity is not None:
        report["parity"] = parity
    report["lines"] = [*lines, line]
    return report


def prediction_check(path: Path, source, precision: str, shapes, names) -> tuple[dict | None, str]:
    """On macOS, one prediction against PyTorch (refused over :data:`TOLERANCES`); elsewhere a note
    that says why there is none. Returns the parity (or None) and the line to print."""
    if not can_predict():
        return None, ("prediction not checked here: Core ML runs models on macOS only (coremltools' wheel for "
                      f"{sys.platform} converts and reads packages); on a Mac, export runs one and prints its "
                      "deviation from PyTorch")
    p = predict_parity(path, source, precision, shapes, names)
    if not p.ok:
        raise ConversionError(f"refusing to cache the Core ML {precision} package: {p.line()}")
    return p.as_dict(), p.line()


def package_paths(output: Path) -> tuple[Path, Path]:
    """Where :func:`write` puts the package and its JSON for ``--output``: ``NAME.mlpackage`` (the
    suffix added when missing) and ``NAME.json`` beside it."""
    output = Path(output)
    if output.suffix != ".mlpackage":
        output = output.with_name(output.name + ".mlpackage")
    return output, output.with_suffix(".json")


def write(converted, output: Path) -> tuple[Path, Path]:
    """Copy a cached package to ``output`` (a ``.mlpackage`` path) and its ``model.json`` beside it
    (``output`` with ``.json``). Returns both paths. The package (a folder) replaces an older one
    whole (:func:`localdepth.writers.replace_folder`), and the JSON is written last."""
    from ..writers import atomic_path, replace_folder

    output, info = package_paths(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(converted.path, staging)
    replace_folder(staging, output)
    with atomic_path(info) as tmp:
        shutil.copyfile(converted.folder / INFO_FILE, tmp)
    return output, info
