"""The machinery behind tests/test_documented_commands.py: every command shown in README.md,
comfyui/README.md and docs/*.md, found, prepared and run offline in a sandbox.

* :func:`documented_commands` reads the fenced code blocks (shell blocks: no language, ``bash``,
  ``sh``, ``shell``, ``console``; ``text``/``json`` blocks are not commands) and yields each
  command line (``\\`` continuations, multi-line quotes and ``for ... done`` loops joined, comments
  dropped); :func:`python_snippets` yields the ``python`` blocks.
* :func:`make_inputs` writes the files the commands name (``photo.jpg``, ``photos/``, ``clip.mp4``,
  ``lidar.png``, ``known.csv``, trajectories...), from ``../shared`` or generated.
* :func:`fill_model_cache` puts a tiny random model of the right family under
  ``$LOCALDEPTH_HOME/models/<name>/`` for every registry entry (the cache layout ``models add``
  writes), so a documented ``--model NAME`` resolves offline; Depth Anything 3's tiny architectures
  are swapped into its table (:func:`tiny_da3_architectures`), in this process and in the
  ``localdepth`` shim subprocesses use. Each page works on a linked copy of that cache
  (:func:`page_home`) whose new conversions join the shared one (:func:`keep_conversions`).
* :class:`Runner` runs one document's commands in order in its sandbox: plain ``localdepth ...``
  lines in process (the console script's own ``main``), a ``localdepth serve`` line in a thread
  (it stays up for the ``curl`` lines after it), a plain ``python SCRIPT.py ...`` (the
  benchmarks) in process through ``runpy``, everything else (pipes, loops, ``curl``) through
  ``bash`` with ``localdepth`` and ``python`` on ``PATH``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
#: the pages a reader follows: the README, a folder's own README (comfyui/) and docs/
DOCS = [ROOT / "README.md", *sorted(ROOT.glob("*/README.md")), *sorted((ROOT / "docs").glob("*.md"))]
#: benchmark reports (written by the command they record): that command must be on a page of DOCS, which runs it
REPORTS = sorted((ROOT / "docs" / "bench").glob("*.md"))
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                    re.S | re.M)


@dataclass(frozen=True)
class DocCommand:
    """One command as a document shows it: ``text`` without its trailing comment."""

    doc: str    # path relative to the repository: README.md, docs/scene.md
    line: int   # 1-based line of its first line
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


@dataclass(frozen=True)
class Snippet:
    doc: str
    line: int
    code: str


def _blocks(path: Path):
    text = path.read_text()
    for m in _FENCE.finditer(text):
        first = text.count("\n", 0, m.start("body")) + 1
        yield m.group("lang").lower(), first, m.group("body")


def _unquoted(text: str):
    """``(index, char)`` of each character outside single/double quotes (shell rules, no escapes
    inside single quotes)."""
    quote = None
    escaped = False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
            continue
        if c == "\\" and quote != "'":
            escaped = True
            continue
        if quote:
            if c == quote:
                quote = None
            continue
        if c in "'\"":
            quote = c
            continue
        yield i, c


def strip_comment(text: str) -> str:
    """The command without a trailing ``# comment`` (a ``#`` outside quotes after a space)."""
    for i, c in _unquoted(text):
        if c == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def _complete(text: str) -> bool:
    """Quotes closed and every ``for``/``while`` closed by ``done``."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return False
    opened = sum(w in ("for", "while", "until") for w in words)
    return opened <= sum(w.rstrip(";") == "done" for w in words)


def documented_commands(docs=DOCS) -> list[DocCommand]:
    """Every command line of every shell code block of ``docs``, in document order."""
    out = []
    for path in docs:
        rel = path.relative_to(ROOT).as_posix()
        for lang, first, body in _blocks(path):
            if lang not in SHELL_LANGUAGES:
                continue
            pending, start = "", 0
            for n, raw in enumerate(body.splitlines()):
                line = raw.strip()
                if not pending and (not line or line.startswith("#")):
                    continue
                if not pending:
                    start = first + n
                if pending and not pending.endswith("\n"):
                    pending += " "
                if line.endswith("\\") and not line.endswith("\\\\"):
                    pending += line[:-1].rstrip()
                    continue
                pending += strip_comment(line) if _complete(pending + line) else raw
                if not _complete(pending):
                    pending += "\n"
                    continue
                out.append(DocCommand(rel, start, re.sub(r"[ \t]+", " ", pending.strip())))
                pending = ""
            if pending:
                raise AssertionError(f"{rel}:{start}: a command that never ends (an open quote or loop): {pending!r}")
    return out


def subcommand_parsers(parser=None, prefix: tuple[str, ...] = ()):
    """``(("models", "add"), parser)`` for every subcommand of ``localdepth``, nested ones too."""
    import argparse

    if parser is None:
        from localdepth.cli.main import build_parser

        parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from subcommand_parsers(sub, (*prefix, name))


def help_examples() -> list[DocCommand]:
    """The ``examples:`` that a subcommand's ``--help`` shows (``localdepth scene --help``): one
    per line, the command before its two-space-separated description."""
    out = []
    for names, sub in subcommand_parsers():
        text = sub.format_help()
        block = re.search(r"^examples:\n((?:[ \t]+\S.*\n?)+)", text, re.M)
        if not block:
            continue
        first = text.count("\n", 0, block.start(1)) + 1
        for n, line in enumerate(block.group(1).splitlines()):
            out.append(DocCommand(f"localdepth {' '.join(names)} --help", first + n,
                                  re.split(r"\s{2,}", line.strip())[0]))
    return out


def python_snippets(docs=DOCS) -> list[Snippet]:
    return [Snippet(path.relative_to(ROOT).as_posix(), first, body)
            for path in docs for lang, first, body in _blocks(path) if lang == "python"]


def unquoted_shell_syntax(text: str) -> bool:
    """Does the command need a shell: pipes, ``;``, ``&&``, redirections, variables, globs, loops?"""
    if re.match(r"^(for|while|until|if|cd)\b", text):
        return True
    return any(c in "|;&<>$`*?[]()\n" for _, c in _unquoted(text))


ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def split_env(words: list[str]) -> tuple[dict, list[str]]:
    """``['HF_HUB_OFFLINE=1', 'localdepth', 'run', ...]`` -> ``({'HF_HUB_OFFLINE': '1'}, ['localdepth', ...])``."""
    env = {}
    while words and ENV_ASSIGNMENT.match(words[0]):
        key, _, value = words[0].partition("=")
        env[key] = value
        words = words[1:]
    return env, words


def localdepth_argv(text: str) -> tuple[dict, list[str]] | None:
    """``(env, argv)`` when the command is one plain ``localdepth ...`` / ``python -m localdepth ...``
    call (run in process), else None (run through bash)."""
    if re.match(r"^localdepth serve [^|;&]*&$", text):  # a server started in the background
        text = text[:-1].rstrip()
    if unquoted_shell_syntax(text):
        return None
    env, words = split_env(shlex.split(text))
    if words[:1] == ["localdepth"]:
        return env, words[1:]
    if words[:3] == ["python", "-m", "localdepth"]:
        return env, words[3:]
    return None


def python_script_argv(text: str) -> tuple[dict, list[str]] | None:
    """``(env, [script, args...])`` when the command is one plain ``python SCRIPT.py ...`` call
    (``PYTHONPATH=src python benchmarks/...``: run in process, without a new interpreter), else None."""
    if unquoted_shell_syntax(text):
        return None
    env, words = split_env(shlex.split(text))
    if words[:1] == ["python"] and len(words) > 1 and words[1].endswith(".py"):
        return env, words[1:]
    return None


# ----------------------------------------------------------------------------- tiny models

#: Depth Anything 3 stand-ins: the real design at tiny widths (tests/test_da3_outputs.py's rows)
def tiny_da3_architectures() -> dict:
    from localdepth.networks.da3.config import Architecture

    any_view = Architecture(32, 4, 2, (0, 1, 2, 3), 2, 2, 2, True, "dualdpt", 16, (8, 16, 32, 32), True)
    single = Architecture(32, 4, 2, (0, 1, 2, 3), -1, -1, -1, False, "dpt", 16, (8, 16, 32, 32), False)
    from localdepth.networks.da3 import ARCHITECTURES

    return {name: (single if not row.multi_view else any_view) for name, row in ARCHITECTURES.items()}


@contextlib.contextmanager
def _da3_table(rows: dict):
    from localdepth.networks.da3 import ARCHITECTURES

    saved = dict(ARCHITECTURES)
    ARCHITECTURES.update(rows)
    try:
        yield
    finally:
        ARCHITECTURES.clear()
        ARCHITECTURES.update(saved)


_RELEASED_DA3: dict = {}


def tiny_da3():
    """Depth Anything 3's architecture table with the tiny rows, for as long as the block runs."""
    from localdepth.networks.da3 import ARCHITECTURES

    if not _RELEASED_DA3:
        _RELEASED_DA3.update(ARCHITECTURES)
    return _da3_table(tiny_da3_architectures())


def released_da3():
    """The released Depth Anything 3 rows again (inside :func:`tiny_da3`), as a new interpreter has
    them: a script (``python benchmarks/da3_vs_official.py``) builds the real networks."""
    from localdepth.networks.da3 import ARCHITECTURES

    return _da3_table(_RELEASED_DA3 or dict(ARCHITECTURES))


def _save_tiny_da3(folder: Path, model_name: str, seed: int) -> None:
    import torch
    from safetensors.torch import save_model

    from localdepth.networks.da3 import DepthAnything3Network

    arch = tiny_da3_architectures()[model_name]
    torch.manual_seed(seed)
    net = DepthAnything3Network(arch, model_name)
    with torch.no_grad():  # a usable random camera: fields of view near 1 rad (as test_da3_outputs.py)
        if arch.camera:
            net.cam_dec.fc_fov[0].weight.mul_(0.05)
            net.cam_dec.fc_fov[0].bias.copy_(torch.tensor([1.0, 1.2]))
    folder.mkdir(parents=True, exist_ok=True)
    save_model(net, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_name": model_name}))


def _save_tiny_vda(path: Path, metric: bool, seed: int) -> None:
    """Video Depth Anything at tiny widths (64-wide, 12-block encoder: the loader reads the sizes
    from the tensors), its last convolution lifted so that the random output is not all ReLU zeros."""
    import torch
    from safetensors.torch import save_model

    from localdepth.networks.dinov2 import ViTConfig
    from localdepth.networks.vda import LAYERS_BY_DEPTH, VDAConfig, VideoDepthAnything

    torch.manual_seed(seed)
    config = VDAConfig(ViTConfig(embed_dim=64, depth=12, num_heads=1, mlp_hidden=128), 32, (32, 32, 64, 64),
                       LAYERS_BY_DEPTH[12])
    net = VideoDepthAnything(config).eval()
    last = net.head.scratch.output_conv2[2]  # conv, ReLU, *conv*, ReLU
    with torch.no_grad():
        last.bias.fill_(3.0 if metric else 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(net, str(path))


def build_tiny_models(store: Path, shared: Path) -> dict[str, Path]:
    """One tiny random model per registry entry that the tests can stand in for: ``{name: path}``
    where path is a Hugging Face-format folder, or a file named as the cache names it."""
    from conftest import (PYDNET, save_tiny_depth_anything, save_tiny_depth_pro, save_tiny_prompt_depth_anything,
                          save_tiny_zoedepth)
    from localdepth import registry
    from localdepth.weights import converted_name

    made: dict[str, Path] = {}
    by_key: dict[tuple, Path] = {}

    def once(key: tuple, build) -> Path:
        if key not in by_key:
            by_key[key] = build(store / "_".join(str(k) for k in key))
        return by_key[key]

    for spec in registry.MODELS.values():
        family = spec.family
        if family in ("depth-anything-v2", "depth-anything-v1"):
            made[spec.name] = once(("da", "relative"), lambda p: save_tiny_depth_anything(p))
        elif family == "depth-anything-v2-metric":
            made[spec.name] = once(("da", "metric", int(spec.max_depth)),
                                   lambda p, m=int(spec.max_depth): save_tiny_depth_anything(p, "metric", m, seed=1))
        elif family == "depth-pro":
            made[spec.name] = once(("depth-pro",), save_tiny_depth_pro)
        elif family == "zoedepth":  # the deepest depth of its bins is checked against the entry's
            bins = ("nyu", 10.0) if spec.max_depth <= 10 else ("kitti", float(spec.max_depth))
            made[spec.name] = once(("zoedepth", bins[0]), lambda p, b=bins: save_tiny_zoedepth(p, bins=b))
        elif family == "prompt-depth-anything":
            made[spec.name] = once(("prompt-da",), save_tiny_prompt_depth_anything)
        elif family == "depth-anything-3":
            made[spec.name] = once(("da3", spec.architecture),
                                   lambda p, a=spec.architecture: (_save_tiny_da3(p, a, seed=0), p)[1])
        elif spec.format == "vda":
            name = converted_name(spec.files[0].filename)
            metric = spec.output == "depth"
            folder = once(("vda", metric), lambda p, m=metric: (_save_tiny_vda(p / "net.safetensors", m, 0), p)[1])
            made[spec.name] = (folder, name)  # type: ignore[assignment]  # stored under the cache's file name
        elif family == "pydnet" and PYDNET.is_file():
            made[spec.name] = PYDNET  # the real network: 2 MB, from ../shared
    return made


def fill_model_cache(home: Path, models: dict) -> None:
    """``$LOCALDEPTH_HOME/models/<name>/`` for every model, as ``models add`` lays it out; files
    are hard links (a cache writes new files, never into old ones)."""
    from localdepth import registry

    def link(src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    for name, where in models.items():
        target = home / "models" / name
        spec = registry.get(name)
        if isinstance(where, tuple):  # (folder, cache file name)
            folder, filename = where
            link(folder / "net.safetensors", target / filename)
        elif where.is_dir():
            for f in where.iterdir():
                if f.is_file():
                    link(f, target / f.name)
        else:
            link(where, target / spec.files[0].filename)


def link_tree(src: Path, dst: Path) -> None:
    """``dst`` as a copy of the folder ``src`` whose files are hard links (copies where links fail)."""
    for folder, dirs, files in os.walk(src):
        target = dst / Path(folder).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            if not (target / name).exists():
                try:
                    os.link(Path(folder) / name, target / name)
                except OSError:
                    shutil.copy2(Path(folder) / name, target / name)


def page_home(shared: Path, page: Path) -> None:
    """A page's own localdepth cache (``$LOCALDEPTH_HOME``): the shared one's models and
    conversions, linked. What a page does to its cache (``models cache --clear``, ``models add``)
    stays on that page; :func:`keep_conversions` hands its new conversions back."""
    link_tree(shared, page)


def keep_conversions(page: Path, shared: Path) -> None:
    """The complete conversions a page made (``converted/<model>/<weights id>/<entry>``, never a
    staging folder) and its weights' verification records, added to the shared cache, so that a
    conversion made once serves every later page."""
    converted = page / "converted"
    for entry in converted.glob("*/*/*") if converted.is_dir() else ():
        target = shared / entry.relative_to(page)
        if entry.is_dir() and not entry.name.startswith(".") and not target.exists():
            staging = target.with_name(f".{target.name}.staging-{os.getpid()}-docs")
            link_tree(entry, staging)
            staging.rename(target)
    if (page / "verified").is_dir():
        link_tree(page / "verified", shared / "verified")


# ----------------------------------------------------------------------------- inputs


def _write_rgb(path: Path, rgb: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _read_rgb(path: Path, width: int | None = None) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path))
    if width and bgr.shape[1] != width:
        bgr = cv2.resize(bgr, (width, round(bgr.shape[0] * width / bgr.shape[1])), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _tum_line(i: int, pose: np.ndarray) -> str:
    from scipy.spatial.transform import Rotation

    qx, qy, qz, qw = Rotation.from_matrix(pose[:3, :3]).as_quat()
    tx, ty, tz = pose[:3, 3]
    return f"{i / 30:.6f} {tx:.6f} {ty:.6f} {tz:.6f} {qx:.8f} {qy:.8f} {qz:.8f} {qw:.8f}"


def walk_poses(n: int, seed: int = 0) -> np.ndarray:
    """``n`` camera-to-world poses of a smooth walk (turning slowly, moving forward)."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        poses[i, :3, :3] = Rotation.from_euler("yxz", [0.02 * i, 0.005 * np.sin(i), 0.0]).as_matrix()
        poses[i, :3, 3] = [0.3 * np.sin(0.05 * i), 0.01 * rng.standard_normal(), 0.04 * i]
    return poses


def write_redwood_log(path: Path, poses: np.ndarray) -> Path:
    lines = []
    for i, pose in enumerate(poses):
        lines.append(f"{i} {i} {i + 1}")
        lines += [" ".join(f"{v:.12g}" for v in row) for row in pose]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_tum(path: Path, poses: np.ndarray) -> Path:
    path.write_text("# timestamp tx ty tz qx qy qz qw\n" + "\n".join(_tum_line(i, p) for i, p in enumerate(poses)) + "\n")
    return path


def make_inputs(folder: Path, shared: Path, fixtures: dict) -> None:
    """Write every input the documents name into ``folder``: ``fixtures`` maps a relative path to
    a callable ``(path, shared) -> None`` (tests/test_documented_commands.py's table)."""
    for rel, make in fixtures.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path, shared)


# ----------------------------------------------------------------------------- running


@dataclass
class Outcome:
    command: DocCommand
    ran: str            # the command as run (after substitutions)
    returncode: int
    output: str         # stdout + stderr, for the report
    seconds: float
    cpu_seconds: float  # this process's and its children's
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.problems


#: the options whose value is a file the command must have written
OUTPUT_OPTIONS = ("-o", "--output", "--pointcloud", "--mesh", "--json", "--markdown")


def written_paths(argv: list[str]) -> list[str]:
    """Files a successful command must leave behind (its ``-o``/``--output``/... values)."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in OUTPUT_OPTIONS and not argv[i + 1].startswith("-")]


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (a command's subprocesses)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """``os.environ`` with ``values`` (a command's ``NAME=value`` prefix) for the block."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Runner:
    """Runs one document's commands, in order, in ``sandbox``, in the environment and working
    folder the caller set for the whole document (the sandbox, the isolated caches)."""

    def __init__(self, sandbox: Path, bin_dir: Path, curl_home: Path):
        self.sandbox, self.bin_dir, self.curl_home = sandbox, bin_dir, curl_home
        self.server: _Server | None = None

    # -- the three ways a command runs

    def in_process(self, env: dict, argv: list[str]) -> tuple[int, str]:
        from localdepth.cli.main import main

        buffer = io.StringIO()
        with environment(env), contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: --help (0) or a usage error (2)
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        return int(code or 0), buffer.getvalue()

    def script_in_process(self, env: dict, argv: list[str]) -> tuple[int, str]:
        """``python SCRIPT args`` as ``runpy`` runs it (``__main__``, ``sys.argv``), in this process:
        a benchmark's start costs no new interpreter. What a script may change for the process
        (the environment, ``sys.path``, PyTorch's threads, warning filters) is put back after it."""
        import runpy
        import traceback
        import warnings

        import torch

        buffer = io.StringIO()
        saved_environ, saved_path, saved_argv = dict(os.environ), list(sys.path), sys.argv
        threads = torch.get_num_threads()
        code = 0
        try:
            with environment(env), contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer), \
                    warnings.catch_warnings(), released_da3():
                sys.argv = list(argv)
                try:
                    runpy.run_path(argv[0], run_name="__main__")
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                    if not isinstance(e.code, (int, type(None))):
                        print(e.code, file=sys.stderr)
                except Exception:  # noqa: BLE001 - the report shows it
                    buffer.write(traceback.format_exc(limit=6))
                    code = 1
        finally:
            sys.argv, sys.path[:] = saved_argv, saved_path
            os.environ.clear()
            os.environ.update(saved_environ)
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        return int(code or 0), buffer.getvalue()

    def in_bash(self, text: str, timeout: float) -> tuple[int, str]:
        env = {**os.environ, "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               "CURL_HOME": str(self.curl_home)}
        try:
            proc = subprocess.run(["bash", "-c", f"set -eo pipefail\n{text}"], cwd=self.sandbox, env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return 124, f"timed out after {timeout:.0f} s\n{(e.stdout or '')}{(e.stderr or '')}"
        return proc.returncode, proc.stdout + proc.stderr

    def serve(self, env: dict, argv: list[str]) -> tuple[int, str]:
        self.stop_server()
        self.server = _Server(self, env, argv)
        return self.server.wait_ready()

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # -- one command

    def run(self, command: DocCommand, text: str, *, timeout: float = 600) -> Outcome:
        t0, cpu0 = time.perf_counter(), cpu_seconds()
        plain = localdepth_argv(text)
        script = python_script_argv(text) if plain is None else None
        if plain is not None and plain[1][:1] == ["serve"]:
            code, output = self.serve(*plain)
        elif plain is not None:
            code, output = self.in_process(*plain)
        elif script is not None:
            code, output = self.script_in_process(*script)
        else:
            code, output = self.in_bash(text, timeout)
        outcome = Outcome(command, text, code, output, time.perf_counter() - t0, cpu_seconds() - cpu0)
        if code == 0:
            if re.search(r"^localdepth: error:", output, re.M):
                outcome.problems.append("exit 0, but it printed an error line")
            if plain is not None or script is not None:
                for path in written_paths((plain or script)[1]):
                    if not (self.sandbox / path).exists():
                        outcome.problems.append(f"exit 0, but {path} was not written")
        return outcome


class _Server:
    """``localdepth serve ...`` (the command's own ``main``) in a thread of this process, until
    :meth:`stop`; the tiny Depth Anything 3 rows stay in force for its requests."""

    def __init__(self, runner: Runner, env: dict, argv: list[str]):
        import uvicorn

        self.runner, self.argv = runner, argv
        self.env = environment(env)  # a NAME=value prefix lasts as long as the server
        self.env.__enter__()
        self.instances: list = []
        self.output = io.StringIO()
        self.result: list[int] = []
        original = uvicorn.Server
        instances = self.instances

        class Recorded(original):  # the CLI builds its own uvicorn.Server: keep a handle to stop it
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                instances.append(self)

        self._patch = (uvicorn, original)
        uvicorn.Server = Recorded
        port = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--port"), "8000")
        self.base = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self._main, name="localdepth-serve", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        from localdepth.cli.main import main

        try:
            self.result.append(main(self.argv))
        except BaseException as e:  # noqa: BLE001 - reported by wait_ready
            self.output.write(f"{type(e).__name__}: {e}\n")
            self.result.append(2)

    def wait_ready(self, timeout: float = 300) -> tuple[int, str]:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.result:
                return self.result[0] or 1, f"`localdepth serve` stopped: {self.output.getvalue()}"
            try:
                r = httpx.get(f"{self.base}/healthz", timeout=2)
                if r.status_code == 200:
                    return 0, r.text
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        return 124, "`localdepth serve` was not ready in time"

    def stop(self) -> None:
        uvicorn, original = self._patch
        for server in self.instances:
            server.should_exit = True
        self.thread.join(60)
        uvicorn.Server = original
        self.env.__exit__(None, None, None)


def write_shims(bin_dir: Path) -> None:
    """``localdepth`` and ``python`` for commands that run through bash: this interpreter, the
    checkout's ``src`` first, and the tiny Depth Anything 3 rows in force (as in process)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "localdepth").write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path[:0] = [{str(ROOT / 'src')!r}, {str(TESTS)!r}]\n"
        "import doc_harness\n"
        "doc_harness.tiny_da3().__enter__()\n"
        "from localdepth.cli.main import main\n"
        "sys.exit(main())\n")
    (bin_dir / "python").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    for name in ("localdepth", "python"):
        (bin_dir / name).chmod(0o755)
