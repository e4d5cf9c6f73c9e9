"""Converted models: ONNX exports, OpenVINO IR and their int8 quantizations, MLX arrays and
Core ML packages, made once, checked against their source and cached. One interface for every
runtime::

    converted = ensure(spec, weights, Target("openvino", "int8"), log=print)  # cached, or made now
    converted.path     # the model in the cache (model.onnx, model.xml, model.safetensors, model.mlpackage)
    converted.report   # what the conversion measured: parity, deviation, calibration

Conversions start from the network as :func:`localdepth.networks.load_network` gives it (any
registry format PyTorch runs, in localdepth's calling convention): one ``torch.export`` with
dynamic batch, height and width feeds both the ONNX exporter and OpenVINO's converter
(:mod:`.source`); Core ML's converter takes a ``torch.export`` of its own (:mod:`.coreml`).
MLX reads the same weight files, renamed and laid out for its own networks (:mod:`.mlx`).
TFLite files are read by OpenVINO directly. Reduced precisions derive from the fp32
conversion of the same runtime, through this same interface. Every result is compared with
its source before it is cached, and one over tolerance is refused (Core ML packages are read
back on Linux, where coremltools cannot run them, and compared on macOS).

Cache layout (:mod:`.cache`: budget, least-recently-used eviction, leftovers of killed runs)::

    $LOCALDEPTH_HOME/converted/<model>/<weights id>/<runtime>-<precision>-<options id>/
        model.onnx | model.xml + model.bin | model.safetensors + config.json | model.mlpackage/ + model.json,
        report.json, compiled/ (OpenVINO's blob cache)

*weights id* hashes the weight files' contents; *options id* hashes the converter settings
that shape the result (opset, quantization scheme) and :data:`GRAPH_REVISION`, so different
settings, or graphs made by an older localdepth, never share a slot.
The cache lies apart from the weights: ``localdepth models add`` of the same weights finds
their conversions again, and other weights get their own (old ones leave by the budget).
The calibration images of an int8 model are recorded in ``report.json``, not in the key:
``localdepth quantize`` replaces the int8 model of these weights, and ``--dtype int8`` uses
whichever is there (making one from the built-in calibration set when there is none).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LocalDepthError
from ..registry import ModelSpec
from ..weights import ResolvedWeights, cache_error, sha256_of
from . import cache

#: runtime -> module that converts to it; each defines PRECISIONS, OPTIONS, MODEL_FILE and make(job, folder)
CONVERTERS = {"onnx": "localdepth.conversion.onnx", "openvino": "localdepth.conversion.openvino",
              "mlx": "localdepth.conversion.mlx", "coreml": "localdepth.conversion.coreml"}

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ConversionError(LocalDepthError):
    """A model could not be converted, or the conversion does not match its source."""


@dataclass(frozen=True)
class Target:
    runtime: str  # "onnx", "openvino", "mlx" or "coreml"
    precision: str  # "fp32", "fp16", "int8"

    def __str__(self) -> str:
        return f"{self.runtime} {self.precision}"


@dataclass
class Settings:
    """Inputs of a conversion that are not part of its cache key (recorded in its report)."""

    check_image: str | os.PathLike | None = None  # parity input (default: a synthetic scene)
    input_size: int | None = None  # network input size for the checks and the calibration
    calibration: str | os.PathLike | None = None  # int8: a folder of images (default: built-in synthetic set)
    calibration_count: int | None = None  # int8: at most this many calibration images
    check_images: str | os.PathLike | None = None  # int8: held-out images for the deviation
    model_type: str | None = None  # int8 (OpenVINO): NNCF model type ("transformer") or None


@dataclass
class Converted:
    target: Target
    path: Path  # the model file
    report: dict = field(default_factory=dict)
    cached: bool = False  # an earlier conversion was reused
    seconds: float = 0.0

    @property
    def folder(self) -> Path:
        return self.path.parent

    def lines(self) -> list[str]:
        """What the conversion measured, one line per check (parity, deviation, accuracy)."""
        return list(self.report.get("lines", []))


@dataclass
class Job:
    """One conversion under way: what a converter module gets."""

    spec: ModelSpec
    weights: ResolvedWeights
    target: Target
    settings: Settings
    log: object  # callable(str)
    _source: object = None

    @property
    def source(self):
        """The network, its export and its checks (:class:`.source.Source`), made on first use."""
        if self._source is None:
            from .source import Source

            self._source = Source(self.spec, self.weights, self.settings)
        return self._source

    def ensure(self, target: Target) -> Converted:
        """Another conversion this one derives from (cached, or made now)."""
        return ensure(self.spec, self.weights, target, log=self.log, settings=self.settings)


# ----------------------------------------------------------------------------- identity and cache

def weights_identity(weights: ResolvedWeights) -> str:
    """A short content hash of the weights: a Hugging Face-format folder (config + weight files)
    or a single file. Files in the Hugging Face cache are symlinks to blobs named by their
    sha256, which is used as is; other files are hashed (once per process while unchanged)."""
    path = Path(weights.path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.name == "config.json" or p.suffix in (".safetensors", ".bin")) \
        if path.is_dir() else [path]
    for p in files:
        target = p.resolve()
        if _HEX64.match(target.name):
            blob = target.name
        else:
            st = target.stat()
            blob = _file_sha256(str(target), st.st_size, st.st_mtime_ns)
        digest.update(f"{p.name}:{blob}".encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(Path(path))


def converter(runtime: str):
    if runtime not in CONVERTERS:
        raise ConversionError(f"unknown conversion target '{runtime}'; choose one of {', '.join(CONVERTERS)}")
    return importlib.import_module(CONVERTERS[runtime])


def _check_target(target: Target):
    module = converter(target.runtime)
    if target.precision not in module.PRECISIONS:
        raise ConversionError(f"{target.runtime} conversions are {', '.join(module.PRECISIONS)}, "
                              f"not {target.precision}")
    return module


#: what the converted graphs compute, beyond the converter settings: part of every options id, so
#: that conversions cached before a change of the graphs are made again, not reused. 2: DINOv2
#: position embeddings kept as stored on the pretrained grid (a 518x518 input), and TFLite
#: weights dequantized once for OpenVINO (issue 19).
GRAPH_REVISION = 2


def options_identity(target: Target) -> str:
    options = _check_target(target).OPTIONS[target.precision]
    keyed = {"options": options, "graph_revision": GRAPH_REVISION}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:8]


def converted_root(spec: ModelSpec, weights: ResolvedWeights) -> Path:
    """The folder that holds every conversion of these weights."""
    return cache.root() / spec.name / weights_identity(weights)


def slot(spec: ModelSpec, weights: ResolvedWeights, target: Target) -> Path:
    """The cache folder of ``target`` for these weights (it may not exist yet)."""
    return converted_root(spec, weights) / f"{target.runtime}-{target.precision}-{options_identity(target)}"


def find(spec: ModelSpec, weights: ResolvedWeights, target: Target) -> Converted | None:
    """The cached conversion, or None. Only complete slots count (model file and report).
    A conversion found is marked as used now (for the cache's least-recently-used eviction)."""
    cache.adopt_legacy(spec.name)
    if not (cache.root() / spec.name).is_dir():
        return None  # nothing was ever converted: no need to hash the weights
    folder = slot(spec, weights, target)
    model = folder / _check_target(target).MODEL_FILE
    report = folder / "report.json"
    if not (model.exists() and report.is_file()):  # a file, or a folder (Core ML's .mlpackage)
        return None
    try:
        saved = json.loads(report.read_text())
    except ValueError:
        return None
    cache.touch(folder)
    return Converted(target, model, saved, cached=True)


def ensure(spec: ModelSpec, weights: ResolvedWeights, target: Target, *, log=None,
           settings: Settings | None = None) -> Converted:
    """The cached conversion of ``target``, converting it first (once) when there is none."""
    found = find(spec, weights, target)
    if found is not None:
        return found
    return convert(spec, weights, target, settings=settings, log=log)


def convert(spec: ModelSpec, weights: ResolvedWeights, target: Target, *, settings: Settings | None = None,
            force: bool = False, log=None) -> Converted:
    """Convert these weights to ``target`` and cache the result (reuse it unless ``force``).

    Raises :class:`ConversionError` when the conversion fails or does not match its source;
    nothing is written to the cache then.
    """
    module = _check_target(target)
    module.require()
    log = log or (lambda line: None)
    if not force:
        found = find(spec, weights, target)
        if found is not None:
            return found
    folder = slot(spec, weights, target)
    cache.clean_stale()
    job = Job(spec, weights, target, settings or Settings(), log)
    t0 = time.perf_counter()
    try:  # a cache that cannot be written (read-only, full, a path through a file) is one line
        staging = cache.staging(folder.parent, folder.name)
    except OSError as e:
        raise cache_error(e, folder.parent) from None
    try:
        report = module.make(job, staging)
        report = {"model": spec.name, "runtime": target.runtime, "precision": target.precision,
                  "options": module.OPTIONS[target.precision], "graph_revision": GRAPH_REVISION,
                  "weights_id": weights_identity(weights),
                  "seconds": round(time.perf_counter() - t0, 1),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **report}
        try:
            (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
            cache.touch(staging)
            _install(staging, folder)
        except OSError as e:
            raise cache_error(e, folder) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    evicted = cache.evict(keep=(folder,))
    if evicted:
        log(f"conversion cache over its budget: removed the {len(evicted)} least recently used "
            f"({sum(e.bytes for e in evicted) / 2**20:.0f} MiB; `localdepth models cache`)")
    return Converted(target, folder / module.MODEL_FILE, report, cached=False, seconds=time.perf_counter() - t0)


def _install(staging: Path, folder: Path) -> None:
    """Put a finished conversion in its slot in one rename (a previous one is moved aside first)."""
    old = None
    if folder.exists():
        old = cache.aside(folder)
        os.replace(folder, old)
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def update_report(converted: Converted, **entries) -> None:
    """Add entries (e.g. an evaluation made afterwards) to a cached conversion's report."""
    from ..writers import atomic_write_bytes

    converted.report.update(entries)
    atomic_write_bytes(converted.folder / "report.json", (json.dumps(converted.report, indent=2) + "\n").encode())


#: the files of a copied set (any runtime): a folder holding only these is a set's folder
SET_FILES = frozenset({"model.onnx", "model.xml", "model.bin", "report.json"})


def check_copy_target(output: Path, target: Target, inputs=(), extra_names=()) -> None:
    """Refuse, in one line and before any work, an ``--output`` that :func:`copy_to` could not
    write without destroying something: one of ``inputs`` (``(label, path)`` pairs, see
    :func:`localdepth.safety.check_outputs`), or a folder that holds files other than a set's."""
    from ..errors import OutputClashError
    from ..safety import check_outputs, quoted

    output = Path(output)
    check_outputs([("--output", output)], inputs)
    suffix = Path(_check_target(target).MODEL_FILE).suffix
    if output.suffix == suffix or not output.exists():
        return
    if not output.is_dir():
        raise OutputClashError(f"--output {quoted(output)} is a file; give a folder for the model's files "
                               f"(or a name ending in {suffix} for the model file alone)")
    names = SET_FILES | set(extra_names)
    others = sorted(p.name for p in output.iterdir() if p.name not in names or p.is_symlink() or not p.is_file())
    if others:
        raise OutputClashError(f"--output {quoted(output)} holds other files ({', '.join(others[:3])}"
                               f"{', ...' if len(others) > 3 else ''}): the model's files are written as one set "
                               "that replaces the folder; choose a new or empty folder")


def copy_to(converted: Converted, output: Path, *, inputs=()) -> Path:
    """Copy a cached conversion out of the cache: ``output`` is a file (``.onnx``) or a folder
    (OpenVINO: ``model.xml``, ``model.bin``, ``report.json``). Returns the model file written.

    ``inputs``: ``(label, path)`` pairs the output must not overwrite (:func:`check_copy_target`).
    A single file is written atomically. A folder gets the whole set at once: the files are
    copied into a staging folder beside it, which then takes its place
    (:func:`localdepth.writers.replace_folder`: one atomic exchange on Linux and macOS), so a
    kill at any moment leaves the old set or the new one, never a new ``model.bin`` beside an old
    ``model.xml``. An existing folder is replaced only when it holds nothing but such a set; one
    with other files is refused, as replacing it would delete them.
    """
    from ..safety import crash_point
    from ..writers import as_storage_error, atomic_path, replace_folder

    output = Path(output)
    # the cache's own bookkeeping (.last-used) stays in the cache
    files = sorted(p for p in converted.folder.iterdir() if p.is_file() and not p.name.startswith("."))
    check_copy_target(output, converted.target, [*inputs, ("the cache folder", converted.folder),
                                                 *(("the cached model", p) for p in files)],
                      extra_names=[p.name for p in files])
    if output.suffix == converted.path.suffix:  # a single-file model named by the user
        with atomic_path(output) as tmp:
            shutil.copyfile(converted.path, tmp)
        return output
    target = Path(os.path.realpath(output))
    staging = target.with_name(f".{target.name}.staging-{uuid.uuid4().hex[:8]}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()  # with the usual permissions (umask), which the set keeps
        for p in files:
            shutil.copyfile(p, staging / p.name)
            crash_point("copy-set")  # tests: a kill with part of the set copied
        replace_folder(staging, target)
    except OSError as e:
        raise as_storage_error(e, output) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output / converted.path.name


__all__ = ["CONVERTERS", "ConversionError", "Converted", "Settings", "Target", "check_copy_target", "convert",
           "converted_root", "copy_to", "ensure", "find", "slot", "update_report", "weights_identity"]
