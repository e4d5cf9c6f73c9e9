"""The fine-tuning loop: data -> network -> loss -> AdamW, with validation, checkpoints and resume.

The base model is loaded by :func:`localdepth.load` on PyTorch, so the module that trains is the
very one inference runs (Transformers' ``DepthAnythingForDepthEstimation`` in localdepth's network
wrapper, position embeddings resized as the official code does), and validation runs it through
the ordinary estimator and the evaluator (:func:`localdepth.evaluation.evaluate`: AbsRel, δ1,
RMSE; alignment ``none`` for metric models, ``scale-shift-disparity`` for relative ones), before
the first step, every ``val_every`` steps and after the last.

One optimiser step takes ``batch_size x accumulate x workers`` frames in the seeded order of
:mod:`localdepth.training.data`; each worker runs ``accumulate`` micro-batches of
``batch_size``. A checkpoint holds the weights, AdamW's and the scheduler's state, the data
position and the random states: ``--resume`` continues exactly where a run stopped, and on a CPU
in fp32 gives bit for bit the weights of a run that never stopped. Ctrl-C stops after the current
step, saves a checkpoint, and the command exits with 130 (a second Ctrl-C aborts at once).
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__, registry
from ..errors import LocalDepthError
from . import losses, outputs
from .data import Augment, Cursor, FrameLoader, Item, draw, open_training_data, split_by_scene
from .distributed import Single
from .recipe import Recipe, default_warmup, model_to_save, optimizer, prepare, recipe_mode, scheduler

METRICS = ("abs_rel", "d1", "rmse")
#: options that may differ when a run is resumed (they change nothing the run computes)
RESUME_FREE = {"quiet", "resume", "ray_address", "device", "loader_threads"}


@dataclass
class FinetuneConfig:
    """Everything a run depends on (the command line of ``localdepth finetune``)."""

    model: str
    data: str
    outdir: str
    weights: str | None = None
    val: str | None = None
    val_fraction: float = 0.1
    val_every: int | None = None  # default: once per epoch
    val_limit: int | None = None
    steps: int | None = None
    epochs: float | None = None  # default 10 when steps is not given
    batch_size: int = 4
    accumulate: int = 1
    lr: float = 5e-5
    warmup_steps: int | None = None  # default: 5 % of the steps
    clip_grad: float = 1.0
    input_size: int = 518
    freeze_encoder: bool = False
    unfreeze_last: int | None = None
    lora: int | None = None
    lora_alpha: float | None = None
    augment: bool = True
    dtype: str = "auto"
    device: str = "auto"
    seed: int = 0
    save_every: int | None = None  # default: val_every
    depth_scale: float | None = None
    data_root: str | None = None
    workers: int = 1
    ray_address: str | None = None
    loader_threads: int = 2
    quiet: bool = False
    resume: bool = False

    def recipe_fields(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in RESUME_FREE}


def _train_mode(cfg: FinetuneConfig) -> str:
    chosen = [name for name, on in (("lora", cfg.lora), ("head", cfg.freeze_encoder), ("last", cfg.unfreeze_last))
              if on]
    if len(chosen) > 1:
        raise LocalDepthError("choose one of --lora, --freeze-encoder and --unfreeze-last")
    return chosen[0] if chosen else "full"


def _precision(dtype: str, device: str) -> str:
    if dtype == "auto":
        if device.startswith("cuda"):
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if dtype not in ("fp32", "bf16", "fp16"):
        raise LocalDepthError(f"--dtype {dtype}: training takes fp32, bf16 or fp16")
    if dtype == "fp16" and not device.startswith("cuda"):
        raise LocalDepthError("fp16 training needs a CUDA GPU; use --dtype bf16 (autocast) or fp32 on a CPU")
    return dtype


_stop = {"asked": False}


def stop_requested(outdir: Path) -> bool:
    """Ctrl-C was pressed here (:func:`interruptible`), or the Ray driver asked (``checkpoints/STOP``)."""
    return _stop["asked"] or (outdir / outputs.STOP).exists()


class interruptible:
    """While active (main thread only), Ctrl-C asks the loop to stop after its step instead of
    raising at once; a second Ctrl-C raises ``KeyboardInterrupt`` as usual."""

    def __enter__(self):
        _stop["asked"] = False
        self.previous = None
        try:
            self.previous = signal.signal(signal.SIGINT, self._ask)
        except ValueError:  # not the main thread: Ctrl-C is not ours to take
            pass
        return self

    def _ask(self, signum, frame):
        _stop["asked"] = True
        signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)
        print("\nlocaldepth: stopping after this step and saving a checkpoint (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        _stop["asked"] = False


class Trainer:
    """One worker's part of a run (rank 0 also validates and writes ``--outdir``)."""

    def __init__(self, cfg: FinetuneConfig, group: Single | None = None):
        from ..estimator import load

        self.cfg = cfg
        self.group = group or Single()
        self.outdir = Path(cfg.outdir)
        self.main = self.group.rank == 0
        self.warn = (lambda line: print(f"localdepth: warning: {line}", file=sys.stderr, flush=True)) \
            if self.main else None
        if cfg.workers < 1 or cfg.batch_size < 1 or cfg.accumulate < 1:
            raise LocalDepthError("--workers, --batch-size and --accumulate must be 1 or more")
        train_mode = _train_mode(cfg)
        mode = recipe_mode(registry.get(cfg.model))  # a model this recipe cannot train: said before loading
        # the module that trains is the one inference runs: the ordinary loader, on PyTorch
        self.estimator = load(cfg.model, weights=cfg.weights, backend="torch", device=cfg.device, dtype="fp32",
                              input_size=cfg.input_size)
        self.spec = self.estimator.spec
        self.module = self.estimator.backend.model
        self.device = self.estimator.backend.device
        self.precision = _precision(cfg.dtype, self.device)
        self.max_depth = float(self.module.config.max_depth) if mode == "metric" else None

        self.train_set, self.val_set, self.split = self._data()
        self.loader = FrameLoader(self.train_set.samples, self.spec.preprocessing, cfg.input_size, seed=cfg.seed,
                                  augment=Augment() if cfg.augment else None, max_depth=self.max_depth, warn=self.warn)
        self.per_step = cfg.batch_size * cfg.accumulate * self.group.world
        epoch_steps = max(1, math.ceil(len(self.loader) / self.per_step))
        self.total = cfg.steps or max(1, math.ceil((cfg.epochs or 10) * len(self.loader) / self.per_step))
        self.val_every = cfg.val_every or epoch_steps
        self.save_every = cfg.save_every or self.val_every
        self.recipe = Recipe(
            mode=mode, lr=cfg.lr, warmup_steps=default_warmup(self.total) if cfg.warmup_steps is None else cfg.warmup_steps,
            clip_grad=cfg.clip_grad, train=train_mode, unfreeze_last=cfg.unfreeze_last or 0,
            lora_rank=cfg.lora or 0, lora_alpha=cfg.lora_alpha or float(cfg.lora or 0))
        torch.manual_seed(cfg.seed)
        groups = prepare(self.module, self.recipe)
        self.params = [p for g in groups for p in g["params"]]
        self.wrapped = self.group.wrap(self.module)
        self.opt = optimizer(groups, self.recipe)
        self.sched = scheduler(self.opt, self.total, self.recipe)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.step = 0
        self.cursor = Cursor()
        self.history: list[dict] = []
        self.best: dict | None = None
        self.log = outputs.TrainLog(self.outdir / outputs.LOG)
        if cfg.resume:
            self._restore()
        elif self.main:
            self.log.path.unlink(missing_ok=True)
            (self.outdir / outputs.CHECKPOINT).unlink(missing_ok=True)
            outputs.write_json(self.outdir / outputs.RUN, {**asdict(cfg), "resume": False})

    # ------------------------------------------------------------------ data

    def _data(self):
        cfg = self.cfg
        train = open_training_data(cfg.data, depth_scale=cfg.depth_scale, data_root=cfg.data_root)
        if cfg.val:
            val = open_training_data(cfg.val, depth_scale=cfg.depth_scale, data_root=cfg.data_root)
            split = {"method": "given", "val": cfg.val, "train_frames": len(train.samples),
                     "val_frames": len(val.samples)}
        else:
            samples, held, split = split_by_scene(train.samples, cfg.val_fraction, cfg.seed)
            val = type(train)(f"{train.name} (held out)", held, "held-out scenes") if held else None
            train = type(train)(train.name, samples, train.description)
        if val is not None and cfg.val_limit:
            val.samples = val.samples[:cfg.val_limit]
        if not train.samples:
            raise LocalDepthError(f"{cfg.data}: no frames left to train on")
        split["train"] = cfg.data
        if self.main:
            self.outdir.mkdir(parents=True, exist_ok=True)
            outputs.write_json(self.outdir / outputs.SPLIT, split)
        return train, val, split

    def _plan(self, cursor: Cursor) -> tuple[list[list[tuple[int, int]]], Cursor]:
        """This worker's micro-batches of the optimiser step that starts at ``cursor`` (``(frame,
        epoch)`` pairs), and the cursor after the step. Micro-batch ``m`` of worker ``r`` is the
        ``(m * workers + r)``-th slice of ``batch_size`` frames of the step."""
        after = Cursor(**cursor.as_dict())
        pairs = draw(after, len(self.loader), self.per_step, self.cfg.seed)
        b, w, r = self.cfg.batch_size, self.group.world, self.group.rank
        return [pairs[(m * w + r) * b:(m * w + r + 1) * b] for m in range(self.cfg.accumulate)], after

    def _load(self, plan: list[list[tuple[int, int]]], frames: ThreadPoolExecutor) -> list[list[Item]]:
        return [list(frames.map(lambda pair: self.loader.load(*pair), micro)) for micro in plan]

    # ------------------------------------------------------------------ one step

    def _loss(self, pred: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.recipe.mode == "metric":
            return losses.silog(pred, depth, mask, self.recipe.silog_lambda)
        return losses.relative_loss(pred, losses.disparity(depth, mask), mask, self.recipe.gradient_weight)

    def _autocast(self):
        if self.precision == "fp32":
            return torch.autocast(self.device.split(":")[0], enabled=False)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.split(":")[0], dtype=dtype)

    def train_step(self, micro_batches: list[list[Item]]) -> tuple[float, int]:
        """One optimiser step; returns the step's loss (mean over its usable images, all workers)
        and how many images it used."""
        tensors = []
        for items in micro_batches:
            image = torch.from_numpy(np.stack([i.image for i in items])).to(self.device)
            depth = torch.from_numpy(np.stack([i.depth for i in items])).to(self.device)
            mask = torch.from_numpy(np.stack([i.mask for i in items])).to(self.device)
            tensors.append((image, depth, mask))
        count = self.group.sum(torch.tensor(float(sum(int(losses.usable(m).sum()) for _, _, m in tensors)),
                                            device=self.device))
        self.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        if count.item() > 0:
            for k, (image, depth, mask) in enumerate(tensors):
                with self.group.no_sync(self.wrapped, k == len(tensors) - 1):
                    with self._autocast():
                        pred = self.wrapped(image)["depth"]
                    per_image = self._loss(pred.float(), depth, mask)
                    # DDP averages over workers: times the world size, the gradient of sum / count
                    loss = losses.batch_mean(per_image, mask, count) * self.group.world
                    (self.scaler.scale(loss) if self.scaler else loss).backward()
                    total = total + (per_image.detach() * losses.usable(mask)).sum()
            if self.scaler:
                self.scaler.unscale_(self.opt)
            if self.recipe.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(self.params, self.recipe.clip_grad)
            if self.scaler:
                self.scaler.step(self.opt)
                self.scaler.update()
            else:
                self.opt.step()
        self.sched.step()
        total = self.group.sum(total)
        n = int(count.item())
        return (float(total.item()) / n if n else float("nan")), n

    # ------------------------------------------------------------------ validation

    def validate(self) -> dict | None:
        if self.val_set is None or not self.main:
            return None
        from ..evaluation import EvalSettings, estimator_predictor, evaluate

        self.module.eval()
        try:
            align = "none" if self.recipe.mode == "metric" else "scale-shift-disparity"
            report = evaluate([estimator_predictor(self.estimator, "model")], self.val_set, EvalSettings(alignment=align))
        finally:
            self.module.train()
        res = report["models"]["model"]
        if not res["images"]:
            if self.warn:
                self.warn("validation: no frame has valid ground truth")
            return None
        return {**{k: res["mean"][k] for k in METRICS}, "images": res["images"], "alignment": align}

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(self) -> None:
        if not self.main:
            return
        state = {
            "format": 1, "step": self.step, "cursor": self.cursor.as_dict(),
            "model": self.module.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else None,
            "torch_rng": torch.get_rng_state(), "config": json.dumps(self.cfg.recipe_fields()),
            "history": json.dumps(self.history), "best": json.dumps(self.best), "bad": json.dumps(self.loader.bad),
        }
        path = self.outdir / outputs.CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        tmp.replace(path)

    def _restore(self) -> None:
        path = self.outdir / outputs.CHECKPOINT
        if not path.is_file():
            raise LocalDepthError(f"--resume: no checkpoint at {path}; start without --resume")
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:
            raise LocalDepthError(f"--resume: {path} is not a readable checkpoint ({str(e).splitlines()[0]})") from None
        recorded = json.loads(state["config"])
        changed = sorted(k for k, v in self.cfg.recipe_fields().items() if recorded.get(k) != v)
        if changed:
            raise LocalDepthError("--resume continues the run as it was started; these options differ: "
                                  + ", ".join(f"--{k.replace('_', '-')} ({recorded.get(k)!r} then, {getattr(self.cfg, k)!r} now)"
                                              for k in changed))
        self.module.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.step = int(state["step"])
        self.cursor = Cursor(**state["cursor"])
        self.history = json.loads(state["history"])
        self.best = json.loads(state["best"])
        self.loader.bad = json.loads(state["bad"])
        if self.main:
            self.log.truncate_after(self.step)

    # ------------------------------------------------------------------ outputs

    def _export(self) -> None:
        """The weights to ``--outdir`` (merged adapters), then the sidecar."""
        if not self.main:
            return
        outputs.save_model(model_to_save(self.module), self.outdir, self.estimator.weights_path)
        self._sidecar(interrupted=False)

    def _sidecar(self, interrupted: bool) -> None:
        spec, cfg = self.spec, self.cfg
        before = self.history[0] if self.history and self.history[0]["step"] == 0 else None
        after = self.history[-1] if self.history else None
        licence_note = ("the base model's licence applies to these weights"
                        + ("" if spec.commercial_use else ": it is not for commercial use, and neither is this "
                                                          "fine-tune"))
        record = {
            "model": spec.name, "base_weights": str(Path(self.estimator.weights_path).resolve()),
            "base_fine_tuned_from": self.estimator.fine_tuned_from,
            "licence": spec.licence, "commercial_use": spec.commercial_use, "licence_note": licence_note,
            "kind": spec.output, "units": spec.units, "max_depth": self.max_depth,
            "data": {"train": cfg.data, "val": cfg.val, "train_frames": len(self.loader),
                     "val_frames": len(self.val_set.samples) if self.val_set else 0, "split": outputs.SPLIT,
                     "skipped_frames": self.loader.bad},
            "recipe": {**self.recipe.as_dict(), "steps": self.total, "batch_size": cfg.batch_size,
                       "accumulate": cfg.accumulate, "workers": self.group.world, "images_per_step": self.per_step,
                       "input_size": cfg.input_size, "crop": self.loader.crop, "precision": self.precision,
                       "augment": Augment().as_dict() if cfg.augment else None, "seed": cfg.seed,
                       "device": self.device},
            "validation": {"before": before, "after": after, "best": self.best,
                           "weights": (f"the best by validation AbsRel (step {self.best['step']})" if self.best
                                       else "the last step's")},
            "steps_done": self.step, "interrupted": interrupted, "localdepth": __version__,
        }
        outputs.write_sidecar(self.outdir, record)

    def _plot(self) -> None:
        if self.main:
            outputs.plot(self.log, self.outdir / outputs.PLOT, f"{self.spec.name}: fine-tuning ({self.recipe.mode})")

    def _validate_and_keep(self) -> None:
        result = self.validate()
        if result is None:
            return
        entry = {"step": self.step, **result}
        self.history.append(entry)
        self.log.write({"step": self.step, "val": result})
        if self.best is None or result["abs_rel"] < self.best["abs_rel"]:
            self.best = entry
            self._export()
        self._plot()

    # ------------------------------------------------------------------ the run

    def run(self) -> dict:
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.module.train()
        if self.step == 0 and not self.history:
            self._validate_and_keep()  # the figures before any training
        bar = tqdm(total=self.total, initial=self.step, disable=cfg.quiet or not self.main, unit="step",
                   desc="finetune", dynamic_ncols=True)
        interrupted = False
        # the next step's frames load (in threads) while this step computes
        prefetch, frames = ThreadPoolExecutor(1), ThreadPoolExecutor(max(1, cfg.loader_threads))
        try:
            plan, after = self._plan(self.cursor)
            upcoming = prefetch.submit(self._load, plan, frames) if self.step < self.total else None
            while self.step < self.total:
                if self._stop_everywhere():
                    interrupted = True
                    break
                t0 = time.perf_counter()
                micro, cursor = upcoming.result(), after
                if self.step + 1 < self.total:
                    plan, after = self._plan(cursor)
                    upcoming = prefetch.submit(self._load, plan, frames)
                lr = self.opt.param_groups[0]["lr"]
                loss, used = self.train_step(micro)
                self.step, self.cursor = self.step + 1, cursor
                seconds = time.perf_counter() - t0
                rate = self.per_step / seconds if seconds > 0 else float("nan")
                if self.main:
                    self.log.write({"step": self.step, "epoch": self.cursor.epoch, "loss": loss, "images": used,
                                    "lr": lr, "images_per_s": rate, "seconds": seconds})
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.2f}")
                if self.step % self.val_every == 0 or self.step == self.total:
                    self._validate_and_keep()
                if self.step % self.save_every == 0 or self.step == self.total:
                    self._checkpoint()
        finally:
            prefetch.shutdown(wait=True, cancel_futures=True)
            frames.shutdown(wait=True, cancel_futures=True)
            bar.close()
        if interrupted:
            self._checkpoint()
        if self.main:
            if self.best is None and not interrupted:
                self._export()  # no validation: the last weights
            elif self.best is not None:
                self._sidecar(interrupted)
            self._plot()
        self.group.barrier()
        return {"step": self.step, "interrupted": interrupted, "total": self.total,
                "history": self.history, "best": self.best}

    def _stop_everywhere(self) -> bool:
        asked = torch.tensor(1.0 if self.main and stop_requested(self.outdir) else 0.0, device=self.device)
        return bool(self.group.sum(asked).item() > 0)


def finetune(cfg: FinetuneConfig) -> dict:
    """Run ``cfg`` here (one process) or on Ray Train (``workers > 1`` or a ``ray_address``);
    returns the run's summary. ``KeyboardInterrupt`` is raised after the checkpoint is saved when
    the run was stopped with Ctrl-C."""
    outdir = Path(cfg.outdir)
    (outdir / outputs.STOP).unlink(missing_ok=True)
    if cfg.workers > 1 or cfg.ray_address:
        from .distributed import run_on_ray

        summary = run_on_ray(cfg)
    else:
        with interruptible():
            summary = Trainer(cfg).run()
    if summary["interrupted"]:
        print(f"localdepth: stopped at step {summary['step']}; checkpoint saved in {outdir / outputs.CHECKPOINT} "
              "(continue with --resume)", file=sys.stderr)
        raise KeyboardInterrupt
    return summary
