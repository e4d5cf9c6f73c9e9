"""``localdepth bench --device cuda``: the GPU suite, every row in one run on the same random weights.

For Depth Anything V2 (Small by default) at one input size, on the released architecture with
random weights (same FLOPs; the released weights are used when they are on the machine):

* the Transformers ``pipeline("depth-estimation")`` in fp32 and fp16, one image per call, over a
  folder: decode -> predict -> ``np.save`` of the map at the image's size;
* the official ``DepthAnythingV2.infer_image`` (fp32, as the authors run it), when ``--reference-code``
  names a checkout of the official code (:mod:`.official`);
* localdepth eager (fp16 on CUDA), compiled (``torch.compile``, inductor) and compiled + CUDA graphs
  (inductor's ``reduce-overhead``): model-only latency at batch 1, model-only throughput at each
  ``--batch`` (fraction of the card's bf16 matrix throughput, measured in the same run by a large
  bf16 matmul), the folder end to end through ``localdepth run``'s runner (GPU pipeline, automatic
  batches), and the peak GPU memory of each;
* the deviation of fp16 from fp32 on the photos given (``--image``), in % of each map's range.

Then Depth Pro at 1536 x 1536 (batch 1, fp16), Depth Anything 3 Small with 1 and 8 views, and Video
Depth Anything Small streaming (frames per second with its cached temporal state), each on random
weights of its released architecture built on the device (the network classes localdepth runs).

Each part has a time estimate; a time guard (``--time-budget``) skips the parts that would not fit
and says so in the report, instead of overrunning. Rows that need image files (the folder passes,
the pipelines, the official code) need Pillow and OpenCV (localdepth's own dependencies); where they
are missing those rows are skipped with one line each and the model-only rows still run.

The same code runs on a CPU with ``--device cpu --quick`` (tiny sizes; bf16 instead of fp16, which
PyTorch's CPU backend refuses here; the CUDA-graph rows skipped), which is how the tests check the
suite before a GPU runs it.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import registry
from ..errors import LocalDepthError

#: the GPU targets of issue 21, checked on a report (what, field, comparison, bound)
GPU_TARGETS = (
    ("Depth Anything V2 Small, 518x518, batch 1, fp16, model only (ms)", "latency_ms", "<=", 2.5),
    ("a folder end to end, vs the Transformers pipeline fp16 (x)", "folder_vs_pipeline_fp16", ">=", 5.0),
    ("batch 32 and above, fraction of the measured bf16 matmul throughput", "bf16_fraction", ">=", 0.25),
    ("Depth Pro, 1536x1536, batch 1, fp16 (ms)", "depth_pro_ms", "<=", 60.0),
)

#: seconds each part is expected to take on one H100 (the time guard skips a part that would not fit)
ESTIMATES_S = {"matmul": 10, "weights": 20, "eager": 30, "pipelines": 40, "folder eager": 20, "deviation": 15,
               "depth-pro": 30, "compiled + CUDA graphs": 120, "da3": 25, "vda": 25, "official": 25,
               "compiled": 150, "folder compiled": 90, "folder compiled + CUDA graphs": 120}


@dataclass
class GpuBenchConfig:
    model: str = registry.DEFAULT_MODEL
    device: str = "cuda"
    size: int = 518
    batches: list[int] = field(default_factory=lambda: [1, 8, 32, 64])
    runs: int = 20  # timed model-only calls per measurement
    warmup: int = 3
    folder_images: int = 64
    images: list[str] = field(default_factory=list)  # photos: the folder's content and the fp16 check
    reference_code: str | None = None  # a checkout of the official Depth Anything V2 code
    weights: str | None = None
    time_budget_s: float = 420.0
    quick: bool = False
    compile_backend: str = "inductor"
    matmul_n: int = 8192
    other_models: bool = True
    command: str = "localdepth bench --device cuda"
    notes: list[str] = field(default_factory=list)  # lines for the report (the GPU tests' summary)

    @classmethod
    def quick_config(cls, **overrides) -> GpuBenchConfig:
        """Tiny and fast: a dry run of every part (on a CPU in the tests)."""
        base = cls(size=56, batches=[1, 2], runs=2, warmup=1, folder_images=4, matmul_n=256, time_budget_s=900,
                   quick=True)
        for k, v in overrides.items():
            setattr(base, k, v)
        return base


def _log(line: str) -> None:
    print(f"localdepth bench: {line}", file=sys.stderr, flush=True)


class TimeGuard:
    """The run's time budget: a part starts only when its estimate fits in what is left."""

    def __init__(self, budget_s: float, quick: bool):
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.quick = quick

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.start

    def allows(self, part: str) -> bool:
        estimate = 1.0 if self.quick else ESTIMATES_S.get(part, 30)
        return self.elapsed_s + estimate <= self.budget_s


def missing_image_libraries() -> list[str]:
    """The image libraries the file-based rows need and this Python cannot import (localdepth's own
    dependencies; a broken install counts as missing)."""
    import importlib

    missing = []
    for name, module in (("Pillow", "PIL.Image"), ("OpenCV", "cv2"), ("matplotlib", "matplotlib")):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(name)
    return missing


# ----------------------------------------------------------------------------- timing

def _sync(device: str):
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def time_model(fn, device: str, runs: int, warmup: int) -> list[float]:
    """Seconds per call of ``fn()`` (device work included: synchronised around each call)."""
    sync = _sync(device)
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def _stats(seconds: list[float]) -> dict:
    from .measure import stats_ms

    return stats_ms(seconds)


class _PeakGpu:
    """Peak GPU memory allocated by PyTorch while the block runs (None on CPUs)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.mb: float | None = None

    def __enter__(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.mb = torch.cuda.max_memory_allocated() / 2**20


# ----------------------------------------------------------------------------- the suite

def card_slug(report: dict) -> str:
    """``nvidia-h100-80gb-hbm3`` (the GPU's name) or ``cpu``: the report's file name part."""
    gpu = report["machine"].get("gpu")
    name = gpu["name"] if gpu else "cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_gpu_bench(config: GpuBenchConfig, on_part=None) -> dict:
    """Run the GPU suite (see the module docstring); returns the report. ``on_part(report)`` is called
    after each part with the report so far (the command line writes it each time, so that a run
    stopped from outside keeps what it measured)."""
    import torch

    from .machine import load_average, machine_info

    device = config.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LocalDepthError("the GPU suite was asked for --device cuda, but PyTorch sees no CUDA GPU; "
                              "use --device cpu --quick for a dry run")
    half = "fp16" if device.startswith("cuda") else "bf16"  # PyTorch's CPU path here refuses fp16
    guard = TimeGuard(config.time_budget_s, config.quick)
    report: dict = {
        "suite": "gpu", "command": config.command, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "quick": config.quick, "device": device, "half": half, "machine": machine_info(),
        "time_budget_s": config.time_budget_s, "results": [], "other_models": [], "skipped": [],
        "notes": list(config.notes),
    }
    if half != "fp16":
        report["notes"].append("on the CPU the half-precision rows run bf16 (PyTorch's CPU path here refuses fp16)")
    missing = missing_image_libraries()
    if missing:
        line = (f"{', '.join(missing)} missing (localdepth's own dependencies): the rows that decode and write "
                "image files (folder passes, the Transformers pipeline, the official code) are skipped")
        report["notes"].append(line)
        _log(line)
    state = _State(config, report, guard, device, half, missing)
    for name, part in state.parts():
        if not guard.allows(name):
            state.skip(name, f"time budget: {guard.elapsed_s:.0f} s of {config.time_budget_s:.0f} s used, this part "
                             f"needs about {ESTIMATES_S.get(name, 30)} s")
            continue
        _log(f"{name} ({guard.elapsed_s:.0f} s in) ...")
        try:
            part()
        except _Skip as e:
            state.skip(name, str(e))
        except Exception as e:  # one part failing must not lose the others' numbers
            state.skip(name, f"failed: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
        finally:
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        if on_part is not None:
            report["targets"] = target_verdicts(report)
            report["seconds"] = guard.elapsed_s
            on_part(report)
    state.close()
    report["targets"] = target_verdicts(report)
    report["seconds"] = guard.elapsed_s
    report["machine"]["load_average_after"] = load_average()
    return report


class _Skip(Exception):
    """A part that cannot run here, with the reason."""


class _State:
    """What the parts share: the weights, the photos, the folder, the variants loaded."""

    def __init__(self, config: GpuBenchConfig, report: dict, guard: TimeGuard, device: str, half: str,
                 missing: list[str]):
        self.config, self.report, self.guard, self.device, self.half = config, report, guard, device, half
        self.missing = missing
        self.spec = registry.get(config.model)
        self.work = Path(tempfile.mkdtemp(prefix="localdepth-gpu-bench-"))
        self.folder: Path | None = None
        self.files: list[Path] = []
        self.net_hw: tuple[int, int] | None = None
        self.flops: int | None = None
        self.pipeline_fp16: float | None = None
        self.photos: list[np.ndarray] = []

    def parts(self):
        c = self.config
        yield "matmul", self.matmul
        yield "weights", self.weights
        yield "eager", lambda: self.variant_model_only("eager", batches=c.batches)
        yield "pipelines", self.pipelines
        yield "folder eager", lambda: self.variant_folder("eager")
        yield "deviation", self.deviation
        if c.other_models:
            yield "depth-pro", self.depth_pro
        yield "compiled + CUDA graphs", lambda: self.variant_model_only("compiled + CUDA graphs", batches=[1])
        if c.other_models:
            yield "da3", self.da3
            yield "vda", self.vda
        if c.reference_code:
            yield "official", self.official
        yield "compiled", lambda: self.variant_model_only(
            "compiled", batches=[b for b in c.batches if b in (1, 32)] or c.batches[:1])
        yield "folder compiled", lambda: self.variant_folder("compiled")
        yield "folder compiled + CUDA graphs", lambda: self.variant_folder("compiled + CUDA graphs")

    def skip(self, part: str, why: str) -> None:
        self.report["skipped"].append({"part": part, "why": why})
        _log(f"skip {part}: {why}")

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.work, ignore_errors=True)

    # ------------------------------------------------------------------------- parts

    def matmul(self) -> None:
        from .machine import matmul_flops

        n = self.config.matmul_n
        for dtype in ("bf16", "fp16", "fp32") if self.device.startswith("cuda") else ("bf16", "fp32"):
            self.report[f"matmul_{dtype}_flops"] = matmul_flops(dtype, self.device, n, repeats=10)
        self.report["matmul_n"] = n
        _log(f"bf16 matmul {self.report['matmul_bf16_flops'] / 1e12:.1f} TFLOP/s")

    def weights(self) -> None:
        from ..preprocess import network_size
        from .arch import count_flops, random_weights_folder

        spec = self.spec
        if self.config.weights:
            folder, note = Path(self.config.weights), f"given weights ({self.config.weights})"
        else:
            folder = random_weights_folder(spec, self.work / f"{spec.name}-random")
            if folder is None:
                raise LocalDepthError(f"the GPU suite knows no random architecture for {spec.name}; pass --weights")
            note = "random weights of the released architecture (same FLOPs; the released weights are absent)"
        self.folder = folder
        self.net_hw = network_size(self.config.size, self.config.size, spec.preprocessing, self.config.size)
        self.flops = count_flops(folder, *self.net_hw)
        self.report["models"] = {spec.name: {"weights": note, "size": self.config.size,
                                             "network_input": list(self.net_hw), "flops_per_image": self.flops}}
        self.photos = self._photos()

    def _photos(self) -> list[np.ndarray]:
        """The photos given (decoded), else synthetic scenes: the folder's content and the fp16 check."""
        from ..conversion.calibration import synthetic_image

        if self.config.images and not self.missing:
            from ..images import load_image

            return [load_image(p) for p in self.config.images]
        if self.config.images:
            self.report["notes"].append("the photos given need Pillow to decode: synthetic scenes instead")
        return [synthetic_image(480, 640), np.ascontiguousarray(synthetic_image(640, 480)[:, ::-1])]

    def _need_files(self) -> list[Path]:
        if self.missing:
            raise _Skip(f"needs {', '.join(self.missing)} to decode and write image files")
        if not self.files:
            import cv2

            folder = self.work / "folder"
            folder.mkdir(exist_ok=True)
            size = self.config.size
            for i in range(self.config.folder_images):
                photo = self.photos[i % len(self.photos)]
                h, w = photo.shape[:2]
                side = min(h, w)
                crop = photo[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
                crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
                crop = np.roll(crop, i * 7, axis=1)  # distinct files, same content statistics
                path = folder / f"img{i:04d}.jpg"
                cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
                self.files.append(path)
        return self.files

    def _backend(self, variant: str):
        """localdepth's PyTorch backend of the variant, on the device, in the half precision."""
        from ..backends.torch_backend import TorchBackend

        if "CUDA graphs" in variant and not self.device.startswith("cuda"):
            raise _Skip("CUDA graphs need a CUDA device")
        if variant == "eager":
            compile_ = False
        else:  # inductor (True), or another torch.compile backend given for a dry run
            compile_ = True if self.config.compile_backend == "inductor" else self.config.compile_backend
        # the GPU pipeline whatever the device: a dry run on the CPU runs the same code on CPU tensors
        return TorchBackend(self.spec, self.folder, device=self.device, dtype=self.half, compile=compile_,
                            cuda_graphs="CUDA graphs" in variant, device_pipeline=True)

    def _row(self, variant: str, dtype: str, **values) -> dict:
        row = {"model": self.spec.name, "variant": variant, "dtype": dtype, "size": self.config.size,
               "network_input": list(self.net_hw) if self.net_hw else None, "flops_per_image": self.flops}
        row.update(values)
        self.report["results"].append(row)
        return row

    def variant_model_only(self, variant: str, batches: list[int]) -> None:
        """Model-only: the backend's forward on a device batch, at each batch size."""
        import torch

        self._need_weights()
        backend = self._backend(variant)
        try:
            for batch in batches:
                x = torch.randn(batch, 3, *self.net_hw, device=self.device).to(backend.torch_dtype)
                x = x.contiguous(memory_format=torch.channels_last)

                def call(x=x):
                    with torch.inference_mode():
                        backend.forward(x)

                with _PeakGpu(self.device) as peak:
                    samples = time_model(call, self.device, self.config.runs, self.config.warmup + 1)
                st = _stats(samples)
                per_image_s = st["median_ms"] / 1000.0 / batch
                mm = self.report.get("matmul_bf16_flops")
                row = self._row(variant, backend.dtype, kind="model", batch=batch, model_ms_per_batch=st,
                                model_ms_per_image=st["median_ms"] / batch, images_per_s=1.0 / per_image_s,
                                bf16_fraction=(self.flops / per_image_s / mm) if self.flops and mm else None,
                                peak_gpu_mb=peak.mb, compilations=backend.compilations)
                _log(f"  {variant} batch {batch}: {row['model_ms_per_image']:.2f} ms/image, "
                     f"{row['images_per_s']:.0f} images/s" + (f", {row['bf16_fraction']:.0%} of bf16 matmul"
                                                               if row["bf16_fraction"] else ""))
        finally:
            backend.close()

    def _need_weights(self) -> None:
        if self.folder is None:
            raise _Skip("the weights part did not run")

    def variant_folder(self, variant: str) -> None:
        """End to end over the folder: ``localdepth run``'s runner on the GPU pipeline, automatic batches."""
        self._need_weights()
        files = self._need_files()
        from ..estimator import DepthEstimator
        from ..inputs import expand_inputs
        from ..runner import Runner
        from ..writers import WriteOptions

        backend = self._backend(variant)
        estimator = DepthEstimator(self.spec, backend, input_size=self.config.size, weights_path=self.folder)
        items = expand_inputs([str(f) for f in files])
        try:
            outdir = self.work / f"out-{variant.replace(' ', '-')}"
            warm = Runner(estimator, outdir, WriteOptions(formats=("npy",)), batch_size=None, progress=False)
            warm.run(items)  # compiles or captures the folder's shapes
            with _PeakGpu(self.device) as peak:
                runner = Runner(estimator, outdir, WriteOptions(formats=("npy",)), batch_size=None, progress=False)
                summary = runner.run(items)
            if summary.failed:
                raise LocalDepthError(f"{summary.failed} files failed")
            rate = summary.ok / summary.seconds
            vs = rate / self.pipeline_fp16 if self.pipeline_fp16 else None
            self._row(variant, backend.dtype, kind="folder", images=len(items), images_per_s=rate,
                      batch=runner.batch_size, folder_vs_pipeline_fp16=vs, peak_gpu_mb=peak.mb,
                      compilations=backend.compilations)
            _log(f"  {variant} folder: {rate:.1f} images/s" + (f" = {vs:.2f}x the pipeline fp16" if vs else ""))
        finally:
            estimator.close()

    def pipelines(self) -> None:
        """The Transformers pipeline over the folder, one image per call, fp32 and fp16 (fp16 on the CPU
        too: the pipeline's own post-processing cannot take bf16)."""
        self._need_weights()
        files = self._need_files()
        import torch
        from transformers import pipeline
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        size = self.config.size
        for dtype in ("fp32", "fp16"):
            torch_dtype = {"fp32": torch.float32, "fp16": torch.float16}[dtype]
            from transformers import AutoImageProcessor

            processor = AutoImageProcessor.from_pretrained(str(self.folder), size={"height": size, "width": size})
            pipe = pipeline("depth-estimation", model=str(self.folder), image_processor=processor,
                            device=self.device, dtype=torch_dtype)
            outdir = self.work / f"pipeline-{dtype}"
            outdir.mkdir(exist_ok=True)

            def one_pass(pipe=pipe, outdir=outdir):
                t0 = time.perf_counter()
                for f in files:
                    out = pipe(str(f))
                    np.save(outdir / f"{f.stem}.npy", out["predicted_depth"].float().cpu().numpy())
                return time.perf_counter() - t0

            one_pass() if self.config.quick else pipe(str(files[0]))  # warm-up
            with _PeakGpu(self.device) as peak:
                seconds = one_pass()
            rate = len(files) / seconds
            if dtype != "fp32":
                self.pipeline_fp16 = rate
            self._row("transformers pipeline", dtype, kind="folder", images=len(files), images_per_s=rate, batch=1,
                      peak_gpu_mb=peak.mb)
            _log(f"  pipeline {dtype}: {rate:.1f} images/s")

    def official(self) -> None:
        """The official ``infer_image`` (fp32) over the folder, and its forward alone at batch 1."""
        self._need_weights()
        files = self._need_files()
        import cv2
        import torch

        from .official import official_model

        size_name = self.spec.name.rsplit("-", 1)[-1]
        model = official_model(self.config.reference_code, size_name, self.folder, device=self.device)
        size = self.config.size
        with torch.inference_mode():
            x = torch.randn(1, 3, *self.net_hw, device=self.device)
            with _PeakGpu(self.device) as peak:
                st = _stats(time_model(lambda: model(x), self.device, self.config.runs, self.config.warmup))
            self._row("official infer_image", "fp32", kind="model", batch=1, model_ms_per_batch=st,
                      model_ms_per_image=st["median_ms"], images_per_s=1000.0 / st["median_ms"], peak_gpu_mb=peak.mb)
            outdir = self.work / "official"
            outdir.mkdir(exist_ok=True)
            model.infer_image(cv2.imread(str(files[0])), size)  # warm-up
            with _PeakGpu(self.device) as peak:
                t0 = time.perf_counter()
                for f in files:
                    np.save(outdir / f"{f.stem}.npy", model.infer_image(cv2.imread(str(f)), size))
                seconds = time.perf_counter() - t0
        rate = len(files) / seconds
        self._row("official infer_image", "fp32", kind="folder", images=len(files), images_per_s=rate, batch=1,
                  peak_gpu_mb=peak.mb)
        _log(f"  official infer_image: {rate:.1f} images/s")

    def deviation(self) -> None:
        """fp16 (the half precision) against fp32 on the same device, on the photos, through the GPU
        pipeline's steps (resize on the device, network, map back at the photo's size): |difference| in
        % of each map's range (mean and max over pixels; the worst photo)."""
        self._need_weights()
        import torch

        from .. import preprocess_torch as pt
        from ..backends.torch_backend import TorchBackend

        spec, size = self.spec, self.config.size
        maps = {}
        for dtype in ("fp32", self.half):
            backend = TorchBackend(spec, self.folder, device=self.device, dtype=dtype, device_pipeline=True)
            maps[dtype] = []
            with torch.inference_mode():
                for photo in self.photos:
                    x = pt.preprocess_batch([pt.image_tensor(photo).to(self.device)], spec.preprocessing, size,
                                            dtype=backend.torch_dtype)
                    raw = backend.run_tensor(x)["depth"][0]
                    h, w = photo.shape[:2]
                    out = pt.to_original_size(raw, h, w, spec.output, spec.postprocessing, spec.preprocessing)
                    maps[dtype].append(out.float().cpu().numpy())
            backend.close()
        mean_rel, max_rel = [], []
        for a, b in zip(maps["fp32"], maps[self.half]):
            span = float(a.max() - a.min()) or 1.0
            diff = np.abs(a.astype(np.float64) - b) / span
            mean_rel.append(float(diff.mean()))
            max_rel.append(float(diff.max()))
        self.report["deviation_half_vs_fp32"] = {
            "dtype": self.half, "photos": len(self.photos), "mean_of_range": max(mean_rel),
            "max_of_range": max(max_rel), "per_photo_mean": mean_rel,
            "what": "|half - fp32| / (fp32 map's max - min), on the same device; worst photo"}
        _log(f"  {self.half} vs fp32: mean {max(mean_rel):.2e}, max {max(max_rel):.2e} of the range")

    # ------------------------------------------------------------------------- other models

    def _other(self, model: str, what: str, seconds: list[float], frames: int = 1, **values) -> None:
        st = _stats(seconds)
        row = {"model": model, "what": what, "ms": st["median_ms"], "p90_ms": st["p90_ms"],
               "per_s": 1000.0 * frames / st["median_ms"], **values}
        self.report["other_models"].append(row)
        _log(f"  {model} {what}: {row['ms']:.1f} ms ({row['per_s']:.1f}/s)")

    def depth_pro(self) -> None:
        """Depth Pro (released architecture, random weights, field-of-view head) at 1536 x 1536, batch 1."""
        import torch

        from ..networks.hf import TransformersDepth

        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[self.half]
        model = depth_pro_model(tiny=self.config.quick, device=self.device, dtype=dtype)
        x = torch.randn(1, 3, 1536, 1536, device=self.device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        network = TransformersDepth(model).eval()
        with torch.inference_mode(), _PeakGpu(self.device) as peak:
            seconds = time_model(lambda: network(x), self.device, max(3, self.config.runs // 2), self.config.warmup)
        params = sum(p.numel() for p in model.parameters())
        self._other("depth-pro", "1536x1536, batch 1, eager", seconds, dtype=self.half, peak_gpu_mb=peak.mb,
                    params_millions=params / 1e6)

    def da3(self) -> None:
        """Depth Anything 3 Small (any-view) at 504 px: one view, and 8 views of one scene together."""
        import torch

        from ..networks.da3 import build
        from ..networks.da3.config import Architecture

        # the registry's half precision for Depth Anything 3: bf16 where the device computes it
        cuda = self.device.startswith("cuda")
        dtype = torch.bfloat16 if not cuda or torch.cuda.is_bf16_supported() else torch.float16
        if self.config.quick:
            from ..networks.da3 import DepthAnything3Network

            net = DepthAnything3Network(Architecture(32, 4, 2, (0, 1, 2, 3), 2, 2, 2, True, "dualdpt", 16,
                                                     (8, 16, 32, 32), True), "da3-small")
            h, w = 56, 56
        else:
            net = build("da3-small")
            h, w = 378, 504  # a 4:3 photo at the default 504 px
        net = net.to(self.device).eval()
        net.backbone.to(dtype)  # the backbone in half precision; heads in fp32, as the network does
        for views in (1, 8):
            x = torch.randn(views, 3, h, w, device=self.device)
            with torch.inference_mode(), _PeakGpu(self.device) as peak:
                seconds = time_model(lambda x=x, views=views: net(x, same_scene=views > 1), self.device,
                                     max(3, self.config.runs // 2), self.config.warmup)
            self._other("da3-small", f"{h}x{w}, {views} view{'s' if views > 1 else ''} together", seconds,
                        frames=views, dtype="bf16" if dtype == torch.bfloat16 else "fp16", peak_gpu_mb=peak.mb)

    def vda(self) -> None:
        """Video Depth Anything Small streaming at 518 x 924 (16:9): frames per second once its cache is full."""
        import torch

        from ..networks.dinov2 import ViTConfig
        from ..networks.vda import SIZES, VDAConfig, VideoDepthAnything

        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[self.half]
        if self.config.quick:
            config, (h, w) = VDAConfig(ViTConfig(64, 12, 1, 128), 32, (32, 32, 64, 64), (2, 5, 8, 11)), (42, 56)
        else:
            config, (h, w) = SIZES["vits"], (518, 924)
        net = VideoDepthAnything(config).to(self.device, dtype).eval()
        net.head.scratch.output_conv2.float()
        state = net.new_stream()
        x = torch.randn(1, 3, h, w, device=self.device, dtype=dtype)
        with torch.inference_mode():
            for _ in range(2 if self.config.quick else config.num_frames):  # the cache fills over the first window
                net.stream_step(x, state)
            with _PeakGpu(self.device) as peak:
                seconds = time_model(lambda: net.stream_step(x, state), self.device, max(3, self.config.runs), 0)
        self._other("video-depth-anything-small", f"{h}x{w}, streaming, one frame at a time", seconds,
                    dtype=self.half, peak_gpu_mb=peak.mb, cache_entries=len(state.entries))


def depth_pro_model(*, tiny: bool = False, device: str = "cpu", dtype=None):
    """Transformers' Depth Pro with random weights: the released architecture (``apple/DepthPro-hf``:
    three DINOv2-L/16 encoders at 384 px, the field-of-view head; about 952M parameters), or a tiny
    one of the same design, built on ``device`` (``"meta"`` counts parameters without allocating)."""
    import torch
    from transformers import DepthProConfig, DepthProForDepthEstimation

    if tiny:
        dino = {"model_type": "dinov2", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                "mlp_ratio": 2, "patch_size": 16, "image_size": 384}
        config = DepthProConfig(fusion_hidden_size=16, intermediate_hook_ids=[1, 0], intermediate_feature_dims=[8, 8],
                                scaled_images_feature_dims=[16, 16, 8], use_fov_model=True,
                                image_model_config=dino, patch_model_config=dino, fov_model_config=dino)
    else:
        dino = {"model_type": "dinov2", "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                "mlp_ratio": 4, "patch_size": 16, "image_size": 384, "layerscale_value": 1.0}
        config = DepthProConfig(use_fov_model=True, image_model_config=dino, patch_model_config=dino,
                                fov_model_config=dict(dino))
    with torch.device(device):
        model = DepthProForDepthEstimation(config, use_fov_model=True)
    if device == "meta":
        return model
    return model.to(dtype=dtype or torch.float32).eval()


# ----------------------------------------------------------------------------- verdicts

def target_verdicts(report: dict) -> list[dict]:
    """Each GPU target with the value measured in the report (the best localdepth variant), or why none."""
    rows = [r for r in report["results"] if r.get("variant", "").startswith(("eager", "compiled"))]
    half = report.get("half", "fp16")
    values = {}
    b1 = [r["model_ms_per_image"] for r in rows if r["kind"] == "model" and r["batch"] == 1]
    values["latency_ms"] = min(b1) if b1 else None
    folder = [r["folder_vs_pipeline_fp16"] for r in rows if r["kind"] == "folder" and r.get("folder_vs_pipeline_fp16")]
    values["folder_vs_pipeline_fp16"] = max(folder) if folder else None
    big = [r["bf16_fraction"] for r in rows if r["kind"] == "model" and r["batch"] >= 32 and r.get("bf16_fraction")]
    values["bf16_fraction"] = max(big) if big else None
    pro = [r["ms"] for r in report.get("other_models", []) if r["model"] == "depth-pro"]
    values["depth_pro_ms"] = min(pro) if pro else None
    verdicts = []
    for what, key, op, bound in GPU_TARGETS:
        value = values[key]
        met = None if value is None or report.get("quick") or not str(report.get("device", "")).startswith("cuda") \
            else (value >= bound if op == ">=" else value <= bound)
        verdicts.append({"target": what, "value": value, "op": op, "bound": bound, "met": met, "dtype": half})
    return verdicts


def main(argv: list[str] | None = None) -> int:
    """``python -m localdepth.bench.gpu [bench options]``: the suite without the rest of the command
    line (whose other commands import the image libraries)."""
    import argparse

    from ..cli.bench import register

    parser = argparse.ArgumentParser(prog="localdepth")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    if args.suite == "cpu":
        parser.error("python -m localdepth.bench.gpu runs the GPU suite; use `localdepth bench` for the CPU one")
    args.suite = "gpu"
    try:
        return args.func(args)
    except LocalDepthError as e:
        print(f"localdepth: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["GPU_TARGETS", "GpuBenchConfig", "card_slug", "depth_pro_model", "main", "run_gpu_bench",
           "target_verdicts"]
