"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)

#: status recorded for a request whose client went away before it was read (nginx's convention)
CLIENT_CLOSED = 499

#: routes that get their own label; anything else is counted as "other" (bounded label values)
KNOWN_PATHS = ("/", "/v1/depth", "/v1/models", "/healthz", "/metrics", "/docs", "/openapi.json")


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("localdepth_requests", "HTTP requests answered, by path and status code",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("localdepth_request_duration_seconds", "Time to answer a request, by path",
                                 ["path"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("localdepth_queue_depth", "Requests waiting for the model",
                                 ["model"], registry=self.registry)
        self.batch_size = Histogram("localdepth_batch_size", "Images per forward pass",
                                    ["model"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.inference_seconds = Histogram("localdepth_inference_seconds", "Time of one batch (pre/post-processing included)",
                                           ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ready = Gauge("localdepth_ready", "1 when every model is loaded and serving", registry=self.registry)
        self.client_closed = Counter("localdepth_client_closed", "Requests whose client went away mid-upload",
                                     registry=self.registry)
        self.body_bytes_held = Gauge("localdepth_body_bytes_held",
                                     "Bytes of request bodies held by requests (the --max-bodies-mb budget)",
                                     registry=self.registry)
        self.pixels_held = Gauge("localdepth_pixels_held", "Decoded pixels held by requests (the memory budget)",
                                 registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def path_label(path: str) -> str:
    if path.startswith("/static/"):
        return "/static"
    return path if path in KNOWN_PATHS else "other"


class MetricsMiddleware:
    """Pure ASGI middleware: count every HTTP answer and time it (streaming-safe)."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        label = path_label(scope["path"])
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(label, str(status["code"])).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - t0)
