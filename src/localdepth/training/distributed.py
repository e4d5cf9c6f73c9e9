"""Data-parallel training: one process, or Ray Train workers with PyTorch DDP.

The training loop (:mod:`localdepth.training.loop`) talks to a :class:`Group`: one process
(:class:`Single`) or the workers of a ``torch.distributed`` process group (:class:`Workers`, gloo
on CPUs, NCCL on GPUs), set up by Ray Train's ``TorchTrainer`` (:func:`run_on_ray`). Each worker
takes its share of every optimiser step's frames, DDP averages the gradients, and the losses
are per-image means over the whole step (:func:`localdepth.training.losses.batch_mean`), so N
workers compute the gradient one process computes for the same global batch.

Rank 0 writes everything in ``--outdir`` and runs validation; on several machines ``--outdir``
and the data must be on storage every node reads (NFS, a shared disk). Ctrl-C on the driver
creates ``checkpoints/STOP``; the workers see it after their step, rank 0 saves a checkpoint and
all stop together (:func:`localdepth.training.loop.stop_requested`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import LocalDepthError


class Single:
    """One process: nothing to share."""

    rank = 0
    world = 1

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return module

    def no_sync(self, wrapped: torch.nn.Module, last: bool):
        return contextlib.nullcontext()

    def barrier(self) -> None:
        pass


class Workers(Single):
    """The workers of an initialised ``torch.distributed`` process group (DDP)."""

    def __init__(self, device: str):
        import torch.distributed as dist

        self.dist = dist
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.device = device

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        value = value.detach().clone()
        self.dist.all_reduce(value)
        return value

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        return DistributedDataParallel(module, device_ids=ids)

    def no_sync(self, wrapped: torch.nn.Module, last: bool):
        # gradient accumulation: all-reduce once per optimiser step, on its last micro-batch
        return contextlib.nullcontext() if last else wrapped.no_sync()

    def barrier(self) -> None:
        self.dist.barrier()


# ----------------------------------------------------------------------------- Ray Train

def _worker_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from .loop import FinetuneConfig, Trainer

    cfg = FinetuneConfig(**config["finetune"])
    device = str(ray.train.torch.get_device())
    cfg.device = device
    trainer = Trainer(cfg, Workers(device))
    result = trainer.run()
    # a collective: every worker reports (the driver reads rank 0's)
    ray.train.report({"step": result["step"], "interrupted": result["interrupted"]})


def run_on_ray(cfg) -> dict:
    """Run :class:`~localdepth.training.loop.Trainer` on ``cfg.workers`` Ray Train workers (a local
    Ray bound to 127.0.0.1, or the cluster at ``cfg.ray_address``); returns rank 0's summary
    (read back from ``finetune.json``)."""
    from ..distributed.pipeline import connect, require_ray
    from .outputs import STOP

    require_ray()
    try:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError:
        raise LocalDepthError("--ray-address/--workers need Ray Train: pip install 'localdepth[distributed]'") from None
    outdir = Path(cfg.outdir).resolve()
    ray = connect(cfg.ray_address, num_cpus=max(os.cpu_count() or 1, cfg.workers + 1), quiet=cfg.quiet)
    gpus = ray.cluster_resources().get("GPU", 0)
    use_gpu = cfg.device.startswith("cuda") or (cfg.device == "auto" and gpus >= cfg.workers)
    if cfg.device.startswith("cuda") and gpus < cfg.workers:
        raise LocalDepthError(f"--workers {cfg.workers} on CUDA needs {cfg.workers} GPUs; the Ray cluster has {gpus:g}")
    stop = outdir / STOP
    stop.unlink(missing_ok=True)
    config = {**asdict(cfg), "outdir": str(outdir), "device": "cuda" if use_gpu else "cpu"}

    def ask_to_stop(signum, frame):  # the workers stop together after their step; rank 0 saves
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C aborts
        stop.parent.mkdir(parents=True, exist_ok=True)
        stop.touch()
        print("\nlocaldepth: stopping after this step and saving a checkpoint (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, ask_to_stop)
    try:
        trainer = TorchTrainer(
            _worker_loop, train_loop_config={"finetune": config},
            scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=use_gpu, resources_per_worker={"CPU": 1}),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            run_config=RunConfig(storage_path=str(outdir / "checkpoints" / "ray"), name="finetune"))
        result = trainer.fit()
    finally:
        signal.signal(signal.SIGINT, previous)
    if result.error is not None:
        first = str(result.error).strip().splitlines()
        raise LocalDepthError(f"the Ray Train workers failed: {first[-1] if first else type(result.error).__name__}")
    metrics = result.metrics or {}
    return {"step": metrics.get("step"), "interrupted": bool(metrics.get("interrupted")) or stop.exists()}
