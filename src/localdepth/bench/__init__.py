"""Benchmarks: speed of localdepth's backends against the Transformers pipeline (``localdepth bench``)."""

from .core import BenchConfig, run_bench
from .report import markdown, write

__all__ = ["BenchConfig", "run_bench", "markdown", "write"]
