"""Every limit of the server, each tested so that removing it (not only lowering it) fails a test:
upload bytes (streamed and declared), pixels held, the network input, points, slow clients
(headers, body, keep-alive), aborted uploads, and the documented defaults."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import socket
import time

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")

from localdepth import limits  # noqa: E402
from localdepth.server import ServerSettings, create_app  # noqa: E402
from server_support import GatedEstimator, png_bytes, serve_in_thread, smooth_image  # noqa: E402

H, W = 42, 56


@contextlib.asynccontextmanager
async def serving(app):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localdepth", timeout=60) as client:
            yield client


class CountingBody:
    """An async request body that counts the bytes the server actually pulled from it."""

    def __init__(self, total: int, chunk: int = 4096):
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self):
        while self.sent < self.total:
            n = min(self.chunk, self.total - self.sent)
            self.sent += n
            yield b"\0" * n


# ----------------------------------------------------------------------------- defaults

def test_server_defaults_are_the_stated_limits():
    s = ServerSettings()
    assert (s.max_upload_bytes, s.max_pixels, s.max_queued_pixels) == (20 * 2**20, 25_000_000, 100_000_000)
    assert (s.queue_size, s.max_batch, s.max_wait_ms, s.timeout_s) == (64, 8, 10.0, 60.0)
    assert (s.max_points, s.header_timeout_s, s.body_timeout_s, s.keep_alive_s, s.max_connections) == \
        (2_000_000, 10.0, 30.0, 5, 256)
    assert s.max_upload_bytes == limits.SERVER_MAX_UPLOAD_BYTES and s.max_queued_pixels == limits.SERVER_MAX_QUEUED_PIXELS
    from localdepth.cli.main import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.max_upload_mb * 2**20 == s.max_upload_bytes
    for option, field in (("max_pixels", "max_pixels"), ("max_queued_pixels", "max_queued_pixels"),
                          ("queue_size", "queue_size"), ("max_batch", "max_batch"), ("timeout", "timeout_s"),
                          ("max_points", "max_points"), ("header_timeout", "header_timeout_s"),
                          ("body_timeout", "body_timeout_s"), ("keep_alive", "keep_alive_s"),
                          ("max_connections", "max_connections"), ("max_wait_ms", "max_wait_ms")):
        assert getattr(args, option) == getattr(s, field), option
    assert args.host == "127.0.0.1"


def test_settings_refuse_values_out_of_range():
    for bad in ({"max_points": 0}, {"timeout_s": float("nan")}, {"max_wait_ms": -1}, {"header_timeout_s": 0},
                {"max_pixels": 10, "max_queued_pixels": 5}, {"max_connections": 0}):
        with pytest.raises(ValueError):
            ServerSettings(**bad)


# ----------------------------------------------------------------------------- upload bytes

def test_chunked_upload_over_the_cap_is_cut_off_while_streaming(tiny_estimator):
    """No Content-Length to trust: the server stops reading once the body passes the cap, so a
    huge body never sits in memory (without the streaming cap it would read all 2 MB first)."""
    app = create_app([tiny_estimator], ServerSettings(max_upload_bytes=50_000))
    body = CountingBody(2_000_000)

    async def scenario():
        async with serving(app) as client:
            return await client.post("/v1/depth", content=body)  # an async iterable: chunked, no length

    r = asyncio.run(scenario())
    assert r.status_code == 413 and "over the limit of 50000 bytes" in r.json()["detail"]
    assert body.sent <= 50_000 + 2 * body.chunk, body.sent


def test_declared_content_length_over_the_cap_is_answered_before_the_body_is_read(tiny_estimator):
    app = create_app([tiny_estimator], ServerSettings(max_upload_bytes=50_000))
    body = CountingBody(2_000_000)

    async def scenario():
        async with serving(app) as client:
            return await client.post("/v1/depth", content=body, headers={"Content-Length": "2000000"})

    r = asyncio.run(scenario())
    assert r.status_code == 413
    assert body.sent == 0  # refused from the header alone


# ----------------------------------------------------------------------------- pixels and points

def test_decoded_pixels_held_at_once_are_budgeted(tiny_estimator):
    """Requests hold their decoded pixels from decoding to the answer: once the budget is taken,
    more requests get 503 however short the request queue is."""
    gated = GatedEstimator(tiny_estimator)
    budget = 3 * H * W  # three images
    app = create_app([gated], ServerSettings(max_pixels=H * W, max_queued_pixels=budget, max_batch=1, max_wait_ms=0,
                                             queue_size=64, retry_after_s=3))
    data = png_bytes(smooth_image(H, W))

    async def scenario():
        async with serving(app) as client:
            held = [asyncio.create_task(client.post("/v1/depth?format=npy", content=data)) for _ in range(3)]
            while not gated.entered.is_set():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # the other two are decoded and queued by now
            gauge = (await client.get("/metrics")).text
            refused = await client.post("/v1/depth?format=npy", content=data)
            gated.gate.set()
            done = await asyncio.gather(*held)
            after = await client.post("/v1/depth?format=npy", content=data)
            return done, refused, after, gauge

    done, refused, after, gauge = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "3"
    assert "decoded pixels" in refused.json()["detail"]
    assert all(r.status_code == 200 for r in done) and after.status_code == 200  # released again
    assert f"localdepth_pixels_held {float(budget)}" in gauge


def test_a_1x5000_upload_asks_the_network_for_a_bounded_input(tiny_estimator, monkeypatch):
    from localdepth.estimator import DepthEstimator

    shapes = []
    real = DepthEstimator.run_network

    def spy(self, batch, **kw):
        shapes.append(tuple(batch.shape))
        assert batch.nbytes < 64 * 2**20, f"the network was handed {batch.nbytes / 2**20:.0f} MiB"
        return real(self, batch, **kw)

    monkeypatch.setattr(DepthEstimator, "run_network", spy)
    app = create_app([tiny_estimator])
    strip = png_bytes(np.random.default_rng(0).integers(0, 256, (1, 5000, 3), dtype=np.uint8))

    async def scenario():
        async with serving(app) as client:
            return await client.post("/v1/depth?format=npy", content=strip)

    r = asyncio.run(scenario())
    assert r.status_code == 200, r.text
    assert np.load(io.BytesIO(r.content)).shape == (1, 5000)
    assert shapes == [(1, 3, 518, 2072)]  # not 518 x 2,590,000


def test_requested_points_are_capped_at_the_servers_maximum(tiny_estimator):
    app = create_app([tiny_estimator], ServerSettings(max_points=300))
    data = png_bytes(smooth_image(H, W))

    async def scenario():
        async with serving(app) as client:
            return [await client.post(f"/v1/depth?format=ply&max_points={n}", content=data)
                    for n in (10**20, 100, 0, "1e20")]

    huge, small, zero, text = asyncio.run(scenario())
    assert huge.status_code == 200 and int(huge.headers["X-Point-Count"]) <= 300  # not all H*W = 2352
    assert int(small.headers["X-Point-Count"]) <= 100
    assert zero.status_code == 400 and "max_points must be an integer >= 1" in zero.json()["detail"]
    assert text.status_code == 400


# ----------------------------------------------------------------------------- slow and vanished clients

def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.settimeout(10)
    return s


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (None if still open after ``seconds``)."""
    t0 = time.monotonic()
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(4096):
                return time.monotonic() - t0
    except TimeoutError:
        return None
    except ConnectionResetError:
        return time.monotonic() - t0


def test_slow_clients_are_timed_out(tiny_estimator):
    """Headers that never end (slowloris) and a body that never ends."""
    settings = ServerSettings(header_timeout_s=1.0, body_timeout_s=1.0)
    app = create_app([tiny_estimator], settings)
    with serve_in_thread(app, settings=settings) as base:
        slowloris = _connect(base)
        slowloris.sendall(b"POST /v1/depth HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # a header byte now and then keeps no connection open
            time.sleep(0.3)
            slowloris.sendall(b"X")
        closed = _closed_within(slowloris, 5)
        assert closed is not None, "the server kept a connection whose headers never ended"

        slow_body = _connect(base)
        slow_body.sendall(b"POST /v1/depth HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                          b"Content-Length: 100000\r\n\r\n" + b"\0" * 1000)
        t0 = time.monotonic()
        answer = slow_body.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert time.monotonic() - t0 < 5
        for s in (slowloris, slow_body):
            s.close()
        assert httpx.get(f"{base}/healthz").status_code == 200


def test_idle_keep_alive_connections_are_closed(tiny_estimator):
    settings = ServerSettings(header_timeout_s=30.0, keep_alive_s=1)
    with serve_in_thread(create_app([tiny_estimator], settings), settings=settings) as base:
        idle = _connect(base)
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        closed = _closed_within(idle, 3)  # uvicorn's own default is 5 s
        idle.close()
        assert closed is not None, "an idle keep-alive connection stayed open"


def test_an_aborted_upload_is_one_log_line_and_no_server_error(tiny_estimator, caplog):
    app = create_app([tiny_estimator])
    with caplog.at_level(logging.INFO):
        with serve_in_thread(app) as base:
            s = _connect(base)
            s.sendall(b"POST /v1/depth HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                      b"Content-Length: 100000\r\n\r\n" + b"\x89PNG" + b"\0" * 5000)
            time.sleep(0.3)
            s.close()  # the client goes away mid-upload
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                text = httpx.get(f"{base}/metrics").text
                if "localdepth_client_closed_total 1.0" in text:
                    break
                time.sleep(0.1)
    assert "localdepth_client_closed_total 1.0" in text
    assert 'localdepth_requests_total{path="/v1/depth",status="499"} 1.0' in text
    assert 'status="500"' not in text
    messages = [r.getMessage() for r in caplog.records if "client closed" in r.getMessage()]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
