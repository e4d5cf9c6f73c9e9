"""Exporting Transformers models to ONNX, with a parity check against PyTorch.

The exported graph takes ``pixel_values`` ``(N, 3, h, w)`` float32 and returns
``predicted_depth`` ``(N, h, w)`` float32, with dynamic ``N``, ``h`` and ``w`` (``h``, ``w``
multiples of the model's patch size). Variants:

* ``fp32``: the exported graph;
* ``fp16``: weights and activations in half precision, float32 inputs and outputs
  (ONNX Runtime's ``convert_float_to_float16`` with ``keep_io_types``), for GPUs;
* ``int8``: ONNX Runtime dynamic quantization of the transformer's MatMul weights, for CPUs.

Every variant is compared with PyTorch fp32 on one image before it is written; a variant
whose error is over its tolerance is refused. Exports are cached beside the weights in
``weights.model_dir(spec)/onnx/<identity>/<variant>.onnx`` (``identity`` hashes the config and
the weight files' contents), where ``--backend onnx`` and ``--backend auto`` find them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import LocalDepthError
from .registry import ModelSpec
from .weights import ResolvedWeights, model_dir, sha256_of

VARIANTS = ("fp32", "fp16", "int8")
OPSET = 18

#: largest allowed error, relative to the largest absolute value PyTorch predicts on the check image
#: (``max``: worst pixel, ``mean``: average). int8 is judged on the mean: a few pixels move more.
TOLERANCES = {
    "fp32": {"max": 1e-3, "mean": 1e-4},
    "fp16": {"max": 5e-2, "mean": 1e-2},
    "int8": {"max": 1.0, "mean": 5e-2},
}

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ExportError(LocalDepthError):
    """The model could not be exported, or its export does not match PyTorch."""


@dataclass
class Parity:
    """Error of one exported variant against PyTorch fp32 on one image."""

    variant: str
    image: str  # what the check ran on
    input_shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    reference_max: float  # max |PyTorch output|: the scale the tolerances are relative to
    ok: bool

    @property
    def max_rel(self) -> float:
        return self.max_abs / self.reference_max if self.reference_max > 0 else float(self.max_abs > 0)

    @property
    def mean_rel(self) -> float:
        return self.mean_abs / self.reference_max if self.reference_max > 0 else float(self.mean_abs > 0)

    def line(self) -> str:
        tol = TOLERANCES[self.variant]
        verdict = "ok" if self.ok else "FAILED"
        return (f"parity {self.variant} vs PyTorch fp32 on {self.image} {tuple(self.input_shape)}: "
                f"max abs {self.max_abs:.3g}, mean abs {self.mean_abs:.3g} "
                f"({self.max_rel:.2e} / {self.mean_rel:.2e} of the output range; "
                f"tolerance {tol['max']:g} / {tol['mean']:g}) {verdict}")

    def as_dict(self) -> dict:
        return {**asdict(self), "max_rel": self.max_rel, "mean_rel": self.mean_rel}


# ----------------------------------------------------------------------------- identity and cache

def weights_identity(resolved: ResolvedWeights) -> str:
    """A short content hash of a Hugging Face-format folder (config + weight files).

    Files in the Hugging Face cache are symlinks to blobs named by their sha256, which is used
    as is; other files are hashed.
    """
    folder = Path(resolved.path)
    digest = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.name == "config.json":
            digest.update(p.read_bytes())
        elif p.suffix in (".safetensors", ".bin"):
            target = p.resolve()
            if _HEX64.match(target.name):
                blob = target.name
            else:
                st = target.stat()
                blob = _file_sha256(str(target), st.st_size, st.st_mtime_ns)
            digest.update(f"{p.name}:{blob}".encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered for the process while its size and mtime stay the same."""
    return sha256_of(Path(path))


def cache_path(spec: ModelSpec, resolved: ResolvedWeights, variant: str = "fp32") -> Path:
    """Where the export of ``variant`` of these weights lives (it may not exist yet)."""
    if variant not in VARIANTS:
        raise ExportError(f"unknown ONNX variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    return model_dir(spec) / "onnx" / weights_identity(resolved) / f"{variant}.onnx"


def cached_export(spec: ModelSpec, resolved: ResolvedWeights, variant: str = "fp32") -> Path | None:
    if spec.format != "transformers" or not Path(resolved.path).is_dir():
        return None
    if not (model_dir(spec) / "onnx").is_dir():
        return None  # nothing was ever exported: no need to hash the weights
    path = cache_path(spec, resolved, variant)
    return path if path.is_file() else None


# ----------------------------------------------------------------------------- export

def _depth_only(model):
    """Wrap a network (:mod:`localdepth.networks`) as tensor -> depth tensor (what the ONNX graph computes)."""
    import torch

    class DepthOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values)["depth"]

    return DepthOnly(model).eval()


@contextlib.contextmanager
def _symbolic_output_size():
    """Depth Anything's head casts its output size with ``int()``, which freezes H and W in an
    export; inside this block that cast keeps symbolic sizes symbolic."""
    import builtins

    import torch
    from transformers.models.depth_anything import modeling_depth_anything as mda

    def keep_symbolic(value):
        return value if isinstance(value, torch.SymInt) else builtins.int(value)

    had = "int" in vars(mda)
    old = vars(mda).get("int")
    mda.int = keep_symbolic
    try:
        yield
    finally:
        if had:
            mda.int = old
        else:
            del mda.int


def _example_input(spec: ModelSpec):
    import torch

    pre = spec.preprocessing
    if pre.fixed_hw:
        h, w = pre.fixed_hw
    else:
        m = pre.multiple_of
        h, w = m * 8, m * 10  # not square and not the default size, so nothing specialises on it
    return torch.randn(2, 3, h, w)


def export_fp32(model, spec: ModelSpec, output: Path, *, opset: int = OPSET) -> Path:
    """Export ``model`` (a Transformers depth model, fp32, CPU) to ``output`` with dynamic shapes."""
    import torch

    wrapped = _depth_only(model)
    example = _example_input(spec)
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = {0: batch}
    if not spec.preprocessing.fixed_hw:
        m = spec.preprocessing.multiple_of
        dynamic[2] = m * torch.export.Dim("patches_h", min=1, max=1024 // m * 4)
        dynamic[3] = m * torch.export.Dim("patches_w", min=1, max=1024 // m * 4)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _symbolic_output_size(), torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                wrapped, (example,), input_names=["pixel_values"], output_names=["predicted_depth"],
                dynamic_shapes={"pixel_values": dynamic}, dynamo=True, opset_version=opset, verbose=False,
            )
            program.save(str(output))
    except Exception as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # the exporter colours its messages
        first = text.splitlines()[0] if text else type(e).__name__
        raise ExportError(f"torch.onnx.export cannot export {spec.name} with dynamic shapes: {first[:300]}") from None
    return output


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter prints progress lines and warnings about torchvision ops; keep the CLI clean."""
    import io
    import logging
    import warnings
    from contextlib import redirect_stdout

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.setLevel(level)


def make_variant(fp32_path: Path, variant: str, output: Path) -> Path:
    """Derive the ``fp16`` or ``int8`` variant from an exported fp32 model."""
    import onnx

    output.parent.mkdir(parents=True, exist_ok=True)
    if variant == "fp32":
        if fp32_path != output:
            onnx.save(onnx.load(str(fp32_path)), str(output))
        return output
    if variant == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
        onnx.save(model, str(output))
        return output
    if variant == "int8":
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        # MatMul only: the ViT's linear layers carry most FLOPs and have fast int8 kernels on CPUs;
        # ConvInteger is slower than float convolutions in ONNX Runtime.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs advice about pre-processing to the root logger
        try:
            quantize_dynamic(str(fp32_path), str(output), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul"], per_channel=True)
        finally:
            root.setLevel(level)
        return output
    raise ExportError(f"unknown ONNX variant '{variant}'; choose one of {', '.join(VARIANTS)}")


# ----------------------------------------------------------------------------- parity

def check_input(spec: ModelSpec, image_path: str | os.PathLike | None, input_size: int | None = None):
    """The parity check's input ``(1, 3, h, w)`` float32 and its description.

    A real photo when one is given; otherwise a deterministic synthetic scene (said so in the report).
    """
    from .images import load_image
    from .preprocess import preprocess

    if image_path is not None:
        rgb = load_image(image_path)
        label = Path(image_path).name
    else:
        rgb = synthetic_image()
        label = "a synthetic test image (pass --check-image PHOTO for a real one)"
    return preprocess(rgb, spec.preprocessing, input_size)[None], label


def synthetic_image(height: int = 480, width: int = 640) -> np.ndarray:
    """A smooth scene with edges (a ramp, a disc and a bar), uint8 RGB."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin(xx / 37.0) * np.cos(yy / 23.0)], -1)
    disc = (xx - width * 0.6) ** 2 + (yy - height * 0.45) ** 2 < (height * 0.2) ** 2
    img[disc] = (0.9, 0.2, 0.1)
    img[int(height * 0.7):int(height * 0.8), width // 8: width // 2] = (0.1, 0.1, 0.8)
    return (img * 255).astype(np.uint8)


def onnx_session(path: Path, *, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parity(path: Path, variant: str, reference: np.ndarray, x: np.ndarray, label: str) -> Parity:
    """Compare the ONNX model at ``path`` with the PyTorch output ``reference`` for input ``x``."""
    session = onnx_session(path)
    out = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    if out.shape != reference.shape:
        return Parity(variant, label, tuple(x.shape), float("inf"), float("inf"),
                      float(np.abs(reference).max()), False)
    err = np.abs(out.astype(np.float64) - reference.astype(np.float64))
    ref_max = float(np.abs(reference).max())
    p = Parity(variant, label, tuple(x.shape), float(err.max()), float(err.mean()), ref_max, False)
    tol = TOLERANCES[variant]
    p.ok = bool(np.isfinite(out).all()) and p.max_rel <= tol["max"] and p.mean_rel <= tol["mean"]
    return p


# ----------------------------------------------------------------------------- the whole job

@dataclass
class ExportReport:
    variant: str
    path: Path  # the cached model
    parity: Parity
    seconds: float
    cached: bool  # True when an earlier export was reused
    fp32_parity: Parity | None = None  # for fp16/int8: the fp32 graph they derive from


def export(spec: ModelSpec, resolved: ResolvedWeights, variant: str = "fp32", *,
           check_image: str | os.PathLike | None = None, input_size: int | None = None,
           force: bool = False, log=None) -> ExportReport:
    """Export (or reuse) ``variant`` of ``spec``'s weights into the cache, checked against PyTorch.

    Raises :class:`ExportError` when the export fails or its parity is over tolerance; nothing
    is written to the cache then.
    """
    if spec.format != "transformers":
        raise ExportError(f"{spec.name} is a {spec.format} model; only Transformers models export to ONNX")
    if spec.prompt is not None:
        raise ExportError(f"{spec.name} takes a prompt depth, for which the ONNX model (pixel_values only) has no "
                          "input; use --backend torch")
    if not Path(resolved.path).is_dir():
        raise ExportError(f"{resolved.path} is already an exported model; pass the Hugging Face folder instead")
    if variant not in VARIANTS:
        raise ExportError(f"unknown ONNX variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    from .backends import require_onnx_extra

    require_onnx_extra()
    log = log or (lambda line: None)
    target = cache_path(spec, resolved, variant)
    report_file = target.with_suffix(".json")
    if target.is_file() and report_file.is_file() and not force:
        saved = json.loads(report_file.read_text())
        p = saved["parity"]
        p.pop("max_rel", None), p.pop("mean_rel", None)
        p["input_shape"] = tuple(p["input_shape"])
        return ExportReport(variant, target, Parity(**p), 0.0, True)

    import torch

    from .backends.torch_backend import TorchBackend

    t0 = time.perf_counter()
    model = TorchBackend(spec, Path(resolved.path), device="cpu", dtype="fp32").model
    if getattr(model, "extra_outputs", False):
        raise ExportError(f"{spec.name} predicts more than depth (a camera), which the ONNX model (depth only) would "
                          "lose; use --backend torch")
    x, label = check_input(spec, check_image, input_size)
    try:
        with torch.inference_mode():
            reference = model(torch.from_numpy(x))["depth"].numpy()
    except Exception as e:  # the model itself cannot run this input: nothing to compare with
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"PyTorch cannot run {spec.name} on the check input {tuple(x.shape)}: {first[:200]}; "
                          f"try another --check-image or --input-size") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export.") as tmp:
        fp32_tmp = Path(tmp) / "fp32.onnx"
        fp32_cached = cache_path(spec, resolved, "fp32")
        fp32_parity = None
        if fp32_cached.is_file() and not force:
            fp32_tmp = fp32_cached
        else:
            log(f"exporting {spec.name} to ONNX (opset {OPSET}, dynamic batch/height/width) ...")
            export_fp32(model, spec, fp32_tmp)
        if variant == "fp32":
            result = parity(fp32_tmp, "fp32", reference, x, label)
            if not result.ok:
                raise ExportError(f"refusing to write the fp32 model: {result.line()}")
            if fp32_tmp != target:
                os.replace(fp32_tmp, target)
        else:
            fp32_parity = parity(fp32_tmp, "fp32", reference, x, label)
            if not fp32_parity.ok:
                raise ExportError(f"the fp32 export does not match PyTorch: {fp32_parity.line()}")
            log(f"making the {variant} variant ...")
            variant_tmp = make_variant(fp32_tmp, variant, Path(tmp) / f"{variant}.onnx")
            result = parity(variant_tmp, variant, reference, x, label)
            if not result.ok:
                raise ExportError(f"refusing to write the {variant} model: {result.line()}")
            if fp32_tmp != fp32_cached:  # keep the checked fp32 graph: later variants derive from it
                os.replace(fp32_tmp, fp32_cached)
                _write_report(fp32_cached, spec, fp32_parity)
            os.replace(variant_tmp, target)
        _write_report(target, spec, result)
    return ExportReport(variant, target, result, time.perf_counter() - t0, False, fp32_parity)


def _write_report(model_path: Path, spec: ModelSpec, p: Parity) -> None:
    import onnxruntime
    import torch
    import transformers

    from .writers import atomic_write_bytes

    info = {"model": spec.name, "parity": p.as_dict(), "opset": OPSET, "torch": torch.__version__,
            "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_bytes(model_path.with_suffix(".json"), (json.dumps(info, indent=2) + "\n").encode())


def ensure_exported(spec: ModelSpec, resolved: ResolvedWeights, variant: str = "fp32", *, log=None) -> Path:
    """The cached export of ``variant``, exporting it first (once) when there is none."""
    found = cached_export(spec, resolved, variant)
    if found is not None:
        return found
    return export(spec, resolved, variant, log=log).path
