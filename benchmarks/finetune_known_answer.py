"""What fine-tuning recovers, on answers known exactly: how much data helps, and full vs decoder vs
last blocks vs LoRA.

    PYTHONPATH=src python benchmarks/finetune_known_answer.py --json docs/bench/finetune-known-answer.json

The set-up of tests/test_finetune.py (``tests/finetune_support.py``): a teacher (random weights
of the real metric Depth Anything V2 architecture, tiny widths) labels 70 x 70 views of the 15
shared photos (3 views each); 4 photos are held out. Two tasks:

* **new head**: the student is the teacher with its head drawn again (a new output layer, as when
  a relative model becomes a metric one, or a head is trained for new data);
* **shifted encoder**: the student is the teacher with a low-rank change of every attention
  projection of the encoder taken out again (what a new domain asks of a pretrained encoder;
  LoRA's own ground).

Each row fine-tunes the student for ``--steps`` steps (batch 4, ``--lr``, and ``--low-lr`` for the
shifted encoder too, no augmentation) and
reports the held-out AbsRel against the teacher before and after (lower is better), and the
time. The tiny widths make the figures fast to get, not the absolute numbers of a real model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
os.environ.setdefault("LOCALDEPTH_AUTO_OPENVINO", "0")


def shifted_encoder(root: Path, rank: int = 4, size: float = 0.5) -> Path:
    """The student of the second task: the teacher minus a random rank-``rank`` change of each
    query/key/value projection (of relative size ``size``), so that the teacher is the student plus
    that change."""
    import torch
    from transformers import DepthAnythingForDepthEstimation

    model = DepthAnythingForDepthEstimation.from_pretrained(str(root / "teacher"))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "backbone.encoder.layer" in name and name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight",
                                                                    "query.weight", "key.weight", "value.weight")):
                a = torch.randn(p.shape[0], rank, generator=g)
                b = torch.randn(rank, p.shape[1], generator=g)
                delta = a @ b
                p -= delta * (size * p.norm() / delta.norm())
    student = root / "shifted"
    model.save_pretrained(student)
    shutil.copy(root / "teacher" / "preprocessor_config.json", student)
    return student


def run(root: Path, student: Path, out: Path, steps: int, lr: str, train_csv: Path, *extra: str) -> dict:
    from finetune_support import METRIC, SIZE, held_abs_rel
    from localdepth.cli.main import main

    t0 = time.perf_counter()
    assert main(["finetune", "-q", "-m", METRIC, "--weights", str(student), "--data", f"manifest:{train_csv}",
                 "--val-fraction", "0", "--outdir", str(out), "--input-size", str(SIZE), "--steps", str(steps),
                 "-b", "4", "--lr", lr, "--no-augment", *extra]) == 0
    seconds = time.perf_counter() - t0
    return {"before": held_abs_rel(student, root, METRIC), "after": held_abs_rel(out, root, METRIC),
            "seconds": round(seconds, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", default="2e-3")
    ap.add_argument("--low-lr", default="2e-4", help="the shifted-encoder task again at this rate (it starts close)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from conftest import IMAGES
    from finetune_support import labelled_views, teacher_and_student

    rows = []
    with tempfile.TemporaryDirectory(prefix="ld-known-answer-") as work:
        root = Path(work)
        teacher, student = teacher_and_student(root, "metric")
        labelled_views(root, IMAGES, teacher, "metric")
        shifted = shifted_encoder(root)
        lines = (root / "train.csv").read_text().splitlines()
        photos = sorted({line.rsplit(",", 1)[1] for line in lines[1:]})

        def subset(n: int) -> Path:
            keep = set(photos[:n])
            path = root / f"train-{n}.csv"
            path.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ln.rsplit(",", 1)[1] in keep]) + "\n")
            return path

        def row(task, **info):
            rows.append({"task": task, **info})
            r = rows[-1]
            print(f"{task:16s} {info['photos']:>3} {info['train']:6s} lr {info['lr']:6s} AbsRel {r['before']:.4f} -> "
                  f"{r['after']:.4f}  ({r['seconds']} s)", flush=True)

        for n in (1, 3, len(photos)):
            row("new head", photos=n, train="full", lr=args.lr,
                **run(root, student, root / f"data-{n}", args.steps, args.lr, subset(n)))
        modes = {"full": (), "head": ("--freeze-encoder",), "last-2": ("--unfreeze-last", "2"), "lora-8": ("--lora", "8")}
        for task, base, lr in (("new head", student, args.lr), ("shifted encoder", shifted, args.lr),
                                ("shifted encoder", shifted, args.low_lr)):
            for mode, extra in modes.items():
                if task == "new head" and mode == "full":
                    continue  # the last data row
                row(task, photos=len(photos), train=mode, lr=lr,
                    **run(root, base, root / f"{task[:3]}-{mode}-{lr}", args.steps, lr, subset(len(photos)), *extra))
    if args.json:
        args.json.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                                         "steps": args.steps, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
