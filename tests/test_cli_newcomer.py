"""The first minutes of a new user: answers that come at once, one meaning per option, quiet
when asked, usage of the right command, hints that name the fix (issue 14, item 11)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ABSENT = "/nonexistent/weights"  # loading these fails: a command that loads the model cannot exit 0
# the tiny model at its smallest input, on one thread (two OpenMP threads on a busy 2-core machine
# made each forward pass 50x slower, measured on the shared VM)
FAST = ("--device", "cpu", "--input-size", "56")


def env() -> dict:
    """The test's environment at call time (conftest's isolated caches and backend choice), one thread."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localdepth", *map(str, args)], capture_output=True, text=True,
                          env=env(), **kwargs)


def on_a_terminal(*args) -> str:
    """stderr of the command when it is a terminal (a pseudo-terminal), as a user sees it."""
    import pty

    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "localdepth", *map(str, args)], stderr=slave,
                         stdout=subprocess.DEVNULL, env=env())
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert p.wait(timeout=300) == 0, seen.decode(errors="replace")
    return seen.decode(errors="replace")


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def test_inputs_are_checked_before_the_model_loads(tmp_path, image, tiny_da_dir):
    """`run nothing/` answered after the model had loaded (10 s). The weights given here do not
    exist, so any command that loads them fails on that: these must not."""
    proc = cli("run", tmp_path / "nothing", "--weights", ABSENT, "--outdir", tmp_path / "out")
    assert proc.returncode == 1, proc.stderr
    assert "nothing: no such file" in proc.stderr and ABSENT not in proc.stderr

    out = tmp_path / "out"
    proc = cli("run", image, "--weights", tiny_da_dir, *FAST, "--outdir", out)
    assert proc.returncode == 0, proc.stderr
    assert "localdepth: loading" not in proc.stderr  # not a terminal: logs stay clean
    # everything complete: --skip-existing reports it without loading anything
    proc = cli("run", image, "--weights", ABSENT, "--outdir", out, "--skip-existing", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "0 ok, 0 failed, 1 skipped" in proc.stderr
    # the same with one input still to do: now the model is needed, and its error is one line
    other = tmp_path / "other.png"
    other.write_bytes(image.read_bytes())
    proc = cli("run", image, other, "--weights", ABSENT, "--outdir", out, "--skip-existing", "-q")
    assert proc.returncode == 2 and proc.stderr.count("localdepth: error:") == 1
    assert "does not exist" in proc.stderr
    # run --pointcloud takes the same path
    proc = cli("run", tmp_path / "nothing", "--weights", ABSENT, "--pointcloud", tmp_path / "c.ply", "--relative",
               "--outdir", tmp_path / "out3")
    assert proc.returncode == 1 and "no such file" in proc.stderr and ABSENT not in proc.stderr


def test_loading_line_on_a_terminal_only(image, tiny_da_dir, tmp_path):
    shown = on_a_terminal("run", image, "--weights", tiny_da_dir, *FAST, "--outdir", tmp_path / "a")
    assert "localdepth: loading depth-anything-v2-small (cpu, fp32)…" in shown
    quiet = on_a_terminal("run", image, "--weights", tiny_da_dir, *FAST, "--outdir", tmp_path / "b", "-q")
    assert "localdepth: loading" not in quiet
    # (without a terminal: test_inputs_are_checked_before_the_model_loads)


def test_quiet_silences_tflite_and_the_licence_warning(image, pydnet_file, tmp_path):
    base = ["run", image, "-m", "pydnet", "--weights", pydnet_file, "--outdir", tmp_path / "out"]
    loud = cli(*base)
    assert loud.returncode == 0, loud.stderr
    assert loud.stderr.count("not for commercial use") == 1  # said once without -q
    assert "XNNPACK" not in loud.stderr  # LiteRT's INFO line, never useful to a user
    quiet = cli(*base, "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert "XNNPACK" not in quiet.stderr and "commercial" not in quiet.stderr
    assert quiet.stderr.strip().splitlines() == [line for line in quiet.stderr.strip().splitlines()
                                                 if line.startswith("done: 1 ok")]
    # the licence is still on record
    assert json.loads((tmp_path / "out" / "photo.json").read_text())["model"]["licence"] == "research-only"


def test_minus_o_means_an_output_file_everywhere(image, pydnet_file, tmp_path):
    """-o is --output FILE in align, pointcloud, video and export. run, batch and eval write
    folders (--outdir); their old `-o DIR` still works, with a warning."""
    import argparse

    from localdepth.cli.main import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for command, dest in (("align", "output"), ("pointcloud", "output"), ("video", "output"), ("export", "output")):
        option = next(a for a in subparsers[command]._actions if "-o" in a.option_strings)
        assert option.dest == dest and "--output" in option.option_strings, command
    for command in ("run", "batch", "eval"):
        options = {s for a in subparsers[command]._actions if a.help != argparse.SUPPRESS for s in a.option_strings}
        assert "--outdir" in options and "-o" not in options, command
        assert "-o" not in cli(command, "-h").stdout.replace("--o", ""), command

    proc = cli("run", image, "-m", "pydnet", "--weights", pydnet_file, "-o", tmp_path / "old", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "old" / "photo.npy").is_file()
    assert "`localdepth run -o DIR` is deprecated: use --outdir DIR" in proc.stderr


@pytest.mark.parametrize("command", [["run"], ["video"], ["align", "m.npy", "-o", "x.npy", "--points", "p.csv"], ["models", "info", "pydnet"]])
def test_unknown_option_prints_the_subcommands_usage(command):
    proc = cli(*command, "--no-such-option")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    name = " ".join(c for c in command if c in ("run", "video", "align", "models", "info"))
    assert lines[0].startswith(f"usage: localdepth {name} "), proc.stderr
    assert lines[-1] == f"localdepth {name}: error: unrecognized arguments: --no-such-option"


def test_a_tflite_file_without_model_suggests_pydnet(tmp_path):
    weights = tmp_path / "optimized_pydnet++.tflite"
    weights.write_bytes(b"not really")
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    proc = cli("run", tmp_path / "ok.png", "--weights", weights, "--outdir", tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "a .tflite file is the weights of pydnet: add --model pydnet"), proc.stderr


def test_models_info_shows_only_the_input_size_that_applies():
    proc = cli("models", "info", "pydnet")
    info = json.loads(proc.stdout)
    pre = info["preprocessing"]
    assert pre["resize"] == "fixed" and pre["fixed_hw"] == [448, 640] and info["input_size"] == [448, 640]
    assert "input_size" not in pre and "multiple_of" not in pre
    pre = json.loads(cli("models", "info", "depth-anything-v2-small").stdout)["preprocessing"]
    assert pre["input_size"] == 518 and pre["multiple_of"] == 14 and "fixed_hw" not in pre
