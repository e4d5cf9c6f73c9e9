"""Networks defined by Hugging Face Transformers (``AutoModelForDepthEstimation``).

:class:`TransformersDepth` adapts a Transformers depth model to localdepth's calling
convention (see :mod:`localdepth.networks`): ``pixel_values`` (and conditioning such as
``prompt_depth``) in, a dict with ``depth`` out, plus what the family predicts beside it:

* Depth Pro returns ``field_of_view`` (degrees, horizontal); its ``predicted_depth`` is *canonical*
  inverse depth, which becomes metric inverse depth (1/m) by ``width / focal = 2 tan(fov / 2)``,
  a factor that does not depend on the resolution (Transformers' ``post_process_depth_estimation``
  does the same at the target size). The registry entry then inverts it after the resize.
* Entries with ``postprocessing.flip_average`` (ZoeDepth) run the mirrored batch too and average
  the prediction with the mirrored-back one, as Transformers' post-processing does with
  ``outputs_flipped``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import BackendError
from ..registry import ModelSpec


class TransformersDepth(torch.nn.Module):
    """A Transformers depth model as ``pixel_values, **conditioning -> {"depth": ..., ...}``."""

    def __init__(self, model, *, flip_average: bool = False):
        super().__init__()
        self.model = model
        self.config = model.config
        self.flip_average = flip_average
        #: Depth Pro with its field-of-view head returns the field of view beside depth
        self.extra_outputs = bool(getattr(model.config, "use_fov_model", False))

    def forward(self, pixel_values, **conditioning):
        n = pixel_values.shape[0]
        if self.flip_average:  # one forward pass over the batch and its mirror image
            pixel_values = torch.cat([pixel_values, pixel_values.flip(-1)])
            conditioning = {k: torch.cat([v, v.flip(-1)]) for k, v in conditioning.items()}
        out = self.model(pixel_values=pixel_values, **conditioning)
        depth = out.predicted_depth
        fov = getattr(out, "field_of_view", None)
        if self.flip_average:
            depth = (depth[:n] + depth[n:].flip(-1)) / 2
            fov = None if fov is None else (fov[:n] + fov[n:]) / 2
        result = {"depth": depth}
        if fov is not None:
            fov = fov.reshape(n)
            # canonical inverse depth -> metric inverse depth (1/m): times width / focal = 2 tan(fov / 2)
            result["depth"] = depth * (2.0 * torch.tan(torch.deg2rad(fov.float()) / 2.0)).to(depth.dtype)[:, None, None]
            result["field_of_view"] = fov
        return result


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
    return TransformersDepth(model.eval().to(device), flip_average=spec.postprocessing.flip_average)
