"""Bearer-token authentication, the Host check against DNS rebinding, the budget of request
bodies in memory, and bounded upload reading."""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, quote, unquote

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse

#: paths anyone may call, token or not (load balancers and orchestrators probe it)
OPEN_PATHS = frozenset({"/healthz"})
COOKIE = "localdepth_token"


class HTTPError(Exception):
    """An error answer: status code, one-line detail, extra headers."""

    def __init__(self, status: int, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class TokenAuthMiddleware:
    """Require ``Authorization: Bearer <token>`` on every path but /healthz.

    Browsers cannot send that header when they open the page, so ``/?token=<token>`` (the URL
    ``localdepth serve`` prints) sets an HttpOnly, SameSite=Strict cookie holding the token and
    redirects to ``/``; the page's own requests then carry the cookie (other sites' requests do not).
    """

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode()

    def _ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        auth = headers.get("authorization", "")
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "bearer" and self._ok(credentials.strip()):
            return await self.app(scope, receive, send)
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is just no cookie
            cookie = SimpleCookie()
        if COOKIE in cookie and self._ok(unquote(cookie[COOKIE].value)):
            return await self.app(scope, receive, send)
        if scope["path"] == "/" and scope["method"] == "GET":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if self._ok((query.get("token") or [None])[0]):
                response = RedirectResponse("/", status_code=303)
                response.set_cookie(COOKIE, quote(self.token.decode()), httponly=True, samesite="strict", path="/")
                return await response(scope, receive, send)
        response = JSONResponse(
            {"detail": "missing or wrong token: send 'Authorization: Bearer <token>' "
                       "(in a browser, open /?token=<token> once)"},
            status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def _is_ip_literal(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name of a Host header, without its port: ``127.0.0.1:8000`` -> ``127.0.0.1``,
    ``[::1]:8000`` -> ``::1``, ``Example.ORG.`` -> ``example.org``."""
    text = header.strip().lower()
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0].rstrip(".") if text.count(":") == 1 else text.rstrip(".")


class HostCheckMiddleware:
    """Answer 421 to a request whose Host header names none of this server's names.

    Without a token, a web page on another site can still reach a server on 127.0.0.1 by DNS
    rebinding: its own name (``evil.example``) is made to resolve to 127.0.0.1, so the browser's
    same-origin rule lets the page read the answers; the request carries ``Host: evil.example``.
    IP literals and ``localhost`` (a rebinding page cannot use them: they are not its origin),
    the name the server binds and ``allowed`` names pass; /healthz always passes.
    """

    def __init__(self, app, allowed: tuple[str, ...]):
        self.app = app
        self.allowed = {host_name(h) for h in allowed} | {"localhost"}

    def passes(self, header: str | None) -> bool:
        if not header:
            return False  # HTTP/1.1 requires a Host header; only very old clients omit it
        name = host_name(header)
        return name in self.allowed or _is_ip_literal(name) or name.endswith(".localhost")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = Headers(scope=scope).get("host")
        if self.passes(header):
            return await self.app(scope, receive, send)
        response = JSONResponse(
            {"detail": f"this server does not answer for the host {header!r}: use its address (127.0.0.1, "
                       "localhost), start it with --allow-host NAME, or set a token"},
            status_code=421, headers={"Connection": "close"})
        await response(scope, receive, send)


class BodyBudgetMiddleware:
    """Request bodies count against a byte budget before they are read.

    A body's declared ``Content-Length`` is reserved before the app reads any of it (no room: 503
    with Retry-After, and the body is never read; more than the whole budget: 413); a body without
    one (chunked) reserves ``STEP`` bytes at a time as it arrives, and gets 503 when there is no
    more room. Everything is released once the answer is sent. A declared length over ``largest``
    (the largest body any endpoint reads) reserves nothing: the endpoint refuses it unread (413).
    So at most ``budget.limit`` bytes of bodies are in memory, whatever the number of connections
    (uvicorn itself buffers at most 64 KB of an unread body per connection).
    """

    STEP = 1024 * 1024

    def __init__(self, app, budget, largest: int, retry_after_s: int):
        self.app = app
        self.budget = budget
        self.largest = largest
        self.retry = {"Retry-After": str(retry_after_s), "Connection": "close"}

    def _busy(self, what: str) -> str:
        return (f"busy: {what} does not fit in the {self.budget.limit} bytes of request bodies the server holds at once "
                f"({self.budget.used} held now); retry later")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "").strip()
        length = int(declared) if declared.isdigit() else None
        if not length and "chunked" not in headers.get("transfer-encoding", "").lower():
            return await self.app(scope, receive, send)  # no body
        held = 0
        if length is not None and length <= self.largest:
            if not self.budget.fits_at_all(length):
                response = JSONResponse({"detail": f"the request body of {length} bytes is over the server's budget "
                                                   f"of {self.budget.limit} bytes for request bodies (--max-bodies-mb)"},
                                        status_code=413, headers={"Connection": "close"})
                return await response(scope, receive, send)
            if not self.budget.reserve(length):
                response = JSONResponse({"detail": self._busy(f"a body of {length} bytes")}, status_code=503,
                                        headers=self.retry)
                return await response(scope, receive, send)
            held = length
        received = 0

        async def counted_receive():
            nonlocal held, received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > held:  # a chunked body growing, or more than declared (h11 refuses that anyway)
                    step = max(self.STEP, received - held)
                    if not self.budget.reserve(step):
                        raise HTTPError(503, self._busy(f"the body so far ({received} bytes)"), dict(self.retry))
                    held += step
            return message

        try:
            await self.app(scope, counted_receive, send)
        finally:
            self.budget.release(held)


#: room for the multipart boundaries and part headers around the image
MULTIPART_OVERHEAD = 64 * 1024


class ClientClosed(Exception):
    """The client went away before its request was read: nothing to answer, nothing went wrong here."""


async def _read_body(request, cap: int, too_large: HTTPError, deadline_s: float | None) -> bytes:
    """The whole body: a declared Content-Length over ``cap`` is refused (413) before any of it is
    read; otherwise it is read in chunks and refused as soon as it passes ``cap``, so a huge upload
    (chunked, without Content-Length) never sits in memory either. It must arrive within
    ``deadline_s`` seconds (408). A client that disconnects mid-upload raises :class:`ClientClosed`."""
    import asyncio

    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise too_large

    async def body() -> bytes:
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > cap:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(body(), deadline_s) if deadline_s else await body()
    except ClientDisconnect:
        raise ClientClosed() from None
    except TimeoutError:
        raise HTTPError(408, f"the request body did not arrive within {deadline_s:g} s",
                        {"Connection": "close"}) from None


def _is_multipart(request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def _parse_form(request, body: bytes, max_files: int):
    """The multipart form of a body already read (the caller closes it)."""
    request._body = body  # let Starlette's form parser read what we already have
    try:
        return await request.form(max_files=max_files, max_fields=16)
    except Exception as e:
        detail = str(getattr(e, "detail", None) or e)
        raise HTTPError(413 if "Too many files" in detail else 400, f"malformed multipart body ({detail})") from None


async def read_upload(request, limit: int, deadline_s: float | None = None) -> tuple[bytes, bytes | None]:
    """The uploaded image (the multipart field ``image`` or the raw body) and the optional
    multipart field ``prompt_depth`` (a depth map, for models that take one); at most ``limit``
    bytes each, and twice ``limit`` for the whole body, which must arrive within ``deadline_s``
    seconds (see :func:`_read_body`).
    """
    multipart = _is_multipart(request)
    cap = (2 * limit + MULTIPART_OVERHEAD) if multipart else limit
    too_large = HTTPError(413, f"upload is over the limit of {limit} bytes ({limit / 2**20:.3g} MiB)")
    data = await _read_body(request, cap, too_large, deadline_s)
    prompt = None
    if multipart:
        data, prompt = await _multipart_fields(request, data)
    if len(data) > limit or (prompt is not None and len(prompt) > limit):
        raise too_large
    if not data:
        raise HTTPError(400, "empty upload: send an image (multipart field 'image' or the raw body)")
    if prompt is not None and not prompt:
        raise HTTPError(400, "empty prompt_depth field")
    return data, prompt


async def _multipart_fields(request, body: bytes) -> tuple[bytes, bytes | None]:
    """The ``image`` and optional ``prompt_depth`` files of a multipart body already read."""
    form = await _parse_form(request, body, 2)
    try:
        field = form.get("image")
        if field is None or isinstance(field, str):
            raise HTTPError(400, "no file in the multipart field 'image': send -F image=@photo.jpg "
                                 "or the image itself as the request body")
        data = await field.read()
        prompt = None
        extra = form.get("prompt_depth")
        if extra is not None:
            if isinstance(extra, str):
                raise HTTPError(400, "the multipart field 'prompt_depth' must be a file: -F prompt_depth=@lidar.png")
            prompt = await extra.read()
        return data, prompt
    finally:
        await form.close()


async def read_uploads(request, limit: int, max_files: int, deadline_s: float | None = None) -> list[bytes]:
    """Several images: the files of the multipart field ``images``, at most ``max_files`` of them
    and ``limit`` bytes each (the body is bounded by their sum before it is parsed)."""
    if not _is_multipart(request):
        raise HTTPError(400, "send the views as multipart files: -F images=@a.jpg -F images=@b.jpg")
    too_large = HTTPError(413, f"upload is over the limit of {max_files} images of {limit / 2**20:.3g} MiB")
    body = await _read_body(request, max_files * (limit + MULTIPART_OVERHEAD), too_large, deadline_s)
    form = await _parse_form(request, body, max_files + 1)
    try:
        files = [await f.read() for f in form.getlist("images") if not isinstance(f, str)]
    finally:
        await form.close()
    if not files:
        raise HTTPError(400, "no file in the multipart field 'images': send -F images=@a.jpg -F images=@b.jpg")
    if len(files) > max_files:
        raise HTTPError(413, f"{len(files)} images is over the limit of {max_files} views per scene")
    for i, data in enumerate(files):
        if len(data) > limit:
            raise HTTPError(413, f"image {i + 1} is over the limit of {limit} bytes ({limit / 2**20:.3g} MiB)")
        if not data:
            raise HTTPError(400, f"image {i + 1} is empty")
    return files
