"""The Ray Data pipeline of ``localdepth batch``.

::

    sources (driver) -> decode + preprocess (CPU tasks) -> inference (actor pool, one model each)
                     -> postprocess + write (CPU tasks) -> result rows -> manifest.parquet (driver)

Every row carries a ``status``: ``pending`` until written, then ``ok``; ``skipped`` when the
outputs are already complete (resume); ``failed`` with a one-line ``error``. A failed row flows
on to the manifest and never stops the job. Ray's fault tolerance covers killed processes: the
inference actors restart (``max_restarts``) and re-run the lost batch (``max_task_retries``), and
Ray Data re-runs failed tasks; a re-run writes the same files again through atomic renames, so a
retry never leaves a half file or a duplicate.

Arrays travel between stages as ``.npy`` bytes: an Arrow binary column holds any shape, and an
empty value for rows that have none (skipped, failed), which ragged tensor columns cannot.

With GPUs for the actors (``--gpus-per-worker``), the decoding tasks send the decoded 8-bit image
instead of the network input (a quarter of the bytes), and each actor resizes and normalises on its
GPU, runs the network and resizes the map back there (the GPU pipeline of ``localdepth run``,
:attr:`~localdepth.estimator.DepthEstimator.device_pipeline`); the writing tasks get maps at the
image's size. Without ``--batch-size``, the actors then batch same-size images as their free GPU
memory allows (:func:`localdepth.runner.batch_size_for_memory`).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import registry
from ..errors import LocalDepthError
from ..estimator import refuse_prompt_models
from ..fetch import DEFAULT_LIMITS, FetchLimits, fetch
from ..fetch import is_url as is_http_url
from ..images import load_image
from ..limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from ..postprocess import DepthResult, to_original_size
from ..preprocess import network_input_note, network_size, preprocess
from ..runner import _short
from ..safety import is_loopback_host, one_line, quoted
from ..weights import resolve
from ..writers import WriteOptions, needs_image
from .outputs import OutputTarget
from .sources import Source, filesystem, is_url

INSTALL_HINT = "localdepth batch needs Ray: pip install 'localdepth[distributed]'"

#: fault injection for tests: the inference actor process kills itself (SIGKILL) after it has
#: inferred this many images, once per marker file (created the first time), as a crash would.
CRASH_AFTER_ENV = "LOCALDEPTH_BATCH_CRASH_AFTER"
CRASH_MARKER_ENV = "LOCALDEPTH_BATCH_CRASH_MARKER"

DECODE_MEMORY = 256 * 1024**2  # bytes reserved per decode task

#: What Ray's C++ core worker prints (at error level, straight to file descriptor 2) for every Ray Data
#: actor pool with restarts: Ray Data passes its data context and map function to the actors as object
#: references, and Ray warns that restarts may fail if such a reference is lost (ray-project/ray#53727,
#: #57733). Those objects are owned by the driver for the whole job, and a killed actor does restart
#: (tests/test_distributed.py kills one), so for ``localdepth batch`` the line is noise, printed on
#: every run: it is dropped from stderr (Ray's own log file keeps it). Restarts stay on: without
#: them a killed worker would lose its batch.
RAY_NOISE = ("has constructor arguments in the object store and max_restarts > 0",)

MANIFEST_COLUMNS = ("index", "input", "rel", "status", "error", "kind", "outputs", "decode_ms",
                    "preprocess_ms", "inference_ms", "postprocess_ms", "write_ms")


def require_ray():
    """Import Ray, or fail with one line that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise LocalDepthError(INSTALL_HINT) from None
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = False):
    """Join a Ray cluster (``address``: ``auto``, ``ray://host:10001``, ``host:6379``), or start a
    local one with ``num_cpus`` (default: all cores). Reuses a session already running here.

    A local Ray listens on 127.0.0.1 only (nothing on the network can join it or reach its
    services) and is stopped when this process ends, even by ``kill -9``
    (:mod:`localdepth.distributed.watchdog`).
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    kwargs = dict(include_dashboard=False, log_to_driver=not quiet, configure_logging=True,
                  logging_level="ERROR")
    if address:
        if _is_loopback_address(address):  # a local Ray bound to 127.0.0.1 (ours): join it as a local node
            with _loopback_only():
                ray.init(address=address, _node_ip_address="127.0.0.1", **kwargs)
        else:
            ray.init(address=address, **kwargs)
        return ray
    from . import watchdog

    before = watchdog.children()
    with _loopback_only():
        context = ray.init(num_cpus=num_cpus or os.cpu_count() or 1, _node_ip_address="127.0.0.1", **kwargs)
    watchdog.start(watchdog.children() - before, context.address_info.get("session_dir", ""))
    return ray


def _is_loopback_address(address: str) -> bool:
    """``127.0.0.1:6379``, ``localhost:6379``, ``[::1]:6379`` (a ``ray://`` client address is not joined as a node)."""
    return "://" not in address and is_loopback_host(address.rsplit(":", 1)[0])


@contextlib.contextmanager
def _loopback_only():
    """Make ``ray.init`` start a single-node Ray bound to 127.0.0.1.

    Ray binds its services to every interface unless the node's address is the loopback one,
    and on Linux it replaces 127.0.0.1 by the machine's network address unless clusters are
    switched off, as Ray does by default on Windows and macOS (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``,
    read by Ray at import time, hence the constant too). Restored afterwards, so that joining a
    real cluster later in this process works as usual.
    """
    from ray._private import ray_constants

    env = os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR)
    flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"  # the processes Ray starts read it too
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = flag
        if env is None:
            os.environ.pop(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
        else:
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = env


def cluster_is_local(ray) -> bool:
    """True when every node of the cluster is this machine (weights resolve to the same files)."""
    import socket

    try:
        ips = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
        return ips <= {ray.util.get_node_ip_address(), "127.0.0.1", socket.gethostbyname(socket.gethostname())}
    except Exception:
        return False


# ----------------------------------------------------------------------------- job settings

@dataclass
class BatchConfig:
    """Everything the stages need; pickled to every task and actor."""

    model: str
    weights: str | None = None
    backend: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    input_size: int | None = None
    formats: tuple[str, ...] = ("npy", "color")
    cmap: str = "Spectral_r"
    grayscale: bool = False
    batch_size: int | None = 1  # None: 1 on CPUs; on GPU actors, as their free memory allows
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float | None = None  # None: 1, or less when the cluster is small (see plan_resources)
    skip_existing: bool = True
    max_pixels: int | None = MAX_IMAGE_PIXELS  # larger images are refused before decoding
    url_limits: FetchLimits = DEFAULT_LIMITS  # http(s):// inputs: size and time of the whole exchange
    stereo_budget: float = 3.0
    controlnet_size: int | None = None

    @property
    def options(self) -> WriteOptions:
        return WriteOptions(formats=self.formats, cmap=self.cmap, grayscale=self.grayscale,
                            stereo_budget=self.stereo_budget, controlnet_size=self.controlnet_size)

    @property
    def on_gpu(self) -> bool:
        """The actors have GPUs: images go to them decoded, and are preprocessed there."""
        return self.gpus_per_worker > 0 and not str(self.device).startswith("cpu")

    @property
    def rows_per_call(self) -> int:
        """Rows handed to an actor at once (Ray's batch): the batch size, or the automatic cap on GPUs."""
        from ..limits import AUTO_BATCH_MAX

        if self.batch_size is not None:
            return max(1, self.batch_size)
        return AUTO_BATCH_MAX if self.on_gpu else 1


def _pack(array: np.ndarray | None) -> bytes:
    if array is None:
        return b""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _unpack(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _read_bytes(url: str, url_limits: FetchLimits = DEFAULT_LIMITS) -> bytes:
    if is_http_url(url):  # as `localdepth run` fetches them: bounded in size and time
        return fetch(url, url_limits)
    with filesystem(url).open(url, "rb") as f:
        data = f.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise LocalDepthError(f"{quoted(url)}: the file is over the limit of {MAX_IMAGE_BYTES} bytes for an image")
    return data


# ----------------------------------------------------------------------------- stage 1: CPU tasks

def decode_stage(rows, cfg: BatchConfig, target: OutputTarget):
    """Plan outputs, skip complete ones, decode and preprocess the rest (pandas batch in and out)."""
    spec = registry.get(cfg.model)
    keep_image = needs_image(cfg.formats)
    nchw = spec.preprocessing.layout == "nchw"
    out = {k: [] for k in ("index", "input", "rel", "status", "error", "outputs", "tensor", "image",
                           "height", "width", "input_h", "input_w", "decode_ms", "preprocess_ms")}
    for index, src, rel, error in zip(rows["index"], rows["input"], rows["rel"], rows["error"]):
        status, paths, tensor, image, hw, net_hw, dec_ms, pre_ms = "pending", {}, None, None, (0, 0), (0, 0), 0.0, 0.0
        error = error if isinstance(error, str) and error else None
        if error is None:
            try:
                paths = target.paths(src, rel)
                if cfg.skip_existing and target.is_complete(paths):
                    status = "skipped"
                else:
                    t0 = time.perf_counter()
                    data = _read_bytes(src, cfg.url_limits) if is_url(src) else src
                    rgb = load_image(data, max_pixels=cfg.max_pixels)
                    dec_ms = _ms(t0)
                    hw = rgb.shape[:2]
                    if cfg.on_gpu:  # the actor preprocesses on its GPU
                        tensor = rgb
                        net_hw = network_size(hw[0], hw[1], spec.preprocessing, cfg.input_size)
                    else:
                        t0 = time.perf_counter()
                        tensor = preprocess(rgb, spec.preprocessing, cfg.input_size)
                        pre_ms = _ms(t0)
                        net_hw = tensor.shape[1:3] if nchw else tensor.shape[0:2]  # what the network sees
                    image = rgb if keep_image else None
            except Exception as e:  # one bad input must not stop the others
                error = _short(e)
        if error is not None:
            status = "failed"
        for key, value in (("index", int(index)), ("input", src), ("rel", rel), ("status", status),
                           ("error", error or ""), ("outputs", json.dumps(paths)), ("tensor", _pack(tensor)),
                           ("image", _pack(image)), ("height", int(hw[0])), ("width", int(hw[1])),
                           ("input_h", int(net_hw[0])), ("input_w", int(net_hw[1])),
                           ("decode_ms", dec_ms), ("preprocess_ms", pre_ms)):
            out[key].append(value)
    import pandas as pd

    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- stage 2: actors

class InferenceActor:
    """One model per actor; runs the network on the pending rows of each batch."""

    def __init__(self, cfg: BatchConfig, cpus: float | None = None):
        from ..estimator import load

        self.cfg = cfg
        # ONNX Runtime, OpenVINO and LiteRT get the actor's CPU share as threads (PyTorch follows
        # OMP_NUM_THREADS, which Ray sets from the same share)
        threads = max(1, int(cpus)) if cpus else None
        self.estimator = load(cfg.model, weights=cfg.weights, backend=cfg.backend, device=cfg.device,
                              dtype=cfg.dtype, input_size=cfg.input_size, threads=threads)
        self.model_info = json.dumps(self.estimator.describe())
        self.inferred = 0

    def __call__(self, rows):
        rows = rows.copy()
        raw = [b""] * len(rows)
        infer_ms = [0.0] * len(rows)
        status = list(rows["status"])
        errors = list(rows["error"])
        pending = [i for i, s in enumerate(status) if s == "pending"]
        tensors = {i: _unpack(rows["tensor"].iat[i]) for i in pending}
        self._rows = rows
        for group in self._groups(pending, tensors):
            self._infer(group, tensors, rows, raw, infer_ms, status, errors)
        self._maybe_crash()
        rows["raw"] = raw
        rows["inference_ms"] = infer_ms
        rows["status"] = status
        rows["error"] = errors
        rows["model_info"] = self.model_info
        return rows.drop(columns=["tensor"])

    def _groups(self, pending: list[int], tensors: dict[int, np.ndarray]):
        """Same-size inputs, up to the batch size (as the runner's size buckets): the network input's
        shape, or for decoded images (GPU actors) the network size the decoding task planned."""
        from ..runner import SizeBuckets

        rows = self._rows
        key = (lambda i: tensors[i].shape) if not self.cfg.on_gpu else \
            (lambda i: (int(rows["input_h"].iat[i]), int(rows["input_w"].iat[i])))
        buckets = SizeBuckets(self._limit, hold=max(1, len(pending)))
        for i in pending:
            yield from buckets.add(i, key(i))
        yield from buckets.flush()

    def _limit(self, key) -> int:
        """The batch size for one input size: the given one, or on a GPU what its free memory allows."""
        from ..runner import batch_size_for_memory

        limit = self.cfg.rows_per_call
        backend = self.estimator.backend
        if backend.max_batch:
            limit = min(limit, backend.max_batch)
        if self.cfg.batch_size is None and self.estimator.device_pipeline:
            free = backend.free_memory()
            if free is not None and len(key) == 2:
                limit = batch_size_for_memory(free, backend.activation_bytes((1, 3, *key)), cap=limit)
        return limit

    def _infer(self, group, tensors, rows, raw, infer_ms, status, errors) -> None:
        try:
            t0 = time.perf_counter()
            if self.cfg.on_gpu:  # decoded images: preprocessed, inferred and resized back on the GPU
                results = self.estimator.predict_decoded([tensors[i] for i in group], batch_size=len(group))
                out = [r.map for r in results]
            else:
                out = self.estimator.infer(np.stack([tensors[i] for i in group]))
            ms = _ms(t0) / len(group)
        except Exception as e:
            if len(group) > 1:  # one image that breaks the batch fails alone
                for i in group:
                    self._infer([i], tensors, rows, raw, infer_ms, status, errors)
                return
            i = group[0]
            status[i], errors[i] = "failed", f"{quoted(rows['input'].iat[i])}: inference failed ({_short(e)})"
            return
        for j, i in enumerate(group):
            raw[i] = _pack(np.asarray(out[j], dtype=np.float32))
            infer_ms[i] = ms
        self.inferred += len(group)

    def _maybe_crash(self) -> None:
        after = os.environ.get(CRASH_AFTER_ENV)
        marker = os.environ.get(CRASH_MARKER_ENV)
        if not after or not marker or self.inferred < int(after):
            return
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # exactly one crash per marker
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------- stage 3: CPU tasks

def write_stage(rows, cfg: BatchConfig, target: OutputTarget):
    """Back to the input's resolution, then the writers of `localdepth run`; one manifest row each."""
    import pandas as pd

    spec = registry.get(cfg.model)
    out = {k: [] for k in MANIFEST_COLUMNS}
    for r in rows.itertuples(index=False):
        status, error, write_ms, post_ms = r.status, r.error, 0.0, 0.0
        paths = json.loads(r.outputs)
        if status == "pending":
            try:
                t0 = time.perf_counter()
                depth = _unpack(r.raw)
                if depth.shape != (int(r.height), int(r.width)):  # GPU actors send maps at the image's size
                    depth = to_original_size(depth, int(r.height), int(r.width), spec.output,
                                             spec.postprocessing, spec.preprocessing)
                post_ms = _ms(t0)
                result = DepthResult(
                    map=depth, kind=spec.output, model=spec.name, input_size=(int(r.input_h), int(r.input_w)),
                    timings={"decode": r.decode_ms, "preprocess": r.preprocess_ms, "inference": r.inference_ms,
                             "postprocess": post_ms},
                    source=r.input, image=_unpack(r.image) if r.image else None, max_depth=spec.max_depth,
                    notes={**network_input_note(int(r.height), int(r.width), spec.preprocessing, cfg.input_size),
                           "input": {"source": r.input if is_url(r.input) else os.path.abspath(r.input),
                                     "name": r.rel}},  # which input made these files
                    metric=spec.metric)
                t0 = time.perf_counter()
                target.write(result, paths, json.loads(r.model_info))
                write_ms = _ms(t0)
                status = "ok"
            except Exception as e:
                status, error = "failed", f"{quoted(r.input)}: cannot write outputs ({_short(e)})"
        values = {"index": r.index, "input": r.input, "rel": r.rel, "status": status, "error": error,
                  "kind": spec.output, "outputs": list(paths.values()) if status in ("ok", "skipped") else [],
                  "decode_ms": r.decode_ms, "preprocess_ms": r.preprocess_ms, "inference_ms": r.inference_ms,
                  "postprocess_ms": post_ms, "write_ms": write_ms}
        for key in MANIFEST_COLUMNS:
            out[key].append(values[key])
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- the job

@dataclass
class BatchSummary:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    manifest: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + self.failed + self.skipped

    @property
    def images_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def line(self, outdir: str) -> str:
        return (f"done: {self.ok} ok, {self.failed} failed, {self.skipped} skipped in {self.seconds:.1f} s "
                f"({self.images_per_second:.2f} images/s) -> {outdir}; manifest: {self.manifest}")


def plan_resources(cfg: BatchConfig, cluster_cpus: float) -> float:
    """CPUs reserved per inference actor. Decode/write tasks need at least one CPU beside the
    actors, or the pipeline would wait for ever; on a small cluster the actors get less."""
    if cfg.cpus_per_worker is not None:
        cpus = cfg.cpus_per_worker
    else:
        cpus = min(1.0, (cluster_cpus - 1.0) / cfg.workers) if cluster_cpus > 1 else 0.0
    if cpus <= 0 or cluster_cpus - cfg.workers * cpus < min(1.0, cluster_cpus / 2):
        raise LocalDepthError(
            f"{cfg.workers} worker(s) x {cpus:g} CPU leave no CPU for decoding and writing on this "
            f"{cluster_cpus:g}-CPU cluster; use fewer --workers or a smaller --cpus-per-worker")
    return cpus


def _blocks(sources: list[Source], parallelism: int):
    """Sources as Arrow tables, a few per CPU so that decoding spreads over the cluster."""
    import pyarrow as pa

    size = max(1, min(256, math.ceil(len(sources) / max(1, 4 * parallelism))))
    tables = []
    for start in range(0, len(sources), size):
        chunk = sources[start:start + size]
        tables.append(pa.table({
            "index": pa.array(range(start, start + len(chunk)), pa.int64()),
            "input": pa.array([s.input for s in chunk], pa.string()),
            "rel": pa.array([s.rel for s in chunk], pa.string()),
            "error": pa.array([s.error or "" for s in chunk], pa.string()),
        }))
    return tables


def _manifest_schema():
    import pyarrow as pa

    return pa.schema([
        ("index", pa.int64()), ("input", pa.string()), ("rel", pa.string()), ("status", pa.string()),
        ("error", pa.string()), ("kind", pa.string()), ("outputs", pa.list_(pa.string())),
        ("decode_ms", pa.float64()), ("preprocess_ms", pa.float64()), ("inference_ms", pa.float64()),
        ("postprocess_ms", pa.float64()), ("write_ms", pa.float64()),
    ])


@contextlib.contextmanager
def dropping_stderr_lines(needles: tuple[str, ...] = RAY_NOISE):
    """While the block runs, lines of this process's file descriptor 2 that hold one of ``needles`` are
    dropped; everything else passes through at once (partial lines too: progress bars redraw with
    ``\\r``). Needed for lines that C++ writes to the descriptor, below Python's logging. Where the
    descriptor cannot be redirected (no fd 2), the block runs as it is."""
    import threading

    sys.stderr.flush()
    try:
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        yield
        return
    os.dup2(write_end, 2)
    os.close(write_end)
    marks = tuple(n.encode() for n in needles)

    def pump() -> None:
        held = b""  # the start of a line that may turn out to be noise
        while chunk := os.read(read_end, 65536):
            lines = (held + chunk).split(b"\n")
            held = lines.pop()
            out = b"".join(line + b"\n" for line in lines if not any(m in line for m in marks))
            if held and not held.startswith(b"["):  # Ray's C++ lines start "[date time E pid tid]"
                out, held = out + held, b""
            if out:
                os.write(saved, out)
        if held and not any(m in held for m in marks):
            os.write(saved, held)
        os.close(read_end)

    thread = threading.Thread(target=pump, name="localdepth-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's write end: the pump reads to its end and stops
        thread.join(timeout=5)
        os.close(saved)


@contextlib.contextmanager
def _ray_data_console(quiet: bool):
    """``quiet``: Ray Data's console messages (INFO, WARNING) are held back for the block; its log file
    keeps them. Errors still show."""
    import logging

    handlers = [h for h in logging.getLogger("ray.data").handlers if not isinstance(h, logging.FileHandler)]
    levels = [h.level for h in handlers]
    if quiet:
        for h in handlers:
            h.setLevel(max(h.level, logging.ERROR))
    try:
        yield
    finally:
        for h, level in zip(handlers, levels):
            h.setLevel(level)


def run_batch(sources: list[Source], outdir: str, cfg: BatchConfig, *, manifest: str | None = None,
              progress: bool = True, on_error=None) -> BatchSummary:
    """Run the pipeline over ``sources`` on the connected Ray cluster (see :func:`connect`).

    Writes a Parquet manifest (default ``<outdir>/manifest.parquet``) with one row per source.
    Without ``progress`` (``batch -q``), Ray Data's console messages are held back too.
    """
    with dropping_stderr_lines(), _ray_data_console(quiet=not progress):
        return _run_batch(sources, outdir, cfg, manifest=manifest, progress=progress, on_error=on_error)


def _run_batch(sources: list[Source], outdir: str, cfg: BatchConfig, *, manifest: str | None = None,
               progress: bool = True, on_error=None) -> BatchSummary:
    spec = registry.get(cfg.model)  # an unknown model fails here, not in every task
    refuse_prompt_models(spec, "batch")  # before Ray starts
    ray = require_ray()
    if not ray.is_initialized():
        connect()
    target = OutputTarget(outdir, cfg.options)
    target.check()
    if cluster_is_local(ray):
        resolve(spec, cfg.weights)  # missing weights: one line here, not an actor that never starts
    cpus = ray.cluster_resources().get("CPU", 1.0)
    actor_cpus = plan_resources(cfg, cpus)
    on_error = on_error or (lambda line: print(f"localdepth: error: {one_line(line)}", file=sys.stderr))

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = False
    summary = BatchSummary(manifest=manifest or _default_manifest(target))
    start = time.perf_counter()
    if not sources:
        _write_manifest([], summary.manifest, target)
        summary.seconds = time.perf_counter() - start
        return summary

    env = {k: os.environ[k] for k in (CRASH_AFTER_ENV, CRASH_MARKER_ENV) if k in os.environ}
    ds = ray.data.from_arrow(_blocks(sources, int(cpus)))
    ds = ds.map_batches(decode_stage, batch_format="pandas", batch_size=None,
                        fn_kwargs={"cfg": cfg, "target": target}, num_cpus=1,
                        # room for a decoded image; also keeps Ray from fusing decoding into the
                        # inference actors (it fuses stages with equal resources), which would run
                        # decoding one image at a time beside the model instead of in parallel
                        memory=DECODE_MEMORY)
    ds = ds.map_batches(
        InferenceActor, batch_format="pandas", batch_size=cfg.rows_per_call,
        fn_constructor_kwargs={"cfg": cfg, "cpus": actor_cpus}, compute=ray.data.ActorPoolStrategy(size=cfg.workers),
        num_cpus=actor_cpus, num_gpus=cfg.gpus_per_worker or None,
        # No max_restarts/max_task_retries here: Ray Data's actor pools default to -1 for both (a
        # killed actor is restarted and its lost batch re-run), which is what losing no input needs;
        # tests/test_distributed.py kills an actor to check it.
        runtime_env={"env_vars": env} if env else None)
    ds = ds.map_batches(write_stage, batch_format="pandas", batch_size=None,
                        fn_kwargs={"cfg": cfg, "target": target}, num_cpus=1)

    rows = []
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        table = batch.select(list(MANIFEST_COLUMNS)).cast(_manifest_schema())
        for status, error in zip(table.column("status").to_pylist(), table.column("error").to_pylist()):
            if status == "ok":
                summary.ok += 1
            elif status == "skipped":
                summary.skipped += 1
            else:
                summary.failed += 1
                summary.errors.append(error)
                on_error(error)
        rows.append(table)
    summary.seconds = time.perf_counter() - start
    _write_manifest(rows, summary.manifest, target)
    return summary


def _default_manifest(target: OutputTarget) -> str:
    return f"{target.root}/manifest.parquet" if target.is_url else str(Path(target.root) / "manifest.parquet")


def _write_manifest(tables, where: str, target: OutputTarget) -> None:
    """Rows in input order, written atomically (local) or uploaded whole (URL)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..writers import atomic_write_bytes

    table = pa.concat_tables(tables) if tables else _manifest_schema().empty_table()
    table = table.sort_by("index")
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    data = buf.getvalue().to_pybytes()
    if is_url(where):
        fs = filesystem(where)
        with fs.open(where, "wb") as f:
            f.write(data)
    else:
        atomic_write_bytes(Path(where), data)
