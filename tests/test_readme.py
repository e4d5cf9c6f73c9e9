"""The README stays true: its model table is the registry's, its set-up commands are the ones CI
runs (a fresh virtual environment, the same install lines, the same test command), and the
first command a new user runs works in that environment."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from localdepth.cli.models import markdown_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CI = ROOT / ".ci" / "run"


def code_block(section: str, index: int = 0) -> list[str]:
    """The non-empty lines of the ``index``-th fenced block of a README section."""
    body = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## )", README, re.S | re.M).group(1)
    return [ln.strip() for ln in re.findall(r"```\n(.*?)```", body, re.S)[index].splitlines() if ln.strip()]


def commands(line: str) -> list[str]:
    """``a && b && c`` -> the commands, without a leading ``python -m`` and ``-q`` (CI is quiet)."""
    out = []
    for part in line.split("&&"):
        words = [w for w in shlex.split(part.split("#")[0]) if w != "-q"]
        if words[:2] == ["python", "-m"] and words[2:3] == ["pip"]:
            words = words[2:]
        if words and words[0] in ("sudo", "$sudo"):
            words = words[1:]
        if words:
            out.append(" ".join(words))
    return out


def ci_commands() -> list[str]:
    lines = [ln.strip() for ln in CI.read_text().splitlines()]
    return [c for ln in lines if ln and not ln.startswith("#") for c in commands(ln)]


def test_readme_model_table_matches_registry():
    table = re.search(r"<!-- models-table:start -->\n(.*?)\n<!-- models-table:end -->", README, re.S).group(1)
    assert table == markdown_table(), "regenerate it with `localdepth models --markdown`"


def test_readme_opens_with_the_two_setup_commands():
    """First section: how to get the code, then one command that sets up and runs the main job,
    and one that sets up and runs the tests (CI's own script)."""
    assert re.search(r"^## (.+)$", README, re.M).group(1) == "Start here"
    block = code_block("Start here")
    assert block[0].startswith("git clone ") and "not on PyPI" in README.split("## Install")[0]
    use, test = block[1], block[2]
    steps = commands(use)
    assert steps[0] == "python3 -m venv .venv" and steps[1] == ". .venv/bin/activate"
    assert steps[-1] == "localdepth run photo.jpg"
    install = code_block("Install")
    assert steps[2:-1] == [commands(ln)[0] for ln in install], "the one-liner must be the Install section's lines"
    assert test == "bash .ci/run"


def test_ci_installs_from_scratch_and_runs_the_readme_test_command():
    """.ci/run: stops at the first failure, builds a fresh .venv, installs with exactly the
    README's lines, checks the README's first command there, and ends with the README's test
    command."""
    text = CI.read_text()
    assert "set -euo pipefail" in text
    ci = ci_commands()
    test_command = code_block("Tests")[0]
    by_hand = [c for ln in code_block("Tests", 1) for c in commands(ln)]
    assert ci[-1] == test_command == by_hand[-1] == "python -m pytest"

    def at(command: str) -> int:
        assert command in ci, f".ci/run lacks `{command}`"
        return ci.index(command)

    fresh = [at("rm -rf .venv"), at("python3 -m venv .venv"), at("source .venv/bin/activate")]
    assert fresh == sorted(fresh)
    torch_line = commands(code_block("Install")[0])[0]
    assert torch_line == "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    installs = [at(torch_line), at('pip install -e .[all,test]'), at("python .ci/smoke.py")]
    assert fresh[-1] < installs[0] < installs[1] < installs[2] < len(ci) - 1
    # the by-hand steps in the README are CI's steps
    apt = [c for c in by_hand if c.startswith("apt-get install")][0]
    assert set(apt.split()[3:]) == {"libusb-1.0-0", "chromium"}
    assert all(pkg in text for pkg in ("libusb-1.0-0", "chromium"))
    assert [c for c in by_hand if c.startswith("pip ")] == [c for c in ci if c.startswith("pip install") and
                                                           "--upgrade" not in c]
    assert subprocess.run(["bash", "-n", str(CI)]).returncode == 0  # it parses


def test_ci_smoke_runs_the_readme_first_command(tmp_path):
    """.ci/smoke.py (what CI runs in the fresh environment) works here: `localdepth run photo.jpg`
    through the installed console script, outputs checked."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a tiny model: one thread is plenty, and faster when busy
    proc = subprocess.run([sys.executable, str(ROOT / ".ci" / "smoke.py")], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "`localdepth run photo.jpg` works" in proc.stdout
