"""Throughput of `localdepth batch` with 1 and 2 inference workers, next to `localdepth run`.

    PYTHONPATH=src python benchmarks/distributed_throughput.py --copies 10 --workers 1 2

Builds a folder of the shared photos repeated ``--copies`` times (6 photos x 10 = 60 images), then
runs each command in a fresh process (a fresh local Ray for `batch`, as a user would) and prints
the summary lines. The images/s in a summary counts from the start of the job (model loading
included) to the last write, without Ray's own start-up; the wall time includes everything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOCALDEPTH_SHARED", ROOT.parent / "shared"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", default="pydnet")
    ap.add_argument("--weights", default=str(SHARED / "models/pydnet/optimized_pydnet++.tflite"))
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count())
    ap.add_argument("--format", default="npy,color")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ld-bench-") as tmp:
        images = Path(tmp) / "images"
        photos = sorted((SHARED / "data/images").glob("*.jpg"))
        for c in range(args.copies):
            (images / f"copy{c:02d}").mkdir(parents=True)
            for p in photos:
                shutil.copy(p, images / f"copy{c:02d}" / p.name)
        n = len(photos) * args.copies
        model = ["--model", args.model, "--weights", args.weights, "--format", args.format, "-q"]
        runs = [("run", ["run", str(images), "--outdir", f"{tmp}/run", *model])]
        runs += [(f"batch --workers {w}", ["batch", str(images), "--outdir", f"{tmp}/batch{w}", "--workers", str(w),
                                           "--num-cpus", str(args.num_cpus), *model]) for w in args.workers]
        print(f"{n} images ({len(photos)} photos x {args.copies}), {args.model}, {os.cpu_count()} cores")
        for label, cmd in runs:
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "localdepth", *cmd], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            line = next((ln for ln in done.stderr.splitlines() if ln.startswith("done:")), done.stderr[-300:])
            print(f"{label:18s} wall {wall:6.1f} s ({n / wall:5.2f} images/s incl. start-up) | {line.split(' -> ')[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
