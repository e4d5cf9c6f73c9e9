"""Regenerate the README's performance table from a `localdepth bench` JSON report.

    python benchmarks/readme_table.py docs/bench/cpu-depth-anything-v2-small.json

rewrites the block between ``<!-- bench-table:start -->`` and ``<!-- bench-table:end -->`` in
README.md (tests/test_bench.py checks that the README holds exactly what this makes of the
committed report). A GPU suite's report (``docs/bench/gpu-<card>-<model>.json``, written by
``bash benchmarks/gpu.sh``) rewrites the GPU block, ``<!-- gpu-bench-table:start -->`` to its end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from localdepth.bench.report import (GPU_COMMAND, gpu_readme_table, readme_table, replace_gpu_readme_block,
                                     replace_readme_block)

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="bench.json written by `localdepth bench --json`")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args()
    report = json.loads(args.report.read_text())
    text = args.readme.read_text()
    if report.get("suite") == "gpu":
        text = replace_gpu_readme_block(text, gpu_readme_table(report, GPU_COMMAND))
    else:
        text = replace_readme_block(text, readme_table(report))
    args.readme.write_text(text)
    print(f"rewrote the {'GPU ' if report.get('suite') == 'gpu' else ''}performance table of {args.readme} "
          f"from {args.report}")


if __name__ == "__main__":
    main()
