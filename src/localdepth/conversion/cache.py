"""The conversion cache on disk: its entries, when each was last used, its budget, its leftovers.

Layout (apart from the weights, so that replacing a model's weights never touches it)::

    $LOCALDEPTH_HOME/converted/<model>/<weights id>/<runtime>-<precision>-<options id>/
        model.onnx | model.xml + model.bin, report.json, compiled/, .last-used

An entry is one such folder. Its key is the content of the weights it was made from, so adding
the same weights again finds it, and other weights get their own. ``.last-used`` records the
last time a run used it; when the cache holds more than its budget
(:data:`~localdepth.limits.CONVERSION_CACHE_MAX_BYTES`, or ``LOCALDEPTH_CONVERSION_CACHE_MB``),
the least recently used entries are evicted after each new conversion, never the one just made.

A conversion is made in a staging folder beside its entry (``.<entry>.staging-<pid>-<random>``)
and renamed into place when it is complete. A killed conversion leaves its staging folder: one
whose process is gone, or older than :data:`~localdepth.limits.STALE_STAGING_S`, is removed
before the next conversion and by ``localdepth models cache``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import LocalDepthError
from ..limits import CONVERSION_CACHE_MAX_BYTES, MIB, STALE_STAGING_S
from ..weights import home

BUDGET_ENV = "LOCALDEPTH_CONVERSION_CACHE_MB"
LAST_USED = ".last-used"
#: ``.<entry>.staging-<pid>-<random>`` (a conversion under way) and ``.<entry>.old-<pid>-<random>``
#: (an entry being replaced)
_LEFTOVER = re.compile(r"^\..+\.(staging|old)-(\d+)-[^/]*$")


def root() -> Path:
    """The folder of every conversion: ``$LOCALDEPTH_HOME/converted``."""
    return home() / "converted"


@dataclass
class Entry:
    model: str
    weights_id: str
    name: str  # runtime-precision-options
    path: Path
    bytes: int
    last_used: float  # seconds since the epoch

    def as_dict(self) -> dict:
        return {"model": self.model, "weights_id": self.weights_id, "conversion": self.name, "path": str(self.path),
                "bytes": self.bytes, "last_used": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.last_used))}


def budget() -> int:
    """The cache's budget in bytes: ``LOCALDEPTH_CONVERSION_CACHE_MB`` (MiB) when set, else the default."""
    text = os.environ.get(BUDGET_ENV, "").strip()
    if not text:
        return CONVERSION_CACHE_MAX_BYTES
    return parse_budget(text, BUDGET_ENV)


def parse_budget(text: str, label: str) -> int:
    """MiB as given by a user (``"4096"``, ``"0.5"``) -> bytes; one line when it is not a size."""
    try:
        mb = float(text)
    except ValueError:
        mb = math.nan
    if not (math.isfinite(mb) and 0 <= mb <= 2**40):
        raise LocalDepthError(f"{label} must be a size in MiB between 0 and {2**40:g}, got {text!r}")
    return int(mb * MIB)


def touch(entry: Path) -> None:
    """Record that ``entry`` was used now (a read-only cache only loses the record)."""
    try:
        (entry / LAST_USED).write_text(str(time.time_ns()))
    except OSError:
        pass


def _last_used(entry: Path) -> float:
    try:
        return int((entry / LAST_USED).read_text()) / 1e9
    except (OSError, ValueError):
        pass
    try:
        return (entry / "report.json").stat().st_mtime
    except OSError:
        return entry.stat().st_mtime if entry.exists() else 0.0


def _size(folder: Path) -> int:
    total = 0
    for base, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                pass
    return total


def _model_folders(model: str | None) -> list[Path]:
    top = root()
    if model is not None:
        return [top / model] if (top / model).is_dir() else []
    return sorted(p for p in top.iterdir() if p.is_dir()) if top.is_dir() else []


def entries(model: str | None = None) -> list[Entry]:
    """Every complete entry (of ``model``), most recently used first."""
    found = []
    for model_folder in _model_folders(model):
        for weights_folder in sorted(p for p in model_folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for entry in sorted(p for p in weights_folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                found.append(Entry(model_folder.name, weights_folder.name, entry.name, entry, _size(entry),
                                   _last_used(entry)))
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    for parent in (path.parent, path.parent.parent):  # weights and model folders left empty
        try:
            parent.rmdir()
        except OSError:
            break


def evict(limit: int | None = None, keep: tuple[Path, ...] = ()) -> list[Entry]:
    """Remove the least recently used entries until the cache holds at most ``limit`` bytes
    (default: :func:`budget`); ``keep`` are never removed. Returns what was removed."""
    limit = budget() if limit is None else limit
    present = entries()
    total = sum(e.bytes for e in present)
    kept = {Path(p).resolve() for p in keep}
    removed = []
    for entry in reversed(present):  # least recently used first
        if total <= limit:
            break
        if entry.path.resolve() in kept:
            continue
        _remove(entry.path)
        total -= entry.bytes
        removed.append(entry)
    return removed


def clear(model: str | None = None) -> list[Entry]:
    """Remove every entry (of ``model``) and the leftovers of killed conversions."""
    gone = entries(model)
    for entry in gone:
        _remove(entry.path)
    clean_stale()
    return gone


# ----------------------------------------------------------------------------- staging folders

def staging(parent: Path, name: str) -> Path:
    """A new staging folder for entry ``name`` in ``parent``, named after this process."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.staging-{os.getpid()}-"))


def aside(folder: Path) -> Path:
    """The name an entry is moved to while a new one replaces it (a leftover if killed then)."""
    return folder.with_name(f".{folder.name}.old-{os.getpid()}-{os.urandom(4).hex()}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def clean_stale(now: float | None = None) -> list[Path]:
    """Remove the staging and replaced folders left by killed conversions: those whose process is
    gone or that are older than :data:`~localdepth.limits.STALE_STAGING_S`. Returns them."""
    now = time.time() if now is None else now
    removed = []
    for model_folder in _model_folders(None):
        for weights_folder in [p for p in model_folder.iterdir() if p.is_dir()]:
            for leftover in [p for p in weights_folder.iterdir() if p.name.startswith(".")]:
                match = _LEFTOVER.match(leftover.name)
                try:
                    age = now - leftover.stat().st_mtime
                except OSError:
                    continue
                if (match and not _alive(int(match.group(2)))) or age > STALE_STAGING_S:
                    shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(True)
                    removed.append(leftover)
    return removed


def adopt_legacy(model: str) -> None:
    """Move conversions an earlier version kept inside the weights folder
    (``models/<model>/converted/``) to the cache, where replacing the weights cannot delete them."""
    legacy = home() / "models" / model / "converted"
    if not legacy.is_dir():
        return
    for weights_folder in [p for p in legacy.iterdir() if p.is_dir() and not p.name.startswith(".")]:
        target = root() / model / weights_folder.name
        try:
            if target.exists():
                shutil.rmtree(weights_folder, ignore_errors=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(weights_folder, target)
        except OSError:
            return
    shutil.rmtree(legacy, ignore_errors=True)
