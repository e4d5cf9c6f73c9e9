"""The FastAPI app: /v1/depth, /v1/models, /healthz, /metrics, the web page and the API docs."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import Iterable, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from .. import __version__, registry
from ..errors import CameraError, ImageDecodeError, LocalDepthError
from ..geometry import resolve_intrinsics
from ..images import load_image
from ..scene.build import takes_views
from . import encode
from ..safety import InvalidValueError, check_options, one_line
from .batcher import BatcherStoppedError, Budget, DynamicBatcher, QueueFullError
from .metrics import CLIENT_CLOSED, MetricsMiddleware, ServerMetrics
from .security import (BodyBudgetMiddleware, ClientClosed, HostCheckMiddleware, HTTPError, TokenAuthMiddleware,
                       read_upload, read_uploads)
from .settings import ServerSettings

log = logging.getLogger("localdepth.server")

STATIC = resources.files(__package__) / "static"
FILENAMES = {"json": "depth.json", "npy": "depth.npy", "png16": "depth.png", "color": "depth_color.png",
             "ply": "depth.ply"}

EXPOSED_HEADERS = ["Content-Disposition", "X-Depth-Model", "X-Depth-Kind", "X-Depth-Units", "X-Depth-Shape",
                   "X-Depth-Min", "X-Depth-Max", "X-Depth-Scale", "X-Depth-Offset", "X-Depth-Note", "X-Depth-Colormap",
                   "X-Depth-Vmin", "X-Depth-Vmax", "X-Point-Units", "X-Point-Count", "X-Point-Stride", "X-Intrinsics",
                   "X-Intrinsics-Source", "X-Scene-Views", "X-Scene-Refused", "X-Video-Frames", "X-Video-Fps", "X-Video-Seconds",
                   "X-Video-Size", "X-Video-Path", "X-Video-Capped", "X-Stereo-Baseline", "X-Stereo-Budget",
                   "X-Stereo-Size"]

Format = Literal["json", "npy", "png16", "color", "ply"]
SceneFormat = Literal["glb", "json"]
VideoFormat = Literal["mp4", "gif", "webp"]
CameraPath = Literal["circle", "swing", "zoom-in", "dolly-zoom"]
StereoFormat = Literal["anaglyph", "sbs"]
VIDEO_MEDIA = {"mp4": "video/mp4", "gif": "image/gif", "webp": "image/webp"}


class ServerState:
    """Models and their batchers; filled by the lifespan, read by the endpoints."""

    def __init__(self, estimators, settings: ServerSettings, metrics: ServerMetrics):
        self.entries = list(estimators.values()) if isinstance(estimators, Mapping) else list(estimators)
        if not self.entries:
            raise ValueError("the server needs at least one model")
        self.settings = settings
        self.metrics = metrics
        self.batchers: dict[str, DynamicBatcher] = {}
        self.owned: list = []  # estimators we loaded, so we close them
        self.ready = False

    def load(self) -> None:
        """Call the loaders (once, at start-up) and start one batcher per model."""
        try:
            self._load()
        except BaseException:
            self.stop()  # close what did load; the start-up fails with the loader's error
            raise

    def _load(self) -> None:
        s = self.settings
        for entry in self.entries:
            if callable(entry) and not hasattr(entry, "predict_decoded"):
                estimator = entry()
                self.owned.append(estimator)
            else:
                estimator = entry
            if estimator.name in self.batchers:
                raise ValueError(f"model {estimator.name} is loaded twice; give each model once")
            self.batchers[estimator.name] = DynamicBatcher(
                estimator, max_batch=s.max_batch, max_wait_ms=s.max_wait_ms, queue_size=s.queue_size,
                metrics=self.metrics)
            log.info("loaded %r", estimator)
        for batcher in self.batchers.values():
            batcher.start()
        self.ready = True
        self.metrics.ready.set(1)

    def stop(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        for batcher in self.batchers.values():
            batcher.stop()
        for estimator in self.owned:
            estimator.close()

    @property
    def default(self) -> str:
        return next(iter(self.batchers))

    def pick(self, model: str | None) -> DynamicBatcher:
        if not self.ready:
            raise HTTPError(503, "the models are still loading; retry shortly",
                            {"Retry-After": str(self.settings.retry_after_s)})
        if model is None:
            return self.batchers[self.default]
        name = model
        try:
            name = registry.get(model).name  # accept aliases and '_' spellings
        except LocalDepthError:
            pass
        if name not in self.batchers:
            raise HTTPError(404, f"model '{model}' is not loaded here; loaded: {', '.join(self.batchers)}")
        return self.batchers[name]


def decode_prompt(estimator, data: bytes, scale: float | None, max_pixels: int):
    """The multipart ``prompt_depth`` field -> the network's prompt input; HTTPError 400 in one line."""
    from ..depthfile import read_prompt_depth

    try:
        metres = read_prompt_depth(data, scale, max_pixels=max_pixels)
        return estimator.preprocess_prompt(metres)
    except (LocalDepthError, ValueError) as e:
        message = str(e).replace("--prompt-scale", "prompt_scale").replace(" (--max-pixels)", "")
        raise HTTPError(413 if _refused_for_size(message) else 400, message) from None


def _refused_for_size(message: str) -> bool:
    return any(words in message for words in ("over the limit", "decompression bomb", "lying or truncated header"))


def declared_pixels(data: bytes, max_pixels: int, what: str = "image") -> int | None:
    """Width x height (an array's values) from the header of an upload, read by the gate every
    decoder is behind (:func:`localdepth.images.admit`), without decoding: 413 over
    ``max_pixels``, for a decompression bomb or a lying header; None when the gate does not know
    the format (decoding then says why)."""
    from ..images import admit

    try:
        declared = admit(data, what, max_pixels)
    except ImageDecodeError as e:
        message = str(e).replace(" (--max-pixels)", "")
        if _refused_for_size(message):
            raise HTTPError(413, message) from None
        return None
    return None if declared is None else declared.pixels


def image_pixels(data: bytes, max_pixels: int) -> int | None:
    """Width x height from the image's header, without decoding (see :func:`declared_pixels`)."""
    return declared_pixels(data, max_pixels)


def decode_upload(data: bytes, max_pixels: int):
    """Encoded bytes -> RGB array; HTTPError 413 over the pixel limit, 400 for anything undecodable."""
    image_pixels(data, max_pixels)  # a decompression bomb is refused before decoding
    try:
        return load_image(data, max_pixels=max_pixels)
    except ImageDecodeError as e:
        message = str(e).removeprefix("<bytes>: ")
        raise HTTPError(413 if "over the limit" in message or "decompression bomb" in message else 400,
                        f"upload: {message}") from None
    except Exception as e:  # any other decoder failure is still a bad upload, not a server fault
        raise HTTPError(400, f"upload: cannot decode the image ({type(e).__name__}: {one_line(str(e))[:200]})") from None


def inference_failure(e: BaseException) -> str:
    """What a client is told when the model failed on its image: one line, no backend internals
    (ONNX Runtime's messages carry source paths and graph node names); the log has the details."""
    if isinstance(e, LocalDepthError):
        return f"inference failed: {one_line(str(e))}"
    return f"inference failed on this image ({type(e).__name__}); the server log has the details"


def request_camera_hint(message: str) -> str:
    """A camera message of the command line, said in the request's terms (``?fov=`` or ``?fx=&fy=&cx=&cy=``)."""
    return one_line(message.replace("--fov DEGREES or --intrinsics FX,FY,CX,CY", "?fov=DEGREES or ?fx=&fy=&cx=&cy="))


DEPTH_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                           "properties": {"image": {"type": "string", "format": "binary"},
                                                          "prompt_depth": {"type": "string", "format": "binary",
                                                                           "description": "a depth map (16-bit PNG, "
                                                                           ".npy, .pfm) for models that take one"}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}
DEPTH_RESPONSES = {
    200: {"description": "The depth map in the requested format; X-Depth-* headers describe it.",
          "content": {"application/json": {}, "application/octet-stream": {}, "image/png": {}}},
    400: {"description": "Not an image, corrupt image, bad parameters, or an unusable camera predicted by the "
                         "model where the request gives none (give fov or fx/fy)"},
    401: {"description": "Missing or wrong bearer token (when the server has one)"},
    404: {"description": "The requested model is not loaded"},
    408: {"description": "The request body did not arrive within the body timeout"},
    413: {"description": "Upload over the byte limit, or image over the pixel limit"},
    503: {"description": "Queue or decoded-pixel budget full, or still loading: retry after Retry-After seconds"},
    504: {"description": "The depth map did not come within the request timeout"},
}


SCENE_REQUEST_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["images"],
        "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}},
}
SCENE_RESPONSES = {
    200: {"description": "scene.glb, or JSON with the cameras and the fused points",
          "content": {"model/gltf-binary": {}, "application/json": {}}},
    400: {"description": "Not images, a model without cameras, or bad parameters"},
    401: DEPTH_RESPONSES[401], 404: DEPTH_RESPONSES[404],
    408: DEPTH_RESPONSES[408],
    413: {"description": "Too many images, or one over the byte or pixel limit"},
    503: {"description": "Another scene is being made, the queue or decoded-pixel budget is full, or still "
                         "loading: retry after Retry-After seconds"},
    504: DEPTH_RESPONSES[504],
}


def create_app(estimators: Iterable | Mapping, settings: ServerSettings | None = None) -> FastAPI:
    """Build the app.

    ``estimators``: :class:`~localdepth.estimator.DepthEstimator` objects, or zero-argument
    callables returning one (loaded once, at start-up, in the lifespan); a list or a mapping.
    The first one is the default model. ``/healthz`` says ready once all are loaded.
    """
    settings = settings or ServerSettings()
    metrics = ServerMetrics()
    state = ServerState(estimators, settings, metrics)
    decode_slots = asyncio.Semaphore(max(2, os.cpu_count() or 2))
    held = Budget(settings.max_queued_pixels)
    metrics.pixels_held.set_function(lambda: held.used)
    bodies = Budget(settings.max_bodies_bytes)
    metrics.body_bytes_held.set_function(lambda: bodies.used)
    scene_slot = asyncio.Lock()  # one scene at a time: its views are many images held at once
    render_slot = asyncio.Lock()  # one 3D photo at a time: rendering takes the CPU for seconds

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(state.load)
        try:
            yield
        finally:
            await asyncio.to_thread(state.stop)

    app = FastAPI(title="localdepth", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Monocular depth estimation as a local service. See docs/server.md.")
    app.state.localdepth = state

    async def queued(job, what: str, retry: dict, bad_request: tuple = ()):
        """Await a batcher job; its failures as HTTP errors (``bad_request``: errors that are the request's)."""
        try:
            return await job
        except QueueFullError as e:
            raise HTTPError(503, f"busy: {e}; retry later", retry) from None
        except BatcherStoppedError as e:
            raise HTTPError(503, str(e), retry) from None
        except TimeoutError:
            raise HTTPError(504, f"no {what} within the timeout of {settings.timeout_s:g} s") from None
        except bad_request as e:
            raise HTTPError(400, request_camera_hint(str(e))) from None
        except Exception as e:  # the model failed on this job: report it, keep serving
            raise HTTPError(500, inference_failure(e)) from None

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ClientClosed)
    async def _client_closed(request: Request, exc: ClientClosed):
        metrics.client_closed.inc()
        log.info("%s %s: the client closed the connection before its upload was read", request.method,
                 request.url.path)
        return Response(status_code=CLIENT_CLOSED)  # never delivered; counted as 499, not as a server error

    @app.exception_handler(RequestValidationError)
    async def _bad_parameters(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
                             for e in exc.errors())
        return JSONResponse({"detail": f"bad parameters: {problems}"}, status_code=400)

    @app.post("/v1/depth", summary="Depth map of one image", openapi_extra={"requestBody": DEPTH_REQUEST_BODY},
              responses=DEPTH_RESPONSES, response_class=Response)
    async def depth(
        request: Request,
        format: Format = Query("json", description="json (metadata + base64 float32 map), npy, png16, color or ply"),
        model: str | None = Query(None, description="which loaded model (default: the first)"),
        cmap: str = Query("Spectral_r", description="Matplotlib colour map for format=color"),
        fx: float | None = Query(None, description="ply, and the metres of models that depend on the camera (Depth "
                                                    "Pro, DA3 Metric): focal length x, pixels"),
        fy: float | None = Query(None, description="ply: focal length y, pixels (default fx)"),
        cx: float | None = Query(None, description="ply: principal point x, pixels (default (W-1)/2)"),
        cy: float | None = Query(None, description="ply: principal point y, pixels (default (H-1)/2)"),
        fov: float | None = Query(None, description="ply (and the metres of Depth Pro, DA3 Metric): horizontal field "
                                                     "of view, degrees (default: the photo's "
                                                     f"EXIF, the model's own camera, else {encode.DEFAULT_FOV_DEG:g})"),
        max_points: int | None = Query(None, description="ply: subsample to at most this many points "
                                                          "(capped at the server's max_points)"),
        prompt_scale: float | None = Query(None, gt=0, description="metres per unit of the prompt_depth field "
                                                                    "(0.001 for millimetre PNGs)"),
    ):
        batcher = state.pick(model)
        try:  # the same ranges as the command line's; budgets are capped at the server's maximum
            check_options({"fx": fx, "fy": fy, "cx": cx, "cy": cy, "fov": fov, "max_points": max_points,
                           "prompt_scale": prompt_scale}, label=str)
        except InvalidValueError as e:
            raise HTTPError(400, str(e)) from None
        points = min(max_points or settings.max_points, settings.max_points)
        if format == "color":
            from ..writers import colormap_lut
            try:
                colormap_lut(cmap)
            except ValueError as e:
                raise HTTPError(400, str(e)) from None
        retry = {"Retry-After": str(settings.retry_after_s)}
        if batcher.full:  # refuse before reading and decoding: back-pressure should be cheap
            raise HTTPError(503, f"busy: {batcher.name} has {settings.queue_size} requests waiting; retry later", retry)
        data, prompt_data = await read_upload(request, settings.max_upload_bytes, settings.body_timeout_s)
        estimator = batcher.estimator
        try:
            estimator.check_prompt(prompt_data is not None)
        except LocalDepthError as e:
            raise HTTPError(400, str(e).replace("--prompt-depth PATH", "a multipart field prompt_depth")
                            .replace("[--prompt-scale METRES_PER_UNIT]", "[?prompt_scale=METRES_PER_UNIT]")
                            .replace("drop --prompt-depth", "drop the prompt_depth field")) from None
        # the memory budget counts decoded pixels, reserved from the header before decoding and
        # held until the answer is built: full-size images waiting in the queue are what filled memory
        pixels = image_pixels(data, settings.max_pixels) or 1
        if prompt_data is not None:  # the prompt is decoded too: its values count as pixels held
            pixels += declared_pixels(prompt_data, settings.max_pixels, "prompt depth") or 1
        if not held.fits_at_all(pixels):
            raise HTTPError(413, f"the image and its prompt depth hold {pixels} pixels, more than the server's whole "
                                 f"budget of {held.limit} decoded pixels (--max-queued-pixels)")
        if not held.reserve(pixels):
            raise HTTPError(503, f"busy: the server holds {held.used} decoded pixels of its budget of {held.limit}; "
                                 "retry later", retry)
        try:
            return await answer(batcher, data, prompt_data, format, cmap, (fx, fy, cx, cy, fov), prompt_scale,
                                points, retry)
        finally:
            held.release(pixels)

    async def answer(batcher: DynamicBatcher, data: bytes, prompt_data: bytes | None, format: str, cmap: str,
                     camera: tuple, prompt_scale: float | None, points: int, retry: dict) -> Response:
        estimator = batcher.estimator
        async with decode_slots:  # bounds the memory that decoding takes at once
            image = await run_in_threadpool(decode_upload, data, settings.max_pixels)
            prompt = None
            if prompt_data is not None:
                prompt = await run_in_threadpool(decode_prompt, estimator, prompt_data, prompt_scale, settings.max_pixels)
        # Depth Pro, DA3 Metric: the camera sets the metres
        focal_dependent = bool(getattr(estimator.spec, "focal_dependent", False))
        # the photo's own focal length, if it states one
        exif = io.BytesIO(data) if format == "ply" or focal_dependent else None
        del data, prompt_data
        given_camera = any(v is not None for v in camera)
        stated = None
        if given_camera and (format == "ply" or focal_dependent):  # refuse a bad camera before inference
            try:
                stated = encode.request_intrinsics(image.shape[1], image.shape[0], *camera)
            except ValueError as e:
                raise HTTPError(400, str(e)) from None
        # a camera given wins over the photo's EXIF and the model's prediction, for the metres as for the points
        metric_camera = ({"intrinsics": stated} if stated is not None else {"exif": exif}) if focal_dependent else None
        result = await queued(batcher.submit(image, settings.timeout_s, prompt, metric_camera), "depth map", retry,
                              bad_request=(CameraError,))
        if format == "json":
            body, media, headers = await run_in_threadpool(encode.as_json, result)
        elif format == "npy":
            body, media, headers = await run_in_threadpool(encode.as_npy, result)
        elif format == "png16":
            body, media, headers = await run_in_threadpool(encode.as_png16, result)
        elif format == "color":
            body, media, headers = await run_in_threadpool(encode.as_color, result, cmap)
        else:
            h, w = result.map.shape
            try:
                intrinsics = (encode.request_intrinsics(w, h, *camera) if given_camera
                              else resolve_intrinsics(w, h, image_path=exif, predicted=result.intrinsics))
            except ValueError as e:  # the model's own camera is unusable and the request gives none
                raise HTTPError(400, request_camera_hint(str(e))) from None
            body, media, headers = await run_in_threadpool(encode.as_ply, result, image, intrinsics, points)
        headers.setdefault("Content-Disposition", f'inline; filename="{FILENAMES[format]}"')
        return Response(body, media_type=media, headers=headers)

    @app.post("/v1/scene", summary="Several photos of one place -> points and cameras (any-view models)",
              openapi_extra={"requestBody": SCENE_REQUEST_BODY}, responses=SCENE_RESPONSES, response_class=Response)
    async def scene_view(
        request: Request,
        format: SceneFormat = Query("glb", description="glb (points and camera frustums, glTF axes) or json "
                                                       "(cameras as cameras.json, and the fused points in base64)"),
        model: str | None = Query(None, description="which loaded model (an any-view one, e.g. da3-base)"),
        max_points: int | None = Query(None, description="at most this many fused points (capped at the server's "
                                                          "max_points)"),
    ):
        batcher = state.pick(model)
        try:
            check_options({"max_points": max_points}, label=str)
        except InvalidValueError as e:
            raise HTTPError(400, str(e)) from None
        if not takes_views(batcher.estimator):
            raise HTTPError(400, f"{batcher.name} predicts one image at a time; a scene needs an any-view model "
                                 "(da3-small, da3-base, da3-large or da3-giant)")
        retry = {"Retry-After": str(settings.retry_after_s)}
        if batcher.full or scene_slot.locked():
            raise HTTPError(503, "busy: another scene is being made, or the queue is full; retry later", retry)
        async with scene_slot:
            uploads = await read_uploads(request, settings.max_upload_bytes, settings.max_scene_views,
                                         settings.body_timeout_s)
            sizes = []
            for i, data in enumerate(uploads):
                try:
                    sizes.append(image_pixels(data, settings.max_pixels) or 1)
                except HTTPError as e:
                    raise HTTPError(e.status, f"image {i + 1}: {e.detail}") from None
            pixels = sum(sizes)
            if not held.fits_at_all(pixels):
                raise HTTPError(413, f"the {len(sizes)} images hold {pixels} pixels, more than the server's whole budget "
                                     f"of {held.limit} decoded pixels (--max-queued-pixels); send fewer or smaller images")
            if not await held.acquire(pixels, settings.timeout_s):  # the room other requests hold is given back
                raise HTTPError(503, f"busy: no room for {pixels} decoded pixels within {settings.timeout_s:g} s (the "
                                     f"server holds {held.used} of its budget of {held.limit}); retry later", retry)
            try:
                points = min(max_points or settings.max_points, settings.max_points)
                return await scene_answer(batcher, uploads, format, points, retry)
            finally:
                held.release(pixels)

    async def scene_answer(batcher: DynamicBatcher, uploads: list[bytes], format: str, points: int,
                           retry: dict) -> Response:
        from ..scene.build import SceneSettings, predict_scene

        images = []
        for i, data in enumerate(uploads):
            async with decode_slots:
                try:
                    images.append(await run_in_threadpool(decode_upload, data, settings.max_pixels))
                except HTTPError as e:
                    raise HTTPError(e.status, f"image {i + 1}: {e.detail}") from None
        uploads.clear()
        budget = SceneSettings(max_points=points)
        cameras, cloud, units, refused = await queued(
            batcher.submit_call(lambda estimator: predict_scene(estimator, images, budget), settings.timeout_s),
            "scene", retry, bad_request=(LocalDepthError,))
        headers = {"X-Depth-Model": batcher.name, "X-Depth-Units": units, "X-Scene-Views": str(len(cameras)),
                   "X-Point-Count": str(len(cloud.points))}
        if refused:  # left out alone; the scene is the others' (the image numbers count from 1, as in errors)
            headers["X-Scene-Refused"] = ",".join(str(i + 1) for i in sorted(refused))
            for i, reason in sorted(refused.items()):
                log.info("scene: image %d left out: %s", i + 1, reason)
        if format == "glb":
            from ..scene.glb import scene_glb

            body = await run_in_threadpool(scene_glb, cloud.points, cloud.colors, cameras)
            headers["Content-Disposition"] = 'inline; filename="scene.glb"'
            return Response(body, media_type="model/gltf-binary", headers=headers)
        body = await run_in_threadpool(encode.scene_json, batcher.name, units, cameras, cloud, refused)
        return Response(body, media_type="application/json", headers=headers)

    async def depth_of_upload(request: Request, batcher: DynamicBatcher, retry: dict):
        """Read, decode and predict one uploaded image (the pixel budget held meanwhile):
        ``(image, result, the encoded bytes for EXIF)``."""
        data, prompt_data = await read_upload(request, settings.max_upload_bytes, settings.body_timeout_s)
        if prompt_data is not None or batcher.estimator.spec.prompt is not None:
            raise HTTPError(400, f"{batcher.name}: 3D photos and stereo take one image and no prompt depth; "
                                 "use a model without one")
        pixels = image_pixels(data, settings.max_pixels) or 1
        if not held.reserve(pixels):
            raise HTTPError(503, f"busy: the server holds {held.used} decoded pixels of its budget of {held.limit}; "
                                 "retry later", retry)
        try:
            async with decode_slots:
                image = await run_in_threadpool(decode_upload, data, settings.max_pixels)
            result = await queued(batcher.submit(image, settings.timeout_s), "depth map", retry)
        finally:
            held.release(pixels)
        return image, result, data

    @app.post("/v1/photo3d", summary="A 3D photo: a short video of a virtual camera moving in front of the image",
              openapi_extra={"requestBody": DEPTH_REQUEST_BODY}, responses={
                  200: {"description": "The video; X-Video-* headers say what was rendered (after the caps)",
                        "content": {"video/mp4": {}, "image/gif": {}, "image/webp": {}}},
                  **{k: v for k, v in DEPTH_RESPONSES.items() if k != 200},
                  503: {"description": "Another video is being rendered, the queue or the pixel budget is full, or "
                                       "still loading: retry after Retry-After seconds"}},
              response_class=Response)
    async def photo3d(
        request: Request,
        format: VideoFormat = Query("mp4", description="mp4 (H.264), gif or webp"),
        path: CameraPath = Query("circle", description="camera path: circle, swing, zoom-in or dolly-zoom"),
        seconds: float = Query(3.0, description="length, seconds (capped at the server's max_video_seconds)"),
        fps: float = Query(24.0, description="frames per second (capped at max_video_fps)"),
        size: int = Query(540, description="short side of the video, pixels (capped at max_render_size and the "
                                           "image's own)"),
        amplitude: float | None = Query(None, description="largest camera movement, fraction of the focus depth "
                                                           "(default: the path's)"),
        model: str | None = Query(None, description="which loaded model (default: the first)"),
    ):
        batcher = state.pick(model)
        try:
            check_options({"seconds": seconds, "fps": fps, "size": size, "amplitude": amplitude}, label=str)
        except InvalidValueError as e:
            raise HTTPError(400, str(e)) from None
        # every budget capped at the server's, as max_points is: frames, size, seconds
        capped = [name for name, value, most in (("seconds", seconds, settings.max_video_seconds),
                                                  ("fps", fps, settings.max_video_fps),
                                                  ("size", size, settings.max_render_size)) if value > most]
        seconds = min(seconds, settings.max_video_seconds)
        fps = min(fps, settings.max_video_fps)
        size = min(size, settings.max_render_size)
        if round(seconds * fps) > settings.max_video_frames:
            seconds = settings.max_video_frames / fps
            capped.append("frames")
        retry = {"Retry-After": str(settings.retry_after_s)}
        if batcher.full or render_slot.locked():
            raise HTTPError(503, "busy: another 3D photo is being rendered, or the queue is full; retry later", retry)
        async with render_slot:  # rendering takes the CPU for seconds: one video at a time
            image, result, data = await depth_of_upload(request, batcher, retry)
            from ..render import Photo3DOptions

            h, w = image.shape[:2]
            camera = resolve_intrinsics(w, h, image_path=io.BytesIO(data), predicted=result.intrinsics)
            options = Photo3DOptions(path=path, seconds=seconds, fps=fps, size=size, amplitude=amplitude)
            try:
                body, info = await run_in_threadpool(encode.photo3d_video, image, result, camera, options, format)
            except ValueError as e:  # e.g. an amplitude that takes the camera through the scene
                raise HTTPError(400, str(e)) from None
        headers = {"X-Depth-Model": batcher.name, "X-Video-Frames": str(info["frames"]),
                   "X-Video-Fps": f"{fps:g}", "X-Video-Seconds": f"{info['frames'] / fps:g}",
                   "X-Video-Size": f"{info['width']},{info['height']}", "X-Video-Path": path,
                   "X-Video-Capped": ",".join(capped) or "none",
                   "Content-Disposition": f'inline; filename="photo_3d.{format}"'}
        return Response(body, media_type=VIDEO_MEDIA[format], headers=headers)

    @app.post("/v1/stereo", summary="A stereo pair (side by side) or a red-cyan anaglyph of the image",
              openapi_extra={"requestBody": DEPTH_REQUEST_BODY},
              responses={200: {"description": "PNG; X-Stereo-* headers give the baseline and the budget",
                               "content": {"image/png": {}}}, **{k: v for k, v in DEPTH_RESPONSES.items() if k != 200}},
              response_class=Response)
    async def stereo(
        request: Request,
        format: StereoFormat = Query("anaglyph", description="anaglyph (red-cyan, Dubois) or sbs (left | right)"),
        budget: float = Query(3.0, description="disparity of the nearest depth, percent of the width (0 to 20]"),
        size: int | None = Query(None, description="short side of each view, pixels (default and cap: the server's "
                                                    "max_render_size, and the image's own)"),
        model: str | None = Query(None, description="which loaded model (default: the first)"),
    ):
        batcher = state.pick(model)
        try:
            # the query's `budget` is the CLI's --stereo-budget (option names are one namespace: `models cache --budget`)
            check_options({"stereo_budget": budget, "size": size}, label=lambda name: {"stereo_budget": "budget"}.get(name, name))
        except InvalidValueError as e:
            raise HTTPError(400, str(e)) from None
        size = min(size or settings.max_render_size, settings.max_render_size)
        retry = {"Retry-After": str(settings.retry_after_s)}
        if batcher.full:
            raise HTTPError(503, f"busy: {batcher.name} has {settings.queue_size} requests waiting; retry later", retry)
        image, result, data = await depth_of_upload(request, batcher, retry)
        body, info = await run_in_threadpool(encode.stereo_png, image, result, budget, format, io.BytesIO(data), size)
        headers = {"X-Depth-Model": batcher.name, "X-Stereo-Baseline": f"{info['baseline']:.6g} {info['baseline_units']}",
                   "X-Stereo-Budget": f"{budget:g}", "X-Stereo-Size": f"{info['width']},{info['height']}",
                   "Content-Disposition": f'inline; filename="{"stereo" if format == "sbs" else "anaglyph"}.png"'}
        return Response(body, media_type="image/png", headers=headers)

    @app.get("/v1/models", summary="Loaded models and server limits")
    async def models():
        state.pick(None)  # 503 while loading
        return {
            "default": state.default,
            "models": [{**b.estimator.describe(), "name": b.name, "units": "m" if b.estimator.metric else "relative",
                        "prompt_depth": "required" if b.estimator.spec.prompt is not None else "none",
                        "max_batch": b.max_batch, "waiting": b.waiting, "views": takes_views(b.estimator)}
                       for b in state.batchers.values()],
            "formats": list(encode.RESPONSE_FORMATS),
            "limits": {name: getattr(settings, name) for name in (
                "max_upload_bytes", "max_pixels", "max_queued_pixels", "max_bodies_bytes", "max_batch", "max_wait_ms", "queue_size",
                "timeout_s", "max_points", "header_timeout_s", "body_timeout_s", "keep_alive_s", "max_connections",
                "max_scene_views", "max_video_seconds", "max_video_fps", "max_video_frames", "max_render_size")},
        }

    @app.get("/healthz", summary="Ready once every model is loaded (no token needed)")
    async def healthz():
        if state.ready and all(b.running for b in state.batchers.values()):
            return {"status": "ready", "models": list(state.batchers)}
        return JSONResponse({"status": "loading" if not state.batchers else "unavailable"}, status_code=503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus():
        for b in state.batchers.values():
            metrics.queue_depth.labels(b.name).set(b.waiting)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/docs", include_in_schema=False)
    async def docs():  # Swagger UI from the package's static files: works offline
        return get_swagger_ui_html(openapi_url="/openapi.json", title="localdepth API",
                                   swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    # Middleware: the last added is the outermost. The Host check comes first, CORS answers preflights
    # before the token check, and only requests that passed them may reserve room for their bodies.
    app.add_middleware(BodyBudgetMiddleware, budget=bodies, largest=settings.largest_body,
                       retry_after_s=settings.retry_after_s)
    if settings.token:
        app.add_middleware(TokenAuthMiddleware, token=settings.token)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=EXPOSED_HEADERS)
    if settings.allowed_hosts is not None and not settings.token:
        app.add_middleware(HostCheckMiddleware, allowed=tuple(settings.allowed_hosts))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
