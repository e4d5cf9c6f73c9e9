"""Turning command-line inputs into a list of images with relative output paths.

An input is a file, a folder (searched recursively for images), a glob pattern, a ``.txt``
list (one path per line, ``#`` comments; relative paths are relative to the list), or an
``http(s)://`` URL (fetched with a size limit and a timeout, see :mod:`localdepth.fetch`).
Each image gets a relative path that the outputs keep under ``--outdir``: a folder's
images keep their path inside the folder, a glob's keep their path below the pattern's
fixed part, a single file keeps its name, a URL the last segment of its path.

Output names are decided here, once for the whole input list, and are unique in it
(:func:`unique_outputs`): two inputs would otherwise write the same files and the second would
silently replace the first's. ``a.jpg`` and ``a.png`` in one folder become ``a_jpg`` and
``a_png``; any other clash (``d1/x.jpg`` and ``d2/x.jpg`` given as files, two URLs ending in
``x.jpg``) keeps the first input's name and gives the next ones ``x_2``, ``x_3``... in input
order, so the same command names its outputs the same way every time (``--skip-existing``
resumes). Names are compared without regard to case (``X.jpg`` and ``x.jpg`` are one file on
macOS and Windows).

Every command that takes images reads them through :meth:`InputItem.load` (URLs fetched within
their limits): a URL item has no local path, so nothing can read a file of the current folder
in its place.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from .images import IMAGE_EXTENSIONS
from .limits import MAX_IMAGE_PIXELS
from .safety import quoted

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class InputItem:
    path: Path | None  # the file on disk; None for a URL (there is no local file to read)
    rel: Path  # relative output path (with the input's extension)
    error: str | None = None  # set when the input could not be found at all
    url: str | None = None  # an http(s):// input: fetched instead of read from a file
    renamed_from: Path | None = None  # the name it would have had, when another input had it first

    @property
    def source(self) -> str | Path:
        """What to decode: the URL, or the file."""
        return self.url or self.path

    @property
    def label(self) -> str:
        """How messages and sidecars name the input."""
        return self.url or str(self.path)

    @property
    def identity(self) -> str:
        """The input itself, independent of the current folder: the URL, or the file's absolute path
        (recorded in sidecars, so that a resumed run knows which input made which outputs)."""
        return self.url or os.path.abspath(self.path)

    def load(self, *, max_pixels: int | None = MAX_IMAGE_PIXELS, url_limits=None):
        """The image as RGB (:func:`localdepth.images.load_image`): the file, or the URL fetched
        within ``url_limits`` (:class:`localdepth.fetch.FetchLimits`; default its defaults)."""
        from .images import load_image

        return load_image(self.source, max_pixels=max_pixels, url_limits=url_limits)

    def record(self) -> dict:
        """The sidecar's ``input`` entry: which input produced these outputs, and under which name."""
        entry = {"source": self.identity, "name": self.rel.as_posix()}
        if self.renamed_from is not None:
            entry["renamed_from"] = self.renamed_from.as_posix()
            entry["why"] = "another input of this run has the same output name"
        return entry


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


def expand_inputs(specs: list[str | os.PathLike], *,
                  outputs: Callable[[PurePosixPath], Iterable[str]] | None = None) -> list[InputItem]:
    """Expand files, folders, globs, ``.txt`` lists and ``http(s)://`` URLs, in order, without
    duplicates, with unique output names (:func:`unique_outputs`; ``outputs`` as there).

    A URL's outputs are named after the last segment of its path (see :func:`localdepth.fetch.url_filename`).
    """
    from .fetch import is_url, url_filename

    items: list[InputItem] = []
    for spec in specs:
        text = str(spec)
        if is_url(text):
            name = Path(url_filename(text))
            items.append(InputItem(None, name, url=text.strip()))
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
    seen: set = set()
    unique = []
    for item in items:
        key = item.url if item.url else (item.path.resolve() if item.error is None else item.path)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique_outputs(unique, outputs)


def _stem(rel: Path) -> Path:
    return rel.with_suffix("") if rel.suffix else rel


def _default_outputs(rel: PurePosixPath) -> list[str]:
    return [_stem(Path(rel)).as_posix()]


def unique_outputs(items: list[InputItem],
                   outputs: Callable[[PurePosixPath], Iterable[str]] | None = None) -> list[InputItem]:
    """The same items with output names that no two share (see the module's docstring).

    ``outputs(rel)`` lists the names an input at ``rel`` would write (default: its stem), for
    callers whose files differ in more than the suffix: ``run`` passes its formats' file names
    (so ``a_color.jpg`` as png16 cannot take ``a.jpg``'s colour picture), ``video`` its flattened
    frame names. Names compare without regard to case. A renamed item keeps the name it would
    have had in ``renamed_from``.
    """
    names_of = outputs or _default_outputs

    def claims(rel: Path) -> set[str]:
        try:
            return {str(n).lower() for n in names_of(PurePosixPath(rel.as_posix()))}
        except Exception:  # an unsafe name (absolute, '..'): refused later, per input, where it is planned
            return {rel.as_posix().lower()}

    # a.jpg and a.png in one folder: fold the extension into the name of each (a_jpg, a_png)
    suffixes: dict[str, set[str]] = {}
    for item in items:
        suffixes.setdefault(_stem(item.rel).as_posix().lower(), set()).add(item.rel.suffix.lower())
    folded = []
    for item in items:
        if len(suffixes[_stem(item.rel).as_posix().lower()]) > 1 and item.rel.suffix:
            # the suffix stays, so that a stem with dots (photo.v2) keeps them
            rel = item.rel.with_name(f"{item.rel.stem}_{item.rel.suffix.lstrip('.').lower()}{item.rel.suffix}")
            item = replace(item, rel=rel)
        folded.append(item)

    # any other clash: the first keeps its name, the next get _2, _3... (never a name another input has)
    wanted = [claims(item.rel) for item in folded]
    held_by_someone = set().union(*wanted)
    taken: set[str] = set()
    out = []
    for item, names in zip(folded, wanted):
        if names & taken:
            k = 2
            while True:
                rel = item.rel.with_name(f"{_stem(item.rel).name}_{k}{item.rel.suffix}")
                candidate = claims(rel)
                if not (candidate & taken) and not (candidate & held_by_someone):
                    break
                k += 1
            item, names = replace(item, rel=rel, renamed_from=item.rel), candidate
        taken |= names
        out.append(item)
    return out
