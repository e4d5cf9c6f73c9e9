"""PyTorch: the networks of :mod:`localdepth.networks` (Transformers' models and native ones).

Attention runs through PyTorch's SDPA (Transformers' default; the native networks call it), so
CUDA picks its flash or memory-efficient kernels. On CUDA the model also uses ``channels_last``
(the convolutional DPT head gets faster cuDNN kernels) and TF32 matmuls for fp32.

On CUDA the backend keeps the whole image pipeline on the device (:attr:`TorchBackend.device_pipeline`):
the estimator sends decoded 8-bit images, resizes and normalises them there
(:mod:`localdepth.preprocess_torch`), runs the network on device tensors (:meth:`TorchBackend.run_tensor`)
and copies back only each map at its image's size.

``compile=True`` wraps the forward in ``torch.compile`` with one static graph per network input
shape (:class:`_CompiledBuckets`: a folder's images fall into a few shape buckets, each compiled once;
a known shape never recompiles); ``cuda_graphs=True`` replays a captured CUDA graph per input shape
(fixed-size latency work: the server, webcams, streaming video, where the launch overhead of a ViT
at batch 1 is larger than its compute on a big GPU); both together compile in inductor's
``reduce-overhead`` mode (compiled kernels replayed through CUDA graphs). The CPU path is the plain
eager model unless ``compile`` is asked for.
"""

from __future__ import annotations

import contextlib
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import BackendError
from ..registry import ModelSpec
from .base import Backend, NetworkOutput, Stream

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
#: network input shapes ``torch.compile`` makes a graph for, at most (beyond: eager)
MAX_COMPILED_SHAPES = 16


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu")
        if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise BackendError("--device mps asked for, but MPS is not available; use --device cpu")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str, device: str, half: str = "fp16") -> str:
    """``auto``: the entry's half precision on CUDA (``half``: fp16, or bf16 for models whose
    reference needs its range, where the card computes bf16), fp32 elsewhere."""
    if dtype == "auto":
        if not device.startswith("cuda"):
            return "fp32"
        import torch

        return "bf16" if half == "bf16" and torch.cuda.is_bf16_supported() else "fp16"
    if dtype not in _DTYPES:
        raise BackendError(f"unknown dtype '{dtype}'; use auto, fp32, fp16 or bf16")
    if dtype == "fp16" and device == "cpu":
        raise BackendError("fp16 is not supported on CPU; use --dtype bf16 or fp32")
    return dtype


#: what PyTorch's warning says when an operation MPS lacks runs on the CPU (PYTORCH_ENABLE_MPS_FALLBACK=1)
_MPS_FALLBACK_WARNING = re.compile(r"operator '([^']+)' is not currently supported on the MPS backend and will "
                                   r"fall back to run on the CPU")
#: ... and the error it raises when the fallback is off
_MPS_MISSING_ERROR = re.compile(r"operator '([^']+)' is not currently implemented for the MPS device")
_fallbacks_noticed: set[str] = set()


@contextlib.contextmanager
def mps_fallback_notice(log=None):
    """Around work on MPS: PyTorch's warning that an operation fell back to the CPU becomes one
    clear line (once per operation and process; PyTorch itself warns once), and its error for an
    operation MPS lacks with the fallback off becomes a one-line :class:`BackendError`. Other
    warnings pass through unchanged."""
    log = log or (lambda line: print(line, file=sys.stderr))
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    except NotImplementedError as e:
        missing = _MPS_MISSING_ERROR.search(str(e))
        if missing is None:
            raise
        raise BackendError(f"PyTorch on MPS does not implement {missing.group(1)}; run with "
                           f"PYTORCH_ENABLE_MPS_FALLBACK=1 (set before PyTorch is imported: localdepth sets it "
                           f"when it is imported first) to run it on the CPU, or use --device cpu") from None
    finally:
        _pass_on(caught, log)


def _pass_on(caught: list, log) -> None:
    for w in caught:
        fallback = _MPS_FALLBACK_WARNING.search(str(w.message))
        if fallback is None:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif fallback.group(1) not in _fallbacks_noticed:
            _fallbacks_noticed.add(fallback.group(1))
            log(f"localdepth: warning: PyTorch on MPS runs {fallback.group(1)} on the CPU (MPS lacks it): same "
                f"results, slower; PYTORCH_ENABLE_MPS_FALLBACK=0 makes it an error instead")


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, spec: ModelSpec, path: Path, *, device: str = "auto", dtype: str = "auto",
                 compile: bool | str | Callable = False, cuda_graphs: bool = False,
                 device_pipeline: bool | None = None, max_buckets: int = MAX_COMPILED_SHAPES):
        """``compile``: False, True (inductor), or a ``torch.compile`` backend (a name such as
        ``"aot_eager"``, or a callable) for tests and experiments. ``device_pipeline``: keep pre- and
        postprocessing on the device (default: on CUDA); the tests turn it on for CPU tensors."""
        import torch

        from ..networks import load_network

        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device, spec.half_precision)
        self._torch_dtype = getattr(torch, _DTYPES[self.dtype])
        #: the network in localdepth's calling convention (:mod:`localdepth.networks`)
        self.model = load_network(spec, path, device=self.device, dtype=self._torch_dtype)
        self.config = getattr(self.model, "config", None)
        self._cuda = self.device.startswith("cuda")
        self._memory_format = torch.channels_last if self._cuda else torch.contiguous_format
        if self._cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes within a run: pick the fastest kernels once
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            self.model = self.model.to(memory_format=torch.channels_last)
        if cuda_graphs and not self._cuda:
            raise BackendError("--cuda-graphs needs a CUDA device; use --device cuda or drop it")
        if cuda_graphs and not compile and not getattr(self.model, "capturable", True):
            print(f"localdepth: warning: {spec.name} reads values on the host during its forward pass, which a "
                  "CUDA graph cannot capture; running it without --cuda-graphs", file=sys.stderr)
            cuda_graphs = False
        #: pre- and postprocessing on the device, only maps at the images' sizes copied back; not for
        #: entries whose raw output needs the CPU's failure filling (depth-like outputs, PyDNet++)
        self.device_pipeline = (self._cuda if device_pipeline is None else bool(device_pipeline)) \
            and not spec.reciprocal_output
        if self.device_pipeline and self._cuda:
            self.parallel_requests = 2  # the next batch is queued on the GPU while this one's maps come back
        self.compiled = bool(compile)
        self.cuda_graphs = bool(cuda_graphs)
        #: every output of the network for a batch without conditioning: eager, compiled or replayed
        self._outputs = self._eager_outputs
        self._buckets = None
        if compile:
            # inductor; with CUDA graphs, its "reduce-overhead" mode replays the compiled kernels through them
            backend = "inductor" if compile is True else compile
            mode = "reduce-overhead" if cuda_graphs and backend == "inductor" else None
            self._buckets = _CompiledBuckets(self._eager_outputs, backend=backend, mode=mode, max_buckets=max_buckets)
            self._outputs = self._buckets
        elif cuda_graphs:
            self._outputs = _CudaGraphs(self._eager_outputs)

    @property
    def torch_dtype(self):
        """The ``torch.dtype`` the network computes in."""
        return self._torch_dtype

    @property
    def compilations(self) -> int:
        """Graphs ``torch.compile`` has made so far (0 without ``compile``)."""
        return 0 if self._buckets is None else self._buckets.compilations

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.run(batch).depth

    def _guard(self):
        """What wraps work on the device: the MPS fallback notice on MPS (see :func:`mps_fallback_notice`)."""
        return mps_fallback_notice() if self.device == "mps" else contextlib.nullcontext()

    def run(self, batch: np.ndarray, **conditioning: np.ndarray) -> NetworkOutput:
        import torch

        with torch.inference_mode():
            out = self.run_tensor(self._to_device(batch), **conditioning)
            arrays = {k: v.float().cpu().numpy() for k, v in out.items() if v is not None}
        for key in ("intrinsics", "camera_from_world", "field_of_view"):
            if key in arrays:
                arrays[key] = arrays[key].astype(np.float64)
        return NetworkOutput(**arrays)

    def run_tensor(self, x, **conditioning) -> dict:
        """Every output of the network for a batch already on the device (any float dtype), as
        device tensors; ``conditioning`` arrays are copied to the device, other values passed as they are."""
        import torch

        with self._guard(), torch.inference_mode():
            x = self._on_device(x)
            extra = {k: self._to_device(v) if isinstance(v, np.ndarray) else v for k, v in conditioning.items()}
            if extra:  # conditioned (a prompt depth, views of one scene): eagerly
                out = self._eager_outputs(self._layout(x), **extra)
            else:
                out = self._outputs(self._layout(x))
            return {k: v for k, v in out.items() if v is not None}

    def _on_device(self, x):
        """A tensor moved to the backend's device and dtype (asynchronously from pinned memory)."""
        return x.to(self.device, self._torch_dtype, non_blocking=True)

    def _to_device(self, array: np.ndarray):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(array))
        if self._cuda:
            x = x.pin_memory()
        return self._on_device(x)

    def forward(self, pixel_values):
        """Tensor in, tensor out: ``(N, 3, h, w)`` -> depth ``(N, h', w')`` on the backend's device."""
        return self._outputs(self._layout(pixel_values))["depth"]

    def _layout(self, x):
        """channels_last for image batches on CUDA; clips ``(B, T, 3, h, w)`` stay as they are."""
        return x.contiguous(memory_format=self._memory_format) if x.dim() == 4 else x.contiguous()

    def activation_bytes(self, shape: tuple[int, ...]) -> int:
        """Device memory one forward pass at ``shape`` (batch 1) needs beyond what is allocated now:
        measured once per shape on CUDA (peak allocated during a pass on zeros); 0 elsewhere."""
        import torch

        if not self._cuda:
            return 0
        key = tuple(shape)
        cache = self.__dict__.setdefault("_activation_cache", {})
        if key not in cache:
            torch.cuda.synchronize(self.device)
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            with torch.inference_mode():
                self._eager_outputs(self._layout(torch.zeros((1, *key[1:]), device=self.device,
                                                             dtype=self._torch_dtype)))
            torch.cuda.synchronize(self.device)
            cache[key] = max(1, torch.cuda.max_memory_allocated(self.device) - base)
        return cache[key]

    def free_memory(self) -> int | None:
        """Free device memory in bytes (CUDA: the driver's free memory plus what PyTorch's allocator
        holds unused); None where it is not known (the CPU)."""
        import torch

        if not self._cuda:
            return None
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(free + torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device))

    def synchronize(self) -> None:
        import torch

        if self._cuda:
            torch.cuda.synchronize(self.device)

    def open_stream(self) -> Stream:
        if not hasattr(self.model, "stream_step"):
            raise BackendError("this model predicts each frame on its own; it has no streaming state")
        return _TorchStream(self)

    def _eager_outputs(self, pixel_values, **conditioning) -> dict:
        return self.model(pixel_values, **conditioning)

    def describe(self) -> dict:
        info = super().describe()
        if self.compiled:
            info["compile"] = True
        if self.cuda_graphs:
            info["cuda_graphs"] = True
        return info

    def close(self) -> None:
        import torch

        self.model = None
        self._outputs = None
        self._buckets = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


class _TorchStream(Stream):
    """The network's stream state (on the device) and the per-frame step. With CUDA graphs, the
    frame's encoder (fixed size: most of the work) is replayed from a captured graph; the temporal
    head, whose cache grows over the first frames, runs eagerly."""

    def __init__(self, backend: TorchBackend):
        self.backend = backend
        self.state = backend.model.new_stream()
        self._encoder = None
        if backend.cuda_graphs and hasattr(backend.model, "encode"):
            self._encoder = _CudaGraphs(backend.model.encode)

    def step(self, frame: np.ndarray) -> np.ndarray:
        import torch

        with self.backend._guard(), torch.inference_mode():
            return self.step_tensor(self.backend._to_device(frame)).float().cpu().numpy()

    def step_tensor(self, frame):
        """One preprocessed frame ``(1, 3, h, w)`` already on the device -> its map ``(1, h', w')`` there."""
        import torch

        with torch.inference_mode():
            x = self.backend._layout(frame.to(self.backend.device, self.backend._torch_dtype))
            return self.backend.model.stream_step(x, self.state, encoder=self._encoder)


class _CompiledBuckets:
    """``torch.compile`` with one static graph per input shape (a "bucket": the network sizes of a
    folder's images, times the batch size), never recompiled for a shape already seen.

    ``dynamic=False`` keeps each graph specialised to its shape (the fastest kernels; no symbolic
    sizes in the position-embedding resampling). Dynamo's recompile limit is raised by
    ``max_buckets`` so that a folder of up to that many sizes is compiled once per size; shapes beyond
    it run eagerly rather than each compiling (or silently falling back after 8, Dynamo's default).
    A batch smaller than one already compiled for its image size (the last, partly full batch of a
    bucket) is padded to that batch and the padding's outputs dropped: the images of a batch do not
    interact, and the padding costs less than a compilation.
    ``compilations`` counts the graphs made (Dynamo's ``unique_graphs`` counter, read around each call).
    """

    def __init__(self, fn, *, backend, mode, max_buckets: int):
        import torch
        import torch._dynamo

        self.fn = fn
        self.max_buckets = max_buckets
        self.shapes: set[tuple] = set()
        self.padded = _PadToKnownBatch(self._call)
        self.compilations = 0
        #: inductor's CUDA graphs reuse their output memory at the next replay: each call starts a new
        #: step (the caller has already queued what reads the last outputs)
        self.new_step = mode == "reduce-overhead"
        # Dynamo counts the graphs of one function's code across every backend made in this process
        # (each guards on its own model): each backend adds room for its buckets
        config = torch._dynamo.config
        per_code = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # older name
        for limit in (per_code, "accumulated_recompile_limit"):
            if hasattr(config, limit):
                setattr(config, limit, getattr(config, limit) + max_buckets)
        self.compiled = torch.compile(fn, backend=backend, mode=mode, dynamic=False)

    def __call__(self, x):
        return self.padded(x)

    def _call(self, x):
        from torch._dynamo.utils import counters

        key = (tuple(x.shape), x.dtype, x.device)
        if key not in self.shapes and len(self.shapes) >= self.max_buckets:
            return self.fn(x)
        self.shapes.add(key)
        if self.new_step:
            import torch

            torch.compiler.cudagraph_mark_step_begin()
        before = counters["stats"]["unique_graphs"]
        out = self.compiled(x)
        self.compilations += counters["stats"]["unique_graphs"] - before
        return out


class _PadToKnownBatch:
    """Calls ``fn`` with batches padded (zeros) to the smallest batch size already run for the same
    image shape, when there is a larger one, and returns the outputs of the real rows: a compiled or
    captured graph is then reused for the last, partly full batch of a bucket instead of making a
    new one. The networks treat the rows of a batch independently (the any-view model's views of
    one scene run eagerly, never through here)."""

    def __init__(self, fn):
        self.fn = fn
        self.batches: dict[tuple, set[int]] = {}

    def __call__(self, x):
        import torch
        from torch.utils._pytree import tree_map

        n, rest = int(x.shape[0]), (tuple(x.shape[1:]), x.dtype)
        known = self.batches.setdefault(rest, set())
        larger = [b for b in known if b > n]
        if n in known or not larger:
            known.add(n)
            return self.fn(x)
        b = min(larger)
        padding = x.new_zeros((b - n, *x.shape[1:]))
        out = self.fn(torch.cat([x, padding]).contiguous(memory_format=_memory_format_of(x)))
        return tree_map(lambda t: t[:n] if isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == b else t, out)


def _memory_format_of(x):
    import torch

    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class _CudaGraphs:
    """Replays one captured CUDA graph per input shape (dtype and device are fixed per backend).

    The first call with a shape warms up on a side stream and captures; later calls copy the
    input into the graph's static buffer and replay. Outputs may be a tensor or nested lists and
    tuples of tensors (an encoder's features); each is cloned out of the graph's memory. Kept to a
    few shapes: each graph holds its own activation memory.
    """

    def __init__(self, fn, max_graphs: int = 8):
        self.fn = fn
        self.max_graphs = max_graphs
        self._graphs: dict[tuple, tuple] = {}
        self.padded = _PadToKnownBatch(self._replay)

    def __call__(self, x):
        return self.padded(x)

    def _replay(self, x):
        import torch
        from torch.utils._pytree import tree_map

        key = tuple(x.shape)
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= self.max_graphs:
                return self.fn(x)
            static_in = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # cuDNN autotuning and lazy inits must happen outside the capture
                    self.fn(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.fn(static_in)
            entry = self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, static_out)
