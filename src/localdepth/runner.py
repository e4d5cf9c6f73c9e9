"""Running an estimator over many inputs: decode -> predict (batched) -> write.

One bad input costs one line on stderr and its own result only; the rest go on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import LocalDepthError
from .estimator import DepthEstimator
from .images import load_image
from .inputs import InputItem
from .writers import WriteOptions, is_complete, output_paths, write_result


@dataclass
class ItemOutcome:
    item: InputItem
    status: str  # "ok", "failed", "skipped"
    error: str | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class RunSummary:
    outcomes: list[ItemOutcome] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def ok(self) -> int:
        return self.count("ok")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    def line(self, outdir: Path) -> str:
        rate = self.ok / self.seconds if self.seconds > 0 else 0.0
        head = "interrupted" if self.interrupted else "done"
        return (f"{head}: {self.ok} ok, {self.failed} failed, {self.skipped} skipped in {self.seconds:.1f} s "
                f"({rate:.2f} images/s) -> {outdir}")


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if isinstance(e, LocalDepthError) else f"{type(e).__name__}: {text}"


@dataclass
class _Decoded:
    item: InputItem
    paths: dict[str, Path]
    image: np.ndarray
    decode_ms: float


def plan(item: InputItem, outdir: Path, options: WriteOptions) -> dict[str, Path]:
    """Output paths of one item; refuses to overwrite the input itself."""
    paths = output_paths(outdir, item.rel, options.formats)
    src = item.path.resolve()
    if any(p.resolve() == src for p in paths.values()):
        raise LocalDepthError(f"{item.path}: an output would overwrite the input; choose another --outdir")
    return paths


class Runner:
    """Runs one estimator over inputs and writes results (see module docstring).

    ``on_error`` receives one line per failed input (default: stderr).
    """

    def __init__(self, estimator: DepthEstimator, outdir: Path, options: WriteOptions, *,
                 batch_size: int = 1, skip_existing: bool = False, progress: bool = True,
                 on_error: Callable[[str], None] | None = None):
        self.estimator = estimator
        self.outdir = Path(outdir)
        self.options = options
        self.batch_size = max(1, batch_size)
        self.skip_existing = skip_existing
        self.progress = progress
        self.on_error = on_error or (lambda line: print(f"localdepth: error: {line}", file=sys.stderr))
        self.model_info = estimator.describe()
        self.keep_image = "side" in options.formats

    def run(self, items: list[InputItem]) -> RunSummary:
        from tqdm.auto import tqdm

        summary = RunSummary()
        start = time.perf_counter()
        bar = tqdm(total=len(items), unit="img", disable=not self.progress or len(items) < 2,
                   dynamic_ncols=True, file=sys.stderr)
        try:
            for outcome in self._outcomes(items):
                summary.outcomes.append(outcome)
                if outcome.status == "failed":
                    bar.clear()
                    self.on_error(outcome.error or "failed")
                bar.update(1)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
            summary.seconds = time.perf_counter() - start
        return summary

    def _outcomes(self, items: list[InputItem]) -> Iterator[ItemOutcome]:
        pending: list[_Decoded] = []
        for item in items:
            outcome, decoded = self._prepare(item)
            if outcome is not None:
                yield outcome
                continue
            pending.append(decoded)
            if len(pending) >= self.batch_size:
                yield from self._predict_and_write(pending)
                pending = []
        if pending:
            yield from self._predict_and_write(pending)

    def _prepare(self, item: InputItem) -> tuple[ItemOutcome | None, _Decoded | None]:
        if item.error:
            return ItemOutcome(item, "failed", item.error), None
        try:
            paths = plan(item, self.outdir, self.options)
            if self.skip_existing and is_complete(paths):
                return ItemOutcome(item, "skipped", outputs=paths), None
            t0 = time.perf_counter()
            image = load_image(item.path)
            return None, _Decoded(item, paths, image, (time.perf_counter() - t0) * 1000)
        except Exception as e:  # one bad input must not stop the others
            return ItemOutcome(item, "failed", _short(e)), None

    def _predict_and_write(self, batch: list[_Decoded]) -> Iterator[ItemOutcome]:
        try:
            results = self.estimator.predict_decoded(
                [d.image for d in batch], batch_size=self.batch_size,
                sources=[str(d.item.path) for d in batch], keep_image=self.keep_image)
        except Exception as e:
            if len(batch) == 1:
                yield ItemOutcome(batch[0].item, "failed", f"{batch[0].item.path}: inference failed ({_short(e)})")
                return
            # retry one by one so that one image that breaks the batch fails alone
            for d in batch:
                yield from self._predict_and_write([d])
            return
        for d, result in zip(batch, results):
            t0 = time.perf_counter()
            result.timings = {"decode": d.decode_ms, **result.timings}
            try:
                write_result(result, d.paths, self.options, self.model_info)
            except Exception as e:
                yield ItemOutcome(d.item, "failed", f"{d.item.path}: cannot write outputs ({_short(e)})")
                continue
            yield ItemOutcome(d.item, "ok", outputs=d.paths, seconds=time.perf_counter() - t0)
