"""The HTTP API, through httpx against the ASGI app (lifespan included): every endpoint and error code."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import threading

import cv2
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytest.importorskip("fastapi")

import localdepth  # noqa: E402
from localdepth.server import ServerSettings, create_app  # noqa: E402
from localdepth.writers import decode_png16  # noqa: E402
from server_support import GatedEstimator, jpeg_bytes, png_bytes, png_header_only, smooth_image  # noqa: E402
from tolerance import at_least, within  # noqa: E402

H, W = 42, 56  # small images keep the tiny model fast


@contextlib.asynccontextmanager
async def serving(app, **client_kwargs):
    """Start the app (lifespan: models load, batchers start) and give an httpx client on it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localdepth", **client_kwargs) as client:
            yield client


def run(coro):
    return asyncio.run(coro)


def npy(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to float noise, relative to the map's scale (tiny random models predict small values)."""
    return np.allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()))


def metric(text: str, name: str) -> dict:
    """{(sample name, labels tuple): value} of one metric family in Prometheus text."""
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == name:
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture(scope="module")
def metric_estimator(tiny_metric_dir):
    return localdepth.load("depth-anything-v2-metric-indoor-small", weights=tiny_metric_dir, device="cpu")


@pytest.fixture(scope="module")
def image():
    return smooth_image(H, W, seed=3)


class FailingEstimator:
    """The real estimator, except that it raises for any batch holding an all-black image."""

    def __init__(self, estimator):
        self._estimator = estimator

    def __getattr__(self, name):
        return getattr(self._estimator, name)

    def predict_decoded(self, images, **kwargs):
        if any(int(im.max()) == 0 for im in images):
            raise RuntimeError("simulated failure on a black image")
        return self._estimator.predict_decoded(images, **kwargs)


# ----------------------------------------------------------------------------- health, models, docs, page

def test_models_load_once_at_startup_and_healthz_says_ready_only_then(tiny_da_dir, image):
    calls = []

    def loader():  # the app owns what its loaders return, and closes it at shutdown
        calls.append(1)
        return localdepth.load("depth-anything-v2-small", weights=tiny_da_dir, device="cpu")

    app = create_app([loader])

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localdepth") as client:
            before = await client.get("/healthz")
            assert before.status_code == 503 and before.json()["status"] == "loading"
            early = await client.post("/v1/depth", content=png_bytes(image))
            assert early.status_code == 503 and "Retry-After" in early.headers
            assert calls == []
            async with app.router.lifespan_context(app):
                ready = await client.get("/healthz")
                assert ready.status_code == 200 and ready.json() == {"status": "ready", "models": ["depth-anything-v2-small"]}
                for _ in range(3):
                    assert (await client.post("/v1/depth?format=npy", content=png_bytes(image))).status_code == 200
            assert (await client.get("/healthz")).status_code == 503  # stopped
        assert calls == [1]

    run(scenario())


def test_models_endpoint_lists_every_model_and_the_limits(tiny_estimator, metric_estimator):
    app = create_app([tiny_estimator, metric_estimator], ServerSettings(max_pixels=1234))

    async def scenario():
        async with serving(app) as client:
            return (await client.get("/v1/models")).json()

    info = run(scenario())
    assert info["default"] == "depth-anything-v2-small"
    kinds = {m["name"]: (m["kind"], m["units"]) for m in info["models"]}
    assert kinds == {"depth-anything-v2-small": ("disparity", "relative"),
                     "depth-anything-v2-metric-indoor-small": ("depth", "m")}
    assert info["formats"] == ["json", "npy", "png16", "color", "ply"]
    assert info["limits"]["max_pixels"] == 1234


def test_docs_openapi_and_page_are_served_without_cdn(tiny_estimator):
    app = create_app([tiny_estimator])

    async def scenario():
        async with serving(app) as client:
            docs = await client.get("/docs")
            spec = (await client.get("/openapi.json")).json()
            page = await client.get("/")
            script = await client.get("/static/app.js")
            vendor = await client.get("/static/vendor/three-vendor.min.js")
            swagger = await client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js")
            return docs, spec, page, script, vendor, swagger

    docs, spec, page, script, vendor, swagger = run(scenario())
    assert docs.status_code == 200 and "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    body = spec["paths"]["/v1/depth"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/octet-stream"} <= set(body)
    assert {"/v1/models", "/healthz", "/metrics"} <= set(spec["paths"])
    assert page.status_code == 200 and 'id="viewer"' in page.text and 'type="file"' in page.text
    for text in (page.text, script.text):
        assert "http://" not in text and "https://" not in text  # everything comes from this server
    assert "./vendor/three-vendor.min.js" in script.text
    assert vendor.status_code == 200 and "OrbitControls" not in vendor.text[:200] and len(vendor.content) > 100_000
    assert swagger.status_code == 200


# ----------------------------------------------------------------------------- formats

def test_every_format_describes_the_same_map(tiny_estimator, image):
    app = create_app([tiny_estimator])
    data = png_bytes(image)

    async def scenario():
        async with serving(app) as client:
            out = {}
            for fmt in ("json", "npy", "png16", "color", "ply"):
                out[fmt] = await client.post(f"/v1/depth?format={fmt}", files={"image": ("x.png", data, "image/png")})
            out["raw"] = await client.post("/v1/depth?format=npy", content=data,
                                           headers={"Content-Type": "application/octet-stream"})
            return out

    r = run(scenario())
    expected = tiny_estimator.predict_decoded([image])[0].map
    depth = npy(r["npy"])
    assert depth.shape == (H, W) and depth.dtype == np.float32
    assert close(depth, expected)
    assert close(npy(r["raw"]), expected)  # the raw body works like the multipart field
    assert r["npy"].headers["X-Depth-Kind"] == "disparity" and r["npy"].headers["X-Depth-Units"] == "relative"

    meta = r["json"].json()
    assert r["json"].headers["content-type"] == "application/json"
    assert (meta["height"], meta["width"], meta["kind"], meta["units"]) == (H, W, "disparity", "relative")
    from_json = np.frombuffer(base64.b64decode(meta["data"]), "<f4").reshape(meta["height"], meta["width"])
    np.testing.assert_array_equal(from_json, depth)
    assert meta["range"]["min"] == pytest.approx(float(depth.min()))

    png = cv2.imdecode(np.frombuffer(r["png16"].content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (H, W)
    mapping = {"scale": float(r["png16"].headers["X-Depth-Scale"]), "offset": float(r["png16"].headers["X-Depth-Offset"])}
    # relative maps span their 0.1st..99.9th percentile (writers.PNG16_PERCENTILES); beyond it they saturate
    lo, hi = mapping["offset"], mapping["offset"] + mapping["scale"] * 65535
    inside = (depth >= lo) & (depth <= hi)
    at_least(inside.mean(), 0.995, "share of pixels inside the png16 range")
    within(np.abs(decode_png16(png, mapping) - depth)[inside].max() / mapping["scale"], 1 + 1e-12,
           "png16 max error / step")
    assert (png[depth < lo] == 0).all() and (png[depth > hi] == 65535).all()

    color = cv2.imdecode(np.frombuffer(r["color"].content, np.uint8), cv2.IMREAD_COLOR)
    assert color.shape == (H, W, 3) and color.std() > 0

    ply = r["ply"]
    assert ply.headers["X-Point-Units"] == "arbitrary"
    header = ply.content[: ply.content.index(b"end_header\n")].decode()
    assert "format binary_little_endian 1.0" in header and "units arbitrary" in header
    assert int(ply.headers["X-Point-Count"]) == H * W


def read_ply(content: bytes) -> tuple[str, np.ndarray]:
    end = content.index(b"end_header\n") + len(b"end_header\n")
    header = content[:end].decode()
    count = int(next(line.split()[-1] for line in header.splitlines() if line.startswith("element vertex")))
    dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    return header, np.frombuffer(content[end:], dtype=dtype, count=count)


def test_metric_ply_back_projects_with_the_given_intrinsics(tiny_estimator, metric_estimator, image):
    app = create_app([tiny_estimator, metric_estimator])
    data = png_bytes(image)
    fx, fy, cx, cy = 50.0, 40.0, 30.5, 20.0

    async def scenario():
        async with serving(app) as client:
            model = "depth_anything_v2_metric_indoor_small"  # any registry spelling selects the loaded model
            depth = await client.post(f"/v1/depth?format=npy&model={model}", content=data)
            ply = await client.post(f"/v1/depth?format=ply&model={model}&fx={fx}&fy={fy}&cx={cx}&cy={cy}", content=data)
            fov = await client.post(f"/v1/depth?format=ply&model={model}&fov=90&max_points=300", content=data)
            return depth, ply, fov

    depth_r, ply_r, fov_r = run(scenario())
    depth = npy(depth_r)
    assert depth_r.headers["X-Depth-Units"] == "m" and (depth > 0).all()
    header, v = read_ply(ply_r.content)
    assert "units metres" in header and ply_r.headers["X-Point-Units"] == "m"
    assert len(v) == H * W  # stride 1, every pixel valid; vertices in row-major pixel order
    rows, cols = np.mgrid[0:H, 0:W]
    z = depth.ravel()
    np.testing.assert_allclose(v["z"], z, rtol=1e-6)
    np.testing.assert_allclose(v["x"], (cols.ravel() - cx) * z / fx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v["y"], (rows.ravel() - cy) * z / fy, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), image.reshape(-1, 3))
    # fov=90 degrees: fx = W / 2; max_points subsamples on a regular grid
    fx90, fy90, cx90, cy90 = (float(t) for t in fov_r.headers["X-Intrinsics"].split(","))
    assert (fx90, fy90, cx90, cy90) == pytest.approx((W / 2, W / 2, (W - 1) / 2, (H - 1) / 2))
    assert int(fov_r.headers["X-Point-Count"]) <= 300 and int(fov_r.headers["X-Point-Stride"]) > 1


def test_colour_map_choice(tiny_estimator, image):
    app = create_app([tiny_estimator])

    async def scenario():
        async with serving(app) as client:
            a = await client.post("/v1/depth?format=color&cmap=gray", content=png_bytes(image))
            b = await client.post("/v1/depth?format=color&cmap=inferno", content=png_bytes(image))
            return a, b

    gray, inferno = run(scenario())
    g = cv2.imdecode(np.frombuffer(gray.content, np.uint8), cv2.IMREAD_COLOR)
    i = cv2.imdecode(np.frombuffer(inferno.content, np.uint8), cv2.IMREAD_COLOR)
    assert (g[:, :, 0] == g[:, :, 1]).all() and not (i[:, :, 0] == i[:, :, 1]).all()
    assert gray.headers["X-Depth-Colormap"] == "gray"


# ----------------------------------------------------------------------------- errors

def test_bad_inputs_get_400_with_a_clear_message_and_the_server_keeps_serving(tiny_estimator, image):
    app = create_app([tiny_estimator])
    jpeg = jpeg_bytes(image)

    async def scenario():
        async with serving(app) as client:
            out = {
                "text": await client.post("/v1/depth", content=b"this is not an image"),
                "truncated": await client.post("/v1/depth", content=jpeg[: len(jpeg) // 3]),
                "empty": await client.post("/v1/depth", content=b""),
                "no_field": await client.post("/v1/depth", files={"photo": ("x.jpg", jpeg, "image/jpeg")}),
                "format": await client.post("/v1/depth?format=exr", content=jpeg),
                "cmap": await client.post("/v1/depth?format=color&cmap=nope", content=jpeg),
                "fov_and_fx": await client.post("/v1/depth?format=ply&fov=60&fx=100", content=jpeg),
                "fov_range": await client.post("/v1/depth?format=ply&fov=200", content=jpeg),
                "not_a_number": await client.post("/v1/depth?format=ply&fx=wide", content=jpeg),
            }
            out["good"] = await client.post("/v1/depth?format=npy", content=jpeg)
            out["health"] = await client.get("/healthz")
            return out

    r = run(scenario())
    expected = {
        "text": "not an image", "truncated": "truncated", "empty": "empty upload", "no_field": "'image'",
        "format": "format", "cmap": "unknown colour map", "fov_and_fx": "either fov or fx/fy",
        "fov_range": "fov must be a finite number >= 0.01 and < 180", "not_a_number": "fx",
    }
    for key, words in expected.items():
        assert r[key].status_code == 400, (key, r[key].text)
        detail = r[key].json()["detail"]
        assert words in detail and "\n" not in detail, (key, detail)
    assert r["good"].status_code == 200 and r["health"].status_code == 200


def test_unknown_model_is_404(tiny_estimator, image):
    app = create_app([tiny_estimator])

    async def scenario():
        async with serving(app) as client:
            return await client.post("/v1/depth?model=midas-dpt-large", content=png_bytes(image))

    r = run(scenario())
    assert r.status_code == 404 and "depth-anything-v2-small" in r.json()["detail"]


def test_uploads_over_the_byte_limit_get_413(tiny_estimator):
    app = create_app([tiny_estimator], ServerSettings(max_upload_bytes=5000))
    big = png_bytes(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert len(big) > 5000

    async def chunks():
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    async def scenario():
        async with serving(app) as client:
            return [await client.post("/v1/depth", content=big),
                    await client.post("/v1/depth", files={"image": ("big.png", big, "image/png")}),
                    await client.post("/v1/depth", content=chunks()),  # chunked: no Content-Length to trust
                    await client.get("/healthz")]

    raw, multipart, chunked, health = run(scenario())
    for r in (raw, multipart, chunked):
        assert r.status_code == 413, r.text
        assert "over the limit of 5000 bytes" in r.json()["detail"]
    assert health.status_code == 200


def test_images_over_the_pixel_limit_and_decompression_bombs_get_413(tiny_estimator, image):
    small_limit = create_app([tiny_estimator], ServerSettings(max_pixels=1000))
    huge_limit = create_app([tiny_estimator], ServerSettings(max_pixels=10**12, max_queued_pixels=10**12))  # only Pillow's own check is left

    async def scenario():
        async with serving(small_limit) as client:
            over = await client.post("/v1/depth", content=png_bytes(image))  # 42 x 56 = 2352 pixels
        async with serving(huge_limit) as client:
            bomb = await client.post("/v1/depth", content=png_header_only(100_000, 100_000))
            good = await client.post("/v1/depth?format=npy", content=png_bytes(image))
        return over, bomb, good

    over, bomb, good = run(scenario())
    assert over.status_code == 413 and "56x42 is over the limit of 1000 pixels" in over.json()["detail"]
    assert bomb.status_code == 413 and "decompression bomb" in bomb.json()["detail"]
    assert good.status_code == 200


def test_token_is_required_everywhere_but_healthz(tiny_estimator, image):
    app = create_app([tiny_estimator], ServerSettings(token="s3cret-token"))
    auth = {"Authorization": "Bearer s3cret-token"}

    async def scenario():
        async with serving(app) as client:
            out = {path: await client.get(path) for path in ("/v1/models", "/metrics", "/", "/docs", "/openapi.json",
                                                             "/static/app.js")}
            out["depth"] = await client.post("/v1/depth", content=png_bytes(image))
            out["wrong"] = await client.get("/v1/models", headers={"Authorization": "Bearer nope"})
            out["health"] = await client.get("/healthz")
            out["good"] = await client.post("/v1/depth?format=npy", content=png_bytes(image), headers=auth)
            out["models"] = await client.get("/v1/models", headers=auth)
            out["metrics"] = await client.get("/metrics", headers=auth)
            out["bad_login"] = await client.get("/?token=guess")
            # a browser opens /?token=... once: a cookie, then the page and its requests work
            out["login"] = await client.get("/?token=s3cret-token")
            assert client.cookies.get("localdepth_token")  # the client keeps it, as a browser does
            out["page"] = await client.get("/")
            out["cookie_depth"] = await client.post("/v1/depth?format=npy", content=png_bytes(image))
            return out

    r = run(scenario())
    for key in ("/v1/models", "/metrics", "/", "/docs", "/openapi.json", "/static/app.js", "depth", "wrong", "bad_login"):
        assert r[key].status_code == 401, key
        assert r[key].headers["WWW-Authenticate"] == "Bearer"
    assert r["health"].status_code == 200
    assert r["good"].status_code == r["models"].status_code == r["metrics"].status_code == 200
    assert r["login"].status_code == 303 and r["login"].headers["location"] == "/"
    set_cookie = r["login"].headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    assert r["page"].status_code == 200 and 'id="viewer"' in r["page"].text
    assert r["cookie_depth"].status_code == 200


def test_cors_is_off_unless_origins_are_given(tiny_estimator):
    plain = create_app([tiny_estimator])
    cors = create_app([tiny_estimator], ServerSettings(cors_origins=("http://tool.example",), token="t"))
    origin = {"Origin": "http://tool.example"}
    preflight = {**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}

    async def scenario():
        async with serving(plain) as client:
            a = await client.get("/healthz", headers=origin)
        async with serving(cors) as client:
            b = await client.get("/healthz", headers=origin)
            c = await client.options("/v1/depth", headers=preflight)  # no token on a preflight
            d = await client.get("/healthz", headers={"Origin": "http://evil.example"})
        return a, b, c, d

    a, b, c, d = run(scenario())
    assert "access-control-allow-origin" not in a.headers
    assert b.headers["access-control-allow-origin"] == "http://tool.example"
    assert c.status_code == 200 and c.headers["access-control-allow-origin"] == "http://tool.example"
    assert "access-control-allow-origin" not in d.headers


# ----------------------------------------------------------------------------- batching and back-pressure

def test_concurrent_requests_are_batched_and_each_gets_its_own_map(tiny_estimator):
    app = create_app([tiny_estimator], ServerSettings(max_batch=8, max_wait_ms=400))
    images = [smooth_image(H, W, seed=10 + i) for i in range(6)]
    expected = [r.map for r in tiny_estimator.predict_decoded(images)]

    async def scenario():
        async with serving(app) as client:
            answers = await asyncio.gather(*[
                client.post("/v1/depth?format=npy", content=png_bytes(im)) for im in images])
            return answers, (await client.get("/metrics")).text

    answers, text = run(scenario())
    for got, want in zip(answers, expected):
        assert close(npy(got), want)  # no mix-up between the requests of one batch
    batches = metric(text, "localdepth_batch_size")
    label = (("model", "depth-anything-v2-small"),)
    count, total = batches[("localdepth_batch_size_count", label)], batches[("localdepth_batch_size_sum", label)]
    assert total == 6 and count < 6  # at least one forward pass held several requests
    requests = metric(text, "localdepth_requests")
    assert requests[("localdepth_requests_total", (("path", "/v1/depth"), ("status", "200")))] == 6
    assert ("localdepth_request_duration_seconds_count", (("path", "/v1/depth"),)) in \
        metric(text, "localdepth_request_duration_seconds")
    assert metric(text, "localdepth_queue_depth")[("localdepth_queue_depth", label)] == 0


def test_full_queue_answers_503_with_retry_after(tiny_estimator, image):
    gated = GatedEstimator(tiny_estimator)
    app = create_app([gated], ServerSettings(max_batch=1, queue_size=1, max_wait_ms=0, retry_after_s=2))
    data = png_bytes(image)

    async def scenario():
        async with serving(app) as client:
            first = asyncio.create_task(client.post("/v1/depth?format=npy", content=data))
            while not gated.entered.is_set():  # the worker holds the first request
                await asyncio.sleep(0.01)
            second = asyncio.create_task(client.post("/v1/depth?format=npy", content=data))
            while app.state.localdepth.batchers["depth-anything-v2-small"].waiting < 1:
                await asyncio.sleep(0.01)
            queued = (await client.get("/metrics")).text
            third = await client.post("/v1/depth?format=npy", content=data)  # queue full
            gated.gate.set()
            return await first, await second, third, queued, (await client.get("/metrics")).text

    first, second, third, queued, text = run(scenario())
    assert third.status_code == 503 and third.headers["Retry-After"] == "2"
    assert "busy" in third.json()["detail"]
    assert first.status_code == second.status_code == 200
    label = (("model", "depth-anything-v2-small"),)
    assert metric(queued, "localdepth_queue_depth")[("localdepth_queue_depth", label)] == 1
    assert metric(text, "localdepth_requests")[("localdepth_requests_total", (("path", "/v1/depth"), ("status", "503")))] == 1


def test_request_timeout_answers_504_and_the_server_recovers(tiny_estimator, image):
    gated = GatedEstimator(tiny_estimator)
    app = create_app([gated], ServerSettings(timeout_s=1.5, max_wait_ms=0))
    data = png_bytes(image)

    async def scenario():
        async with serving(app) as client:
            late = await client.post("/v1/depth", content=data)
            gated.gate.set()
            await asyncio.to_thread(gated.finished.wait, 30)  # the abandoned batch ends; its result is dropped
            return late, await client.post("/v1/depth?format=npy", content=data), await client.get("/healthz")

    late, after, health = run(scenario())
    assert late.status_code == 504 and "timeout of 1.5 s" in late.json()["detail"]
    assert after.status_code == 200 and health.status_code == 200


def test_a_failing_image_fails_only_its_own_request(tiny_estimator, caplog):
    app = create_app([FailingEstimator(tiny_estimator)], ServerSettings(max_batch=8, max_wait_ms=300))
    good = [smooth_image(H, W, seed=20 + i) for i in range(3)]
    black = np.zeros((H, W, 3), np.uint8)
    expected = [r.map for r in tiny_estimator.predict_decoded(good)]

    async def scenario():
        async with serving(app) as client:
            answers = await asyncio.gather(*[client.post("/v1/depth?format=npy", content=png_bytes(im))
                                             for im in (good[0], black, good[1], good[2])])
            return answers, await client.get("/healthz")

    with caplog.at_level("ERROR", logger="localdepth.server"):
        (a, bad, b, c), health = run(scenario())
    # the client gets one line without the backend's own text (ONNX Runtime's carries source paths
    # and graph node names); the server log has it, on one line
    assert bad.status_code == 500 and bad.json()["detail"] == \
        "inference failed on this image (RuntimeError); the server log has the details"
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("simulated failure on a black image" in m and "\n" not in m for m in logged), logged
    assert not any(r.exc_info for r in caplog.records)  # no traceback
    for got, want in zip((a, b, c), expected):
        assert close(npy(got), want)
    assert health.status_code == 200


def test_serve_command_refuses_unknown_models_before_starting(capsys):
    from localdepth.cli.main import main

    assert main(["serve", "--model", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_serve_command_loads_each_repeated_model_with_its_weights(tmp_path, monkeypatch):
    from localdepth.cli.main import build_parser
    from localdepth.cli.serve import _loaders
    from localdepth.errors import LocalDepthError

    monkeypatch.delenv("LOCALDEPTH_TOKEN", raising=False)
    checked = []  # serve resolves (finds and checks) each model's weights before it starts
    monkeypatch.setattr("localdepth.weights.resolve", lambda spec, weights=None: checked.append((spec.name, weights)))
    parser = build_parser()
    args = parser.parse_args(["serve", "--model", "da2-small", "--model", f"pydnet={tmp_path / 'p.tflite'}",
                              "--device", "cpu"])
    loaders = _loaders(args)
    assert [(f.args, f.keywords["weights"], f.keywords["device"]) for f in loaders] == [
        (("depth-anything-v2-small",), None, "cpu"), (("pydnet",), str(tmp_path / "p.tflite"), "cpu")]
    assert checked == [("depth-anything-v2-small", None), ("pydnet", str(tmp_path / "p.tflite"))]
    assert args.host == "127.0.0.1" and args.token is None and args.cors_origin == []
    with pytest.raises(LocalDepthError, match="given twice"):
        _loaders(parser.parse_args(["serve", "--model", "pydnet", "--model", "pydnet++"]))
    with pytest.raises(LocalDepthError, match="single --model"):
        _loaders(parser.parse_args(["serve", "--model", "pydnet", "--model", "da2-small", "--weights", "x"]))


# ----------------------------------------------------------------------------- several photos: POST /v1/scene

def test_scene_endpoint_answers_cameras_points_and_a_glb(tiny_estimator):
    pytest.importorskip("open3d")
    trimesh = pytest.importorskip("trimesh")
    from scene_support import ServedPlaneViews

    from localdepth.scene.build import SceneSettings, predict_scene

    photos = [smooth_image(60, 80, seed=s) for s in range(3)]
    files = [("images", (f"v{i}.png", png_bytes(p), "image/png")) for i, p in enumerate(photos)]
    model = ServedPlaneViews(tiny_estimator)

    async def go():
        app = create_app([model, tiny_estimator], ServerSettings(max_scene_views=3))
        async with serving(app) as c:
            listed = {m["name"]: m["views"] for m in (await c.get("/v1/models")).json()["models"]}
            assert listed == {"plane-views": True, "depth-anything-v2-small": False}
            as_json = await c.post("/v1/scene?format=json", files=files)
            glb = await c.post("/v1/scene", files=files)
            single = await c.post("/v1/scene?model=depth-anything-v2-small", files=files)
            too_many = await c.post("/v1/scene", files=files + files[:1])
            not_image = await c.post("/v1/scene", files=files[:1] + [("images", ("x.png", b"not an image", "image/png"))])
            raw = await c.post("/v1/scene", content=png_bytes(photos[0]))
            depth = await c.post("/v1/depth?format=npy", files={"image": ("a.png", png_bytes(photos[0]), "image/png")})
            return as_json, glb, single, too_many, not_image, raw, depth

    as_json, glb, single, too_many, not_image, raw, depth = run(go())
    assert as_json.status_code == 200, as_json.text
    body = as_json.json()
    assert body["model"] == "plane-views" and len(body["views"]) == 3 and as_json.headers["X-Scene-Views"] == "3"
    # the same photos through the library give the same cameras and points
    cameras, cloud, units, refused = predict_scene(model, photos, SceneSettings())
    assert refused == {}
    assert body["units"] == units
    for view, cam in zip(body["views"], cameras):
        assert (view["width"], view["height"]) == (80, 60)
        np.testing.assert_allclose(view["camera_from_world"], cam.camera_from_world, atol=1e-12)
        np.testing.assert_allclose(view["intrinsics"], cam.K, atol=1e-8)
    points = np.frombuffer(base64.b64decode(body["points"]["positions"]), "<f4").reshape(-1, 3)
    np.testing.assert_allclose(points, cloud.points, atol=1e-6)
    np.testing.assert_allclose(points[:, 2], 2.0 + 0.3 * points[:, 0], atol=2e-6)  # PlaneViews' world plane
    assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
    loaded = trimesh.load(io.BytesIO(glb.content), file_type="glb")
    assert sum(n.startswith("camera_") for n in loaded.graph.nodes_geometry) == 3
    # one line for each refusal, and single images still served
    assert single.status_code == 400 and "predicts one image at a time" in single.json()["detail"]
    assert too_many.status_code == 413 and "over the limit of 3 views" in too_many.json()["detail"]
    assert not_image.status_code == 400 and not_image.json()["detail"].startswith("image 2: upload:")
    assert raw.status_code == 400 and "multipart" in raw.json()["detail"]
    assert depth.status_code == 200


def test_scene_jobs_run_alone_between_batches(tiny_estimator):
    """A scene job waits in the model's queue like an image and runs on the model's own thread."""
    from localdepth.server.batcher import DynamicBatcher

    threads = []

    async def go():
        batcher = DynamicBatcher(tiny_estimator, max_batch=4, max_wait_ms=5, queue_size=8)
        batcher.start()
        try:
            image = smooth_image(H, W, seed=1)
            results = await asyncio.gather(
                batcher.submit(image, 60), batcher.submit_call(lambda est: threads.append(
                    threading.current_thread().name) or est.name, 60), batcher.submit(image, 60))
            with pytest.raises(ValueError, match="bad job"):
                await batcher.submit_call(lambda est: (_ for _ in ()).throw(ValueError("bad job")), 60)
            again = await batcher.submit(image, 60)  # the worker survived the failing job
            return results, again
        finally:
            batcher.stop()

    (first, name, last), again = run(go())
    assert name == tiny_estimator.name and threads == [f"localdepth-{tiny_estimator.name}"]
    assert first.map.shape == last.map.shape == again.map.shape == (H, W)
