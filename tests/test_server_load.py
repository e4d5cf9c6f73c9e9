"""A bounded load test of `localdepth serve` on loopback: good, oversized, bomb and corrupt uploads at once.

Prints requests/s and latency percentiles (`pytest -s` shows them); asserts only correctness:
no 5xx but deliberate 503s, every good request answered with its own correct map, healthy afterwards.
"""

from __future__ import annotations

import asyncio
import io
import random
import time

import httpx
import numpy as np
import pytest

from server_support import jpeg_bytes, png_bytes, png_header_only, serve_process, smooth_image

pytest.importorskip("fastapi")

REQUESTS = 500
CLIENTS = 16
MAX_UPLOAD_MB = 0.05  # 52 KB: the oversized uploads below are ~80 KB
SIZES = [(48, 64), (60, 80), (72, 96)]  # three network input sizes: batches form per size


def build_requests(seed: int = 0) -> tuple[list[tuple[str, bytes, int | None]], dict[int, bytes]]:
    """(kind, body, index of the good image or None) for each request, and the good images."""
    good = {i: jpeg_bytes(smooth_image(h, w, seed=100 + i)) for i, (h, w) in enumerate(SIZES * 2)}
    noise = np.random.default_rng(seed).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    oversized = png_bytes(noise)
    assert len(oversized) > MAX_UPLOAD_MB * 2**20
    some_jpeg = good[0]
    rng = random.Random(seed)
    plan = []
    for _ in range(REQUESTS):
        roll = rng.random()
        if roll < 0.70:
            i = rng.randrange(len(good))
            plan.append(("good", good[i], i))
        elif roll < 0.80:
            plan.append(("oversized", oversized, None))
        elif roll < 0.85:
            plan.append(("bomb", png_header_only(30_000, 30_000), None))
        elif roll < 0.925:
            plan.append(("truncated", some_jpeg[: len(some_jpeg) // 2], None))
        else:
            plan.append(("garbage", rng.randbytes(2000), None))
    return plan, good


EXPECTED_STATUS = {"good": 200, "oversized": 413, "bomb": 413, "truncated": 400, "garbage": 400}


async def load(base: str, plan, references) -> dict:
    queue: asyncio.Queue = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    records = []

    async def client_task(client: httpx.AsyncClient):
        while True:
            try:
                kind, body, index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            for attempt in range(10):
                t0 = time.perf_counter()
                r = await client.post("/v1/depth?format=npy", content=body)
                elapsed = time.perf_counter() - t0
                if r.status_code != 503:
                    break
                assert "Retry-After" in r.headers  # deliberate back-pressure: wait as told, then retry
                records.append((kind, 503, elapsed, None))
                await asyncio.sleep(min(float(r.headers["Retry-After"]), 0.2))
            ok = None
            if r.status_code == 200 and index is not None:
                got = np.load(io.BytesIO(r.content))
                want = references[index]
                ok = got.shape == want.shape and np.allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
            records.append((kind, r.status_code, elapsed, ok))

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*[client_task(client) for _ in range(CLIENTS)])
        wall = time.perf_counter() - t0
    return {"records": records, "wall": wall}


def test_load_mixed_uploads(tiny_da_dir, tmp_path):
    plan, good = build_requests()
    args = ["--model", f"depth-anything-v2-small={tiny_da_dir}", "--device", "cpu", "--input-size", "70",
            "--max-upload-mb", str(MAX_UPLOAD_MB), "--max-pixels", "1000000",
            "--max-batch", "8", "--max-wait-ms", "5", "--queue-size", "64", "--timeout", "60"]
    with serve_process(args, tmp_path / "serve.log") as base:
        # the reference answer of each good image, one request at a time
        references = {}
        for i, body in good.items():
            r = httpx.post(f"{base}/v1/depth?format=npy", content=body, timeout=60)
            assert r.status_code == 200, r.text
            references[i] = np.load(io.BytesIO(r.content))
            assert references[i].shape == SIZES[i % len(SIZES)]

        result = asyncio.run(load(base, plan, references))

        health = httpx.get(f"{base}/healthz", timeout=10)
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        after = httpx.post(f"{base}/v1/depth?format=npy", content=good[0], timeout=60)

    records, wall = result["records"], result["wall"]
    final = [r for r in records if r[1] != 503]
    assert len(final) == REQUESTS
    unexpected = [(kind, status) for kind, status, _, _ in final if status != EXPECTED_STATUS[kind]]
    assert unexpected == [], unexpected[:10]
    assert not [r for r in records if r[1] >= 500 and r[1] != 503]
    assert all(ok for kind, _, _, ok in final if kind == "good"), "a good request got a wrong map"
    assert health.status_code == 200 and after.status_code == 200
    assert np.allclose(np.load(io.BytesIO(after.content)), references[0], rtol=1e-4,
                       atol=1e-4 * float(np.abs(references[0]).max()))

    from prometheus_client.parser import text_string_to_metric_families

    batch = {s.name: s.value for f in text_string_to_metric_families(metrics) if f.name == "localdepth_batch_size"
             for s in f.samples}
    good_count = sum(1 for r in final if r[0] == "good")
    latency = np.array([r[2] for r in final]) * 1000
    good_latency = np.array([r[2] for r in final if r[0] == "good"]) * 1000
    print(f"\nload: {REQUESTS} requests from {CLIENTS} clients in {wall:.2f} s = {REQUESTS / wall:.1f} requests/s "
          f"({good_count} good, {sum(1 for r in records if r[1] == 503)} deliberate 503s); "
          f"latency p50 {np.percentile(latency, 50):.1f} ms, p99 {np.percentile(latency, 99):.1f} ms; "
          f"good only p50 {np.percentile(good_latency, 50):.1f} ms, p99 {np.percentile(good_latency, 99):.1f} ms; "
          f"forward passes {batch['localdepth_batch_size_count']:.0f} for {batch['localdepth_batch_size_sum']:.0f} images "
          f"(mean batch {batch['localdepth_batch_size_sum'] / batch['localdepth_batch_size_count']:.2f})")
