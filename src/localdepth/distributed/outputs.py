"""Where a batch job writes: a local folder, or a URL through fsspec.

Both use the writers of ``localdepth run`` (:func:`localdepth.writers.write_result`), so the files,
names and sidecars are the same. A local folder gets the writers' atomic writes (temporary name +
rename). For a URL the result is written to a local scratch folder first and each file is then
uploaded, the ``.json`` sidecar last: object stores make an object visible only once it is whole,
and the sidecar's presence is what marks a complete result, so a retried or killed item never
looks done.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import LocalDepthError
from ..inputs import InputItem
from ..postprocess import DepthResult
from ..runner import plan
from ..writers import WriteOptions, is_complete, output_names, output_paths, write_result
from .sources import filesystem, is_url


@dataclass
class OutputTarget:
    """``root`` is a local folder or a URL (``s3://bucket/depth``, ``file:///data/depth``)."""

    root: str
    options: WriteOptions

    def __post_init__(self):
        self.root = self.root.rstrip("/") if is_url(self.root) else str(Path(self.root).expanduser())
        self._fs = None

    @property
    def is_url(self) -> bool:
        return is_url(self.root)

    def check(self) -> None:
        """Fail early, with one line, when the target cannot be written."""
        if self.is_url:
            fs = self.fs
            fs.makedirs(fs._strip_protocol(self.root), exist_ok=True)
        else:
            try:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise LocalDepthError(f"{self.root}: cannot create the output folder ({e.strerror or e})") from None

    @property
    def fs(self):
        if self._fs is None:
            self._fs = filesystem(self.root)
        return self._fs

    def __getstate__(self):  # the filesystem object is made again where the target is used
        return {"root": self.root, "options": self.options, "_fs": None}

    def paths(self, input: str, rel: str) -> dict[str, str]:
        """Output path (or URL) of each format of one input, ``json`` (the sidecar) included."""
        if self.is_url:  # the same names, checked the same way (no absolute path, no '..')
            return {fmt: f"{self.root}/{name}" for fmt, name in output_names(rel, self.options.formats).items()}
        if is_url(input):
            return {fmt: str(p) for fmt, p in output_paths(Path(self.root), rel, self.options.formats).items()}
        # the same plan as `localdepth run`, which refuses to overwrite the input itself
        return {fmt: str(p) for fmt, p in plan(InputItem(Path(input), Path(rel)), Path(self.root), self.options).items()}

    def is_complete(self, paths: dict[str, str]) -> bool:
        if self.is_url:
            return all(self.fs.exists(self.fs._strip_protocol(p)) for p in paths.values())
        return is_complete({k: Path(v) for k, v in paths.items()})

    def write(self, result: DepthResult, paths: dict[str, str], model_info: dict) -> dict:
        if not self.is_url:
            return write_result(result, {k: Path(v) for k, v in paths.items()}, self.options, model_info)
        with tempfile.TemporaryDirectory(prefix="localdepth-") as scratch:
            local = {fmt: Path(scratch) / PurePosixPath(url).name for fmt, url in paths.items()}
            # a remote sidecar cannot name a local photo relative to itself: the photo's absolute path
            source = result.source
            image = str(Path(source).resolve()) if source and "://" not in str(source) and Path(source).is_file() else None
            options = dataclasses.replace(self.options, extra_sidecar={"image": image, **self.options.extra_sidecar})
            meta = write_result(result, local, options, model_info)
            for fmt in [f for f in paths if f != "json"] + ["json"]:  # the sidecar last: it marks "complete"
                remote = self.fs._strip_protocol(paths[fmt])
                self.fs.makedirs(self.fs._parent(remote), exist_ok=True)  # no-op on object stores
                self.fs.put_file(str(local[fmt]), remote)
            return meta
