"""PyTorch checkpoints on disk: read them safely, convert them to safetensors.

A ``.pth`` file is a pickle, and unpickling can run any code the file names. localdepth reads
one only with ``torch.load(..., weights_only=True)`` (PyTorch's restricted unpickler: tensors,
containers and numbers, never arbitrary objects), and then only accepts a flat state dict of
tensors. ``localdepth models add`` converts a checkpoint once to safetensors, which holds
nothing but tensors by construction.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from .errors import WeightsError

#: suffixes read as pickled PyTorch checkpoints
PICKLE_SUFFIXES = frozenset({".pth", ".pt", ".bin", ".ckpt"})


def _refusal(path: Path, error: Exception) -> str:
    """The useful line of PyTorch's (long) weights_only refusal."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = next((line for line in lines if "Unsupported" in line or "GLOBAL" in line), lines[0] if lines else "")
    return (f"{path}: refusing to load it: the checkpoint holds Python objects beyond tensors, which "
            f"weights_only loading does not unpickle ({detail[:160]})")


def read_state_dict(path: str | os.PathLike) -> dict:
    """``{name: tensor}`` from a ``.safetensors`` file or a pickled ``.pth`` checkpoint.

    Raises :class:`WeightsError` (one line) for anything but a flat mapping of names to tensors.
    """
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise WeightsError(f"{path} is not a valid safetensors file ({str(e).splitlines()[0][:120]})") from None
    try:
        with warnings.catch_warnings():  # PyTorch's notes on pickle protocols; the outcome says it all
            warnings.simplefilter("ignore")
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for objects; RuntimeError/EOFError for damaged files
        import pickle

        if isinstance(e, pickle.UnpicklingError) and ("weights_only" in str(e) or "Unsupported" in str(e)):
            raise WeightsError(_refusal(path, e)) from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({first[:160]})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict of tensors; refusing it")
    odd = [(k, v) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if odd:
        key, value = odd[0]
        raise WeightsError(f"{path} holds {len(odd)} entries that are not tensors (e.g. {str(key)[:60]!r}: "
                           f"{type(value).__name__}); expected a state dict of tensors, refusing it")
    return state


def save_safetensors(state: dict, dest: str | os.PathLike) -> Path:
    """Write ``state`` to ``dest`` as safetensors, atomically (tensors that share memory are copied)."""
    from safetensors.torch import save_file

    dest = Path(dest)
    seen: set[int] = set()
    tensors = {}
    for name, tensor in state.items():
        ptr = tensor.untyped_storage().data_ptr()
        tensors[name] = tensor.clone().contiguous() if ptr in seen else tensor.contiguous()
        seen.add(ptr)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt"})
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def convert_to_safetensors(source: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Read a checkpoint safely (:func:`read_state_dict`) and write it as safetensors."""
    return save_safetensors(read_state_dict(source), dest)
