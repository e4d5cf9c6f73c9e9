"""Fetching images from ``http(s)://`` URLs, as the Transformers pipeline accepts them.

Bounded in size and time: a ``Content-Length`` over the limit is refused before reading, the body
is read in chunks and refused as soon as it passes the limit, and the whole exchange (name lookup,
connection, headers, redirects and body) must finish within the timeout, so a server that drips
its headers or its body slowly is cut off at the deadline. Every failure is one line
(:class:`~localdepth.errors.FetchError`). Only ``http`` and ``https`` are fetched; redirects are
followed to those schemes only.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from .errors import FetchError

SCHEMES = ("http://", "https://")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchLimits:
    """How much one URL may cost: ``max_bytes`` of body, ``timeout_s`` for the whole transfer."""

    max_bytes: int = 50 * 2**20
    timeout_s: float = 30.0

    def __post_init__(self):
        if not (self.max_bytes >= 1 and 0 < self.timeout_s < float("inf")):
            raise ValueError("URL limits: max_bytes must be >= 1 and timeout_s a positive, finite number of seconds")


DEFAULT_LIMITS = FetchLimits()


def is_url(text) -> bool:
    return isinstance(text, str) and text.strip().lower().startswith(SCHEMES)


def url_filename(url: str, default: str = "url_image") -> str:
    """A safe file name for a URL's outputs: the last path segment, restricted to letters, digits,
    ``.``, ``_`` and ``-`` (never a separator or ``..``)."""
    name = unquote(urlparse(url).path.rsplit("/", 1)[-1])
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._")
    return name or default


class _SameSchemesOnly(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not is_url(newurl):
            raise FetchError(f"{req.full_url}: redirected to a non-HTTP address, refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str, limits: FetchLimits = DEFAULT_LIMITS) -> bytes:
    """The body of ``url`` (see module docstring); raises :class:`FetchError` with one line.

    The deadline covers the whole exchange: name lookup, connection, TLS, the response's
    headers, every redirect and the body. The exchange runs in a worker thread that the caller
    waits for at most ``timeout_s``; at the deadline its sockets are shut, which ends any read
    under way (a server that drips its headers one byte at a time kept each read alive before),
    and the caller gets its one line at once.
    """
    if not is_url(url):
        raise FetchError(f"{url}: not an http(s) URL")
    deadline = time.monotonic() + limits.timeout_s
    exchange = _Exchange()
    outcome: dict = {}

    def work():
        try:
            outcome["body"] = _transfer(url, limits, deadline, exchange)
        except BaseException as e:  # handed to the caller
            outcome["error"] = e

    worker = threading.Thread(target=work, name="localdepth-fetch", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        exchange.cancel()  # ends the reads under way; a name lookup ends on its own, unheard
        raise FetchError(_too_slow(url, limits))
    if "error" in outcome:
        raise outcome["error"]
    return outcome["body"]


def _too_slow(url: str, limits: FetchLimits) -> str:
    return f"{url}: no complete answer within {limits.timeout_s:g} s"


class _Exchange:
    """The sockets of one fetch (redirects open more than one), to shut at the deadline."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sockets: list = []
        self.cancelled = False

    def track(self, sock) -> None:
        with self._lock:
            self._sockets.append(sock)
            late = self.cancelled
        if late:
            _shut(sock)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock) -> None:
    import socket

    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _tracked(connection_class, exchange: _Exchange):
    class Tracked(connection_class):
        def connect(self):
            super().connect()
            exchange.track(self.sock)

    return Tracked


class _HTTP(urllib.request.HTTPHandler):
    def __init__(self, exchange: _Exchange):
        super().__init__()
        self._exchange = exchange

    def http_open(self, req):
        return self.do_open(_tracked(http.client.HTTPConnection, self._exchange), req)


class _HTTPS(urllib.request.HTTPSHandler):
    def __init__(self, exchange: _Exchange):
        super().__init__()
        self._exchange = exchange

    def https_open(self, req):
        return self.do_open(_tracked(http.client.HTTPSConnection, self._exchange), req, context=self._context)


def _transfer(url: str, limits: FetchLimits, deadline: float, exchange: _Exchange) -> bytes:
    """The exchange itself (in :func:`fetch`'s worker thread)."""
    too_large = f"{url}: over the limit of {limits.max_bytes} bytes ({limits.max_bytes / 2**20:.3g} MiB)"
    slow = _too_slow(url, limits)
    opener = urllib.request.build_opener(_SameSchemesOnly, _HTTP(exchange), _HTTPS(exchange))
    request = urllib.request.Request(url.strip(), headers={"User-Agent": "localdepth"})
    try:
        with opener.open(request, timeout=limits.timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.strip().isdigit() and int(declared) > limits.max_bytes:
                raise FetchError(too_large)
            chunks, total = [], 0
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FetchError(slow)
                _set_socket_timeout(response, remaining)
                chunk = response.read1(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > limits.max_bytes:
                    raise FetchError(too_large)
                chunks.append(chunk)
    except FetchError:
        raise
    except urllib.error.HTTPError as e:
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise FetchError(slow) from None
        raise FetchError(f"{url}: cannot connect ({reason})") from None
    except TimeoutError:
        raise FetchError(slow) from None
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise FetchError(f"{url}: transfer failed ({type(e).__name__}: {e})") from None
    if time.monotonic() > deadline:
        raise FetchError(slow)
    return b"".join(chunks)


def _set_socket_timeout(response, seconds: float) -> None:
    """Each read waits at most what is left of the deadline (a per-read timeout alone would let a
    server that sends one byte every few seconds hold the transfer forever)."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))
