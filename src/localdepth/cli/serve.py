"""``localdepth serve``: depth as a local HTTP service with a web page (needs the ``server`` extra)."""

from __future__ import annotations

import argparse
import functools
import ipaddress
import os
import sys

from .. import registry
from ..backends import BACKENDS, DTYPES
from ..errors import LocalDepthError

TOKEN_ENV = "LOCALDEPTH_TOKEN"


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve depth over HTTP, with a web page (binds 127.0.0.1)",
        description="Load the models once, then answer POST /v1/depth (multipart field 'image' or the raw body) "
                    "with json, npy, png16, color or ply; GET /v1/models, /healthz, /metrics; the web page at /; "
                    "API docs at /docs. See docs/server.md.")
    g = p.add_argument_group("models")
    g.add_argument("--model", "-m", action="append", metavar="NAME[=WEIGHTS]",
                   help=f"model to load (repeat for several; the first is the default; default: {registry.DEFAULT_MODEL}); "
                        "NAME=PATH uses weights from PATH")
    g.add_argument("--weights", metavar="PATH", help="weights for the (single) model, as in `localdepth run`")
    g.add_argument("--backend", default="auto", choices=BACKENDS, help="inference backend (default: auto)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    g.add_argument("--dtype", default="auto", choices=DTYPES, help="precision (default: auto; see `localdepth run --help`)")
    g.add_argument("--input-size", type=int, metavar="N", help="network input size (default: the model's)")
    n = p.add_argument_group("network and security")
    n.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes it: set a token)")
    n.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    n.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"require 'Authorization: Bearer TOKEN' on every endpoint but /healthz (default: ${TOKEN_ENV})")
    n.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from this origin, e.g. http://localhost:3000 (repeatable; default: CORS off)")
    lim = p.add_argument_group("limits and batching")
    lim.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload in MiB (default: 20) -> 413")
    lim.add_argument("--max-pixels", type=int, default=25_000_000, help="largest image, width*height (default: 25000000) -> 413")
    lim.add_argument("--max-batch", type=int, default=8, help="most images per forward pass (default: 8)")
    lim.add_argument("--max-wait-ms", type=float, default=10.0,
                     help="how long a request waits for others to share its batch (default: 10)")
    lim.add_argument("--queue-size", type=int, default=64, help="waiting requests per model before 503 (default: 64)")
    lim.add_argument("--timeout", type=float, default=60.0, help="seconds a request may wait for its map before 504 (default: 60)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    p.set_defaults(func=main)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loaders(args: argparse.Namespace) -> list:
    from ..estimator import load

    specs = args.model or [registry.DEFAULT_MODEL]
    if args.weights and len(specs) > 1:
        raise LocalDepthError("--weights needs a single --model; use --model NAME=PATH for several")
    loaders, names = [], set()
    for item in specs:
        name, _, weights = item.partition("=")
        spec = registry.get(name)  # unknown names fail now, before the server starts
        if spec.name in names:
            raise LocalDepthError(f"model {spec.name} is given twice")
        names.add(spec.name)
        loaders.append(functools.partial(load, spec.name, weights=weights or args.weights, backend=args.backend,
                                         device=args.device, dtype=args.dtype, input_size=args.input_size))
    return loaders


def main(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..server import ServerSettings, create_app
    except ImportError as e:
        print(f"localdepth: error: the server needs its extra ({e.name} is missing): pip install 'localdepth[server]'",
              file=sys.stderr)
        return 2
    try:
        settings = ServerSettings(
            token=args.token or None, cors_origins=tuple(args.cors_origin),
            max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
            max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, queue_size=args.queue_size, timeout_s=args.timeout)
    except ValueError as e:
        print(f"localdepth: error: {e}", file=sys.stderr)
        return 2
    app = create_app(_loaders(args), settings)
    if not _is_loopback(args.host) and not settings.token:
        print(f"localdepth: warning: serving on {args.host} without a token: anyone who can reach this port can use it "
              f"(set --token or ${TOKEN_ENV})", file=sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}/" + (f"?token={settings.token}" if settings.token else "")
    print(f"localdepth: loading the models, then serving the web page at {url} (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=not args.no_access_log)
    return 0
