"""Regenerate the README's performance table from a `localdepth bench` JSON report.

    python benchmarks/readme_table.py docs/bench/cpu-depth-anything-v2-small.json

rewrites the block between ``<!-- bench-table:start -->`` and ``<!-- bench-table:end -->`` in
README.md (tests/test_bench.py checks that the README holds exactly what this makes of the
committed report).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from localdepth.bench.report import readme_table, replace_readme_block

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="bench.json written by `localdepth bench --json`")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args()
    report = json.loads(args.report.read_text())
    args.readme.write_text(replace_readme_block(args.readme.read_text(), readme_table(report)))
    print(f"rewrote the performance table of {args.readme} from {args.report}")


if __name__ == "__main__":
    main()
