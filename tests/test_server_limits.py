"""Every limit of the server, each tested so that removing it (not only lowering it) fails a test:
upload bytes (streamed and declared), pixels held, the network input, points, slow clients
(headers, body, keep-alive), aborted uploads, and the documented defaults."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import socket
import time
import warnings

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


# ----------------------------------------------------------------------------- issue 20: memory bounded for every input

def test_a_prompt_depth_bomb_upload_is_refused_from_its_header(tiny_prompt_da_dir):
    """Item 8: a 10.5 MB JPEG sent as prompt_depth took the server to 8.2 GB (only PNG, PFM and
    .npy headers were checked); here a 0.3 KB JPEG declaring 8000 x 8000 and a 260 KB .npz of
    8200 x 8200 float32 zeros, under a 1 Mpx limit, with the peak memory of the request measured."""
    import localdepth
    from bombs import jpeg_header_only, npz_bomb, peak_growth

    pda = localdepth.load("prompt-depth-anything-vits", weights=tiny_prompt_da_dir, device="cpu")
    app = create_app([pda], ServerSettings(max_pixels=1_000_000))
    image = png_bytes(smooth_image(H, W))
    bombs = {"jpeg": jpeg_header_only(8000, 8000), "npz": npz_bomb((8200, 8200))}

    async def scenario():
        async with serving(app) as client:
            answers = {}
            for name, bomb in bombs.items():
                with peak_growth() as grown:
                    r = await client.post("/v1/depth?format=npy&prompt_scale=0.001",
                                          files={"image": image, "prompt_depth": bomb})
                answers[name] = (r, grown())
            return answers

    for name, (r, grown) in asyncio.run(scenario()).items():
        assert r.status_code == 413 and "is over the limit of 1000000 pixels" in r.json()["detail"], (name, r.text)
        assert grown < 24, f"{name}: the refused request took {grown:.0f} MiB"


def test_a_large_request_leaves_nothing_referenced_once_answered(tiny_estimator):
    """Item 8: the server kept 7.5 GB after a large request. The worker thread's locals held the
    last batch (its images and maps) until the next request: 175 MiB after one 25 Mpx image.
    Measured with tracemalloc (what Python and NumPy still reference), so the allocator does not matter."""
    import gc
    import tracemalloc

    app = create_app([tiny_estimator], ServerSettings(max_batch=1))
    big = png_bytes(smooth_image(1500, 2000))  # 3 Mpx: a 9 MB image and a 12 MB map

    async def scenario():
        async with serving(app) as client:
            await client.post("/v1/depth?format=npy", content=png_bytes(smooth_image(H, W)))  # warm-up
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            r = await client.post("/v1/depth?format=npy", content=big)
            assert r.status_code == 200, r.text
            del r
            await asyncio.sleep(0.2)
            gc.collect()
            return (tracemalloc.get_traced_memory()[0] - before) / 2**20

    tracemalloc.start()
    try:
        kept = asyncio.run(scenario())
    finally:
        tracemalloc.stop()
    assert kept < 2.0, f"{kept:.1f} MiB still referenced after the answer"


def _upload_socket(base: str, length: int, sent: int, chunked: bool = False) -> socket.socket:
    """A connection that sends a /v1/depth request's headers and ``sent`` bytes of its body, then waits."""
    s = _connect(base)
    head = (b"POST /v1/depth HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            + (b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: %d\r\n\r\n" % length))
    body = b"\0" * sent
    if chunked:
        body = b"%x\r\n" % sent + body + b"\r\n"
    try:
        s.sendall(head + body)
    except OSError:  # refused and closed before the body went out
        pass
    return s


def _status(sock: socket.socket, timeout: float) -> int | None:
    sock.settimeout(timeout)
    try:
        answer = sock.recv(4096)
    except (TimeoutError, ConnectionResetError):
        return None
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else None


def test_upload_bodies_in_flight_count_against_a_budget(tiny_estimator):
    """Item 10: 40 concurrent uploads of 41 MB added 1.9 GB (bodies were outside every budget).
    Here 40 uploads of 2 MiB (1.9 MB sent, then waiting) under a 10 MiB budget: five are read, the
    others get 503 with Retry-After before any of their body is read; the server's (this
    process's) peak memory grows by about the budget, not by 40 x 1.9 MB = 76 MB."""
    from bombs import peak_growth

    settings = ServerSettings(max_upload_bytes=2 * 2**20, max_bodies_bytes=10 * 2**20, retry_after_s=2,
                              body_timeout_s=30.0)
    app = create_app([tiny_estimator], settings)
    length, sent = 2 * 2**20, 2 * 2**20 - 100_000
    with serve_in_thread(app, settings=settings) as base:
        with peak_growth() as grown:
            sockets = [_upload_socket(base, length, sent) for _ in range(40)]
            time.sleep(1.0)  # the admitted ones are read up to what was sent
            held = float(next(line.split()[1] for line in httpx.get(f"{base}/metrics").text.splitlines()
                              if line.startswith("localdepth_body_bytes_held ")))
        statuses = [_status(s, 0.5) for s in sockets]
        for s in sockets:
            s.close()
        # the 10 MiB budget and slack: measured 14.8 to 15.7 MiB in all with the budget, 80 MiB without it
        assert grown() < 10 + 12, f"40 uploads took {grown():.0f} MiB"
        refused = [code for code in statuses if code == 503]
        assert len(refused) == 35 and statuses.count(None) == 5, statuses  # 5 x 2 MiB fit in 10 MiB
        assert held == 5 * length
        # a chunked body (no length to reserve) reserves as it arrives: none left now that five hold it all
        keep = [_upload_socket(base, length, sent) for _ in range(5)]
        time.sleep(0.5)
        chunked = _upload_socket(base, 0, 2 * 2**20 - 1000, chunked=True)
        assert _status(chunked, 5) == 503
        for s in [*keep, chunked]:
            s.close()
        deadline = time.monotonic() + 10
        while "localdepth_body_bytes_held 0.0" not in httpx.get(f"{base}/metrics").text:  # all given back
            assert time.monotonic() < deadline, "the budget was not given back"
            time.sleep(0.1)


def test_bodies_budget_defaults_and_refusals():
    assert limits.SERVER_MAX_BODIES_BYTES == 256 * 2**20 and ServerSettings().max_bodies_bytes == 256 * 2**20
    from localdepth.cli.main import build_parser

    assert build_parser().parse_args(["serve"]).max_bodies_mb * 2**20 == limits.SERVER_MAX_BODIES_BYTES
    with pytest.raises(ValueError, match="or the largest upload could never be served"):
        ServerSettings(max_upload_bytes=10 * 2**20, max_bodies_bytes=15 * 2**20)


def test_a_scene_over_the_whole_pixel_budget_is_refused_and_a_smaller_one_waits(tiny_estimator):
    """Item 11: an empty budget admitted anything (8 views of 5000 x 5000 under 100 Mpx: 2.7 GB).
    Now a scene larger than the whole budget gets 413 before decoding, and one that fits waits for
    the room other requests hold instead of a 503."""
    pytest.importorskip("open3d")
    from scene_support import ServedPlaneViews

    from localdepth.server import app as server_app

    decoded = []
    real_decode = server_app.decode_upload

    def counting_decode(data, max_pixels):
        decoded.append(len(data))
        return real_decode(data, max_pixels)

    gated = GatedEstimator(tiny_estimator)
    views = ServedPlaneViews(gated)
    settings = ServerSettings(max_pixels=H * W, max_queued_pixels=3 * H * W, max_scene_views=4, max_batch=1,
                              timeout_s=30)
    app = create_app([views], settings)
    photo = png_bytes(smooth_image(H, W))
    files = [("images", (f"v{i}.png", photo, "image/png")) for i in range(4)]

    async def scenario():
        server_app.decode_upload = counting_decode
        try:
            async with serving(app) as client:
                too_big = await client.post("/v1/scene?format=json", files=files)
                refused_decodes = len(decoded)
                # one depth request holds a third of the budget in the gated model; a scene of three waits for it
                depth = asyncio.create_task(client.post("/v1/depth?format=npy", content=photo))
                while not gated.entered.is_set():
                    await asyncio.sleep(0.01)
                scene = asyncio.create_task(client.post("/v1/scene?format=json", files=files[:3]))
                await asyncio.sleep(0.5)
                waiting = not scene.done()
                gated.gate.set()
                return too_big, refused_decodes, waiting, await depth, await scene
        finally:
            server_app.decode_upload = real_decode

    too_big, refused_decodes, waiting, depth, scene = asyncio.run(scenario())
    assert too_big.status_code == 413 and refused_decodes == 0, too_big.text[:300]
    assert (f"the 4 images hold {4 * H * W} pixels, more than the server's whole budget of {3 * H * W}"
            in too_big.json()["detail"])
    assert waiting and depth.status_code == 200
    assert scene.status_code == 200 and scene.headers["X-Scene-Views"] == "3", scene.text[:300]


# ----------------------------------------------------------------------------- issue 20, item 22: serve without a token

@pytest.fixture
def fake_uvicorn_run(monkeypatch, pydnet_file):
    """`localdepth serve` up to uvicorn's run, which only records the app it was given."""
    import uvicorn

    started = {}
    # serve checks its weights before starting: the real PyDNet++ file stands in for a pulled model
    monkeypatch.setenv("LOCALDEPTH_TEST_PYDNET", str(pydnet_file))

    def run(self, sockets=None):
        started["app"] = self.config.app
        started["host"] = self.config.host
        self.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.delenv("LOCALDEPTH_TOKEN", raising=False)
    return started


def _serve(args, capsys):
    from localdepth.cli.main import main

    with warnings.catch_warnings():  # python-multipart's rename notice, shown once per process under pytest only
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        code = main(["serve", "--model", "pydnet", "--weights", os.environ["LOCALDEPTH_TEST_PYDNET"], *args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_serve_refuses_a_non_loopback_address_without_a_token(fake_uvicorn_run, capsys):
    for host in ("0.0.0.0", "192.168.1.5", "::"):
        code, err = _serve(["--host", host], capsys)
        assert code == 2 and len(err) == 1 and err[0].startswith("localdepth: error: serving on"), err
        assert "--insecure-no-token" in err[0]
    assert "app" not in fake_uvicorn_run  # nothing started
    code, err = _serve(["--host", "0.0.0.0", "--insecure-no-token"], capsys)
    assert code == 0 and any("warning: serving on 0.0.0.0 without a token" in line for line in err), err
    code, err = _serve(["--host", "0.0.0.0", "--token", "s3cret-token-value"], capsys)
    assert code == 0 and fake_uvicorn_run["host"] == "0.0.0.0"


def test_serve_prints_the_token_only_when_asked(fake_uvicorn_run, capsys):
    code, err = _serve(["--token", "s3cret-token-value"], capsys)
    assert code == 0 and not any("s3cret-token-value" in line for line in err), err
    assert any("?token=<your token>" in line and "--show-token" in line for line in err), err
    code, err = _serve(["--token", "s3cret-token-value", "--show-token"], capsys)
    assert code == 0 and any("/?token=s3cret-token-value" in line for line in err), err


def test_without_a_token_requests_for_other_host_names_get_421(fake_uvicorn_run, capsys):
    """DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1 sends Host: evil.example."""
    assert _serve(["--allow-host", "proxy.example"], capsys)[0] == 0
    app = fake_uvicorn_run["app"]

    async def scenario(app, hosts, headers=None):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
            return {host: await client.get("/", headers={"Host": host, **(headers or {})}) for host in hosts}

    answers = asyncio.run(scenario(app, ["evil.example", "evil.example:8000", "127.0.0.1:8000", "localhost:8000",
                                         "[::1]:8000", "proxy.example", "LOCALHOST."]))
    for host in ("evil.example", "evil.example:8000"):
        assert answers[host].status_code == 421, host
        assert "does not answer for the host" in answers[host].json()["detail"]
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "proxy.example", "LOCALHOST."):
        assert answers[host].status_code == 200, host
    # with a token the token is the protection: no Host check
    assert _serve(["--token", "s3cret-token-value"], capsys)[0] == 0
    tokened = asyncio.run(scenario(fake_uvicorn_run["app"], ["evil.example"],
                                   {"Authorization": "Bearer s3cret-token-value"}))
    assert tokened["evil.example"].status_code == 200
