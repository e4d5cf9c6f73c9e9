"""Turning command-line inputs into a list of images with relative output paths.

An input is a file, a folder (searched recursively for images), a glob pattern, a ``.txt``
list (one path per line, ``#`` comments; relative paths are relative to the list), or an
``http(s)://`` URL (fetched with a size limit and a timeout, see :mod:`localdepth.fetch`).
Each image gets a relative path that the outputs keep under ``--outdir``: a folder's
images keep their path inside the folder, a glob's keep their path below the pattern's
fixed part, a single file keeps its name.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .images import IMAGE_EXTENSIONS
from .safety import quoted

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class InputItem:
    path: Path
    rel: Path  # relative output path (with the input's extension)
    error: str | None = None  # set when the input could not be found at all
    url: str | None = None  # an http(s):// input: fetched instead of read from ``path``

    @property
    def source(self) -> str | Path:
        """What to decode: the URL, or the file."""
        return self.url or self.path

    @property
    def label(self) -> str:
        """How messages and sidecars name the input."""
        return self.url or str(self.path)


def natural_key(path: Path | str) -> list:
    """Sort key that puts ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def _folder(root: Path) -> list[InputItem]:
    found = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return [InputItem(p, p.relative_to(root)) for p in sorted(found, key=natural_key)]


def _glob(pattern: str) -> list[InputItem]:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _GLOB_CHARS.search(part):
            break
        fixed.append(part)
    base = Path(*fixed) if fixed else Path(".")
    matches = sorted((Path(m) for m in glob.glob(pattern, recursive=True)), key=natural_key)
    return [InputItem(m, m.relative_to(base) if m.is_relative_to(base) else Path(m.name))
            for m in matches if m.is_file()]


def _list_file(list_path: Path) -> list[InputItem]:
    items = []
    for line in list_path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        if not p.is_absolute():
            p = list_path.parent / p
        rel = Path(line) if not Path(line).is_absolute() and ".." not in Path(line).parts else Path(p.name)
        items.append(InputItem(p, rel) if p.is_file() else InputItem(p, rel, f"{quoted(p)}: no such file"))
    return items


def expand_inputs(specs: list[str | os.PathLike]) -> list[InputItem]:
    """Expand files, folders, globs, ``.txt`` lists and ``http(s)://`` URLs, in order, without duplicates.

    A URL's outputs are named after the last segment of its path (see :func:`localdepth.fetch.url_filename`).
    """
    from .fetch import is_url, url_filename

    items: list[InputItem] = []
    for spec in specs:
        text = str(spec)
        if is_url(text):
            name = Path(url_filename(text))
            items.append(InputItem(name, name, url=text.strip()))
            continue
        path = Path(text).expanduser()
        if path.is_dir():
            items += _folder(path)
        elif path.is_file() and path.suffix.lower() == ".txt":
            items += _list_file(path)
        elif path.is_file():
            items.append(InputItem(path, Path(path.name)))
        elif _GLOB_CHARS.search(text):
            matched = _glob(text)
            items += matched or [InputItem(path, Path(path.name), f"{quoted(text)}: the pattern matched no file")]
        else:
            items.append(InputItem(path, Path(path.name), f"{quoted(text)}: no such file or folder"))
    seen: set[Path] = set()
    unique = []
    for item in items:
        key = item.url if item.url else (item.path.resolve() if item.error is None else item.path)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return _disambiguate(unique)


def _disambiguate(items: list[InputItem]) -> list[InputItem]:
    """``a.jpg`` and ``a.png`` in one folder would write the same outputs: keep both by
    folding the extension into the name (``a_jpg``, ``a_png``)."""
    counts: dict[Path, int] = {}
    for item in items:
        key = item.rel.with_suffix("")
        counts[key] = counts.get(key, 0) + 1
    out = []
    for item in items:
        if counts[item.rel.with_suffix("")] > 1 and item.rel.suffix:
            rel = item.rel.with_name(f"{item.rel.stem}_{item.rel.suffix.lstrip('.').lower()}")
            item = InputItem(item.path, rel, item.error, item.url)
        out.append(item)
    return out
