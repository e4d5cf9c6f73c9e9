"""Timing primitives: latency statistics, peak memory while a block runs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np


def stats_ms(seconds: list[float]) -> dict:
    """Median and p90 of a list of durations (seconds), in milliseconds."""
    a = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)), "n": int(a.size)}


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        import sys

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class PeakMemory:
    """Peak resident set size (sampled every 20 ms: often enough for a forward pass of 10+ ms, rarely enough not to steal a core from the threads being timed) and peak CUDA memory (PyTorch's allocator)
    while the ``with`` block runs."""

    def __init__(self, cuda: bool = False, interval: float = 0.02):
        self.cuda = cuda
        self.interval = interval
        self.peak_rss = 0
        self.peak_gpu: int | None = None
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.peak_rss = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, _rss_bytes())
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.peak_gpu = int(torch.cuda.max_memory_allocated())

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss / 2**20

    @property
    def peak_gpu_mb(self) -> float | None:
        return None if self.peak_gpu is None else self.peak_gpu / 2**20


def time_calls(fn, runs: int, warmup: int) -> list[float]:
    """Call ``fn()`` ``warmup`` times, then ``runs`` times; the durations of the latter in seconds."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out
