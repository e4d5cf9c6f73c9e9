"""``localdepth finetune``: Depth Anything V1/V2 fine-tuned on RGB-D data -> a model like any other."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

from .common import add_outdir_arg

EPILOG = """\
data: the specs `localdepth eval -d` reads (folder:, manifest:, nyu:, kitti:, diode:) and stray:CAPTURE
(a Stray Scanner export). Without --val, whole scenes are held out for validation (split.json).
OUTDIR then holds the weights (config.json + model.safetensors: `localdepth run --weights OUTDIR`),
finetune.json (base model, licence, data, recipe, validation before and after), train.jsonl,
train.png and checkpoints/last.pt (`--resume`). Details: docs/finetune.md."""


def register(sub) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune Depth Anything V1/V2 on your own RGB-D data",
        description="Fine-tune a Depth Anything V1/V2 model (relative or metric) on RGB-D frames with the "
                    "official recipe: SiLog for metric models, scale-and-shift-invariant + gradient matching for "
                    "relative ones; AdamW with the encoder at a tenth of --lr; warm-up and poly decay; random "
                    "crops, flips and colour jitter. Validates before the first step and every --val-every steps.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    # None everywhere: --resume takes the recorded value of every option not given
    p.add_argument("--model", "-m", help="registry name of the base model (e.g. depth-anything-v2-metric-indoor-small)")
    p.add_argument("--weights", metavar="PATH", help="the base model's weights, instead of the cache")
    p.add_argument("--data", "-d", metavar="KIND:PATH", help="training frames (see below)")
    p.add_argument("--val", metavar="KIND:PATH", help="validation frames (default: whole scenes held out of --data)")
    add_outdir_arg(p, required=True, type=Path, help="where the weights, log, plot and checkpoints go")
    g = p.add_argument_group("length and validation")
    g.add_argument("--steps", type=int, help="optimiser steps (default: --epochs 10 worth)")
    g.add_argument("--epochs", type=float, help="passes over the training frames (default 10, unless --steps)")
    g.add_argument("--val-every", type=int, metavar="N", help="validate every N steps (default: once per epoch)")
    g.add_argument("--val-fraction", type=float, metavar="F",
                   help="without --val: share of the frames held out, by whole scenes (default 0.1; 0: none)")
    g.add_argument("--val-limit", type=int, metavar="N", help="validate on the first N validation frames only")
    g.add_argument("--save-every", type=int, metavar="N", help="write a checkpoint every N steps (default: --val-every)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --outdir from its checkpoint, exactly (the recorded options apply)")
    r = p.add_argument_group("recipe")
    r.add_argument("--batch-size", "-b", type=int, help="images per micro-batch and worker (default 4)")
    r.add_argument("--accumulate", type=int, metavar="N", help="micro-batches per optimiser step (default 1)")
    r.add_argument("--lr", type=float, help="learning rate of the decoder (and LoRA adapters); the encoder gets a "
                                            "tenth (default 5e-5, the official metric recipe's)")
    r.add_argument("--warmup-steps", type=int, metavar="N", help="linear warm-up steps (default: 5%% of the steps)")
    r.add_argument("--clip-grad", type=float, metavar="NORM", help="gradient norm clipping, 0 = off (default 1)")
    r.add_argument("--input-size", type=int, metavar="N",
                   help="training crop and validation input size, a multiple of 14 (default 518)")
    r.add_argument("--freeze-encoder", action="store_true", default=None, help="train the decoder only")
    r.add_argument("--unfreeze-last", type=int, metavar="N", help="train the decoder and the last N encoder blocks")
    r.add_argument("--lora", type=int, metavar="RANK",
                   help="train LoRA adapters (PEFT) on the encoder's attention only; merged into the saved weights")
    r.add_argument("--lora-alpha", type=float, metavar="A", help="LoRA scaling alpha (default: RANK)")
    r.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                   help="no flips or colour jitter (random crops stay)")
    r.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"),
                   help="autocast precision (default auto: fp32 on CPUs, bf16 on CUDA where supported, else fp16)")
    r.add_argument("--seed", type=int, help="seed of the data order, crops and augmentation (default 0)")
    d = p.add_argument_group("data")
    d.add_argument("--depth-scale", type=float, help="folder datasets: PNG units per metre (overrides detection)")
    d.add_argument("--data-root", metavar="PATH", help="KITTI: folder the split file's paths are relative to")
    d.add_argument("--loader-threads", type=int, metavar="N", help="frame-loading threads (default 2)")
    w = p.add_argument_group("where it runs")
    w.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    w.add_argument("--workers", type=int, metavar="N", help="data-parallel workers on Ray Train (default 1: no Ray)")
    w.add_argument("--ray-address", metavar="ADDR",
                   help="join this Ray cluster (auto, HOST:6379); default with --workers > 1: a local Ray")
    p.add_argument("--quiet", "-q", action="store_true", default=None, help="no progress bar")
    p.set_defaults(func=main)


def config_from_args(args: argparse.Namespace):
    """The run's :class:`~localdepth.training.FinetuneConfig`: the options given, over the recorded
    ones when resuming (``checkpoints/run.json``), over the defaults."""
    from ..errors import LocalDepthError
    from ..training import FinetuneConfig
    from ..training.outputs import RUN
    from ..weights import model_for_weights

    given = {f.name: getattr(args, f.name) for f in fields(FinetuneConfig)
             if getattr(args, f.name, None) is not None and f.name != "outdir"}
    given["outdir"] = str(args.outdir)
    if args.resume:
        recorded_path = Path(args.outdir) / RUN
        if not recorded_path.is_file():
            raise LocalDepthError(f"--resume: {args.outdir} holds no run to continue ({RUN} is missing)")
        recorded = json.loads(recorded_path.read_text())
        return FinetuneConfig(**{**recorded, **given, "resume": True})
    if "model" not in given and model_for_weights(given.get("weights")):
        given["model"] = model_for_weights(given["weights"])  # a fine-tune of a fine-tune
    missing = [flag for flag, name in (("--model", "model"), ("--data", "data")) if name not in given]
    if missing:
        raise LocalDepthError(f"finetune needs {' and '.join(missing)} (or --resume to continue a run in --outdir)")
    return FinetuneConfig(**given)


def main(args: argparse.Namespace) -> int:
    from ..training import finetune

    cfg = config_from_args(args)
    t0 = time.perf_counter()
    summary = finetune(cfg)
    outdir = Path(cfg.outdir)
    record = json.loads((outdir / "finetune.json").read_text())
    val = record["validation"]
    line = f"done: {summary['step']} steps in {time.perf_counter() - t0:.1f} s"
    if val["before"] and val["after"]:
        line += (f"; validation AbsRel {val['before']['abs_rel']:.4f} -> {val['after']['abs_rel']:.4f}, "
                 f"δ1 {val['before']['d1']:.4f} -> {val['after']['d1']:.4f}")
    if val["best"]:
        line += f" (kept the best, step {val['best']['step']})"
    print(f"{line} -> {outdir}", file=sys.stderr)
    print(f"run it: localdepth run PHOTO --weights {outdir}" + ("" if record["commercial_use"] else
          f"  (licence {record['licence']}: not for commercial use)"), file=sys.stderr)
    return 0
