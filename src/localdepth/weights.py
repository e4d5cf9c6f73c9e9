"""Finding, downloading, verifying and caching model weights.

Resolution order for a registry entry:

1. an explicit path (``--weights PATH``): a file, a Hugging Face-format folder, or a converted model
   (an ``.onnx`` file, an OpenVINO ``.xml`` or a folder holding ``model.xml``);
2. localdepth's own cache, ``$LOCALDEPTH_HOME/models/<name>/`` (filled by ``localdepth models add``
   and by downloads of URL entries and single-file Hub entries);
3. for Hub entries, the Hugging Face cache (``$HF_HOME``), where ``huggingface_hub`` keeps them;
4. a download: ``huggingface_hub.snapshot_download`` for Hub folders and (restricted to their
   file) single-file Hub entries, HTTP for URL entries, with a progress bar and checksum
   verification. The Hub is asked once before anything downloads: unreachable, it costs one line.

Hugging Face-format folders are read as safetensors only: a folder whose weights are a pickle
(``pytorch_model.bin``) is refused in one line that says how to convert it. The single-file
entries whose published weights are a pickled checkpoint (``.pth``: Video Depth Anything) are
converted once to safetensors in localdepth's cache (``models add``, or after a download), read
with ``weights_only=True`` only (:mod:`localdepth.checkpoints`); later runs load the safetensors
file. ``models add`` loads the network from what it is given (:mod:`localdepth.networks.checks`)
before it replaces anything in the cache.

``HF_HUB_OFFLINE=1`` (or ``LOCALDEPTH_OFFLINE=1``) skips step 4. Files are checked before use:
fixed sha256 from the registry where there is one; for Hub files, the Hub's own content
address (the LFS blob's name is its sha256), after a download and before any use of the
Hugging Face cache. A file that fails is refused, never half-used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import PICKLE_SUFFIXES
from .errors import ChecksumError, WeightsError
from .registry import ModelSpec

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def home() -> Path:
    """localdepth's cache folder: ``$LOCALDEPTH_HOME``, else the user cache dir."""
    env = os.environ.get("LOCALDEPTH_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("localdepth"))


def model_dir(spec: ModelSpec) -> Path:
    return home() / "models" / spec.name


def offline() -> bool:
    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "LOCALDEPTH_OFFLINE"))


def how_to_provide(spec: ModelSpec) -> str:
    what = "a Hugging Face-format folder (config.json + model.safetensors)" if spec.layout == "folder" \
        else f"the file {spec.files[0].filename}"
    return (f"run `localdepth models pull {spec.name}` where there is network, "
            f"or `localdepth models add {spec.name} PATH`, or pass --weights PATH ({what})")


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path  # a folder for transformers entries, a file for single-file entries
    origin: str  # "argument", "cache", "hf-cache" or "download"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, expected_sha256: str | None, label: str) -> None:
    """Refuse ``path`` unless it exists, is non-empty and matches ``expected_sha256`` (if given)."""
    if not path.is_file():
        raise WeightsError(f"{label}: {path} is not a file")
    if path.stat().st_size == 0:
        raise WeightsError(f"{label}: {path} is empty; delete it and provide the weights again")
    if expected_sha256:
        actual = sha256_of(path)
        if actual != expected_sha256:
            raise ChecksumError(
                f"{label}: checksum mismatch for {path.name} (sha256 {actual[:12]}…, expected "
                f"{expected_sha256[:12]}…): the file is corrupt or not these weights; refusing to use it"
            )


def _verify_hub_snapshot(folder: Path, label: str) -> None:
    """Check each file of a Hub snapshot against its content address (:func:`_verify_hub_file`)."""
    for entry in folder.iterdir():
        _verify_hub_file(entry, label)


def _verify_hub_file(path: Path, label: str) -> None:
    """A file from the Hugging Face cache against its content address (LFS blobs are named by
    their sha256; other files are skipped).

    huggingface_hub checks a download's size, not its hash, and names the blob by the sha256
    the server announced; so this runs after every download and before every use of the
    Hugging Face cache. A blob that fails is deleted (huggingface_hub would otherwise reuse it
    forever) and refused. A blob that passed is remembered with its size and modification
    time (``$LOCALDEPTH_HOME/verified/``), so a model is hashed once, not at every load.
    """
    blob = path.resolve()
    if not _SHA256_RE.match(blob.name) or not blob.is_file():
        return
    stamp = f"{blob.stat().st_size} {blob.stat().st_mtime_ns}"
    record = home() / "verified" / blob.name
    try:
        if record.read_text() == stamp:
            return
    except OSError:
        pass
    try:
        verify_file(blob, blob.name, label)
    except ChecksumError as e:
        blob.unlink(missing_ok=True)
        raise ChecksumError(f"{e} (deleted it from the Hugging Face cache, so that "
                            f"`localdepth models pull` fetches it again)") from None
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(record, stamp)
    except OSError:  # a read-only cache only costs the hash again next time
        pass


def converted_name(filename: str) -> str | None:
    """The safetensors conversion kept in the cache for a pickled checkpoint (None for other files)."""
    path = Path(filename)
    return path.with_suffix(".safetensors").name if path.suffix in PICKLE_SUFFIXES else None


def check_transformers_folder(folder: Path, label: str) -> None:
    """Cheap structural check of a Hugging Face-format folder before it is loaded."""
    config = folder / "config.json"
    if not config.is_file():
        raise WeightsError(f"{label}: {folder} has no config.json; expected a Hugging Face-format folder")
    try:
        json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"{label}: {config} is not valid JSON ({e}); the download is corrupt") from None
    weights = sorted(folder.glob("*.safetensors"))
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if not weights and pickles:
        raise WeightsError(pickle_refusal(folder, pickles[0], label))
    if not weights:
        raise WeightsError(f"{label}: {folder} has no model.safetensors")
    for w in weights:
        if w.stat().st_size == 0:
            raise WeightsError(f"{label}: {w} is empty; delete it and provide the weights again")
        if w.suffix == ".safetensors":
            _check_safetensors(w, label)


def pickle_refusal(folder: Path, pickle: Path, label: str) -> str:
    """One line: a folder's weights are a pickle, which is not loaded, and how to convert them."""
    return (f"{label}: {folder} holds its weights as {pickle.name}, a pickled PyTorch checkpoint, which localdepth "
            f"does not load (unpickling can run code); convert it to safetensors once, where you trust the file: "
            f"python -c \"from transformers import AutoModelForDepthEstimation as M; "
            f"M.from_pretrained('{folder}').save_pretrained('{folder}-safetensors')\", then use that folder")


def _check_safetensors(path: Path, label: str) -> None:
    """A truncated or garbled safetensors file fails here, before any tensor is used."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            keys = list(f.keys())
        if not keys:
            raise ValueError("no tensors")
    except Exception as e:  # safetensors raises its own error types
        raise WeightsError(
            f"{label}: {path} is not a valid safetensors file ({str(e).splitlines()[0]}); "
            "delete it and provide the weights again"
        ) from None


def _manifest_path(folder: Path) -> Path:
    return folder / ".localdepth-verified.json"


def _write_manifest(folder: Path) -> None:
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256_of(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}
    _atomic_write_text(_manifest_path(folder), json.dumps(files, indent=1))


def _check_manifest(folder: Path, label: str) -> None:
    """Cheap check of a cached folder: every recorded file is there with its recorded size."""
    manifest = _manifest_path(folder)
    if not manifest.is_file():
        return
    for name, info in json.loads(manifest.read_text()).items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != info["size"]:
            raise WeightsError(
                f"{label}: cached file {p} is missing or changed size since it was verified; "
                f"delete {folder} and add the weights again"
            )


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def cached(spec: ModelSpec) -> ResolvedWeights | None:
    """Weights already on this machine (localdepth cache, then the Hugging Face cache), or None."""
    folder = model_dir(spec)
    if spec.layout == "folder":
        if (folder / "config.json").is_file():
            return ResolvedWeights(folder, "cache")
        hub = _hub_cached_snapshot(spec)
        if hub is not None:
            return ResolvedWeights(hub, "hf-cache")
        return None
    wf = spec.files[0]
    for name in (converted_name(wf.filename), wf.filename):
        if name and (folder / name).is_file():
            return ResolvedWeights(folder / name, "cache")
    if spec.repo_id:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(spec.repo_id, wf.filename, revision=spec.revision, cache_dir=hf_cache_dir())
        if isinstance(found, str):
            return ResolvedWeights(Path(found), "hf-cache")
    return None


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once,
    at import, which a long-running process or a test that changes HF_HOME would miss)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(hf_home).expanduser() / "hub"


def _hub_cached_snapshot(spec: ModelSpec) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    paths = []
    for wf in spec.files:
        found = try_to_load_from_cache(spec.repo_id, wf.filename, revision=spec.revision, cache_dir=hf_cache_dir())
        if not isinstance(found, str):
            return None
        paths.append(Path(found))
    return paths[0].parent


def resolve(spec: ModelSpec, weights: str | os.PathLike | None = None, *, download: bool = True) -> ResolvedWeights:
    """Find usable, verified weights for ``spec`` (see the module docstring for the order)."""
    label = f"weights for {spec.name}"
    if weights is not None:
        return _resolve_explicit(spec, Path(weights).expanduser(), label)
    found = cached(spec)
    if found is not None:
        _check_resolved(spec, found, label)
        return found
    if not download or offline():
        why = "offline mode is on (HF_HUB_OFFLINE/LOCALDEPTH_OFFLINE)" if offline() else "they are not cached"
        raise WeightsError(f"no local {label} and {why}: {how_to_provide(spec)}")
    return ResolvedWeights(pull(spec), "download")


def _resolve_explicit(spec: ModelSpec, path: Path, label: str) -> ResolvedWeights:
    if not path.exists():
        raise WeightsError(f"{label}: {path} does not exist")
    if path.is_dir() and (path / "model.xml").is_file():
        path = path / "model.xml"  # a folder `localdepth quantize --output` wrote
    if path.is_file() and path.suffix in (".onnx", ".xml"):
        _check_converted_from(spec, path, label)
        return ResolvedWeights(path, "argument")  # a converted model of this entry (ONNX, OpenVINO IR)
    if spec.layout == "folder":
        if not path.is_dir():
            raise WeightsError(
                f"{label}: --weights must be a Hugging Face-format folder (config.json + model.safetensors), got {path}"
                + _other_model_hint(path))
        check_transformers_folder(path, label)
        return ResolvedWeights(path, "argument")
    wf = spec.files[0]
    if path.is_dir():
        path = path / wf.filename
    # the registry's checksum is that of the published file, not of a conversion of it
    verify_file(path, wf.sha256 if path.suffix == Path(wf.filename).suffix else None, label)
    return ResolvedWeights(path, "argument")


def _check_converted_from(spec: ModelSpec, path: Path, label: str) -> None:
    """A converted model whose report (``localdepth quantize --output``) names another entry is
    refused: it computes that entry's map, in that entry's units."""
    try:
        made_from = json.loads((path.parent / "report.json").read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(made_from, str) and made_from and made_from != spec.name:
        raise WeightsError(f"{label}: {path} was converted from {made_from}, not {spec.name}; use --model {made_from}")


def _other_model_hint(path: Path) -> str:
    """``"; is it pydnet's? add --model pydnet"`` when a registry entry takes files like ``path``."""
    from .registry import MODELS

    owners = [s.name for s in MODELS.values()
              if s.layout == "file" and s.files and Path(s.files[0].filename).suffix == path.suffix]
    if not owners:
        return ""
    return f"; a {path.suffix} file is the weights of {' or '.join(owners)}: add --model {owners[0]}"


def _check_resolved(spec: ModelSpec, found: ResolvedWeights, label: str) -> None:
    if spec.layout == "folder":
        if found.origin == "cache":
            _check_manifest(found.path, label)
        elif found.origin == "hf-cache":
            _verify_hub_snapshot(found.path, label)
        check_transformers_folder(found.path, label)
    elif found.origin == "hf-cache":
        verify_file(found.path, None, label)
        _verify_hub_file(found.path, label)
    else:
        wf = spec.files[0]
        if wf.size_bytes is not None and found.path.name == wf.filename \
                and found.path.stat().st_size != wf.size_bytes:
            raise ChecksumError(f"{label}: cached {found.path} has the wrong size; delete it and run "
                                f"`localdepth models pull {spec.name}`")


def pull(spec: ModelSpec) -> Path:
    """Download (or re-verify) the weights of ``spec`` and return their local path."""
    label = f"weights for {spec.name}"
    if offline():
        found = cached(spec)
        if found is None:
            raise WeightsError(f"cannot download {label}: offline mode is on; {how_to_provide(spec)}")
        return found.path
    if spec.layout == "folder":
        return _pull_hub(spec, label)
    if spec.repo_id:
        return _pull_hub_file(spec, label)
    return _pull_url(spec, label)


def _pull_hub(spec: ModelSpec, label: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(
            spec.repo_id, revision=spec.revision, cache_dir=hf_cache_dir(),
            allow_patterns=[wf.filename for wf in spec.files] + ["preprocessor_config.json"],
        ))
    except Exception as e:  # network errors come as several library-specific types
        raise _hub_error(spec, label, e) from None
    _verify_hub_snapshot(folder, label)
    check_transformers_folder(folder, label)
    return folder


def _hub_error(spec: ModelSpec, label: str, error: Exception) -> WeightsError:
    return WeightsError(f"cannot download {label} from huggingface.co/{spec.repo_id} ({_reason(error)}); "
                        f"{how_to_provide(spec)}")


def _reason(error: BaseException, limit: int = 160) -> str:
    """Why a download failed, in a few words: the root cause's first line (huggingface_hub wraps a
    refused connection in a paragraph of advice), shortened at a word boundary."""
    while error.__cause__ is not None or (error.__context__ is not None and not error.__suppress_context__):
        error = error.__cause__ or error.__context__
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason if isinstance(error.reason, BaseException) else OSError(str(error.reason))
    text = next((" ".join(line.split()) for line in str(error).splitlines() if line.strip()), type(error).__name__)
    if type(error).__name__ not in text:
        text = f"{type(error).__name__}: {text}"
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " …"
    return text


CACHE_HINT = ("localdepth's cache is $LOCALDEPTH_HOME (else the user cache folder): set LOCALDEPTH_HOME to a "
              "folder you can write, with room for the weights")


def cache_error(error: OSError, where: Path):
    """A filesystem error in localdepth's cache as one line that names the folder and what to do
    (an error about a file outside the cache, a source being read, names that file)."""
    from .errors import storage_error

    inside = error.filename is None or str(error.filename).startswith(str(home()))
    return storage_error(error, where, hint=CACHE_HINT) if inside else storage_error(error, action="read")


@contextmanager
def _replacing(dest_dir: Path):
    """A staging folder beside ``dest_dir`` that replaces it, whole, when the block succeeds
    (and is removed when it fails: a cache never holds half of something). A cache that cannot
    be written (read-only, full, a path through a file) is one line (:func:`cache_error`)."""
    try:
        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest_dir.parent, prefix=f".{dest_dir.name}.staging-{os.getpid()}-"))
    except OSError as e:
        raise cache_error(e, dest_dir) from None
    try:
        yield staging
        if dest_dir.exists():
            shutil.rmtree(dest_dir)
        os.replace(staging, dest_dir)
    except OSError as e:
        raise cache_error(e, dest_dir) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _pull_hub_file(spec: ModelSpec, label: str) -> Path:
    """A single-file Hub entry: ``snapshot_download`` of that one file, the content address
    checked, then (for a pickled checkpoint) the safetensors conversion written once to
    localdepth's cache. ``snapshot_download``, as for folders, asks the Hub once before it
    downloads, so an unreachable Hub fails at once (``hf_hub_download`` retries for 24 s)."""
    from huggingface_hub import snapshot_download

    wf = spec.files[0]
    try:
        folder = snapshot_download(spec.repo_id, revision=spec.revision, cache_dir=hf_cache_dir(),
                                   allow_patterns=[wf.filename])
    except Exception as e:  # network errors come as several library-specific types
        raise _hub_error(spec, label, e) from None
    path = Path(folder) / wf.filename
    if not path.is_file():
        raise WeightsError(f"cannot download {label}: huggingface.co/{spec.repo_id} has no {wf.filename}; "
                           f"{how_to_provide(spec)}")
    _verify_hub_file(path, label)
    verify_file(path, wf.sha256, label)
    return _store_file(spec, path, label)


def _store_file(spec: ModelSpec, source: Path, label: str, *, load: bool = False) -> Path:
    """Put a verified single weights file into localdepth's cache (atomically, replacing what
    was there): a pickled checkpoint as its safetensors conversion, anything else as is.
    ``load``: also load the network from it (:func:`check_loads`) before anything is replaced."""
    from .checkpoints import convert_to_safetensors, read_state_dict

    wf = spec.files[0]
    with _replacing(model_dir(spec)) as staging:
        converted = converted_name(wf.filename)
        if converted:  # the entry publishes a pickled checkpoint: keep it as safetensors
            target = staging / converted
            if source.suffix == ".safetensors":
                read_state_dict(source)  # a valid file of tensors, or one line why not
                shutil.copy2(source, target)
            else:
                convert_to_safetensors(source, target)
        else:
            target = staging / wf.filename
            shutil.copy2(source, target)
            verify_file(target, wf.sha256, label)
        if load:
            check_loads(spec, target)
    return model_dir(spec) / target.name


def _pull_url(spec: ModelSpec, label: str) -> Path:
    wf = spec.files[0]
    dest = model_dir(spec) / wf.filename
    if dest.is_file():
        verify_file(dest, wf.sha256, label)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{wf.filename}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _http_download(spec.url, out, wf.size_bytes, desc=wf.filename)
        verify_file(tmp, wf.sha256, label)
        os.replace(tmp, dest)
    except WeightsError:
        raise
    except Exception as e:
        raise WeightsError(f"cannot download {label} from {spec.url} ({_reason(e)}); {how_to_provide(spec)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _http_download(url: str, out, expected_size: int | None, desc: str) -> None:
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - registry URLs only
        total = int(response.headers.get("Content-Length") or expected_size or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


#: what ``localdepth finetune`` writes beside the weights it saves: the base model, its licence, the
#: data, the recipe and the validation figures (:mod:`localdepth.training.outputs`)
FINETUNE_SIDECAR = "finetune.json"


def finetune_record(path: str | os.PathLike | None) -> dict | None:
    """The ``finetune.json`` of a weights folder (or of the folder holding a weights file), or None.

    A fine-tune knows the registry entry it was trained from (``model``) and carries that entry's
    licence (``licence``, ``commercial_use``): the loader runs the weights as that entry and keeps
    the licence (:func:`localdepth.estimator.load`)."""
    if path is None:
        return None
    folder = Path(path).expanduser()
    if folder.is_file():
        folder = folder.parent
    sidecar = folder / FINETUNE_SIDECAR
    if not sidecar.is_file():
        return None
    try:
        record = json.loads(sidecar.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("model"), str):
            raise ValueError("no 'model' entry")
    except (OSError, ValueError) as e:
        raise WeightsError(f"{sidecar}: not a readable fine-tuning record ({e}); delete it or write it again") from None
    return record


def model_for_weights(path: str | os.PathLike | None) -> str | None:
    """The registry entry a fine-tuned weights folder was trained from (None: not a fine-tune)."""
    record = finetune_record(path) if path is not None and Path(path).expanduser().exists() else None
    return record["model"] if record else None


def add(spec: ModelSpec, source: str | os.PathLike) -> Path:
    """Copy user-provided weights into localdepth's cache after verifying them: their checksum
    where the registry has one, and for networks PyTorch runs, by loading the network from the
    copy (:func:`check_loads`). Nothing in the cache changes when they fail. Conversions of
    earlier weights stay in the conversion cache (:mod:`localdepth.conversion.cache`)."""
    from .conversion.cache import adopt_legacy

    label = f"weights for {spec.name}"
    source = Path(source).expanduser()
    resolved = _resolve_explicit(spec, source, label)
    if resolved.path.suffix in (".onnx", ".xml"):
        raise WeightsError(f"{label}: {resolved.path} is a converted model; `models add` takes the model's own weights "
                           f"(pass a converted model with --weights instead)")
    adopt_legacy(spec.name)  # conversions an earlier version kept inside the weights folder
    if spec.layout != "folder":
        return _store_file(spec, resolved.path, label, load=True)
    with _replacing(model_dir(spec)) as staging:
        for p in resolved.path.iterdir():
            if p.is_file() and (p.suffix in {".json", ".safetensors"}):
                shutil.copy2(p, staging / p.name)
        check_transformers_folder(staging, label)
        check_loads(spec, staging)
        _write_manifest(staging)
    return model_dir(spec)


def check_loads(spec: ModelSpec, path: Path) -> None:
    """Load ``spec``'s network from ``path`` once, on the CPU, and let it go: the checks of
    :mod:`localdepth.networks.checks` (architecture, size, relative or metric, every weight).
    Formats PyTorch does not run (TFLite) are checked by their checksum alone."""
    from .networks import LOADERS, load_network

    if spec.format not in LOADERS:
        return
    load_network(spec, path, device="cpu")
