"""Dynamic batching: requests for one model are queued and run together on a worker thread.

The event loop only enqueues and awaits; the model runs on one dedicated thread per model,
so a slow forward pass never blocks other requests (or /healthz). The worker takes the
first waiting request, waits up to ``max_wait_ms`` for more (up to ``max_batch``), groups
them by network input size and runs each group as one forward pass. A job that needs the
model to itself (several views of one scene, :meth:`DynamicBatcher.submit_call`) waits in the
same queue and runs alone, between batches.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..postprocess import DepthResult
from ..safety import one_line

log = logging.getLogger("localdepth.server")


class QueueFullError(Exception):
    """The model's queue is full: answer 503 and let the client retry."""


class BatcherStoppedError(Exception):
    """The server is shutting down."""


@dataclass
class _Job:
    image: np.ndarray | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    call: Callable[[Any], Any] | None = None  # runs alone: call(estimator) instead of an image
    prompt: np.ndarray | None = None  # the network's prompt_depth input (1, h, w), for models that take one
    camera: dict | None = None  # the request's camera and EXIF, for models whose metres depend on it

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        self.image = self.prompt = self.call = None  # done with them: a settled job holds no image
        def _set():
            if self.future.done():  # the request timed out or its client went away
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)
        try:
            self.loop.call_soon_threadsafe(_set)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


_STOP = object()


class Budget:
    """An amount all requests hold at once: decoded pixels (``--max-queued-pixels``) or request
    bodies' bytes (``--max-bodies-mb``).

    The queue's request count alone let 64 waiting requests hold 64 full-size images, and 256
    connections hold 256 uploads; this counts what they cost. :meth:`reserve` takes room at once or
    refuses (the caller answers 503); :meth:`acquire` waits for room, first come first served, and
    while anyone waits :meth:`reserve` refuses, so a waiting request is not starved. An amount
    larger than the whole budget never fits (the caller answers 413): an empty budget admitted a
    scene of 200 Mpx under a budget of 100 before. Used from the event loop.
    """

    #: how often a waiting request looks for room, seconds
    POLL_S = 0.01

    def __init__(self, limit: int):
        self.limit = int(limit)
        self.used = 0
        self._lock = threading.Lock()
        self._waiting: list[object] = []

    def fits_at_all(self, amount: int) -> bool:
        return amount <= self.limit

    def reserve(self, amount: int) -> bool:
        with self._lock:
            if self._waiting or self.used + amount > self.limit:
                return False
            self.used += amount
            return True

    async def acquire(self, amount: int, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for room for ``amount`` (taken when this returns True)."""
        if not self.fits_at_all(amount):
            return False
        ticket = object()
        with self._lock:
            self._waiting.append(ticket)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                with self._lock:
                    if self._waiting[0] is ticket and self.used + amount <= self.limit:
                        self.used += amount
                        return True
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(self.POLL_S)
        finally:
            with self._lock:
                self._waiting.remove(ticket)

    def release(self, amount: int) -> None:
        with self._lock:
            self.used = max(0, self.used - amount)


class DynamicBatcher:
    """Queue + worker thread for one :class:`~localdepth.estimator.DepthEstimator`.

    ``metrics`` (optional) is a :class:`~localdepth.server.metrics.ServerMetrics`.
    """

    def __init__(self, estimator, *, max_batch: int, max_wait_ms: float, queue_size: int, metrics=None):
        self.estimator = estimator
        self.name = estimator.name
        self.max_batch = max(1, int(max_batch))
        if getattr(estimator.backend, "max_batch", None):
            self.max_batch = min(self.max_batch, estimator.backend.max_batch)
        self.max_wait_s = max_wait_ms / 1000.0
        self.metrics = metrics
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._stopped = False

    # ------------------------------------------------------------------ event-loop side

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name=f"localdepth-{self.name}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopped

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    @property
    def full(self) -> bool:
        return self._queue.full()

    async def submit(self, image: np.ndarray, timeout_s: float, prompt: np.ndarray | None = None,
                     camera: dict | None = None) -> DepthResult:
        """Queue one decoded image (and its preprocessed prompt depth, for models that take one);
        raises QueueFullError, asyncio.TimeoutError or the model's error."""
        return await self._enqueue(timeout_s, image=image, prompt=prompt, camera=camera)

    async def submit_call(self, call: Callable[[Any], Any], timeout_s: float) -> Any:
        """Queue ``call(estimator)`` to run alone on the model's thread (e.g. several views of one
        scene); its result or error comes back as :meth:`submit`'s do."""
        return await self._enqueue(timeout_s, call=call)

    async def _enqueue(self, timeout_s: float, *, image: np.ndarray | None = None, call=None, prompt=None,
                       camera=None):
        if not self.running:
            raise BatcherStoppedError("the model is not running (the server is starting or stopping)")
        loop = asyncio.get_running_loop()
        job = _Job(image, loop, loop.create_future(), call=call, prompt=prompt, camera=camera)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(f"{self.name}: {self._queue.maxsize} requests are already waiting") from None
        self._gauge()
        # wait_for cancels the future on timeout; the worker then skips or discards the job
        return await asyncio.wait_for(job.future, timeout_s)

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new work, fail what is still queued, and join the worker."""
        self._stopped = True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                job.settle(error=BatcherStoppedError("the server is shutting down"))
        try:
            self._queue.put(_STOP, timeout=1.0)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
        self._gauge()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(self.name).set(self._queue.qsize())

    # ------------------------------------------------------------------ worker thread

    def _collect(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        jobs = [first]
        deadline = time.perf_counter() + self.max_wait_s
        while len(jobs) < self.max_batch:
            remaining = deadline - time.perf_counter()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                self._queue.put_nowait(_STOP)  # room for it: we just took one out
                break
            jobs.append(job)
        self._gauge()
        return [j for j in jobs if not j.future.done()]  # drop requests that already timed out

    def _work(self) -> None:
        while True:
            jobs = self._collect()
            if jobs is None:
                return
            if not jobs:
                continue
            groups: dict[tuple, list[_Job]] = defaultdict(list)
            for job in jobs:
                if job.call is None:
                    prompt_shape = None if job.prompt is None else job.prompt.shape
                    groups[(self.estimator.network_size(*job.image.shape[:2]), prompt_shape)].append(job)
            for group in groups.values():
                self._run(group)
            for job in jobs:
                if job.call is not None and not job.future.done():
                    self._call(job)
            # wait for the next batch holding nothing of this one: these locals kept the last batch's
            # images and maps alive while the server idled (175 MiB after one 25 Mpx request)
            jobs = groups = group = job = None

    def _call(self, job: _Job) -> None:
        try:
            result = job.call(self.estimator)
        except Exception as e:  # a failing job never stops the worker
            log.warning("%s: a job failed (%s: %s)", self.name, type(e).__name__, e)
            job.settle(error=e)
            return
        job.settle(result)

    def _run(self, group: list[_Job]) -> None:
        t0 = time.perf_counter()
        try:
            prompts = None if group[0].prompt is None else [j.prompt[0] for j in group]
            results = self.estimator.predict_decoded([j.image for j in group], batch_size=len(group),
                                                     prompt_depths=prompts, cameras=[j.camera for j in group])
        except Exception as e:  # a failing batch never stops the worker
            if len(group) > 1:  # run them one by one, so one bad image fails only its own request
                log.warning("%s: a batch of %d failed (%s); retrying one by one", self.name, len(group), one_line(str(e)))
                for job in group:
                    self._run([job])
                return
            log.error("%s: inference failed on a %dx%d image: %s: %s", self.name, *group[0].image.shape[:2],
                      type(e).__name__, one_line(str(e)))
            group[0].settle(error=e)
            return
        if self.metrics is not None:
            self.metrics.batch_size.labels(self.name).observe(len(group))
            self.metrics.inference_seconds.labels(self.name).observe(time.perf_counter() - t0)
        for job, result in zip(group, results):
            job.settle(result)
