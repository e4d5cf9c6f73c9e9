"""Limits and switches of the server. The defaults are :mod:`localdepth.limits`' (``localdepth
serve`` documents them), and every value is checked by :func:`localdepth.safety.check_options`,
the same ranges as the command line's."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import limits
from ..safety import check_options

MB = limits.MIB


@dataclass(frozen=True)
class ServerSettings:
    #: bearer token required on every endpoint but /healthz; None = no authentication
    token: str | None = None
    #: origins allowed to call the API from other web pages (CORS); empty = CORS off
    cors_origins: tuple[str, ...] = ()
    #: largest accepted upload (the encoded image), bytes
    max_upload_bytes: int = limits.SERVER_MAX_UPLOAD_BYTES
    #: largest accepted image, width * height (checked from the header, before decoding)
    max_pixels: int = limits.SERVER_MAX_PIXELS
    #: decoded pixels held at once by all requests (decoding to answer); beyond it: 503 (a scene waits
    #: for room; one larger than the whole budget: 413)
    max_queued_pixels: int = limits.SERVER_MAX_QUEUED_PIXELS
    #: bytes of request bodies held at once by all requests, reserved before they are read; beyond it: 503
    max_bodies_bytes: int = limits.SERVER_MAX_BODIES_BYTES
    #: most images in one forward pass
    max_batch: int = limits.SERVER_MAX_BATCH
    #: how long the first request of a batch waits for others to join it, milliseconds
    max_wait_ms: float = limits.SERVER_MAX_WAIT_MS
    #: requests waiting for the model (per model); beyond it: 503 with Retry-After
    queue_size: int = limits.SERVER_QUEUE_SIZE
    #: seconds a request may wait for its depth map (queue + inference); beyond it: 504
    timeout_s: float = limits.SERVER_TIMEOUT_S
    #: Retry-After seconds sent with 503
    retry_after_s: int = 1
    #: most points of a PLY answer (the map is subsampled on a regular grid to fit); a request's
    #: ``max_points`` is capped at it
    max_points: int = limits.SERVER_MAX_POINTS
    #: seconds a client has to send its request line and headers; then the connection is closed
    header_timeout_s: float = limits.SERVER_HEADER_TIMEOUT_S
    #: seconds a client has to send the body once its headers are in; then 408
    body_timeout_s: float = limits.SERVER_BODY_TIMEOUT_S
    #: seconds an idle keep-alive connection stays open
    keep_alive_s: float = limits.SERVER_KEEP_ALIVE_S
    #: open connections at most (uvicorn answers 503 beyond)
    max_connections: int = limits.SERVER_MAX_CONNECTIONS
    #: most photos in one POST /v1/scene (any-view models); each within max_upload_bytes and max_pixels
    max_scene_views: int = limits.SERVER_MAX_SCENE_VIEWS
    #: 3D photos (POST /v1/photo3d): a request's seconds and fps are capped at these, and its frames
    #: (seconds x fps) at max_video_frames; one video is rendered at a time. max_render_size caps the
    #: short side of 3D photos and stereo pictures (POST /v1/stereo)
    max_video_seconds: float = limits.SERVER_MAX_VIDEO_SECONDS
    max_video_fps: float = limits.SERVER_MAX_VIDEO_FPS
    max_video_frames: int = limits.SERVER_MAX_VIDEO_FRAMES
    max_render_size: int = limits.SERVER_MAX_RENDER_SIZE

    #: the Host header names a request may carry when there is no token (DNS rebinding: a page on
    #: evil.example whose name resolves to 127.0.0.1 sends ``Host: evil.example``; it gets 421). IP
    #: literals and ``localhost`` always pass. ``localdepth serve`` sets the name it binds plus
    #: ``--allow-host``; None (the default of the Python API): no check
    allowed_hosts: tuple[str, ...] | None = None

    @property
    def largest_upload_body(self) -> int:
        """The largest body /v1/depth reads: a multipart image and prompt depth of max_upload_bytes each."""
        from .security import MULTIPART_OVERHEAD

        return 2 * self.max_upload_bytes + MULTIPART_OVERHEAD

    @property
    def largest_body(self) -> int:
        """The largest body any endpoint reads (/v1/depth's, or a scene of max_scene_views photos)."""
        from .security import MULTIPART_OVERHEAD

        return max(self.largest_upload_body, self.max_scene_views * (self.max_upload_bytes + MULTIPART_OVERHEAD))

    def __post_init__(self):
        check_options({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, label=str)
        if self.allowed_hosts is not None and not all(isinstance(h, str) and h.strip() for h in self.allowed_hosts):
            raise ValueError("allowed_hosts must be host names")
        if self.max_queued_pixels < self.max_pixels:
            raise ValueError(f"max_queued_pixels ({self.max_queued_pixels}) must be at least max_pixels "
                             f"({self.max_pixels}), or the largest image could never be served")
        if self.max_bodies_bytes < self.largest_upload_body:
            raise ValueError(f"max_bodies_bytes ({self.max_bodies_bytes}) must be at least {self.largest_upload_body} "
                             f"(two files of max_upload_bytes in one multipart body), or the largest upload could "
                             "never be served")
        if self.token is not None and not self.token.strip():
            raise ValueError("the token must not be empty")
