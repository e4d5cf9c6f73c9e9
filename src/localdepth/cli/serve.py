"""``localdepth serve``: depth as a local HTTP service with a web page (needs the ``server`` extra)."""

from __future__ import annotations

import argparse
import functools
import os
import sys

from .. import limits, registry
from ..backends import BACKENDS, DTYPES
from ..errors import LocalDepthError
from ..safety import is_loopback_host

TOKEN_ENV = "LOCALDEPTH_TOKEN"


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve depth over HTTP, with a web page (binds 127.0.0.1)",
        description="Load the models once, then answer POST /v1/depth (multipart field 'image' or the raw body) "
                    "with json, npy, png16, color or ply; POST /v1/scene (several photos, any-view models); POST /v1/photo3d "
                    "(a 3D photo video) and /v1/stereo (stereo pair, anaglyph); GET /v1/models, /healthz, /metrics; the web page at /; "
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
    g.add_argument("--compile", action="store_true", help="PyTorch: torch.compile, one graph per network input size")
    g.add_argument("--cuda-graphs", action="store_true",
                   help="PyTorch on CUDA: replay a CUDA graph per input shape (low latency for one image at a time)")
    n = p.add_argument_group("network and security")
    n.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; any other address needs --token)")
    n.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    n.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"require 'Authorization: Bearer TOKEN' on every endpoint but /healthz (default: ${TOKEN_ENV})")
    n.add_argument("--insecure-no-token", action="store_true",
                   help="serve a non-loopback --host without a token (anyone who can reach the port can use it)")
    n.add_argument("--show-token", action="store_true",
                   help="print the web page's URL with the token in it (off by default: terminals are shared and logged)")
    n.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="without a token, also answer requests for this host name (e.g. a reverse proxy's); "
                        "IP addresses and localhost always work, other names get 421 (DNS rebinding)")
    n.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from this origin, e.g. http://localhost:3000 (repeatable; default: CORS off)")
    lim = p.add_argument_group("limits and batching (defaults: localdepth.limits)")
    lim.add_argument("--max-upload-mb", type=float, default=limits.SERVER_MAX_UPLOAD_BYTES / limits.MIB,
                     help=f"largest upload in MiB (default: {limits.SERVER_MAX_UPLOAD_BYTES // limits.MIB}) -> 413")
    lim.add_argument("--max-pixels", type=int, default=limits.SERVER_MAX_PIXELS,
                     help=f"largest image, width*height (default: {limits.SERVER_MAX_PIXELS}) -> 413")
    lim.add_argument("--max-queued-pixels", type=int, default=limits.SERVER_MAX_QUEUED_PIXELS,
                     help=f"decoded pixels held at once by all requests (default: {limits.SERVER_MAX_QUEUED_PIXELS}) "
                          "-> 503")
    lim.add_argument("--max-bodies-mb", type=float, default=limits.SERVER_MAX_BODIES_BYTES / limits.MIB,
                     help="request bodies held in memory at once by all requests, MiB, reserved before they are read "
                          f"(default: {limits.SERVER_MAX_BODIES_BYTES // limits.MIB}) -> 503")
    lim.add_argument("--max-batch", type=int, default=limits.SERVER_MAX_BATCH,
                     help=f"most images per forward pass (default: {limits.SERVER_MAX_BATCH})")
    lim.add_argument("--max-wait-ms", type=float, default=limits.SERVER_MAX_WAIT_MS,
                     help=f"how long a request waits for others to share its batch (default: {limits.SERVER_MAX_WAIT_MS:g})")
    lim.add_argument("--queue-size", type=int, default=limits.SERVER_QUEUE_SIZE,
                     help=f"waiting requests per model before 503 (default: {limits.SERVER_QUEUE_SIZE})")
    lim.add_argument("--timeout", type=float, default=limits.SERVER_TIMEOUT_S,
                     help=f"seconds a request may wait for its map before 504 (default: {limits.SERVER_TIMEOUT_S:g})")
    lim.add_argument("--max-points", type=int, default=limits.SERVER_MAX_POINTS,
                     help=f"most points of a PLY answer; requests are capped at it (default: {limits.SERVER_MAX_POINTS})")
    lim.add_argument("--header-timeout", type=float, default=limits.SERVER_HEADER_TIMEOUT_S,
                     help=f"seconds a client has to send its request headers (default: {limits.SERVER_HEADER_TIMEOUT_S:g})")
    lim.add_argument("--body-timeout", type=float, default=limits.SERVER_BODY_TIMEOUT_S,
                     help=f"seconds a client has to send the body -> 408 (default: {limits.SERVER_BODY_TIMEOUT_S:g})")
    lim.add_argument("--keep-alive", type=float, default=limits.SERVER_KEEP_ALIVE_S,
                     help=f"seconds an idle connection stays open (default: {limits.SERVER_KEEP_ALIVE_S})")
    lim.add_argument("--max-connections", type=int, default=limits.SERVER_MAX_CONNECTIONS,
                     help=f"open connections at most, then 503 (default: {limits.SERVER_MAX_CONNECTIONS})")
    lim.add_argument("--max-scene-views", type=int, default=limits.SERVER_MAX_SCENE_VIEWS,
                     help="most photos in one POST /v1/scene (any-view models, e.g. da3-base; "
                          f"default: {limits.SERVER_MAX_SCENE_VIEWS}) -> 413")
    lim.add_argument("--max-video-seconds", type=float, default=limits.SERVER_MAX_VIDEO_SECONDS,
                     help=f"3D photos: longest video, seconds; requests are capped at it "
                          f"(default: {limits.SERVER_MAX_VIDEO_SECONDS:g})")
    lim.add_argument("--max-video-fps", type=float, default=limits.SERVER_MAX_VIDEO_FPS,
                     help=f"3D photos: highest frame rate; requests are capped at it (default: {limits.SERVER_MAX_VIDEO_FPS:g})")
    lim.add_argument("--max-video-frames", type=int, default=limits.SERVER_MAX_VIDEO_FRAMES,
                     help=f"3D photos: most frames of one video (default: {limits.SERVER_MAX_VIDEO_FRAMES})")
    lim.add_argument("--max-render-size", type=int, default=limits.SERVER_MAX_RENDER_SIZE,
                     help=f"3D photos and stereo pictures: largest short side, pixels "
                          f"(default: {limits.SERVER_MAX_RENDER_SIZE})")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    p.set_defaults(func=main)


def _loaders(args: argparse.Namespace) -> list:
    from ..estimator import load
    from ..weights import resolve

    from ..weights import model_for_weights

    specs = args.model or [model_for_weights(args.weights) or registry.DEFAULT_MODEL]
    if args.weights and len(specs) > 1:
        raise LocalDepthError("--weights needs a single --model; use --model NAME=PATH for several")
    loaders, names = [], set()
    for item in specs:
        name, _, weights = item.partition("=")
        spec = registry.get(name)  # unknown names fail now, before the server starts
        if spec.name in names:
            raise LocalDepthError(f"model {spec.name} is given twice")
        names.add(spec.name)
        resolve(spec, weights or args.weights)  # missing, corrupt or pickled weights: one line, before the server
        loaders.append(functools.partial(load, spec.name, weights=weights or args.weights, backend=args.backend,
                                         device=args.device, dtype=args.dtype, input_size=args.input_size,
                                         compile=args.compile, cuda_graphs=args.cuda_graphs))
    return loaders


def main(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..server import ServerSettings, create_app
        from ..server.http import release_freed_memory, uvicorn_config
    except ImportError as e:
        print(f"localdepth: error: the server needs its extra ({e.name} is missing): pip install 'localdepth[server]'",
              file=sys.stderr)
        return 2
    try:
        settings = ServerSettings(
            token=args.token or None, cors_origins=tuple(args.cors_origin),
            max_upload_bytes=int(args.max_upload_mb * limits.MIB), max_pixels=args.max_pixels,
            max_queued_pixels=args.max_queued_pixels, max_bodies_bytes=int(args.max_bodies_mb * limits.MIB),
            allowed_hosts=(args.host, *args.allow_host), max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
            queue_size=args.queue_size, timeout_s=args.timeout, max_points=args.max_points,
            header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout, keep_alive_s=args.keep_alive,
            max_connections=args.max_connections, max_scene_views=args.max_scene_views,
            max_video_seconds=args.max_video_seconds, max_video_fps=args.max_video_fps,
            max_video_frames=args.max_video_frames, max_render_size=args.max_render_size)
    except ValueError as e:
        print(f"localdepth: error: {e}", file=sys.stderr)
        return 2
    if not is_loopback_host(args.host) and not settings.token:
        if not args.insecure_no_token:
            print(f"localdepth: error: serving on {args.host} needs a token, or anyone who can reach the port can use "
                  f"it: set ${TOKEN_ENV} (or --token), bind 127.0.0.1, or say --insecure-no-token", file=sys.stderr)
            return 2
        print(f"localdepth: warning: serving on {args.host} without a token (--insecure-no-token): anyone who can reach "
              "this port can use it", file=sys.stderr)
    app = create_app(_loaders(args), settings)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}/"
    if settings.token:
        url += f"?token={settings.token}" if args.show_token else "?token=<your token> (--show-token prints it)"
    print(f"localdepth: loading the models, then serving the web page at {url} (API docs at /docs)", file=sys.stderr)
    release_freed_memory()
    server = uvicorn.Server(uvicorn_config(app, settings, host=args.host, port=args.port, log_level=args.log_level,
                                           access_log=not args.no_access_log))
    server.run()
    return 0 if server.started else 1  # e.g. a model that failed to load, or a port in use (uvicorn said why)
