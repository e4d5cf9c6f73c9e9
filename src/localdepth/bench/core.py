"""``localdepth bench``: models x backends x dtypes x sizes x batch sizes, against the Transformers pipeline.

For each model, one set of weights is used throughout (the released ones when they are on the
machine, else random weights of the released architecture), and every variant (backend x dtype)
is loaded first and then measured in **interleaved rounds**: each round times every variant and
the Transformers ``pipeline("depth-estimation")`` once, so load that changes during the run
(shared machines) weighs on all of them alike, and the ratios compare like with like.

Per variant and round:

* model-only: the backend's forward on a preprocessed batch (on CUDA, device tensors in and out;
  elsewhere NumPy in and out, as ``localdepth run`` calls it: MLX and MPS rows include the copies);
* end to end, one batch at a time: files on disk -> decode -> preprocess -> infer -> ``.npy`` +
  sidecar written, through :class:`localdepth.runner.Runner` (pipelined, latency mode), against
  the pipeline doing decode -> predict -> ``np.save`` for the same files;
* folder: the same over a folder of ``folder_images`` files in throughput mode (OpenVINO keeps
  its optimal number of requests in flight; other backends run as in ``localdepth run``);
* limits: FLOPs / measured fp32 matmul throughput, and the same for bf16 where the machine has it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import registry
from ..errors import LocalDepthError
from ..runtimes import cpu_has_bf16
from .arch import count_flops, random_weights_folder
from .machine import load_average, machine_info, matmul_flops
from .measure import PeakMemory, stats_ms, time_calls


@dataclass
class BenchConfig:
    models: list[str] = field(default_factory=lambda: [registry.DEFAULT_MODEL])
    backends: list[str] = field(default_factory=lambda: ["torch"])
    sizes: list[int] = field(default_factory=lambda: [518])
    batches: list[int] = field(default_factory=lambda: [1])
    dtypes: list[str] = field(default_factory=lambda: ["fp32"])
    device: str = "auto"
    rounds: int = 3  # interleaved rounds
    runs: int = 3  # model-only calls per variant and round
    warmup: int = 1  # untimed model-only calls and end-to-end passes before the first round
    e2e_images: int = 6  # files per end-to-end pass
    folder_images: int = 32  # files per folder pass (throughput mode); 0: no folder pass
    weights: str | None = None
    image: str | None = None  # a photo to make the inputs from (default: a synthetic scene)
    baseline: bool = True  # measure the Transformers pipeline
    matmul_n: int = 2048
    quick: bool = False
    command: str = ""
    compile: bool = False  # PyTorch rows: torch.compile
    cuda_graphs: bool = False  # PyTorch rows on CUDA: CUDA graph replay

    @classmethod
    def quick_config(cls, **overrides) -> BenchConfig:
        """Small and fast, for CI: one small size, one round, a few files."""
        base = cls(sizes=[140], rounds=1, runs=2, warmup=1, e2e_images=2, folder_images=4, matmul_n=512, quick=True)
        for k, v in overrides.items():
            setattr(base, k, v)
        return base


def _log(line: str) -> None:
    print(f"localdepth bench: {line}", file=sys.stderr, flush=True)


def _resolve_weights(spec, weights: str | None) -> tuple[Path, str]:
    """(path, what it is): the given or cached weights, else random weights of the real architecture."""
    from ..weights import home, resolve

    try:
        resolved = resolve(spec, weights, download=False)
        return Path(resolved.path), f"{resolved.origin} weights ({resolved.path})"
    except LocalDepthError:
        if weights is not None:
            raise
    folder = random_weights_folder(spec, home() / "bench" / f"{spec.name}-random")
    if folder is None:
        raise LocalDepthError(f"no weights for {spec.name} on this machine and its architecture is not "
                              f"known to the benchmark; pass --weights PATH")
    return folder, "random weights of the released architecture (same FLOPs; the released weights are absent)"


def _make_inputs(folder: Path, size: int, count: int, image: str | None) -> list[Path]:
    """``count`` JPEG files of ``size x size`` (a real photo, centre-cropped, when one is given)."""
    import cv2

    from ..conversion.calibration import synthetic_image
    from ..images import load_image, to_uint8

    rgb = to_uint8(load_image(image)) if image else synthetic_image()
    h, w = rgb.shape[:2]
    side = min(h, w)
    crop = rgb[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"img{i:04d}.jpg"
        shifted = np.roll(crop, i * 7, axis=1)  # distinct files, same content statistics
        cv2.imwrite(str(p), cv2.cvtColor(shifted, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(p)
    return paths


class Pipeline:
    """The Transformers ``pipeline("depth-estimation")`` on the same weights, fp32, one image per call:
    decode (the pipeline opens the file) -> predict -> ``np.save`` of the map at the input's size."""

    def __init__(self, folder: Path, size: int, device: str, outdir: Path):
        from transformers import AutoImageProcessor, pipeline
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        processor = AutoImageProcessor.from_pretrained(str(folder), size={"height": size, "width": size})
        self.pipe = pipeline("depth-estimation", model=str(folder), image_processor=processor,
                             device=device if device != "auto" else None)
        self.device = device
        self.outdir = outdir
        outdir.mkdir(parents=True, exist_ok=True)

    def seconds_per_image(self, files: list[Path]) -> float:
        t0 = time.perf_counter()
        for f in files:
            out = self.pipe(str(f))
            np.save(self.outdir / f"{f.stem}.npy", out["predicted_depth"].float().numpy())
        return (time.perf_counter() - t0) / len(files)


@dataclass
class Variant:
    """One backend x dtype, loaded once: latency mode for model-only and end to end, throughput
    mode for the folder (the same estimator where the backend has no such mode)."""

    backend: str
    dtype: str
    latency: object  # DepthEstimator
    throughput: object  # DepthEstimator
    samples: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.backend} {self.latency.backend.dtype}"

    def close(self) -> None:
        self.latency.close()
        if self.throughput is not self.latency:
            self.throughput.close()


def _skip_reason(backend: str, dtype: str, on_cpu: bool) -> str | None:
    """Combinations that would run but measure nothing useful here (others are refused by the backend choice)."""
    if dtype == "bf16" and on_cpu and backend in ("torch", "openvino") and not cpu_has_bf16():
        return "this CPU has no native bf16 (avx512_bf16/amx)"
    if backend == "onnx" and dtype == "fp16" and on_cpu:
        return "fp16 ONNX models are for GPUs (ONNX Runtime's CPU kernels are fp32)"
    return None


def _load_variants(spec, folder: Path, config: BenchConfig, on_cpu: bool, report: dict) -> list[Variant]:
    from ..estimator import load

    variants = []
    for backend in config.backends:
        for dtype in config.dtypes:
            why = _skip_reason(backend, dtype, on_cpu)
            try:
                if why:
                    raise LocalDepthError(why)
                options = {"compile": config.compile, "cuda_graphs": config.cuda_graphs} if backend == "torch" else {}
                common = dict(weights=folder, backend=backend, device=config.device, dtype=dtype, **options)
                if backend == "openvino" and dtype == "int8":
                    _quantize(spec, folder, config)
                latency = load(spec.name, **common)
                throughput = load(spec.name, performance="throughput", **common) if backend == "openvino" else latency
            except LocalDepthError as e:
                report["skipped"].append({"model": spec.name, "backend": backend, "dtype": dtype, "why": str(e)})
                _log(f"skip {backend} {dtype}: {e}")
                continue
            variants.append(Variant(backend, dtype, latency, throughput))
    return variants


def _quantize(spec, folder: Path, config: BenchConfig) -> None:
    """The int8 model the openvino int8 rows run: the cached one, else one calibrated on the built-in
    synthetic set at the first benchmarked size (4 images with --quick, to stay quick)."""
    from ..conversion import Settings, Target, ensure
    from ..weights import ResolvedWeights

    fixed = spec.preprocessing.resize == "fixed"
    settings = Settings(input_size=None if fixed else config.sizes[0], calibration_count=4 if config.quick else None)
    converted = ensure(spec, ResolvedWeights(folder, "argument"), Target("openvino", "int8"), settings=settings,
                       log=_log)
    for line in converted.lines():
        _log(line)


def _model_call(estimator, x: np.ndarray):
    backend = estimator.backend
    if backend.device.startswith("cuda") and backend.name == "torch":
        import torch

        xt = torch.from_numpy(x).to(backend.device, backend._torch_dtype)

        def call():
            with torch.inference_mode():
                backend.forward(xt)
            torch.cuda.synchronize()
        return call
    return lambda: backend.infer(x)


def _runner(estimator, outdir: Path, batch: int):
    from ..runner import Runner
    from ..writers import WriteOptions

    return Runner(estimator, outdir, WriteOptions(formats=("npy",)), batch_size=batch, progress=False,
                  on_error=lambda line: _log(f"error: {line}"))


def _pass(runner, items) -> float:
    """Seconds per image of one run over ``items``."""
    summary = runner.run(items)
    if summary.failed:
        raise LocalDepthError(f"the end-to-end run failed on {summary.failed} files")
    return summary.seconds / len(items)


def run_bench(config: BenchConfig) -> dict:
    """Run the benchmark; returns the report (also what the JSON file holds)."""
    import torch

    device = config.device
    accelerator = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else None
    on_cpu = device == "cpu" or (device == "auto" and accelerator is None)
    report: dict = {
        "command": config.command, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "quick": config.quick, "rounds": config.rounds, "machine": machine_info(), "results": [], "skipped": [],
        "models": {},
    }
    # the PyTorch accelerator (CUDA, or MPS on a Mac): its matmul throughput, and where the pipeline runs
    mm_device = "cpu" if on_cpu else (accelerator if device == "auto" else device)
    _log(f"measuring matmul throughput ({config.matmul_n}x{config.matmul_n}) ...")
    # the best of a measurement before and one after the run: what the machine can do
    report["matmul_fp32_flops"] = matmul_flops("fp32", mm_device, config.matmul_n)
    if not on_cpu or cpu_has_bf16():
        report["matmul_bf16_flops"] = matmul_flops("bf16", mm_device, config.matmul_n)
    work = Path(tempfile.mkdtemp(prefix="localdepth-bench-"))
    memory = PeakMemory(cuda=mm_device.startswith("cuda"))
    try:
        with memory:
            for name in config.models:
                spec = registry.get(name)
                folder, weights_note = _resolve_weights(spec, config.weights)
                _log(f"{spec.name}: {weights_note}")
                info: dict = {"weights": weights_note, "random_weights": "random" in weights_note,
                              "flops": {}, "pipeline": {}}
                report["models"][spec.name] = info
                variants = _load_variants(spec, folder, config, on_cpu, report)
                for size in config.sizes:
                    _measure_size(spec, folder, size, variants, config, info, report, work, on_cpu, mm_device)
                for v in variants:
                    v.close()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["folder_images"] = config.folder_images
    report["peak_rss_mb"] = memory.peak_rss_mb
    report["peak_gpu_mb"] = memory.peak_gpu_mb
    for key, dtype in (("matmul_fp32_flops", "fp32"), ("matmul_bf16_flops", "bf16")):
        if key in report:
            report[key] = max(report[key], matmul_flops(dtype, mm_device, config.matmul_n))
    for row in report["results"]:  # the limits against the best matmul measured
        _limits(row, report)
    report["machine"]["load_average_after"] = load_average()
    return report


def _measure_size(spec, folder, size, variants, config, info, report, work, on_cpu, mm_device) -> None:
    """Every variant at one input size, for each batch size, in interleaved rounds."""
    from ..conversion.calibration import deviation
    from ..inputs import expand_inputs
    from ..preprocess import network_size

    net_hw = network_size(size, size, spec.preprocessing, size if spec.preprocessing.resize != "fixed" else None)
    flops = count_flops(folder, *net_hw) if spec.format != "tflite" else None
    info["flops"][str(size)] = flops
    if flops:
        _log(f"{spec.name} at {size}: {flops / 1e9:.1f} GFLOPs per image")
    need = max(config.e2e_images, 2 * max(config.batches))
    files = _make_inputs(work / f"in-{size}", size, max(need, config.folder_images), config.image)
    e2e_items = expand_inputs([str(f) for f in files[:need]])
    folder_items = expand_inputs([str(f) for f in files[:config.folder_images]]) if config.folder_images else []
    pipe = None
    if config.baseline and spec.format == "transformers":
        pipe = Pipeline(folder, size, "cpu" if on_cpu else mm_device, work / "out-pipeline")
    elif config.baseline:
        info["pipeline"][str(size)] = None  # Transformers has no pipeline for this model
    fixed = spec.preprocessing.resize == "fixed"
    for v in variants:
        for est in (v.latency, v.throughput):
            est.input_size = None if fixed else size
    photo = variants[0].latency.preprocess(_load(files[0]))[None] if variants else None
    reference = _reference_output(spec, folder, photo) if variants else None
    for batch in config.batches:
        x = np.repeat(photo, batch, axis=0)
        runners = {}
        _log(f"{size}x{size} batch {batch}: warming up {len(variants)} variants ...")
        for v in variants:
            call = _model_call(v.latency, x)
            runners[v.key] = (call, _runner(v.latency, work / f"out-{v.backend}-{v.dtype}", batch),
                              _runner(v.throughput, work / f"folder-{v.backend}-{v.dtype}", batch))
            for _ in range(config.warmup):
                call()
                _pass(runners[v.key][1], e2e_items)  # and first-shape compilation for --compile
            v.samples = {"model": [], "e2e": [], "folder": []}
        if pipe is not None:
            pipe.seconds_per_image(files[:1])  # warm-up
        pipe_samples: list[float] = []
        for r in range(config.rounds):
            _log(f"round {r + 1}/{config.rounds}")
            if pipe is not None:
                pipe_samples.append(pipe.seconds_per_image(files[:need]))
            for v in variants:
                call, e2e_runner, folder_runner = runners[v.key]
                v.samples["model"] += time_calls(call, config.runs, 0)
                v.samples["e2e"].append(_pass(e2e_runner, e2e_items))
                if folder_items:
                    v.samples["folder"].append(_pass(folder_runner, folder_items))
        if pipe is not None:
            st = stats_ms(pipe_samples)
            info["pipeline"][str(size)] = {"e2e_ms_per_image": st, "e2e_images_per_s": 1000.0 / st["median_ms"],
                                           "dtype": "fp32", "device": pipe.device, "images": need,
                                           "rounds_images_per_s": [1.0 / s for s in pipe_samples]}
        for v in variants:
            row = _row(spec, v, size, batch, net_hw, flops, info["pipeline"].get(str(size)))
            row["deviation_vs_fp32"] = deviation(v.latency.backend.infer(photo), reference)
            report["results"].append(row)
            _log(f"  {v.key}: model {row['model_ms_per_image']:.1f} ms/img, e2e {row['e2e_images_per_s']:.2f} img/s"
                 + (f" = {row['e2e_vs_pipeline']:.2f}x pipeline" if row["e2e_vs_pipeline"] else "")
                 + (f", folder {row['folder_images_per_s']:.2f} img/s" if row["folder_images_per_s"] else ""))


def _reference_output(spec, folder: Path, x: np.ndarray) -> np.ndarray:
    """PyTorch fp32 on the CPU (or LiteRT for TFLite entries): what the deviations are measured against."""
    from ..backends import create_backend
    from ..weights import ResolvedWeights

    ref = create_backend(spec, ResolvedWeights(folder, "argument"), backend="auto" if spec.format == "tflite"
                         else "torch", device="cpu", dtype="fp32")
    try:
        return ref.infer(x)
    finally:
        ref.close()


def _mps_available() -> bool:
    import torch

    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def _load(path: Path) -> np.ndarray:
    from ..images import load_image

    return load_image(path)


def _row(spec, v: Variant, size: int, batch: int, net_hw, flops, pipe: dict | None) -> dict:
    backend = v.latency.backend
    model_st = stats_ms(v.samples["model"])
    e2e_st = stats_ms(v.samples["e2e"])
    per_image_ms = model_st["median_ms"] / batch
    e2e_rate = 1000.0 / e2e_st["median_ms"]
    folder_rate = 1000.0 / stats_ms(v.samples["folder"])["median_ms"] if v.samples["folder"] else None
    pipe_rate = pipe["e2e_images_per_s"] if pipe else None
    return {
        "model": spec.name, "backend": v.backend, "dtype": backend.dtype,
        "options": {k: val for k, val in backend.describe().items() if k in ("compile", "cuda_graphs")},
        "device": backend.device, "size": size, "batch": batch, "network_input": list(net_hw),
        "folder_requests": v.throughput.backend.parallel_requests,
        "model_ms_per_batch": model_st, "model_ms_per_image": per_image_ms,
        "model_p90_ms_per_image": model_st["p90_ms"] / batch,
        "model_images_per_s": 1000.0 * batch / model_st["median_ms"],
        "e2e_ms_per_image": e2e_st, "e2e_images_per_s": e2e_rate,
        "folder_images_per_s": folder_rate,
        "flops_per_image": flops,
        "pipeline_e2e_images_per_s": pipe_rate,
        # > 1: faster than the Transformers pipeline (one image per call) in the same rounds
        "e2e_vs_pipeline": e2e_rate / pipe_rate if pipe_rate else None,
        "folder_vs_pipeline": folder_rate / pipe_rate if pipe_rate and folder_rate else None,
    }


def _limits(row: dict, report: dict) -> None:
    """Model-only time against FLOPs / measured matmul throughput (fp32, and bf16 where measured)."""
    flops = row["flops_per_image"]
    for dtype in ("fp32", "bf16"):
        mm = report.get(f"matmul_{dtype}_flops")
        limit = flops / mm * 1000.0 if flops and mm else None
        row[f"{dtype}_limit_ms_per_image"] = limit
        # >= 1 means slower than the limit (for fp32 rows the "roofline")
        row[f"model_vs_{dtype}_limit"] = row["model_ms_per_image"] / limit if limit else None
    row["model_vs_roofline"] = row["model_vs_fp32_limit"]
