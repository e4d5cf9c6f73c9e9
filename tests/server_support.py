"""Helpers shared by the server tests: encoded test images and a real `localdepth serve` process."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import httpx
import numpy as np


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like RGB image (smooth gradients and blobs) that JPEG keeps nearly intact."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds a tiny truncated stream: a decompression-bomb probe."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_process(args: list[str], log_path: Path, env: dict | None = None, ready_timeout: float = 180.0):
    """Run ``python -m localdepth serve ARGS --port P`` and yield its base URL once /healthz says ready."""
    port = free_port()
    cmd = [sys.executable, "-m", "localdepth", "serve", *args, "--port", str(port), "--no-access-log"]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"`localdepth serve` exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"`localdepth serve` not ready after {ready_timeout} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextlib.contextmanager
def serve_in_thread(app, ready_timeout: float = 60.0, settings=None):
    """Run an app with a real uvicorn on 127.0.0.1 (a free port) in a thread of this process; yield its URL.

    The uvicorn configuration is `localdepth serve`'s (connection limits and timeouts from
    ``settings``, default ServerSettings()).
    """
    import uvicorn

    from localdepth.server import ServerSettings
    from localdepth.server.http import uvicorn_config

    port = free_port()
    config = uvicorn_config(app, settings or ServerSettings(), host="127.0.0.1", port=port, log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while not (server.started and httpx.get(f"{base}/healthz", timeout=5).status_code == 200):
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(30)


class GatedEstimator:
    """The real estimator behind a gate, so a test decides when inference may finish."""

    def __init__(self, estimator):
        self._estimator = estimator
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.finished = threading.Event()

    def __getattr__(self, name):
        return getattr(self._estimator, name)

    def predict_decoded(self, images, **kwargs):
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        try:
            return self._estimator.predict_decoded(images, **kwargs)
        finally:
            self.finished.set()
