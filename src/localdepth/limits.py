"""Every budget that protects a user, with its default, in one place.

A limit exists because some input would otherwise make localdepth allocate without bound or
hold a connection for ever. Each default below is a stated decision (tests assert them, so a
change is visible); the command-line options and the server settings take their defaults from
here, and :mod:`localdepth.safety` checks that a value given instead is in range.
"""

from __future__ import annotations

MIB = 1024 * 1024

# ----------------------------------------------------------------------------- decoding

#: largest image decoded by the command line and the Python API (``--max-pixels``), width x
#: height, checked from the file's header before decoding: 8192 x 8192. A 12000 x 12000 PNG of
#: 140 KB decodes to 432 MB and needs about 4 GB on the way to the network; a 48 MP phone photo passes.
MAX_IMAGE_PIXELS = 8192 * 8192
#: largest image file read (a file is read whole before decoding): 512 MiB, more than an
#: uncompressed 16-bit RGBA image of MAX_IMAGE_PIXELS. Also the cap on bytes fetched for one URL.
MAX_IMAGE_BYTES = 512 * MIB
#: bytes one decoded pixel may take, on top of the pixel budget: a header that declares more (an
#: ``.npy`` of 32-byte values, a TIFF of 16 float64 samples) is refused before decoding. 16 is
#: float32 RGBA; a float64 depth map takes 8, a 16-bit RGBA PNG 8.
DECODED_MAX_BYTES_PER_PIXEL = 16

# ----------------------------------------------------------------------------- cameras

#: shortest focal length given for a camera, pixels: a focal under a pixel is a field of view of
#: over 179.9 degrees on a 1000-pixel image; fx = 1e-300 made every point infinite
CAMERA_MIN_FOCAL_PX = 1.0
#: narrowest field of view, degrees (``--fov``, and the longest focal: image size / (2 tan(fov/2)),
#: about 5730 image sizes): fov = 1e-320 gave an infinite focal length
CAMERA_MIN_FOV_DEG = 0.01
#: farthest the principal point may lie from the image centre, in image sizes (widths for cx,
#: heights for cy): crops of a larger photo keep it off centre, cx = 1e308 put every point at infinity
CAMERA_MAX_PRINCIPAL_OFFSET = 4.0

#: how far a camera pose read from a trajectory may be from rigid: max |R^T R - I|, |det R - 1|,
#: the last row's distance from 0 0 0 1 and a quaternion's |norm - 1|. Measured: 4.4e-16 in
#: Open3D's trajectory.log, 1.7e-6 in its odometry.log; values written with 4 decimals (TUM's
#: ground truth) are off by up to about 4e-4. All-zero matrices (off by 1) gave 180 degrees of RPE.
POSE_RIGIDITY_TOLERANCE = 1e-2
#: largest camera coordinate a trajectory may hold, in its units: 1e300 made the alignment's
#: squares overflow (NaN RPE); at 1e9 float64 still resolves 1e-7 of a unit
POSE_MAX_COORDINATE = 1e9

# ----------------------------------------------------------------------------- prompt depth maps

#: fewest valid values (finite, > 0 metres) a prompt depth map must hold. Prompt Depth Anything
#: maps its output onto the prompt's [min, max]: an all-zero, all-NaN or negative prompt gave a
#: map whose maximum was 1e-6 m, a 1x1 prompt an all-NaN one. 16 is a 4x4 grid of samples; a
#: phone's LiDAR map holds 49152 (256x192).
PROMPT_MIN_VALID_VALUES = 16
#: shortest side of a prompt depth map, pixels (the network's min-max normalisation of a 1x1
#: map divides by zero)
PROMPT_MIN_SIDE = 2

# ----------------------------------------------------------------------------- the network input

#: most pixels the network is asked to process for one image (per-model values live in the
#: registry's ``Preprocessing``; this is the default there). Measured peak memory of one forward
#: pass on CPU, fp32, on top of the weights: Depth Anything V2 Large 0.58 GB at 518x518 and
#: 1.07 GB at 518x1036 (1.8 GB per extra million pixels), Small 0.23 GB at 518x518 and 0.73 GB at
#: 518x2072. So 2 Mpx keeps one Large image near 5.3 GB in all, a Small one near 1.8 GB; the
#: default 518 px input of a 4:1 panorama is 1.07 Mpx, a 4:3 photo 0.36 Mpx.
NETWORK_MAX_PIXELS = 2_000_000
#: most elongated network input, long side / short side. Beyond it the long side is shrunk
#: (the map is resized back to the image anyway); a 1 x 5000 strip would otherwise make Depth
#: Anything's lower-bound resize ask for 518 x 2,590,000 pixels.
NETWORK_MAX_ASPECT = 4.0

# ----------------------------------------------------------------------------- batches on a GPU

#: largest batch `localdepth run` forms by itself on a GPU when no ``--batch-size`` is given (it
#: takes fewer where the free memory says so: :func:`localdepth.runner.batch_size_for_memory`). The
#: decoded images of about two batches are held on the host, so this also bounds host memory.
AUTO_BATCH_MAX = 16
#: share of the free GPU memory that the activations of one automatic batch may take (the rest is
#: headroom for the allocator's fragmentation, the maps coming back and a second batch in flight)
AUTO_BATCH_MEMORY_FRACTION = 0.4

# ----------------------------------------------------------------------------- the HTTP server

#: largest upload (the encoded image), bytes; streamed bodies are cut off there too
SERVER_MAX_UPLOAD_BYTES = 20 * MIB
#: largest accepted image, width x height, read from the header before decoding
SERVER_MAX_PIXELS = 25_000_000
#: decoded pixels held at once across all requests (decoding, waiting, inferring, encoding);
#: beyond it new requests get 503; a scene waits for room, and one larger than the whole budget
#: gets 413. A request holds its decoded image (3 bytes per pixel), then its
#: map at the image's size (4) and that map's encoding (2 for png16, 4 for npy, 5.3 for json):
#: 100 Mpx is about 0.7 to 1.2 GB. The network's activations are bounded apart (max_batch and
#: the network input budget above).
SERVER_MAX_QUEUED_PIXELS = 100_000_000
#: bytes of request bodies held at once across all requests, counted from each body's declared
#: Content-Length before any of it is read (chunked bodies as they arrive) and held until the
#: answer is sent; beyond it new requests get 503 with Retry-After. 40 concurrent uploads of 41 MB
#: added 1.9 GB before, and the ceiling was about max_connections x 48 MB = 12 GB. Must hold the
#: largest single upload (multipart: two files of SERVER_MAX_UPLOAD_BYTES).
SERVER_MAX_BODIES_BYTES = 256 * MIB
#: requests waiting for one model
SERVER_QUEUE_SIZE = 64
#: most images in one forward pass
SERVER_MAX_BATCH = 8
#: how long the first request of a batch waits for others, milliseconds
SERVER_MAX_WAIT_MS = 10.0
#: seconds a request may wait for its depth map (queue + inference)
SERVER_TIMEOUT_S = 60.0
#: most points of a PLY answer; a request's ``max_points`` is capped at it
SERVER_MAX_POINTS = 2_000_000
#: seconds a client has to send a request's line and headers (slow clients are closed)
SERVER_HEADER_TIMEOUT_S = 10.0
#: seconds a client has to send a request's whole body once its headers are in (then 408)
SERVER_BODY_TIMEOUT_S = 30.0
#: seconds an idle keep-alive connection stays open
SERVER_KEEP_ALIVE_S = 5
#: open connections at most; beyond it uvicorn answers 503
SERVER_MAX_CONNECTIONS = 256


# ----------------------------------------------------------------------------- scenes (several views)

#: views of one `localdepth scene` by default, spread evenly over the input (``--max-views``)
SCENE_DEFAULT_MAX_VIEWS = 32
#: most views of one scene: the most Depth Anything 3 takes in one call here (about 1k tokens each
#: at 504 px; about 2.9 GB for the Small network at 64 views, see docs/da3.md)
SCENE_MAX_VIEWS = 64
#: input pixels of one scene in all: the views, and their depth and confidence maps at each view's
#: resolution, are held at once, about 10.5 bytes per pixel (measured, docs/scene.md): 4.4 GB here
SCENE_MAX_PIXELS = 400_000_000
#: least share of its own network input every view of a scene keeps: the views go through the
#: network on one grid, the smallest one's (centre crops), so a 5000 x 1 strip left the other
#: views 99.6 % NaN. A view that would crop another below this share is left out, with one line;
#: a 4:3 photo beside a 3:4 one keeps 75 %.
SCENE_MIN_SHARED_GRID = 0.5
#: most photos in one POST /v1/scene; each within SERVER_MAX_UPLOAD_BYTES and SERVER_MAX_PIXELS,
#: and one scene at a time per server
SERVER_MAX_SCENE_VIEWS = 8


# ----------------------------------------------------------------------------- 3D photos and stereo (the server)

#: longest 3D photo video the server renders, seconds; a request's ``seconds`` is capped at it
SERVER_MAX_VIDEO_SECONDS = 10.0
#: highest frame rate of a 3D photo video; a request's ``fps`` is capped at it
SERVER_MAX_VIDEO_FPS = 30.0
#: most frames of one 3D photo video (seconds x fps); beyond it the video is shortened. Rendering
#: costs about 70 ms of CPU per 720p frame here (docs/photo3d.md): 240 frames is 17 s of CPU
SERVER_MAX_VIDEO_FRAMES = 240
#: largest short side of what the server renders from a depth map (3D photo videos, stereo pairs,
#: anaglyphs), pixels; a request's ``size`` is capped at it (a 25 MP upload is rendered smaller)
SERVER_MAX_RENDER_SIZE = 720

# ----------------------------------------------------------------------------- weights and networks

#: most parameters of any network localdepth builds, whatever its registry entry: 2 billion (8 GB
#: in fp32). The largest entry, Depth Anything 3 Giant, has 1.32 billion. Checked from the
#: checkpoint's config or tensor shapes on a network built without memory (PyTorch's meta
#: device), before anything is allocated.
MAX_NETWORK_PARAMS = 2_000_000_000
#: a checkpoint may describe a network at most this many times the size of its registry entry
#: (``params_millions``): a fine-tuned variant passes, the next released size up (3.4 to 3.9 times
#: for Depth Anything Small -> Base -> Large) and a 76 GB network made of empty tensors do not
MAX_NETWORK_SIZE_RATIO = 1.5
#: most layers a config may ask for in one stack (``num_hidden_layers`` and every other
#: ``*layers`` count), and most items in one of its lists: checked on config.json before the
#: network is built, because building a million-layer network takes minutes even without memory.
#: The released networks have at most 40 blocks (Depth Anything 3 Giant).
MAX_CONFIG_LAYERS = 64
MAX_CONFIG_LIST_ITEMS = 256

# ----------------------------------------------------------------------------- the conversion cache

#: bytes the conversion cache (ONNX, OpenVINO IR, int8 models) may hold before the least
#: recently used conversions are evicted: 5 GiB. A Depth Anything V2 Small's conversions take
#: about 190 MB, a Large's about 3 GB (IR, compiled blobs and int8). Override with
#: ``LOCALDEPTH_CONVERSION_CACHE_MB`` or ``localdepth models cache --budget MB``.
CONVERSION_CACHE_MAX_BYTES = 5 * 1024 * MIB
#: a staging folder of a conversion whose process is gone, or that is older than this (seconds),
#: is left over from a killed conversion and removed
STALE_STAGING_S = 24 * 3600
