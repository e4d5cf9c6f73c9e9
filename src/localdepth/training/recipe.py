"""The Depth Anything V2 fine-tuning recipe: which parameters train, at which rate, with which loss.

As the official ``metric_depth/train.py``: AdamW (betas 0.9/0.999, weight decay 0.01) with the
encoder (the DINOv2 backbone) at a tenth of the decoder's learning rate, and a polynomial decay
``lr * (1 - t / T) ** 0.9``; here after a linear warm-up (the official has none; a few steps of it
keep the first updates of a fresh head from disturbing a pretrained encoder). The loss depends on
what the model predicts (:mod:`localdepth.training.losses`): SiLog for metric models (the head's
``sigmoid x max_depth``, in metres), scale-and-shift-invariant + gradient matching in disparity
for relative ones.

What trains (``train``):

* ``full``: everything (the official recipe);
* ``head``: the decoder (DPT neck and head), the encoder frozen (``--freeze-encoder``);
* ``last``: the decoder and the last N encoder blocks with the final norm (``--unfreeze-last N``);
* ``lora``: LoRA adapters (PEFT) on the attention's query, key and value projections of every
  encoder block, nothing else (``--lora RANK``). The adapters start at zero and are new
  parameters, like a head: they train at the head's rate. Saved weights have them merged in
  (:func:`model_to_save`), so the result is a plain model of the base architecture.

Parameters the network never uses (DINOv2's ``mask_token``, the residual unit of the deepest
fusion layer, which has no residual input) are frozen, found by one small forward and backward
pass: they would have no gradient in one process and a zero one under DDP, and weight decay would
then treat them differently.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import asdict, dataclass

import torch

from ..errors import LocalDepthError
from ..registry import ModelSpec
from .losses import GRADIENT_WEIGHT, SILOG_LAMBDA

#: the registry families this recipe trains (Transformers' ``DepthAnythingForDepthEstimation``)
FAMILIES = ("depth-anything-v2", "depth-anything-v2-metric", "depth-anything-v1")
#: the query, key and value projections of every encoder block (PEFT matches the whole module name;
#: Transformers 5 names them q_proj/k_proj/v_proj, Transformers 4 attention.query/key/value)
LORA_TARGETS = r".*backbone\.encoder\.layer\.\d+\.attention\.(attention\.)?(query|key|value|q_proj|k_proj|v_proj)"


@dataclass
class Recipe:
    mode: str  # "metric" | "relative"
    lr: float = 5e-5  # the decoder's (and LoRA adapters'); the encoder gets lr * encoder_lr_ratio
    encoder_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    poly_power: float = 0.9
    clip_grad: float = 1.0
    train: str = "full"  # full | head | last | lora
    unfreeze_last: int = 0
    lora_rank: int = 0
    lora_alpha: float = 0.0
    silog_lambda: float = SILOG_LAMBDA
    gradient_weight: float = GRADIENT_WEIGHT

    def as_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["loss"] = (f"SiLog (lambda {self.silog_lambda:g}), per image, in metres" if self.mode == "metric" else
                     f"scale-and-shift-invariant (median / mean absolute deviation) + {self.gradient_weight:g} x "
                     "gradient matching (4 scales), per image, in disparity (1 / depth)")
        d["optimizer"] = "AdamW"
        d["schedule"] = f"linear warm-up over {self.warmup_steps} steps, then poly decay (power {self.poly_power:g})"
        return d


def recipe_mode(spec: ModelSpec) -> str:
    """``metric`` or ``relative`` for a model this recipe trains; one line why not otherwise."""
    if spec.format != "transformers" or spec.family not in FAMILIES:
        raise LocalDepthError(
            f"localdepth finetune trains Depth Anything V1/V2 models (relative and metric); {spec.name} is a "
            f"{spec.family} model. Depth Anything 3 is not supported yet")
    return "metric" if spec.metric else "relative"


def hf_model(module: torch.nn.Module) -> torch.nn.Module:
    """The Transformers model inside localdepth's network wrapper (or inside its PEFT wrapper)."""
    return module.model


def _encoder_blocks(model) -> torch.nn.ModuleList:
    return model.backbone.encoder.layer


def _is_encoder(name: str) -> bool:
    return ".backbone." in f".{name}"


def prepare(module: torch.nn.Module, recipe: Recipe, probe_size: int = 28) -> list[dict]:
    """Set what trains in ``module`` (localdepth's wrapper of a Transformers Depth Anything), add LoRA
    adapters where asked, and return the optimiser's parameter groups."""
    model = hf_model(module)
    if recipe.train == "lora":
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise LocalDepthError("--lora needs PEFT: pip install 'localdepth[train]'") from None

        config = LoraConfig(r=recipe.lora_rank, lora_alpha=recipe.lora_alpha or recipe.lora_rank, lora_dropout=0.0,
                            target_modules=LORA_TARGETS, bias="none")
        with warnings.catch_warnings():  # PEFT asks Transformers 5 about checkpointing by a deprecated name
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            module.model = get_peft_model(model, config)  # freezes every base parameter
    else:
        for p in model.parameters():
            p.requires_grad_(True)
        if recipe.train in ("head", "last"):
            for p in model.backbone.parameters():
                p.requires_grad_(False)
        if recipe.train == "last":
            blocks = _encoder_blocks(model)
            if not 1 <= recipe.unfreeze_last <= len(blocks):
                raise LocalDepthError(f"--unfreeze-last must be between 1 and {len(blocks)} (the encoder's blocks)")
            for block in list(blocks)[-recipe.unfreeze_last:]:
                for p in block.parameters():
                    p.requires_grad_(True)
            for p in model.backbone.layernorm.parameters():
                p.requires_grad_(True)
    _freeze_unused(module, probe_size)
    encoder, decoder = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (encoder if _is_encoder(name) and "lora_" not in name else decoder).append(p)
    if not encoder and not decoder:
        raise LocalDepthError("nothing left to train: check --freeze-encoder, --unfreeze-last and --lora")
    groups = []
    if decoder:
        groups.append({"params": decoder, "lr": recipe.lr, "name": "decoder" if recipe.train != "lora" else "lora"})
    if encoder:
        groups.append({"params": encoder, "lr": recipe.lr * recipe.encoder_lr_ratio, "name": "encoder"})
    return groups


def _freeze_unused(module: torch.nn.Module, size: int) -> None:
    trainable = [p for p in module.parameters() if p.requires_grad]
    x = torch.zeros(1, 3, size, size, device=trainable[0].device if trainable else "cpu")
    out = module(x)["depth"]
    out.float().sum().backward()
    for p in trainable:
        if p.grad is None:
            p.requires_grad_(False)
        p.grad = None


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def optimizer(groups: list[dict], recipe: Recipe) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)


def lr_factor(step: int, total: int, warmup: int, power: float) -> float:
    """The multiplier of the base rates at optimiser step ``step`` (0-based) of ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return max(0.0, 1.0 - (step - warmup) / span) ** power


def scheduler(opt: torch.optim.Optimizer, total: int, recipe: Recipe) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, total, recipe.warmup_steps, recipe.poly_power))


def default_warmup(total: int) -> int:
    """5 % of the steps, at most 500."""
    return min(500, int(math.ceil(0.05 * total)))


def model_to_save(module: torch.nn.Module) -> torch.nn.Module:
    """The Transformers model to save: the module's own, or a copy with the LoRA adapters merged
    into the weights (the training module keeps its adapters)."""
    model = hf_model(module)
    if hasattr(model, "merge_and_unload"):  # a PEFT model
        return copy.deepcopy(model).merge_and_unload()
    return model
