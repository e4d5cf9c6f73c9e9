"""What a fine-tuning run leaves in ``--outdir``.

::

    OUTDIR/config.json, model.safetensors   the weights (the best by validation), as Transformers'
                                            save_pretrained writes them: --weights OUTDIR loads them
    OUTDIR/preprocessor_config.json         the base model's, where it had one
    OUTDIR/finetune.json                    the sidecar: base model, licence, data, recipe,
                                            validation before / after / best (written last)
    OUTDIR/train.jsonl                      one line per step (loss, rate, images/s) and per validation
    OUTDIR/train.png                        loss and validation figures over the steps
    OUTDIR/split.json                       which frames trained and which validated, and how they split
    OUTDIR/checkpoints/last.pt              everything --resume needs (weights, optimiser, scheduler,
                                            data position, random states)
    OUTDIR/checkpoints/run.json             the run's options (--resume takes them up)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..weights import FINETUNE_SIDECAR
from ..writers import atomic_write_bytes

LOG = "train.jsonl"
PLOT = "train.png"
SPLIT = "split.json"
CHECKPOINT = Path("checkpoints") / "last.pt"
RUN = Path("checkpoints") / "run.json"  # the run's options, which --resume takes up
STOP = Path("checkpoints") / "STOP"  # asks every worker to stop after its step (Ctrl-C under Ray)
MODEL_FILES = ("config.json", "model.safetensors")


def write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def save_model(model, outdir: Path, base_folder: Path | None) -> None:
    """``model`` (a Transformers model) saved into ``outdir`` with ``save_pretrained``, each file
    replacing the old one atomically; the base's ``preprocessor_config.json`` beside it."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one small file: no bar
    outdir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=outdir, prefix=".model."))
    try:
        model.save_pretrained(staging)
        if base_folder is not None and (Path(base_folder) / "preprocessor_config.json").is_file():
            shutil.copy2(Path(base_folder) / "preprocessor_config.json", staging / "preprocessor_config.json")
        for f in sorted(staging.iterdir()):
            os.replace(f, outdir / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_sidecar(outdir: Path, record: dict) -> None:
    """``finetune.json``, written after the weights (its presence means they are complete)."""
    write_json(outdir / FINETUNE_SIDECAR, record)


class TrainLog:
    """``train.jsonl``: appended line by line; on resume, cut back to the checkpoint's step."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_bytes(self.path, ("\n".join(kept) + "\n" if kept else "").encode())

    def write(self, entry: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def entries(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def plot(log: TrainLog, path: Path, title: str) -> None:
    """Loss per step (and its running mean) above the validation AbsRel and δ1, as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    entries = log.entries()
    steps = [e for e in entries if "loss" in e]
    vals = [e for e in entries if "val" in e]
    fig = Figure(figsize=(8, 6), dpi=100)
    ax_loss, ax_val = fig.subplots(2, 1, sharex=True)
    if steps:
        x = [e["step"] for e in steps]
        y = [e["loss"] for e in steps]
        ax_loss.plot(x, y, color="#9bb7d4", linewidth=0.8, label="loss")
        window = max(1, len(y) // 20)
        running = [sum(y[max(0, i - window + 1): i + 1]) / len(y[max(0, i - window + 1): i + 1]) for i in range(len(y))]
        ax_loss.plot(x, running, color="#1f4e79", linewidth=1.5, label=f"mean of {window}")
        ax_loss.legend(loc="upper right")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title(title)
    if vals:
        x = [e["step"] for e in vals]
        ax_val.plot(x, [e["val"]["abs_rel"] for e in vals], "o-", color="#c0392b", label="AbsRel")
        ax_val.set_ylabel("validation AbsRel")
        twin = ax_val.twinx()
        twin.plot(x, [e["val"]["d1"] for e in vals], "s--", color="#27ae60", label="δ1")
        twin.set_ylabel("validation δ1")
        lines = ax_val.get_lines() + twin.get_lines()
        ax_val.legend(lines, [ln.get_label() for ln in lines], loc="upper right")
    ax_val.set_xlabel("step")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
