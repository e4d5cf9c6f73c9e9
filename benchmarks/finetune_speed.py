"""Training speed and peak memory of `localdepth finetune`: Depth Anything V2 Small, one row per
precision and what trains (everything, the decoder, LoRA adapters).

    PYTHONPATH=src python benchmarks/finetune_speed.py --size 518 --batch 2 --steps 3 \
        --dtype fp32,bf16 --train full,head,lora --json docs/bench/finetune-cpu.json --markdown docs/bench/finetune-cpu.md

Each row runs in a fresh process: random weights of the released Small architecture (the speed of a
network does not depend on its weights' values; ``localdepth.bench.arch``), a synthetic RGB-D set
of 640 x 480 frames, ``--steps`` optimiser steps of ``--batch`` crops of ``--size`` through the
trainer of ``localdepth finetune`` (no validation). The first step is left out of the rate (it
allocates); the peak memory is the process's resident peak (CPU) or PyTorch's allocated peak
(CUDA), the model's load included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np, torch, cv2
from localdepth.bench.arch import random_weights_folder
from localdepth.registry import get
from localdepth.training import FinetuneConfig, Trainer

row = json.loads(sys.argv[1])
work = Path(row["work"])
weights = random_weights_folder(get(row["model"]), work / "weights")
data = work / "data"
if not (data / "manifest.csv").is_file():
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(8):
        cv2.imwrite(str(data / f"f{i}.png"), rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
        np.save(data / f"f{i}.npy", rng.uniform(0.5, 10.0, (480, 640)).astype(np.float32))
        lines.append(f"f{i}.png,f{i}.npy,1,s{i}")
    (data / "manifest.csv").write_text("rgb,depth,depth_scale,scene\n" + "\n".join(lines) + "\n")
train = row["train"]
cfg = FinetuneConfig(model=row["model"], weights=str(weights), data=f"manifest:{data / 'manifest.csv'}",
                     outdir=str(work / f"out-{row['dtype']}-{train}"), input_size=row["size"], steps=row["steps"],
                     batch_size=row["batch"], dtype=row["dtype"], device=row["device"], val_fraction=0.0, quiet=True,
                     freeze_encoder=train == "head", lora=16 if train == "lora" else None)
trainer = Trainer(cfg)
if trainer.device.startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
trainer.run()
log = [json.loads(l) for l in (Path(cfg.outdir) / "train.jsonl").read_text().splitlines()]
seconds = [e["seconds"] for e in log if "loss" in e][1:]
trainable = sum(p.numel() for p in trainer.module.parameters() if p.requires_grad)
peak = (torch.cuda.max_memory_allocated() / 2**20 if trainer.device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print("ROW " + json.dumps({**{k: row[k] for k in ("model", "dtype", "train", "size", "batch", "steps")},
      "device": trainer.device, "trainable_m": trainable / 1e6, "s_per_step": float(np.mean(seconds)),
      "images_per_s": row["batch"] / float(np.mean(seconds)), "peak_mib": peak}))
"""


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="depth-anything-v2-small")
    ap.add_argument("--size", type=int, default=518)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="optimiser steps per row (the first is not timed)")
    ap.add_argument("--dtype", default="fp32,bf16")
    ap.add_argument("--train", default="full,head,lora")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ld-finetune-bench-") as work:
        for dtype in args.dtype.split(","):
            for train in args.train.split(","):
                row = {"model": args.model, "dtype": dtype, "train": train, "size": args.size, "batch": args.batch,
                       "steps": args.steps, "device": args.device, "work": work}
                out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(row)], capture_output=True, text=True,
                                     env=env)
                line = next((ln for ln in out.stdout.splitlines() if ln.startswith("ROW ")), None)
                if line is None:
                    print(out.stderr[-2000:], file=sys.stderr)
                    return 1
                rows.append(json.loads(line[4:]))
                r = rows[-1]
                print(f"{dtype:5s} {train:5s} {r['trainable_m']:7.2f}M trainable  {r['s_per_step']:7.2f} s/step  "
                      f"{r['images_per_s']:6.3f} images/s  peak {r['peak_mib']:7.0f} MiB", flush=True)
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "machine": machine(),
              "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "command": "PYTHONPATH=src python benchmarks/finetune_speed.py " + " ".join(argv or sys.argv[1:]),
              "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        lines = [f"Measured {report['when']} on {report['machine']} (load average "
                 f"{' '.join(f'{v:.2f}' for v in load_before)} before), with", "", "```", report["command"], "```", "",
                 "| precision | trains | trainable | s / step | images / s | peak memory |", "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['dtype']} | {r['train']} | {r['trainable_m']:.2f} M | {r['s_per_step']:.2f} | "
                         f"{r['images_per_s']:.3f} | {r['peak_mib'] / 1024:.2f} GiB |")
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
