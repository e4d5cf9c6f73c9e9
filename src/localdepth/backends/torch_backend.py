"""PyTorch: the networks of :mod:`localdepth.networks` (Transformers' models and native ones).

Attention runs through PyTorch's SDPA (Transformers' default; the native networks call it). On CUDA the model also uses
``channels_last`` (the convolutional DPT head gets faster cuDNN kernels) and TF32 matmuls for fp32;
``compile=True`` wraps the forward in ``torch.compile`` and ``cuda_graphs=True`` replays a captured
CUDA graph per input shape (fixed-size batches: the launch overhead of a ViT at batch 1 is
larger than its compute on a big GPU). The CPU path is the plain eager model.
"""

from __future__ import annotations

import contextlib
import re
import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import BackendError
from ..registry import ModelSpec
from .base import Backend, NetworkOutput, Stream

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


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


def pick_dtype(dtype: str, device: str) -> str:
    if dtype == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
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
                 compile: bool = False, cuda_graphs: bool = False):
        import torch

        from ..networks import load_network

        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
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
        self.compiled = compile
        self._forward = self._eager_forward
        if compile:
            # "reduce-overhead" = inductor kernels replayed through CUDA graphs on the GPU
            mode = "reduce-overhead" if self._cuda else "default"
            self._forward = torch.compile(self._eager_forward, mode=mode, dynamic=False)
        self._graphs = _CudaGraphs(self._eager_forward) if cuda_graphs and not compile else None
        #: the network returns more than depth (confidence, a camera): run() returns those too
        self._extra_outputs = bool(getattr(self.model, "extra_outputs", False))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.run(batch).depth

    def _guard(self):
        """What wraps work on the device: the MPS fallback notice on MPS (see :func:`mps_fallback_notice`)."""
        return mps_fallback_notice() if self.device == "mps" else contextlib.nullcontext()

    def run(self, batch: np.ndarray, **conditioning: np.ndarray) -> NetworkOutput:
        import torch

        with self._guard(), torch.inference_mode():
            x = self._to_device(batch)
            # arrays are network inputs; anything else (flags, names) is passed through as is
            extra = {k: self._to_device(v) if isinstance(v, np.ndarray) else v for k, v in conditioning.items()}
            if extra or self._extra_outputs:  # every output, eagerly (graph replay keeps depth only)
                out = self._eager_outputs(self._layout(x), **extra)
            else:
                out = {"depth": self.forward(x)}
            arrays = {k: v.float().cpu().numpy() for k, v in out.items() if v is not None}
        for key in ("intrinsics", "camera_from_world", "field_of_view"):
            if key in arrays:
                arrays[key] = arrays[key].astype(np.float64)
        return NetworkOutput(**arrays)

    def _to_device(self, array: np.ndarray):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(array))
        if self._cuda:
            x = x.pin_memory()
        return x.to(self.device, self._torch_dtype, non_blocking=True)

    def forward(self, pixel_values):
        """Tensor in, tensor out: ``(N, 3, h, w)`` -> depth ``(N, h', w')`` on the backend's device."""
        pixel_values = self._layout(pixel_values)
        if self._graphs is not None:
            return self._graphs(pixel_values)
        return self._forward(pixel_values)

    def _layout(self, x):
        """channels_last for image batches on CUDA; clips ``(B, T, 3, h, w)`` stay as they are."""
        return x.contiguous(memory_format=self._memory_format) if x.dim() == 4 else x.contiguous()

    def open_stream(self) -> Stream:
        if not hasattr(self.model, "stream_step"):
            raise BackendError("this model predicts each frame on its own; it has no streaming state")
        return _TorchStream(self)

    def _eager_outputs(self, pixel_values, **conditioning) -> dict:
        return self.model(pixel_values, **conditioning)

    def _eager_forward(self, pixel_values):
        return self.model(pixel_values)["depth"]

    def describe(self) -> dict:
        info = super().describe()
        if self.compiled:
            info["compile"] = True
        if self._graphs is not None:
            info["cuda_graphs"] = True
        return info

    def close(self) -> None:
        import torch

        self.model = None
        self._graphs = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


class _TorchStream(Stream):
    """The network's stream state (on the device) and the eager per-frame step."""

    def __init__(self, backend: TorchBackend):
        self.backend = backend
        self.state = backend.model.new_stream()

    def step(self, frame: np.ndarray) -> np.ndarray:
        import torch

        with self.backend._guard(), torch.inference_mode():
            x = self.backend._to_device(frame)
            return self.backend.model.stream_step(x, self.state).float().cpu().numpy()


class _CudaGraphs:
    """Replays one captured CUDA graph per input shape (dtype and device are fixed per backend).

    The first call with a shape warms up on a side stream and captures; later calls copy the
    input into the graph's static buffer and replay. Kept to a few shapes: each graph holds its
    own activation memory.
    """

    def __init__(self, fn, max_graphs: int = 8):
        self.fn = fn
        self.max_graphs = max_graphs
        self._graphs: dict[tuple, tuple] = {}

    def __call__(self, x):
        import torch

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
        return static_out.clone()
