"""What every conversion starts from: the network in localdepth's calling convention, its
``torch.export`` with dynamic shapes, the check input and the reference outputs.

The exported program takes ``pixel_values`` ``(N, 3, h, w)`` float32 (or NHWC for NHWC entries)
and returns the network's outputs as a tuple, ``depth`` first (:data:`Source.output_names`),
with ``N``, ``h`` and ``w`` dynamic (``h``, ``w`` multiples of the entry's ``multiple_of``).
"""

from __future__ import annotations

import contextlib
import re
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..registry import ModelSpec
from ..weights import ResolvedWeights
from . import ConversionError
from .calibration import synthetic_image


class Source:
    def __init__(self, spec: ModelSpec, weights: ResolvedWeights, settings):
        self.spec = spec
        self.weights = weights
        self.settings = settings

    @cached_property
    def network(self):
        """The network, fp32, on the CPU (:func:`localdepth.networks.load_network`)."""
        from ..networks import load_network

        return load_network(self.spec, Path(self.weights.path), device="cpu")

    @cached_property
    def check(self) -> tuple[np.ndarray, str]:
        """The parity check's input ``(1, ...)`` float32 and what it is."""
        return self.check_input(self.settings.input_size)

    @cached_property
    def check_rgb(self) -> tuple[np.ndarray, str]:
        """The parity check's image (uint8 RGB, or as decoded) and what it is."""
        from ..images import load_image

        image = self.settings.check_image
        if image is not None:
            return load_image(image), Path(image).name
        return synthetic_image(), "a synthetic test image (pass --check-image PHOTO for a real one)"

    def check_input(self, input_size: int | None) -> tuple[np.ndarray, str]:
        """The check image as the network input ``(1, ...)`` at ``input_size`` (None: the entry's)."""
        from ..preprocess import preprocess

        rgb, label = self.check_rgb
        return preprocess(rgb, self.spec.preprocessing, input_size)[None], label

    def reference(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """PyTorch fp32 outputs for ``x``, by name."""
        try:
            with torch.inference_mode():
                out = self.network(torch.from_numpy(np.ascontiguousarray(x)))
        except Exception as e:  # the network itself cannot run this input: nothing to compare with
            raise ConversionError(f"PyTorch cannot run {self.spec.name} on the check input {tuple(x.shape)}: "
                                  f"{first_line(e)}; try another --check-image or --input-size") from None
        return {k: v.float().numpy() for k, v in out.items() if v is not None}

    @cached_property
    def output_names(self) -> list[str]:
        """The network's outputs on an example input, ``depth`` first: the converted graph's outputs."""
        names = list(self.reference(self.example().numpy()))
        return ["depth", *sorted(n for n in names if n != "depth")]

    def example(self):
        """An input of neither the default size nor square, batch 2, so nothing specialises on it."""
        pre = self.spec.preprocessing
        h, w = pre.fixed_hw if pre.fixed_hw else (pre.multiple_of * 8, pre.multiple_of * 10)
        shape = (2, h, w, 3) if pre.layout == "nhwc" else (2, 3, h, w)
        return torch.randn(*shape, generator=torch.Generator().manual_seed(0))

    @cached_property
    def exported(self):
        """``torch.export`` of the network with dynamic batch (and height and width unless fixed)."""
        pre = self.spec.preprocessing
        dims = {0: torch.export.Dim("batch", min=1, max=1024)}
        if not pre.fixed_hw:
            m = pre.multiple_of
            h_axis, w_axis = (1, 2) if pre.layout == "nhwc" else (2, 3)
            dims[h_axis] = m * torch.export.Dim("patches_h", min=1, max=4096 // m)
            dims[w_axis] = m * torch.export.Dim("patches_w", min=1, max=4096 // m)
        module = Outputs(self.network, self.output_names).eval()
        try:
            with _symbolic_output_size(), torch.no_grad(), quiet():
                return torch.export.export(module, (self.example(),), dynamic_shapes={"pixel_values": dims})
        except Exception as e:
            raise ConversionError(f"torch.export cannot export {self.spec.name} with dynamic shapes: "
                                  f"{first_line(e)[:300]}") from None


class Outputs(torch.nn.Module):
    """A network's output dict as a tuple in a fixed order (what exporters take)."""

    def __init__(self, network, names):
        super().__init__()
        self.network = network
        self.names = list(names)

    def forward(self, pixel_values):
        out = self.network(pixel_values)
        return tuple(out[name] for name in self.names)


@contextlib.contextmanager
def _symbolic_output_size():
    """Depth Anything's head casts its output size with ``int()``, which freezes H and W in an
    export; inside this block that cast keeps symbolic sizes symbolic."""
    import builtins

    from transformers.models.depth_anything import modeling_depth_anything as mda

    def keep_symbolic(value):
        return value if isinstance(value, torch.SymInt) else builtins.int(value)

    had = "int" in vars(mda)
    old = vars(mda).get("int")
    mda.int = keep_symbolic
    try:
        yield
    finally:
        if had:
            mda.int = old
        else:
            del mda.int


@contextlib.contextmanager
def quiet():
    """Exporters print progress lines and warnings (about torchvision ops); keep the CLI clean."""
    import io
    import logging
    import warnings
    from contextlib import redirect_stdout

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._export", "torch.export", "openvino")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def first_line(e: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # exporters colour their messages
    return text.splitlines()[0] if text else type(e).__name__

