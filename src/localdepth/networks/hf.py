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
    """Load a Hugging Face-format folder as ``spec``'s network, checked before anything is
    allocated (:mod:`.checks`): the config against the entry, the size of the network it describes
    (built on the meta device), then every weight (safetensors only; nothing is unpickled)."""
    from transformers import AutoConfig, AutoModelForDepthEstimation
    from transformers.utils import logging as hf_logging

    from . import checks

    hf_logging.disable_progress_bar()  # loading a local folder needs no progress bar
    path = Path(path)
    where = str(path)
    checks.check_description(spec, _read_config(path), where)
    try:
        config = AutoConfig.from_pretrained(str(path))
        checks.check_outputs(spec, config, where)
        with torch.device("meta"):  # the network the config describes, without memory
            skeleton = AutoModelForDepthEstimation.from_config(config)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise BackendError(f"cannot build the network {path}/config.json describes: {_first_line(e)[:200]}") from None
    checks.check_size(spec, checks.count_parameters(skeleton), where)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report becomes one line below
    try:
        model, info = AutoModelForDepthEstimation.from_pretrained(
            str(path), dtype=dtype, use_safetensors=True, output_loading_info=True, ignore_mismatched_sizes=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise BackendError(f"cannot load the model in {path}: {_first_line(e)[:200]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    checks.check_weights(spec, where, skeleton.state_dict(), missing=info["missing_keys"],
                         unexpected=info["unexpected_keys"], mismatched=info["mismatched_keys"],
                         unread=lambda: checks.unread_weights(skeleton, _example_inputs(spec)))
    from .dpt import needs_input_grid, use_input_grid

    if needs_input_grid(model):
        use_input_grid(model)
    if spec.position_embedding == "dinov2":
        from .dinov2 import use_reference_interpolation

        use_reference_interpolation(model)
    return TransformersDepth(model.eval().to(device), flip_average=spec.postprocessing.flip_average)


def _read_config(folder: Path) -> dict:
    import json

    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise BackendError(f"cannot read {folder}/config.json: {_first_line(e)[:200]}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _example_inputs(spec: ModelSpec) -> dict:
    """Meta-device inputs of the entry's shape, for tracing which weights a forward pass reads."""
    pre = spec.preprocessing
    h, w = pre.fixed_hw or (pre.multiple_of * 4, pre.multiple_of * 5)
    inputs = {"pixel_values": torch.zeros(1, 3, h, w, device="meta")}
    if spec.prompt is not None:
        inputs["prompt_depth"] = torch.zeros(1, 1, 16, 16, device="meta")
    return inputs
