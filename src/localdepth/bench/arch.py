"""Random weights of a real architecture (same FLOPs as the released weights) and FLOP counts.

Used when the released weights are not on the machine: the timings of a network do not depend
on the values of its weights, so a randomly initialised Depth Anything V2 of the released
configuration measures the same speed. Reports say when they used such weights.
"""

from __future__ import annotations

from pathlib import Path

from ..registry import ModelSpec

#: Depth Anything V2 configurations as released (Hugging Face ``*-hf`` repositories)
_DA2 = {
    "small": {"hidden": 384, "layers": 12, "heads": 6, "out": [3, 6, 9, 12], "neck": [48, 96, 192, 384], "fusion": 64},
    "base": {"hidden": 768, "layers": 12, "heads": 12, "out": [3, 6, 9, 12], "neck": [96, 192, 384, 768], "fusion": 128},
    "large": {"hidden": 1024, "layers": 24, "heads": 16, "out": [5, 12, 18, 24], "neck": [256, 512, 1024, 1024],
              "fusion": 256},
}


def architecture_config(spec: ModelSpec):
    """The Transformers config of ``spec``'s released architecture, or None when it is not known here."""
    from transformers import DepthAnythingConfig, Dinov2Config

    if not spec.family.startswith("depth-anything-v2"):
        return None
    size = spec.name.rsplit("-", 1)[-1]
    if size not in _DA2:
        return None
    a = _DA2[size]
    backbone = Dinov2Config(
        hidden_size=a["hidden"], num_hidden_layers=a["layers"], num_attention_heads=a["heads"], mlp_ratio=4,
        patch_size=14, image_size=518, layerscale_value=1.0, out_indices=a["out"],
        reshape_hidden_states=False, apply_layernorm=True,
    )
    metric = spec.output == "depth"
    return DepthAnythingConfig(
        backbone_config=backbone, neck_hidden_sizes=a["neck"], reassemble_hidden_size=a["hidden"],
        reassemble_factors=[4, 2, 1, 0.5], fusion_hidden_size=a["fusion"], head_hidden_size=32, patch_size=14,
        depth_estimation_type="metric" if metric else "relative", max_depth=spec.max_depth or 1,
    )


def _random_da3_folder(spec: ModelSpec, folder: Path, seed: int) -> Path:
    """A randomly initialised Depth Anything 3 network of ``spec``'s architecture in the Hub folder
    format (``config.json`` with ``model_name``, ``model.safetensors``)."""
    import json

    import torch
    from safetensors.torch import save_model

    from ..networks.da3 import build

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(build(spec.architecture), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_name": spec.architecture}))
    return folder


def random_weights_folder(spec: ModelSpec, folder: Path, seed: int = 0) -> Path | None:
    """Save a randomly initialised ``spec`` (released architecture) with its image processor in
    ``folder`` (reused when already there). None when the architecture is not known here. The image
    processor (for the Transformers pipeline rows) needs Pillow; without it the folder has none."""
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        _save_processor(spec, folder)
        return folder
    if spec.format == "da3":
        return _random_da3_folder(spec, folder, seed)
    config = architecture_config(spec)
    if config is None:
        return None
    import torch
    from transformers import DepthAnythingForDepthEstimation
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    _save_processor(spec, folder)
    return folder


def _save_processor(spec: ModelSpec, folder: Path) -> None:
    """The entry's image processor configuration beside the weights (once; skipped without Pillow)."""
    if spec.format != "transformers" or (folder / "preprocessor_config.json").is_file():
        return
    try:  # Transformers 5 without torchvision: the PIL processor
        from transformers import DPTImageProcessorPil as DPTImageProcessor
    except ImportError:
        try:
            from transformers import DPTImageProcessor
        except ImportError:
            return
    pre = spec.preprocessing
    try:
        DPTImageProcessor(
            do_resize=True, size={"height": pre.input_size, "width": pre.input_size}, keep_aspect_ratio=True,
            ensure_multiple_of=pre.multiple_of, resample=3, do_rescale=True, do_normalize=True,
            image_mean=list(pre.mean), image_std=list(pre.std), do_pad=False,
        ).save_pretrained(folder)
    except ImportError:  # the processor class exists, but Pillow does not
        return


def count_flops(folder: Path, height: int, width: int) -> int:
    """FLOPs of one forward pass at ``height x width`` (batch 1; a multiply-add counts 2).

    Counted with eager (math) attention: PyTorch's FLOP counter has no formula for the CPU SDPA
    kernel, and both compute the same products.
    """
    import json

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, height, width)
    counter = FlopCounterMode(display=False)
    model_name = json.loads((Path(folder) / "config.json").read_text()).get("model_name")
    from ..networks.da3 import ARCHITECTURES

    if model_name in ARCHITECTURES:  # Depth Anything 3: localdepth's own network
        from ..networks.da3 import load
        from ..registry import MODELS

        spec = next(s for s in MODELS.values() if s.architecture == model_name)
        model = load(spec, Path(folder))
        with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]), counter:
            model(x)
        return int(counter.get_total_flops())
    from transformers import AutoModelForDepthEstimation
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForDepthEstimation.from_pretrained(str(folder), attn_implementation="eager").eval()
    with torch.inference_mode(), counter:
        model(pixel_values=x)
    return int(counter.get_total_flops())
