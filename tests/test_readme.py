"""The README's model table is generated from the registry and must not drift."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from localdepth.cli.models import markdown_table

ROOT = Path(__file__).resolve().parents[1]


def test_readme_model_table_matches_registry():
    text = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- models-table:start -->\n(.*?)\n<!-- models-table:end -->", text, re.S).group(1)
    assert table == markdown_table(), "regenerate it with `localdepth models --markdown`"


def test_ci_runs_the_readme_test_command():
    text = (ROOT / "README.md").read_text()
    command = re.search(r"## Tests\n\n```\n(.+?)\n```", text).group(1).strip()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == command
    assert any("torch==2.13.0" in line for line in ci)
    assert shutil.which("bash")
