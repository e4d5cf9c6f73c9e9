"""Networks defined by Hugging Face Transformers (``AutoModelForDepthEstimation``).

:class:`TransformersDepth` adapts a Transformers depth model to localdepth's calling
convention (see :mod:`localdepth.networks`): ``pixel_values`` in, a dict with ``depth`` out.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import BackendError
from ..registry import ModelSpec


class TransformersDepth(torch.nn.Module):
    """A Transformers depth model as ``pixel_values -> {"depth": predicted_depth}``."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, pixel_values, **conditioning):
        out = self.model(pixel_values=pixel_values, **conditioning)
        return {"depth": out.predicted_depth}


def load(spec: ModelSpec, path: Path, *, device: str = "cpu", dtype=torch.float32) -> TransformersDepth:
    from transformers import AutoModelForDepthEstimation
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading a local folder needs no progress bar
    try:
        model = AutoModelForDepthEstimation.from_pretrained(str(path), dtype=dtype)
    except (OSError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError(f"cannot load the model in {path}: {first[:200]}") from None
    from .dpt import needs_input_grid, use_input_grid

    if needs_input_grid(model):
        use_input_grid(model)
    if spec.position_embedding == "dinov2":
        from .dinov2 import use_reference_interpolation

        use_reference_interpolation(model)
    return TransformersDepth(model.eval().to(device))
