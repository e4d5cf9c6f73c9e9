"""Benchmarks: speed of localdepth's backends against the Transformers pipeline (``localdepth bench``).

:mod:`.core` is the CPU suite (every backend and precision in interleaved rounds), :mod:`.gpu` the
GPU suite (``--device cuda``), :mod:`.report` writes both. Imported on first use, so that the GPU
suite's model-only rows run where the image libraries are missing.
"""

_LAZY = {"BenchConfig": "core", "run_bench": "core", "markdown": "report", "write": "report"}

__all__ = ["BenchConfig", "run_bench", "markdown", "write"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'localdepth.bench' has no attribute {name!r}")
