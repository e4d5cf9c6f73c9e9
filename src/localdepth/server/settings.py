"""Limits and switches of the server, with the defaults ``localdepth serve`` documents."""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    #: bearer token required on every endpoint but /healthz; None = no authentication
    token: str | None = None
    #: origins allowed to call the API from other web pages (CORS); empty = CORS off
    cors_origins: tuple[str, ...] = ()
    #: largest accepted upload (the encoded image), bytes
    max_upload_bytes: int = 20 * MB
    #: largest accepted image, width * height (checked from the header, before decoding)
    max_pixels: int = 25_000_000
    #: most images in one forward pass
    max_batch: int = 8
    #: how long the first request of a batch waits for others to join it, milliseconds
    max_wait_ms: float = 10.0
    #: requests waiting for the model (per model); beyond it: 503 with Retry-After
    queue_size: int = 64
    #: seconds a request may wait for its depth map (queue + inference); beyond it: 504
    timeout_s: float = 60.0
    #: Retry-After seconds sent with 503
    retry_after_s: int = 1
    #: default point budget of a PLY answer (the map is subsampled on a regular grid to fit)
    max_points: int = 2_000_000
    #: most photos in one POST /v1/scene (any-view models); each within max_upload_bytes and max_pixels
    max_scene_views: int = 8

    def __post_init__(self):
        for name in ("max_upload_bytes", "max_pixels", "max_batch", "queue_size", "max_points", "max_scene_views"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_wait_ms < 0 or self.timeout_s <= 0:
            raise ValueError("max_wait_ms must be >= 0 and timeout_s > 0")
        if self.token is not None and not self.token.strip():
            raise ValueError("the token must not be empty")
