"""Running an estimator over many inputs: decode -> predict (batched) -> write.

One bad input costs one line on stderr and its own result only; the rest go on.

By default the stages overlap (``pipeline=True``): a thread pool decodes and preprocesses the
next images while the backend infers the current batch, and another writes finished results
in the background. Both run through bounded windows of futures, so memory holds at most a
few batches whatever the number of inputs. Batches are the same as in the sequential path
(``pipeline=False``), so both write the same files.

Batches are formed by network input size (:class:`SizeBuckets`): images that share one (and the
size of their prompt depth) wait in a bucket until it is full, so a folder of mixed photos still
runs in full batches and a compiled model sees a few shapes, not one per image. On the GPU pipeline
(:attr:`DepthEstimator.device_pipeline`) the decoding threads leave each image in pinned host
memory and the estimator resizes it on the device; with no ``batch_size`` given, each bucket's batch
size follows from the free GPU memory (:func:`batch_size_for_memory`). On Ctrl-C, queued work is cancelled and
writes already under way finish; every file is written atomically, so none is half-written.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import CameraError, LocalDepthError, StorageError
from .estimator import DepthEstimator
from .inputs import InputItem
from .limits import AUTO_BATCH_MAX, AUTO_BATCH_MEMORY_FRACTION, MAX_IMAGE_PIXELS
from .safety import check_outputs, one_line, quoted
from .writers import WriteOptions, is_complete, needs_image, output_paths, write_result


@dataclass
class ItemOutcome:
    item: InputItem
    status: str  # "ok", "failed", "skipped"
    error: str | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class RunSummary:
    outcomes: list[ItemOutcome] = field(default_factory=list)
    seconds: float = 0.0  # processing the inputs, after the model was ready
    interrupted: bool = False
    engine: str = ""  # backend, precision and device, e.g. "openvino bf16 on cpu"
    load_seconds: float = 0.0  # loading the model in this run (a first conversion included)
    converted: bool = False  # the model was converted in this run

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def ok(self) -> int:
        return self.count("ok")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    def line(self, outdir: Path) -> str:
        """The time the user waited (loading the model included, said apart), and the rate of
        the inputs once the model was ready."""
        rate = self.ok / self.seconds if self.seconds > 0 else 0.0
        head = "interrupted" if self.interrupted else "done"
        engine = f", {self.engine}" if self.engine else ""
        loading = ""
        if self.load_seconds >= 0.05:
            what = "converting and loading the model" if self.converted else "loading the model"
            loading = f"{self.load_seconds:.1f} s {what}; "
        return (f"{head}: {self.ok} ok, {self.failed} failed, {self.skipped} skipped in "
                f"{self.load_seconds + self.seconds:.1f} s ({loading}{rate:.2f} images/s{engine}) -> {outdir}")


def _inference_failure(label: str, e: BaseException) -> str:
    """One line for an image the model failed on; a camera it cannot use is said as such (with what to do)."""
    if isinstance(e, CameraError):
        return f"{quoted(label)}: {_short(e)}"
    return f"{quoted(label)}: inference failed ({_short(e)})"


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if isinstance(e, LocalDepthError) else f"{type(e).__name__}: {text}"


def _write_failure(item: InputItem, e: BaseException) -> str:
    """One line for an input whose outputs could not be written (a full disk costs that input)."""
    if isinstance(e, StorageError):  # it names the file and the reason already
        return f"{quoted(item.label)}: {e}"
    return f"{quoted(item.label)}: cannot write outputs ({_short(e)})"


@dataclass
class _Decoded:
    item: InputItem
    paths: dict[str, Path]
    image: np.ndarray
    decode_ms: float
    network_input: np.ndarray | None = None  # preprocessed in the pipelined path
    preprocess_ms: float = 0.0
    prompt: np.ndarray | None = None  # the network's prompt_depth input (1, h, w), for models that take one
    prompt_label: str | None = None

    def annotate(self, result) -> None:
        """Name the input and the prompt depth file in the result's sidecar notes."""
        result.notes["input"] = self.item.record()
        if self.prompt_label and "prompt_depth" in result.notes:
            result.notes["prompt_depth"]["file"] = self.prompt_label


def batch_size_for_memory(free_bytes: int, per_image_bytes: int, cap: int = AUTO_BATCH_MAX,
                          fraction: float = AUTO_BATCH_MEMORY_FRACTION) -> int:
    """The largest batch whose activations (``per_image_bytes`` each, the model's estimate at one
    network size) fit in ``fraction`` of ``free_bytes``, within ``[1, cap]``: one image always runs
    (a full GPU then fails that batch alone, as any error does). A pure function."""
    if per_image_bytes <= 0:
        return max(1, cap)
    return max(1, min(cap, int(free_bytes * fraction) // int(per_image_bytes)))


class SizeBuckets:
    """Groups items by a key (the network input size, and the prompt's) into batches.

    :meth:`add` returns the batches that are ready: a bucket once it holds ``limit(key)`` items, or,
    when more than ``hold`` items wait in all, the bucket holding the oldest one (partly full), so
    memory stays bounded whatever the mix of sizes. :meth:`flush` returns the rest, oldest first.
    The batches depend only on the order of the items and their keys, so the sequential and the
    pipelined runner form the same ones.
    """

    def __init__(self, limit: Callable[[object], int], hold: int):
        self.limit = limit
        self.hold = max(1, hold)
        self._buckets: dict[object, list] = {}  # insertion order: the bucket of the oldest item first
        self._waiting = 0

    def add(self, item, key) -> list[list]:
        bucket = self._buckets.setdefault(key, [])
        bucket.append(item)
        self._waiting += 1
        ready = []
        if len(bucket) >= max(1, self.limit(key)):
            ready.append(self._pop(key))
        while self._waiting > self.hold:
            ready.append(self._pop(next(iter(self._buckets))))
        return ready

    def flush(self) -> list[list]:
        return [self._pop(key) for key in list(self._buckets)]

    def _pop(self, key) -> list:
        bucket = self._buckets.pop(key)
        self._waiting -= len(bucket)
        return bucket


def plan(item: InputItem, outdir: Path, options: WriteOptions) -> dict[str, Path]:
    """Output paths of one item; refuses to overwrite the input itself."""
    paths = output_paths(outdir, item.rel, options.formats)
    if item.path is not None:
        check_outputs([(f"the {fmt} output", path) for fmt, path in paths.items()], [("the input", item.path)],
                      advice="choose another --outdir")
    return paths


def is_done(item: InputItem, paths: dict[str, Path]) -> bool:
    """Whether ``item``'s outputs are complete (``--skip-existing``): every file there, and a
    sidecar that says this input made them. A sidecar naming another input (the names of a run
    whose inputs changed) is not this input's result; one from before inputs were recorded is
    trusted as it always was."""
    if not is_complete(paths):
        return False
    try:
        recorded = json.loads(paths["json"].read_text()).get("input")
    except (OSError, ValueError, AttributeError):
        return False
    return not isinstance(recorded, dict) or recorded.get("source") in (None, item.identity)


class Runner:
    """Runs one estimator over inputs and writes results (see module docstring).

    ``estimator``: a loaded :class:`DepthEstimator`, or a function that loads one. A function
    is called only when some input needs the model (not when every input is missing, bad, or
    complete under ``skip_existing``), in the calling thread, before any work is queued, so a
    loading error stays one error and not one per input.
    ``on_error`` receives one line per failed input (default: stderr). ``pipeline=False`` runs
    the stages one after the other; ``workers`` is the number of decoding threads (default:
    up to 4, one per CPU). ``url_limits`` bounds URL inputs (:class:`localdepth.fetch.FetchLimits`).
    ``prompt_for(item) -> (metres (H, W), label)`` gives each input's prompt depth, for models
    that take one. ``batch_size=None``: on the GPU pipeline, each size bucket's batch follows from
    the free GPU memory (at most :data:`~localdepth.limits.AUTO_BATCH_MAX`); elsewhere 1.
    """

    def __init__(self, estimator: DepthEstimator | Callable[[], DepthEstimator], outdir: Path,
                 options: WriteOptions, *,
                 batch_size: int | None = 1, skip_existing: bool = False, progress: bool = True,
                 on_error: Callable[[str], None] | None = None, pipeline: bool = True,
                 workers: int | None = None, url_limits=None, max_pixels: int | None = MAX_IMAGE_PIXELS,
                 prompt_for: Callable[[InputItem], tuple[np.ndarray, str]] | None = None):
        # duck typing: anything that predicts is the estimator itself; a plain function loads one
        self._load = estimator if callable(estimator) and not hasattr(estimator, "predict_prepared") else None
        self.estimator: DepthEstimator | None = None if self._load else estimator
        if self.estimator is not None:
            self.estimator.check_prompt(prompt_for is not None)
        self.url_limits = url_limits
        self.prompt_for = prompt_for
        self.outdir = Path(outdir)
        self.options = options
        self.auto_batch = batch_size is None
        self.skip_existing = skip_existing
        self.progress = progress
        self.on_error = on_error or (lambda line: print(f"localdepth: error: {one_line(line)}", file=sys.stderr))
        self.keep_image = needs_image(options.formats)
        self.pipeline = pipeline
        self.max_pixels = max_pixels  # larger images are refused before decoding
        self.workers = max(1, workers or min(4, os.cpu_count() or 1))
        self._set_batch_size(1 if batch_size is None else max(1, batch_size))
        self._memory_limits: dict = {}
        #: most inputs held in memory at once during the last run (decoded, not yet written)
        self.peak_in_flight = 0

    def _set_batch_size(self, batch_size: int) -> None:
        self.batch_size = batch_size
        #: inputs decoded ahead of inference, waiting in size buckets, and results waiting to be written, at most
        self.decode_window = 2 * self.batch_size + self.workers
        self.bucket_window = 2 * self.batch_size
        self.write_window = 2 * self.batch_size + 2

    def _batch_limit(self, key) -> int:
        """The batch size of one size bucket: the given one, within the backend's largest batch;
        automatic: what the free GPU memory allows at that network size."""
        limit = self.batch_size
        backend = self.estimator.backend
        if backend.max_batch:
            limit = min(limit, backend.max_batch)
        if self.auto_batch and key not in self._memory_limits:
            free = self._device_memory()
            self._memory_limits[key] = limit if free is None else \
                batch_size_for_memory(free, backend.activation_bytes((1, 3, *key[0])), cap=limit)
        return min(limit, self._memory_limits.get(key, limit))

    def _device_memory(self) -> int | None:
        """Free memory of the device the GPU pipeline runs on; None off it (CPU: batches of one)."""
        backend = self.estimator.backend
        if not self.estimator.device_pipeline or not hasattr(backend, "free_memory"):
            return None
        return backend.free_memory()

    def _bucket_key(self, d: _Decoded):
        """Images share a batch when they share a network input size (and prompt size)."""
        return self.estimator.network_size(*d.image.shape[:2]), _shape(d.prompt)

    def _buckets(self) -> SizeBuckets:
        return SizeBuckets(self._batch_limit, self.bucket_window)

    @cached_property
    def model_info(self) -> dict:
        return self.estimator.describe()

    def _needs_model(self, item: InputItem) -> bool:
        """Whether the item will reach the network (it may still fail later, when decoded)."""
        if item.error:
            return False
        if not self.skip_existing:
            return True
        try:
            return not is_done(item, plan(item, self.outdir, self.options))
        except Exception:  # refused by plan(): fails in _prepare without the model
            return False

    def run(self, items: list[InputItem]) -> RunSummary:
        from tqdm.auto import tqdm

        summary = RunSummary()
        if self.estimator is None and any(self._needs_model(item) for item in items):
            t0 = time.perf_counter()
            self.estimator = self._load()
            summary.load_seconds = time.perf_counter() - t0
            summary.converted = bool(getattr(self.estimator.backend, "converted_now", False))
            self.estimator.check_prompt(self.prompt_for is not None)
        if self.estimator is not None:  # the summary line names what ran: "openvino bf16 on cpu"
            backend = self.estimator.backend
            summary.engine = f"{backend.name} {backend.dtype} on {backend.device}"
            if self.auto_batch:  # GPU: up to AUTO_BATCH_MAX a batch, as its free memory allows; elsewhere one image
                self._set_batch_size(AUTO_BATCH_MAX if self._device_memory() is not None else 1)
        start = time.perf_counter()
        bar = tqdm(total=len(items), unit="img", disable=not self.progress or len(items) < 2,
                   dynamic_ncols=True, file=sys.stderr)
        order = {id(item): i for i, item in enumerate(items)}
        self._late_outcomes: list[ItemOutcome] = []
        outcomes = self._pipelined(items) if self.pipeline else self._outcomes(items)
        try:
            for outcome in outcomes:
                summary.outcomes.append(outcome)
                if outcome.status == "failed":
                    bar.clear()
                    self.on_error(outcome.error or "failed")
                bar.update(1)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            outcomes.close()  # the pipeline's finally: cancel queued work, wait for writes under way
            summary.outcomes.extend(self._late_outcomes)
            bar.close()
            summary.seconds = time.perf_counter() - start
        summary.outcomes.sort(key=lambda o: order.get(id(o.item), len(order)))
        return summary

    def _outcomes(self, items: list[InputItem]) -> Iterator[ItemOutcome]:
        buckets = None
        for item in items:
            outcome, decoded = self._prepare(item)
            if outcome is not None:
                yield outcome
                continue
            buckets = buckets or self._buckets()
            for group in buckets.add(decoded, self._bucket_key(decoded)):
                yield from self._predict_and_write(group)
        for group in buckets.flush() if buckets else []:
            yield from self._predict_and_write(group)

    def _prepare(self, item: InputItem) -> tuple[ItemOutcome | None, _Decoded | None]:
        if item.error:
            return ItemOutcome(item, "failed", item.error), None
        try:
            paths = plan(item, self.outdir, self.options)
            if self.skip_existing and is_done(item, paths):
                return ItemOutcome(item, "skipped", outputs=paths), None
            t0 = time.perf_counter()
            image = item.load(max_pixels=self.max_pixels, url_limits=self.url_limits)
            decoded = _Decoded(item, paths, image, (time.perf_counter() - t0) * 1000)
            if self.prompt_for is not None:
                metres, decoded.prompt_label = self.prompt_for(item)
                decoded.prompt = self.estimator.preprocess_prompt(metres)
            return None, decoded
        except Exception as e:  # one bad input must not stop the others
            return ItemOutcome(item, "failed", _short(e)), None

    def _predict_and_write(self, batch: list[_Decoded]) -> Iterator[ItemOutcome]:
        try:
            prompts = None if self.prompt_for is None else [d.prompt[0] for d in batch]
            results = self.estimator.predict_decoded(
                [d.image for d in batch], batch_size=len(batch),
                sources=[d.item.label for d in batch], keep_image=self.keep_image, prompt_depths=prompts)
        except Exception as e:
            if len(batch) == 1:
                yield ItemOutcome(batch[0].item, "failed", _inference_failure(batch[0].item.label, e))
                return
            # retry one by one so that one image that breaks the batch fails alone
            for d in batch:
                yield from self._predict_and_write([d])
            return
        for d, result in zip(batch, results):
            t0 = time.perf_counter()
            result.timings = {"decode": d.decode_ms, **result.timings}
            d.annotate(result)
            try:
                write_result(result, d.paths, self.options, self.model_info)
            except Exception as e:
                yield ItemOutcome(d.item, "failed", _write_failure(d.item, e))
                continue
            yield ItemOutcome(d.item, "ok", outputs=d.paths, seconds=time.perf_counter() - t0)

    # ------------------------------------------------------------------------- pipelined path

    def _prepare_input(self, item: InputItem) -> tuple[ItemOutcome | None, _Decoded | None]:
        """Decode and preprocess one item (runs in a decoding thread)."""
        outcome, decoded = self._prepare(item)
        if decoded is None:
            return outcome, None
        try:
            t0 = time.perf_counter()
            decoded.network_input = self.estimator.prepare(decoded.image)
            decoded.preprocess_ms = (time.perf_counter() - t0) * 1000
        except Exception as e:
            return ItemOutcome(item, "failed", f"{quoted(item.label)}: cannot preprocess ({_short(e)})"), None
        return None, decoded

    def _write(self, d: _Decoded, result) -> ItemOutcome:
        """Write one result (runs in a writing thread)."""
        t0 = time.perf_counter()
        try:
            write_result(result, d.paths, self.options, self.model_info)
        except Exception as e:
            return ItemOutcome(d.item, "failed", _write_failure(d.item, e))
        return ItemOutcome(d.item, "ok", outputs=d.paths, seconds=time.perf_counter() - t0)

    def _pipelined(self, items: list[InputItem]) -> Iterator[ItemOutcome]:
        decoders = ThreadPoolExecutor(self.workers, thread_name_prefix="localdepth-decode")
        writers = ThreadPoolExecutor(2, thread_name_prefix="localdepth-write")
        ahead: deque[Future] = deque()  # decode+preprocess futures, in input order
        inferring: deque = deque()  # (group, results) submitted to the backend, in input order
        writes: deque[Future] = deque()  # write futures, in submission order
        queue = iter(items)
        # batches the backend works on at once (OpenVINO throughput mode: its optimal request count)
        requests = 1 if self.estimator is None else max(1, self.estimator.backend.parallel_requests)
        self.peak_in_flight = in_flight = 0  # inputs taken from the queue whose outcome is not out yet

        def finished_writes(block_until: int) -> Iterator[ItemOutcome]:
            nonlocal in_flight
            while writes and (len(writes) > block_until or writes[0].done()):
                # wait with the future still queued: Ctrl-C during the wait must not lose a write
                # that then finishes (the finally below reports the writes that did)
                outcome = writes[0].result()
                writes.popleft()
                in_flight -= 1
                yield outcome

        def finished_inference(keep: int) -> Iterator[ItemOutcome]:
            """Wait for the oldest batches until ``keep`` are left in flight; queue their writes."""
            nonlocal in_flight
            while len(inferring) > keep:
                group, results = inferring.popleft()
                for d, result, failure in self._group_results(group, results):
                    if failure is not None:
                        in_flight -= 1
                        yield failure
                        continue
                    writes.append(writers.submit(self._write, d, result))

        buckets = self._buckets()
        try:
            while True:
                while len(ahead) < self.decode_window and (item := next(queue, None)) is not None:
                    ahead.append(decoders.submit(self._prepare_input, item))
                    in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, in_flight)
                if not ahead:
                    break
                outcome, decoded = ahead.popleft().result()
                if outcome is not None:
                    in_flight -= 1
                    yield outcome
                    continue
                for group in buckets.add(decoded, self._bucket_key(decoded)):
                    inferring.append((group, self._submit_group(group)))
                    yield from finished_inference(requests - 1)
                yield from finished_writes(self.write_window)
            for group in buckets.flush():
                inferring.append((group, self._submit_group(group)))
                yield from finished_inference(requests - 1)
            yield from finished_inference(0)
            yield from finished_writes(0)
        finally:
            for f in (*ahead, *writes):
                f.cancel()  # queued work is dropped; running work finishes
            decoders.shutdown(wait=True, cancel_futures=True)
            writers.shutdown(wait=True, cancel_futures=True)
            # writes that were under way when the run stopped (Ctrl-C) did finish: report them
            self._late_outcomes = [f.result() for f in writes if f.done() and not f.cancelled()]

    def _submit_group(self, group: list[_Decoded]):
        """Start inferring ``group``; returns a function that waits for its results (or raises)."""
        conditioning = {} if self.prompt_for is None else {"prompt_depth": np.stack([d.prompt for d in group])}
        try:
            images = [d.image for d in group]
            return self.estimator.submit_prepared(
                images, self.estimator.network_batch(images, [d.network_input for d in group]),
                sources=[d.item.label for d in group], keep_image=self.keep_image, **conditioning)
        except Exception as e:
            def failed(error=e):
                raise error
            return failed

    def _group_results(self, group: list[_Decoded], results):
        """Yield ``(decoded, result, None)`` or ``(decoded, None, failure)`` for each input of ``group``."""
        try:
            done = results()
        except Exception as e:
            if len(group) == 1:
                d = group[0]
                yield d, None, ItemOutcome(d.item, "failed", _inference_failure(d.item.label, e))
                return
            for d in group:  # one by one, so that one image that breaks the batch fails alone
                yield from self._group_results([d], self._submit_group([d]))
            return
        for d, result in zip(group, done):
            d.network_input = None  # not needed any more; free it before the write
            d.annotate(result)
            result.timings = {"decode": d.decode_ms, "preprocess": d.preprocess_ms, **result.timings}
            yield d, result, None


def _shape(array: np.ndarray | None):
    return None if array is None else array.shape
