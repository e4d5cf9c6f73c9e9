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
#: beyond it new requests get 503. A request holds its decoded image (3 bytes per pixel), then its
#: map at the image's size (4) and that map's encoding (2 for png16, 4 for npy, 5.3 for json):
#: 100 Mpx is about 0.7 to 1.2 GB. The network's activations are bounded apart (max_batch and
#: the network input budget above).
SERVER_MAX_QUEUED_PIXELS = 100_000_000
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
#: most photos in one POST /v1/scene; each within SERVER_MAX_UPLOAD_BYTES and SERVER_MAX_PIXELS,
#: and one scene at a time per server
SERVER_MAX_SCENE_VIEWS = 8
