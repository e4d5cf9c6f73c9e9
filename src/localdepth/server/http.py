"""uvicorn with the server's connection limits: slow clients are timed out.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and can cap connections
(``limit_concurrency``), but it waits for ever for a request's headers: 150 connections that
send a header byte now and then (slowloris) stayed open for a minute and more. The protocol
below closes a connection whose request line and headers are not complete within
``header_timeout_s`` of its opening (or of the previous answer on a kept-alive connection).
The body has its own deadline in :func:`localdepth.server.security.read_upload` (408).
"""

from __future__ import annotations

import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import ServerSettings

log = logging.getLogger("localdepth.server")


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for each request's line and headers."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_timer = None
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            peer = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
            log.info("closed a connection from %s that sent no complete request headers within %g s",
                     peer, self.header_timeout_s)
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)


#: allocations of this size or more get their own memory mapping, given back to the system when freed
MMAP_THRESHOLD = 256 * 1024


def release_freed_memory() -> bool:
    """Make glibc give freed image-sized buffers back to the system (Linux; no-op elsewhere).

    Measured (benchmarks/server_memory.py): after a burst, the server kept hundreds of MB that no
    object referenced any more (tracemalloc: ~14 MB live; ``malloc_trim`` gave it all back).
    glibc's threshold for serving an allocation from its own mapping grows with the largest
    buffer freed (up to 32 MB), so image and map buffers end up in its per-thread arenas, which it
    keeps. A fixed threshold stops that: buffers of 256 KB and more are mapped and unmapped.
    Returns whether the setting was applied.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, MMAP_THRESHOLD))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def protocol_for(settings: ServerSettings) -> type[HeaderDeadlineProtocol]:
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": settings.header_timeout_s})


def uvicorn_config(app, settings: ServerSettings, *, host: str = "127.0.0.1", port: int = 8000, **kwargs):
    """The ``uvicorn.Config`` that ``localdepth serve`` runs: the app behind the connection limits."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http=protocol_for(settings),
                          timeout_keep_alive=settings.keep_alive_s, limit_concurrency=settings.max_connections,
                          **kwargs)
