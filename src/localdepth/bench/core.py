"""``localdepth bench``: models x backends x sizes x batch sizes x dtypes, against the Transformers pipeline.

For each model, one set of weights is used throughout (the released ones when they are on the
machine, else random weights of the released architecture), and the Transformers
``pipeline("depth-estimation")`` runs on the same weights in the same process, so the ratios
compare like with like on one machine at one time.

* model-only: the backend's forward on a preprocessed batch (on CUDA, device tensors in and out);
* end-to-end: files on disk -> decode -> preprocess -> infer -> ``.npy`` + sidecar written,
  through :class:`localdepth.runner.Runner` (pipelined), against the pipeline doing
  decode -> predict -> ``np.save`` for the same files;
* roofline: model-only time per image against FLOPs / measured fp32 matmul throughput.
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
from .arch import count_flops, random_weights_folder
from ..runtimes import cpu_has_bf16
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
    runs: int = 10
    warmup: int = 2
    e2e_images: int = 8  # files per end-to-end pass (at least 2 batches)
    e2e_repeats: int = 3
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
        """Small and fast, for CI: one small size, three runs, four files end to end."""
        base = cls(sizes=[140], runs=3, warmup=1, e2e_images=4, e2e_repeats=1, matmul_n=512, quick=True)
        for k, v in overrides.items():
            setattr(base, k, v)
        return base


def _log(line: str) -> None:
    print(f"localdepth bench: {line}", file=sys.stderr, flush=True)


def _resolve_weights(spec, weights: str | None, workdir: Path) -> tuple[Path, str]:
    """(folder, what it is): the given or cached weights, else random weights of the real architecture."""
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


def pipeline_baseline(folder: Path, files: list[Path], size: int, device: str, outdir: Path, repeats: int) -> dict:
    """The Transformers ``pipeline("depth-estimation")`` on the same weights, fp32, one image per call:
    decode (the pipeline opens the file) -> predict -> ``np.save`` of the map at the input's size."""
    from transformers import AutoImageProcessor, pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    processor = AutoImageProcessor.from_pretrained(str(folder), size={"height": size, "width": size})
    pipe = pipeline("depth-estimation", model=str(folder), image_processor=processor,
                    device=device if device != "auto" else None)
    outdir.mkdir(parents=True, exist_ok=True)

    def one_pass():
        for f in files:
            out = pipe(str(f))
            np.save(outdir / f"{f.stem}.npy", out["predicted_depth"].float().numpy())

    one_pass()  # warm-up

    def measure() -> list[float]:
        return [sec / len(files) for sec in time_calls(one_pass, repeats, 0)]

    return {"measure": measure, "pipe": pipe, "images": len(files), "repeats": repeats, "device": device}


def _summarise_baseline(passes: list[list[float]], images: int, device: str) -> dict:
    """The pipeline is timed before and after the backends, so that load that changes during a run
    (shared machines) weighs on both sides of the ratio; both halves are kept."""
    everything = [s for p in passes for s in p]
    st = stats_ms(everything)
    return {"e2e_ms_per_image": st, "e2e_images_per_s": 1000.0 / st["median_ms"], "dtype": "fp32",
            "device": device, "images": images,
            "passes_images_per_s": [[1.0 / s for s in p] for p in passes]}


def _model_only(estimator, size: int, batch: int, runs: int, warmup: int, photo_input: np.ndarray) -> tuple[dict, PeakMemory]:
    backend = estimator.backend
    x = np.repeat(photo_input, batch, axis=0)
    cuda = backend.device.startswith("cuda")
    if cuda and backend.name == "torch":
        import torch

        xt = torch.from_numpy(x).to(backend.device, backend._torch_dtype)

        def call():
            with torch.inference_mode():
                backend.forward(xt)
            torch.cuda.synchronize()
    else:
        def call():
            backend.infer(x)
    with PeakMemory(cuda=cuda and backend.name == "torch") as mem:
        seconds = time_calls(call, runs, warmup)
    return stats_ms(seconds), mem


def _end_to_end(estimator, files: list[Path], batch: int, outdir: Path, repeats: int) -> dict:
    from ..inputs import expand_inputs
    from ..runner import Runner
    from ..writers import WriteOptions

    items = expand_inputs([str(f) for f in files])
    runner = Runner(estimator, outdir, WriteOptions(formats=("npy",)), batch_size=batch, progress=False,
                    on_error=lambda line: _log(f"error: {line}"))
    runner.run(items)  # warm-up (and first-shape compilation for --compile)
    seconds = []
    for _ in range(repeats):
        summary = runner.run(items)
        if summary.failed:
            raise LocalDepthError(f"the end-to-end run failed on {summary.failed} files")
        seconds.append(summary.seconds / len(items))
    st = stats_ms(seconds)
    return {"e2e_ms_per_image": st, "e2e_images_per_s": 1000.0 / st["median_ms"]}


def _deviation(out: np.ndarray, ref: np.ndarray) -> dict:
    from ..conversion.calibration import deviation

    return deviation(out, ref)


def _applicable(backend: str, dtype: str, device: str) -> str | None:
    """Why a backend/dtype pair is skipped on this machine, or None."""
    on_cpu = device == "cpu" or (device == "auto" and not _cuda())
    if backend == "torch" and dtype == "int8":
        return "int8 is an ONNX Runtime variant"
    if backend == "torch" and dtype == "fp16" and on_cpu:
        return "fp16 on CPU is not supported by PyTorch kernels"
    if backend == "torch" and dtype == "bf16" and on_cpu and not cpu_has_bf16():
        return "this CPU has no native bf16 (avx512_bf16/amx)"
    if backend == "onnx" and dtype == "bf16":
        return "the ONNX variants are fp32, fp16 and int8"
    if backend == "onnx" and dtype == "fp16" and on_cpu:
        return "fp16 ONNX models are for GPUs (ONNX Runtime's CPU kernels are fp32)"
    return None


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_bench(config: BenchConfig) -> dict:
    """Run the benchmark; returns the report (also what the JSON file holds)."""
    import torch

    from ..estimator import load

    device = config.device
    cpu_device = device == "cpu" or (device == "auto" and not _cuda())
    report: dict = {
        "command": config.command, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "quick": config.quick, "machine": machine_info(), "results": [], "skipped": [], "models": {},
    }
    _log(f"measuring fp32 matmul throughput ({config.matmul_n}x{config.matmul_n}) ...")
    mm_device = "cpu" if cpu_device else ("cuda" if device == "auto" else device)
    # the best of a measurement before and one after the run: what the machine can do
    report["matmul_fp32_flops"] = matmul_flops("fp32", mm_device, config.matmul_n)
    if not cpu_device or cpu_has_bf16():
        report["matmul_bf16_flops"] = matmul_flops("bf16", mm_device, config.matmul_n)
    work = Path(tempfile.mkdtemp(prefix="localdepth-bench-"))
    try:
        for name in config.models:
            spec = registry.get(name)
            folder, weights_note = _resolve_weights(spec, config.weights, work)
            _log(f"{spec.name}: {weights_note}")
            model_info: dict = {"weights": weights_note, "random_weights": "random" in weights_note,
                                "flops": {}, "pipeline": {}}
            report["models"][spec.name] = model_info
            reference: dict[int, np.ndarray] = {}
            baselines: dict[int, tuple[dict, list]] = {}
            for size in config.sizes:
                files = _make_inputs(work / f"in-{size}", size, max(config.e2e_images, 2 * max(config.batches)),
                                     config.image)
                flops = count_flops(folder, *_net_hw(spec, size))
                model_info["flops"][str(size)] = flops
                _log(f"{spec.name} at {size}: {flops / 1e9:.1f} GFLOPs per image")
                if config.baseline:
                    _log(f"Transformers pipeline at {size} ...")
                    baseline = pipeline_baseline(folder, files, size, "cpu" if cpu_device else mm_device,
                                                 work / "out-pipeline", config.e2e_repeats)
                    baselines[size] = (baseline, [baseline["measure"]()])
                    model_info["pipeline"][str(size)] = _summarise_baseline(
                        baselines[size][1], baseline["images"], baseline["device"])
            for backend in config.backends:
                for dtype in config.dtypes:
                    why = _applicable(backend, dtype, device)
                    if why:
                        report["skipped"].append({"model": spec.name, "backend": backend, "dtype": dtype, "why": why})
                        _log(f"skip {backend} {dtype}: {why}")
                        continue
                    try:
                        torch_options = {"compile": config.compile, "cuda_graphs": config.cuda_graphs} \
                            if backend == "torch" else {}
                        estimator = load(spec.name, weights=folder, backend=backend, device=device, dtype=dtype,
                                         **torch_options)
                    except LocalDepthError as e:
                        report["skipped"].append({"model": spec.name, "backend": backend, "dtype": dtype, "why": str(e)})
                        _log(f"skip {backend} {dtype}: {e}")
                        continue
                    for size in config.sizes:
                        estimator.input_size = size
                        files = sorted((work / f"in-{size}").glob("*.jpg"))
                        photo = estimator.preprocess(_load(files[0]))[None]
                        out = estimator.backend.infer(photo)
                        if size not in reference:
                            reference[size] = _reference_output(spec, folder, photo)
                        for batch in config.batches:
                            _log(f"{backend} {dtype} {size}x{size} batch {batch} ...")
                            row = _measure_row(spec, estimator, backend, dtype, size, batch, config, files,
                                               photo, work, model_info, report)
                            row["deviation_vs_fp32"] = _deviation(out, reference[size])
                            report["results"].append(row)
                    estimator.close()
                    del estimator
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
            for size, (baseline, passes) in baselines.items():
                _log(f"Transformers pipeline at {size} again ...")
                passes.append(baseline["measure"]())
                summary = _summarise_baseline(passes, baseline["images"], baseline["device"])
                model_info["pipeline"][str(size)] = summary
                for row in report["results"]:
                    if row["model"] == spec.name and row["size"] == size:
                        row["pipeline_e2e_images_per_s"] = summary["e2e_images_per_s"]
                        row["e2e_vs_pipeline"] = row["e2e_images_per_s"] / summary["e2e_images_per_s"]
                del baseline["pipe"], baseline["measure"]
            baselines.clear()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    again = matmul_flops("fp32", mm_device, config.matmul_n)
    if again > report["matmul_fp32_flops"]:  # the roofline moved: recompute the ratios against it
        report["matmul_fp32_flops"] = again
        for row in report["results"]:
            row["roofline_ms_per_image"] = row["flops_per_image"] / again * 1000.0
            row["model_vs_roofline"] = row["model_ms_per_image"] / row["roofline_ms_per_image"]
    report["machine"]["load_average_after"] = load_average()
    return report


def _reference_output(spec, folder: Path, x: np.ndarray) -> np.ndarray:
    """PyTorch fp32 on the CPU: what reduced precisions and other backends are compared with."""
    from ..backends.torch_backend import TorchBackend

    ref = TorchBackend(spec, folder, device="cpu", dtype="fp32")
    try:
        return ref.infer(x)
    finally:
        ref.close()


def _net_hw(spec, size: int) -> tuple[int, int]:
    from ..preprocess import network_size

    return network_size(size, size, spec.preprocessing, size)


def _load(path: Path) -> np.ndarray:
    from ..images import load_image

    return load_image(path)


def _measure_row(spec, estimator, backend, dtype, size, batch, config, files, photo, work, model_info, report) -> dict:
    model_st, mem = _model_only(estimator, size, batch, config.runs, config.warmup, photo)
    per_image_ms = model_st["median_ms"] / batch
    e2e = _end_to_end(estimator, files, batch, work / f"out-{backend}-{dtype}", config.e2e_repeats)
    flops = model_info["flops"][str(size)]
    roofline_ms = flops / report["matmul_fp32_flops"] * 1000.0
    pipe = model_info["pipeline"].get(str(size))
    row = {
        "model": spec.name, "backend": backend, "dtype": estimator.backend.dtype,
        "options": {k: v for k, v in estimator.backend.describe().items() if k in ("compile", "cuda_graphs")},
        "device": estimator.backend.device, "size": size, "batch": batch,
        "network_input": list(_net_hw(spec, size)),
        "model_ms_per_batch": model_st, "model_ms_per_image": per_image_ms,
        "model_p90_ms_per_image": model_st["p90_ms"] / batch,
        "model_images_per_s": 1000.0 * batch / model_st["median_ms"],
        **e2e,
        "peak_rss_mb": mem.peak_rss_mb, "peak_gpu_mb": mem.peak_gpu_mb,
        "flops_per_image": flops, "roofline_ms_per_image": roofline_ms,
        # >= 1: how many times slower than FLOPs / measured fp32 matmul throughput (target <= 1.2 on CPU)
        "model_vs_roofline": per_image_ms / roofline_ms,
        "achieved_flops": flops * 1000.0 / per_image_ms,
        "pipeline_e2e_images_per_s": pipe["e2e_images_per_s"] if pipe else None,
        # > 1: faster than the Transformers pipeline end to end
        "e2e_vs_pipeline": (e2e["e2e_images_per_s"] / pipe["e2e_images_per_s"]) if pipe else None,
    }
    _log(f"  model {per_image_ms:.1f} ms/img ({row['model_vs_roofline']:.2f}x roofline), "
         f"e2e {row['e2e_images_per_s']:.2f} img/s"
         + (f" = {row['e2e_vs_pipeline']:.2f}x pipeline" if pipe else ""))
    return row
