"""What a batch job reads: command-line inputs and manifests -> a table of (index, input, rel, error).

Local inputs go through :func:`localdepth.inputs.expand_inputs` (files, folders, globs, ``.txt``
lists), so ``localdepth batch`` names outputs exactly as ``localdepth run`` does. On top of that:

* a **manifest**: a ``.csv``, ``.parquet`` or ``.jsonl`` table with a ``path`` column (one image
  per row) and an optional ``rel`` column (the output path under ``--outdir``, extension
  included). Relative paths are relative to the manifest's folder. Without ``rel``, a relative
  path keeps itself and absolute paths or URLs keep their path below the rows' common folder;
* **URLs** that fsspec knows (``s3://``, ``gs://``, ``file://``…): a single image, a folder
  (searched recursively) or a glob. ``http(s)://`` URLs are single images, as for ``localdepth
  run``, fetched within ``--url-timeout`` and ``--url-max-mb``.

Output names are made unique for the whole job by the input layer
(:func:`localdepth.inputs.unique_outputs`), as for ``localdepth run``.

Listing happens on the driver: it is a table of names, small next to the images themselves.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import LocalDepthError
from ..images import IMAGE_EXTENSIONS
from ..fetch import is_url as is_http_url
from ..inputs import InputItem, expand_inputs, natural_key, unique_outputs
from ..safety import quoted

MANIFEST_SUFFIXES = (".csv", ".parquet", ".jsonl", ".ndjson")
PATH_COLUMNS = ("path", "input", "image", "uri", "url")  # first one present is used
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GLOB_CHARS = re.compile(r"[*?\[]")


def is_url(text: str) -> bool:
    return bool(_URL.match(str(text)))


@dataclass(frozen=True)
class Source:
    """One input: ``input`` is a local path or a URL, ``rel`` its relative output path."""

    input: str
    rel: str
    error: str | None = None


def filesystem(url: str):
    """The fsspec filesystem of a URL, or one line that says what to install."""
    try:
        import fsspec
    except ImportError:
        raise LocalDepthError(f"{quoted(url)}: URLs need fsspec: pip install fsspec") from None
    protocol = url.split("://", 1)[0]
    try:
        return fsspec.filesystem(protocol)
    except (ImportError, ValueError) as e:
        hint = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}.get(protocol)
        install = f"pip install {hint}" if hint else "install the fsspec implementation for it"
        raise LocalDepthError(f"{quoted(url)}: no '{protocol}' filesystem here ({_first_line(e)}); {install}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def _with_protocol(protocol: str, path: str) -> str:
    return path if is_url(path) else f"{protocol}://{path}"


def _url_sources(url: str) -> list[Source]:
    fs = filesystem(url)
    protocol = url.split("://", 1)[0]
    stripped = fs._strip_protocol(url)
    if _GLOB_CHARS.search(url):
        matches = sorted((m for m in fs.glob(stripped) if _is_image_name(m)), key=natural_key)
        fixed = re.split(r"[*?\[]", stripped, maxsplit=1)[0].rsplit("/", 1)[0]
        if not matches:
            return [Source(url, PurePosixPath(stripped).name, f"{quoted(url)}: the pattern matched no file")]
        return [Source(_with_protocol(protocol, m), posixpath.relpath(m, fixed)) for m in matches]
    if fs.isdir(stripped):
        found = sorted((p for p in fs.find(stripped) if _is_image_name(p)
                        and not any(part.startswith(".") for part in posixpath.relpath(p, stripped).split("/"))),
                       key=natural_key)
        return [Source(_with_protocol(protocol, p), posixpath.relpath(p, stripped)) for p in found]
    if fs.isfile(stripped):
        return [Source(url, PurePosixPath(stripped).name)]
    return [Source(url, PurePosixPath(stripped).name, f"{quoted(url)}: no such file or folder")]


def read_manifest(spec: str):
    """A manifest file (local or URL) as a pyarrow Table."""
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.json
    import pyarrow.parquet as pq

    suffix = PurePosixPath(spec).suffix.lower()
    try:
        if is_url(spec):
            with filesystem(spec).open(spec, "rb") as f:
                data = pa.BufferReader(f.read())
        else:
            data = spec
        if suffix == ".parquet":
            return pq.read_table(data)
        if suffix == ".csv":
            return pyarrow.csv.read_csv(data)
        return pyarrow.json.read_json(data)
    except (OSError, pa.ArrowInvalid) as e:
        raise LocalDepthError(f"{quoted(spec)}: cannot read the manifest ({_first_line(e)})") from None


def _manifest_sources(spec: str) -> list[Source]:
    table = read_manifest(spec)
    column = next((c for c in PATH_COLUMNS if c in table.column_names), None)
    if column is None:
        raise LocalDepthError(f"{quoted(spec)}: the manifest needs a 'path' column (it has: {', '.join(table.column_names)})")
    paths = [str(p) if p is not None else "" for p in table.column(column).to_pylist()]
    rels = table.column("rel").to_pylist() if "rel" in table.column_names else [None] * len(paths)
    base = spec.rsplit("/", 1)[0] if is_url(spec) else str(Path(spec).expanduser().parent)

    resolved = []
    for p in paths:
        if not p or is_url(p) or Path(p).expanduser().is_absolute():
            resolved.append(str(Path(p).expanduser()) if p and not is_url(p) else p)
        else:
            resolved.append(f"{base}/{p}" if is_url(base) else str(Path(base) / p))
    # A relative path without '..' keeps itself; absolute paths, URLs and paths with '..' keep
    # their path below the common folder of those rows, as a folder input does (so never '..').
    # A 'rel' column is used as given; an absolute or '..' value is refused per row when planned.
    def keeps_itself(raw: str) -> bool:
        return not (is_url(raw) or Path(raw).expanduser().is_absolute()) and ".." not in Path(raw).parts

    common = _common_folder([_normal(r) for p, r, rel in zip(paths, resolved, rels)
                             if p and not rel and not keeps_itself(p)])

    sources = []
    for raw, path, rel in zip(paths, resolved, rels):
        if not raw:
            sources.append(Source("", "", f"{quoted(spec)}: a row has an empty '{column}'"))
            continue
        if rel:
            out = str(rel)
        elif keeps_itself(raw):
            out = raw
        else:
            out = posixpath.relpath(_normal(path), common) if common else PurePosixPath(_posix(path)).name
        error = None if is_url(path) or Path(path).is_file() else f"{quoted(path)}: no such file"
        sources.append(Source(path, out, error))
    return sources


def _posix(path: str) -> str:
    return path if is_url(path) else Path(path).as_posix()


def _normal(path: str) -> str:
    """A local path without '..' or '.' (``/a/b/../c`` -> ``/a/c``); URLs as they are."""
    return path if is_url(path) else posixpath.normpath(Path(path).absolute().as_posix())


def _common_folder(paths: list[str]) -> str | None:
    if not paths:
        return None
    folders = [posixpath.dirname(_posix(p)) for p in paths]
    try:
        common = posixpath.commonpath(folders)
    except ValueError:  # mixed schemes or relative/absolute
        return None
    if is_url(folders[0]) and "://" not in common:  # commonpath folds "s3://" to "s3:/"
        common = common.replace(":/", "://", 1)
    return common


def is_manifest(spec: str) -> bool:
    return PurePosixPath(spec).suffix.lower() in MANIFEST_SUFFIXES


def collect(specs: list[str], outputs=None) -> list[Source]:
    """Every input of a job, in order, without duplicate inputs or clashing output names
    (``outputs``: as :func:`localdepth.inputs.unique_outputs` takes it)."""
    sources: list[Source] = []
    local: list[str] = []

    def flush():
        sources.extend(Source(i.url or str(i.path), i.rel.as_posix(), i.error) for i in expand_inputs(local))
        local.clear()

    for spec in map(str, specs):
        if is_manifest(spec):
            flush()
            if not is_url(spec) and not Path(spec).expanduser().is_file():
                sources.append(Source(spec, PurePosixPath(spec).name, f"{quoted(spec)}: no such manifest"))
            else:
                sources.extend(_manifest_sources(spec))
        elif is_url(spec) and not is_http_url(spec):
            flush()
            sources.extend(_url_sources(spec))
        else:  # files, folders, globs, lists and http(s):// images: the input layer of `localdepth run`
            local.append(spec)
    flush()

    seen: set[str] = set()
    unique = []
    for s in sources:
        key = s.input if s.error or is_url(s.input) else str(Path(s.input).resolve())
        if key not in seen:
            seen.add(key)
            unique.append(s)
    items = unique_outputs([InputItem(None if is_url(s.input) else Path(s.input), Path(s.rel), s.error,
                                      s.input if is_url(s.input) else None) for s in unique], outputs)
    return [Source(s.input, item.rel.as_posix(), s.error) for s, item in zip(unique, items)]
