"""The time a user waits, said: `run`'s summary counts loading and a first conversion, and the
long steps (converting, checking parity, a scene's stages) show on a status line on a terminal,
one line each in logs, nothing with -q.

References: the wall-clock time of the command itself (a conversion made to last at least 3 s);
the steps each command takes, in order; a stand-in terminal (a stream whose ``isatty`` is true).
"""

from __future__ import annotations

import io
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime", reason="these tests convert to ONNX: pip install 'localdepth[onnx]'")

from test_conversion_cache import fast_export, graph  # noqa: E402,F401  (fixtures)

from localdepth.cli.main import main  # noqa: E402
from localdepth.conversion import onnx as onnx_conversion  # noqa: E402


class Terminal(io.StringIO):
    """stderr as a terminal: what a user sees, control characters and all."""

    def isatty(self) -> bool:
        return True


def _photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def slow_parity(monkeypatch):
    """The parity check of a conversion takes at least 1.5 s (so the status line ticks)."""
    check = onnx_conversion.parity

    def slow(*args, **kwargs):
        time.sleep(1.5)
        return check(*args, **kwargs)

    monkeypatch.setattr(onnx_conversion, "parity", slow)


def test_the_summary_counts_the_time_spent_converting(tiny_da_dir, fast_export, slow_parity, tmp_path, capsys):  # noqa: F811
    """The first OpenVINO run converted for 46 s while the summary said "in 1.3 s". The summary's
    time is now the time the user waited, and says how much of it went to the model."""
    started = time.perf_counter()
    assert main(["run", str(_photo(tmp_path)), "--weights", str(tiny_da_dir), "--backend", "onnx", "--device",
                 "cpu", "--input-size", "56", "--outdir", str(tmp_path / "out"), "-q"]) == 0
    waited = time.perf_counter() - started
    line = capsys.readouterr().err.strip().splitlines()[-1]
    match = re.match(r"done: 1 ok, 0 failed, 0 skipped in ([\d.]+) s \(([\d.]+) s converting and loading the model; ",
                     line)
    assert match, line
    total, loading = float(match.group(1)), float(match.group(2))
    assert loading >= 1.5 and total >= loading and total <= waited + 0.05, (line, waited)
    again = main(["run", str(_photo(tmp_path)), "--weights", str(tiny_da_dir), "--backend", "onnx", "--device", "cpu",
                  "--input-size", "56", "--outdir", str(tmp_path / "again"), "-q"])
    # cached: no conversion this time (loading the tiny model itself may take under the 0.05 s the line shows)
    assert again == 0 and "converting" not in capsys.readouterr().err


def _steps(text: str) -> list[str]:
    """The finished steps a terminal shows (``localdepth: STEP: 1.5 s``), in order."""
    lines = [part.rsplit("\r\x1b[K", 1)[-1] for part in text.split("\n")]
    return [m.group(1) for line in lines if (m := re.match(r"localdepth: (.+): [\d.]+ s$", line))]


def test_export_shows_its_steps_on_a_terminal_and_nothing_when_quiet(tiny_da_dir, fast_export, slow_parity,  # noqa: F811
                                                                     tmp_path, monkeypatch, capsys):
    """`export` (and `quantize`, the same conversion) ran 30 to 70 s steps with nothing shown."""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["export", "--weights", str(tiny_da_dir), "--output", str(tmp_path / "a.onnx"), "--force"]) == 0
    shown = terminal.getvalue()
    steps = _steps(shown)
    assert [s.split(" ")[0] for s in steps] == ["exporting", "checking"], shown
    assert "checking the ONNX fp32 model against PyTorch" in steps[1]
    assert re.search(r"\r\x1b\[Klocaldepth: checking the ONNX fp32 model [^\r]*… 1 s", shown), shown  # it ticks
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main(["export", "--weights", str(tiny_da_dir), "--output", str(tmp_path / "b.onnx"), "--force", "-q"]) == 0
    assert quiet.getvalue() == ""


def test_steps_are_plain_lines_in_a_log(tiny_da_dir, fast_export, tmp_path, capsys):  # noqa: F811
    assert main(["export", "--weights", str(tiny_da_dir), "--output", str(tmp_path / "a.onnx"), "--force"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    assert [line.split(" ")[1] for line in err.strip().splitlines()] == ["exporting", "checking"], err


def test_scene_shows_its_stages(tmp_path, monkeypatch):
    pytest.importorskip("open3d")
    from scene_support import PlaneViews

    from localdepth.cli import scene as scene_cli

    views = tmp_path / "views"
    views.mkdir()
    for i in range(3):
        shutil.copy(_photo(tmp_path), views / f"{i}.png")
    monkeypatch.setattr(scene_cli, "load_from_args", lambda args: PlaneViews())
    for where, stream, quiet in (("terminal", Terminal(), False), ("terminal-q", Terminal(), True),
                                 ("log", io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert main(["scene", str(views), "-o", str(tmp_path / where), *(["-q"] if quiet else [])]) == 0
        if where == "terminal":
            assert _steps(stream.getvalue()) == ["predicting depth and cameras of 3 views together",
                                                 "writing 3 depth maps, confidences and views",
                                                 "fusing the points; writing points.ply, scene.glb and colmap/"]
        else:  # with -q, and in logs (where stderr is for errors), no stages
            assert "predicting" not in stream.getvalue() and "fusing" not in stream.getvalue()
