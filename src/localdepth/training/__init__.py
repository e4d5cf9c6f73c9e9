"""Fine-tuning Depth Anything V1/V2 on your own RGB-D data (``localdepth finetune``).

* :mod:`.data`: the evaluator's datasets (and Stray Scanner captures), a split by scene, augmented
  crops through the model's own preprocessing, a seeded order;
* :mod:`.losses`: SiLog (metric), scale-and-shift-invariant + gradient matching (relative);
* :mod:`.recipe`: what trains (all, the decoder, the last blocks, LoRA adapters), AdamW with the
  encoder at a tenth of the rate, warm-up and poly decay;
* :mod:`.loop`: the loop, validation with the evaluator, checkpoints, exact resume, Ctrl-C;
* :mod:`.distributed`: one process or Ray Train workers (PyTorch DDP);
* :mod:`.outputs`: the weights (a Hugging Face-format folder), ``finetune.json``, the log and plot.
"""

from .loop import FinetuneConfig, Trainer, finetune

__all__ = ["FinetuneConfig", "Trainer", "finetune"]
