"""Every command shown in README.md and docs/*.md runs, offline, in a test, so that a documented
command cannot fail (issue 19).

Each document is followed as a reader would: its commands (and ``python`` snippets) run in the
order it shows them, in a sandbox folder of its own that holds the files they name (the INPUTS
table), with every registry model answered by a tiny random model of its family in an isolated
cache (tests/doc_harness.py). A command passes when it exits 0, prints no error line and writes
the files its ``-o``/``--output``/``--pointcloud``... name; ``curl`` fails on an HTTP error.

What may differ from the page, and why, is in two tables, and nowhere else:

* SUBSTITUTIONS: edits made to a command before it runs (a free port instead of 8000, a local
  server instead of example.org, fewer rounds for a benchmark). Each one must still match a
  documented command, or the test fails (a stale entry hides nothing).
* SKIPPED: commands that cannot run here, with the reason. Everything else runs: a new line in
  a document is run by the next test run, so it cannot slip by.

How to add a command or a fixture: docs/testing.md, "Documented commands".
"""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import re
import shutil
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import doc_harness as h
from conftest import IMAGES, PYDNET, RGBD, SHARED, save_tiny_depth_anything
from server_support import free_port

# ----------------------------------------------------------------------------- the tables


@dataclass(frozen=True)
class Substitution:
    """``pattern`` (a regular expression) -> ``replacement`` in every command it matches; ``append``
    adds arguments at the end (argparse keeps an option's last value). ``{port}``,
    ``{files_port}`` and ``{shared}`` are filled in at run time."""

    pattern: str
    replacement: str | None = None
    append: str = ""
    why: str = ""

    def apply(self, text: str) -> str:
        if not re.search(self.pattern, text):
            return text
        if self.replacement is not None:
            text = re.sub(self.pattern, self.replacement, text)
        return f"{text} {self.append}" if self.append else text


SUBSTITUTIONS = [
    Substitution(r"127\.0\.0\.1:\d+", "127.0.0.1:{port}",
                 why="a free port: 8000 may be taken on a shared machine, and tests run side by side"),
    Substitution(r"(?<=--port )\d+", "{port}", why="the same free port"),
    Substitution(r"^localdepth serve (?!.*--port)", append="--port {port}", why="the same free port (default 8000)"),
    Substitution(r"https://example\.org/", "http://127.0.0.1:{files_port}/",
                 why="no internet: a file server on 127.0.0.1 serves the same path from the sandbox"),
    Substitution(r"/work/wt/shared\b", "{shared}",
                 why="the committed benchmark report records the absolute path of the photo it measured"),
    Substitution(r"/models/optimized_pydnet\+\+\.tflite", "{shared}/models/pydnet/optimized_pydnet++.tflite",
                 why="an example absolute path: the real PyDNet++ file from ../shared"),
    # benchmarks and bench runs, at reduced size (the command as written, with fewer rounds)
    Substitution(r"^localdepth bench --model depth-anything-v2-small --backend torch,onnx,openvino",
                 append="--size 140 --rounds 1 --runs 1 --e2e-images 1 --folder-images 2",
                 why="a record of a 10-minute measurement: every backend and precision, one small round"),
    Substitution(r"^localdepth video .*-m (metric-)?video-depth-anything-small", append="--input-size 112",
                 why="a small network input: the temporal attention at 518 px takes a minute per clip here"),
    Substitution(r"^localdepth bench --model da3-small", append="--runs 1 --warmup 0 --e2e-images 1",
                 why="fewer runs"),
    Substitution(r"benchmarks/da3_vs_official\.py",
                 append="--views 1 --runs 1 --warmup 0 --dtypes fp32 --height 140 --width 196",
                 why="one small view, one run: two full-size networks"),
    Substitution(r"benchmarks/distributed_throughput\.py", append="--copies 1 --workers 1",
                 why="one Ray job of 6 photos instead of two of 60"),
    Substitution(r"benchmarks/reference_fidelity\.py", append="--runs 1 --input-size 140 --size 140 196",
                 why="one run instead of 25, at a 140 px input (the comparison is the same at any size)"),
    Substitution(r"benchmarks/scene_memory\.py", append="--views 2 --size 320x240", why="two small views"),
    Substitution(r"benchmarks/server_memory\.py", append="--requests 4 --size 320x240 --runs 1",
                 why="a few small requests"),
    Substitution(r"benchmarks/video_flicker\.py", append="--modes align", why="one mode of three"),
    Substitution(r"benchmarks/video_depth_anything\.py",
                 append="--input-size 70 --rounds 1 --rss-frames 8", why="a small network input, few frames"),
    Substitution(r"^localdepth bench --model depth-anything-v2-small --backend (mlx,torch|torch,mlx) ",
                 append="--size 140 --rounds 1 --runs 1 --e2e-images 1 --folder-images 0",
                 why="the Mac measurement, here on MLX's CPU build (a reference BLAS): one small round, not 9 minutes"),
    Substitution(r"^localdepth finetune --model ", append="--steps 2 --input-size 70 --batch-size 2",
                 why="two steps at a 70 px input: the recipe's defaults (10 epochs at 518) are hours on a CPU"),
    Substitution(r"benchmarks/finetune_speed\.py", append="--size 70 --steps 2 --train head",
                 why="both precisions, the decoder only, two steps at 70 px: a process per row, and full-size Small "
                     "at 518 takes 10 minutes (full and LoRA training: tests/test_finetune.py)"),
    Substitution(r"benchmarks/finetune_known_answer\.py", append="--steps 2", why="two steps per task, not 60"),
    Substitution(r"benchmarks/photo3d_speed\.py", append="--models pydnet --paths circle --seconds 1 --fps 10 --size 240",
                 why="one short, small video of the four 4-second 720p ones, from PyDNet++'s depth (Depth Anything's "
                     "row is the same code after a 20-second OpenVINO conversion of full-size Small)"),
]

_PYTEST = "runs the test suite, of which this harness is part"
SKIPPED = [
    (r"^git clone ", "needs git and the network (this checkout is the clone)"),
    (r"^python3 -m venv \.venv && \. \.venv/bin/activate && pip install",
     "builds a fresh .venv from the network: CI runs exactly these lines (`bash .ci/run`; tests/test_readme.py "
     "checks they are the same), and its last step, `localdepth run photo.jpg`, runs here"),
    (r"^python3 -m venv \.venv && \. \.venv/bin/activate$", "makes the virtual environment (CI's set-up, .ci/run)"),
    (r"^pip install ", "installs packages from the network"),
    (r"^sudo apt-get ", "installs system packages (CI's set-up, .ci/run)"),
    (r"^bash \.ci/run$", "CI itself: a fresh environment and the whole suite (tests/test_readme.py)"),
    (r"^python -m pytest\b", _PYTEST),
    (r"benchmarks/tolerance_matrix\.py --report", "every test file with numeric checks under six conditions: hours "
     "(the one-file command beside it runs, and tests/test_tolerance_tool.py runs the tool)"),
    (r"^LOCALDEPTH_SHARED=\S+ OMP_NUM_THREADS=1 python -m pytest\b", _PYTEST),
    (r"--webcam\b", "needs a camera (the frame loop is tested with clips and pipes: tests/test_video.py)"),
    (r"^ffmpeg -i (rtsp://|URL )", "needs a network camera and ffmpeg (a pipe on stdin is tested: "
                            "tests/test_video_depth_anything.py)"),
    (r"--ray-address auto", "needs a Ray cluster (and an S3 bucket or a shared folder)"),
    (r"^(colmap|ns-train) |^python examples/simple_trainer\.py ",
     "COLMAP, Nerfstudio and gsplat are not installed here; the COLMAP model is read back with pycolmap "
     "(tests/test_scene.py)"),
    (r"^cd web$|^npm (ci|run build)$", "the web page's build step needs npm and its registry; its output is "
                                       "committed and the page is tested in Chromium (tests/test_server_browser.py)"),
    (r"--vda-weights video_depth_anything_vits\.pth", "needs the released checkpoint (the Hub is unreachable here)"),
    (r"^bash benchmarks/gpu\.sh$", "needs an NVIDIA GPU with CUDA; its --dry-run (the same steps at tiny sizes on "
                                    "the CPU) runs in tests/test_gpu_bench.py"),
    (r"^/path/to/ComfyUI/venv/bin/pip install |^ln -s \S+ /path/to/ComfyUI/custom_nodes/",
     "needs a ComfyUI installation (its Python, its custom_nodes/); the nodes are loaded and called as ComfyUI "
     "does in tests/test_comfyui_nodes.py"),
]


def _photo(name: str, width: int = 320):
    def make(path: Path, shared: Path) -> None:
        h._write_rgb(path, h._read_rgb(shared / "data" / "images" / name, width))
    return make


def _frame(i: int, width: int | None = None):
    def make(path: Path, shared: Path) -> None:
        h._write_rgb(path, h._read_rgb(shared / "data" / "rgbd" / "livingroom" / "color" / f"{i:05d}.jpg", width))
    return make


def _copy(rel: str):
    def make(path: Path, shared: Path) -> None:
        shutil.copy2(shared / rel, path)
    return make


def _link(rel: str):
    def make(path: Path, shared: Path) -> None:
        path.symlink_to(shared / rel, target_is_directory=True)
    return make


def _text(content: str):
    def make(path: Path, shared: Path) -> None:
        path.write_text(content)
    return make


_ROOM_DEPTH: dict[bytes, np.ndarray] = {}


def _room_depth(room: Path) -> np.ndarray:
    """Metres that agree with the default model's map of room.jpg: ``1 / (0.2 + 0.8 t)`` of its
    disparity normalised to ``t`` in [0, 1] (1.25 to 5 m). The model is random, so the room's real
    sensor depth would not fit its map; depths that do (up to the scale and shift `align` finds)
    stand in for a sensor that agrees with a real model. From the cache ($LOCALDEPTH_HOME)."""
    key = room.read_bytes()
    if key not in _ROOM_DEPTH:
        import localdepth

        disparity = localdepth.load(backend="torch", device="cpu").predict(str(room)).map
        t = (disparity - disparity.min()) / (disparity.max() - disparity.min())
        _ROOM_DEPTH[key] = 1.0 / (0.2 + 0.8 * t)
    return _ROOM_DEPTH[key]


def _lidar_from_the_model(path: Path, shared: Path) -> None:
    """A phone-LiDAR-like 256 x 192 16-bit PNG of room.jpg's depth (``--reference-scale 256``: 1/256 m)."""
    import cv2

    depth = cv2.resize(_room_depth(path.parent / "room.jpg"), (256, 192), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), np.round(depth * 256).astype(np.uint16))


def _known_points_from_the_model(path: Path, shared: Path) -> None:
    """``u,v,depth_m`` rows for room.jpg at 40 pixels."""
    depth = _room_depth(path.parent / "room.jpg")
    rng = np.random.default_rng(0)
    vs, us = rng.integers(0, depth.shape[0], 40), rng.integers(0, depth.shape[1], 40)
    path.write_text("u,v,depth_m\n" + "".join(f"{u},{v},{depth[v, u]:.5f}\n" for u, v in zip(us, vs)))


def _clip(frames: int, fps: int = 10):
    def make(path: Path, shared: Path) -> None:
        from test_video import make_clip

        make_clip(path, shared / "data" / "images" / "demo01.jpg", n=frames, fps=fps, size=(160, 112))
    return make


def _tum(n: int, noise: float = 0.0, seed: int = 0):
    def make(path: Path, shared: Path) -> None:
        poses = h.walk_poses(n)
        if noise:
            poses[:, :3, 3] += np.random.default_rng(seed).normal(0, noise, (n, 3))
        h.write_tum(path, poses)
    return make


def _redwood(n: int):
    return lambda path, shared: h.write_redwood_log(path, h.walk_poses(n))


def _tiny_model_folder(path: Path, shared: Path) -> None:
    save_tiny_depth_anything(path)


def _depth_map(path: Path, shared: Path) -> None:
    """``depth_out/photo.npy`` and its sidecar, "a depth map you already have": what ``localdepth run
    photo.jpg`` writes, with the default model of the cache."""
    from localdepth.cli.main import main

    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["run", str(path.parent.parent / f"{path.stem}.jpg"), "--outdir", str(path.parent),
                     "--format", "npy", "--backend", "torch", "-q"]) == 0


def _manifest(frames: range):
    """A ``manifest:`` CSV of the Open3D living room's frames (16-bit millimetres), paths into ../shared."""
    def make(path: Path, shared: Path) -> None:
        room = shared / "data" / "rgbd" / "livingroom"
        path.write_text("rgb,depth,depth_scale\n" + "".join(
            f"{room / 'color' / f'{i:05d}.jpg'},{room / 'depth' / f'{i:05d}.png'},1000\n" for i in frames))
    return make


def _stray_capture(path: Path, shared: Path) -> None:
    """A Stray Scanner export (rgb.mp4, depth/, confidence/, camera_matrix.csv, odometry.csv), as
    tests/test_finetune.py makes one."""
    from test_finetune import _stray_capture as make

    make(path)


def _repository_files(sandbox: Path) -> None:
    """What ``PYTHONPATH=src python benchmarks/...`` needs in the sandbox: the package and tests
    (links), and copies of the benchmarks, the README and the committed reports they write to
    (a benchmark finds them beside itself, never in the checkout)."""
    (sandbox / "src").symlink_to(h.ROOT / "src", target_is_directory=True)
    (sandbox / "tests").symlink_to(h.TESTS, target_is_directory=True)
    shutil.copytree(h.ROOT / "benchmarks", sandbox / "benchmarks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(h.ROOT / "docs" / "bench", sandbox / "docs" / "bench")
    shutil.copy2(h.ROOT / "README.md", sandbox / "README.md")
    shutil.copy2(h.ROOT / "docs" / "make_pictures.py", sandbox / "docs" / "make_pictures.py")


#: the files the documents name, made in each sandbox (relative path -> maker(path, shared))
INPUTS = {
    "photo.jpg": _photo("demo01.jpg"),
    "image.jpg": _photo("demo04.jpg"),
    "demo01.jpg": _photo("demo01.jpg"),
    "www/photos/street.jpg": _photo("demo08.jpg"),  # https://example.org/photos/street.jpg (files_server)
    "room.jpg": _frame(0),  # 640 x 480, the intrinsics 525,525,319.5,239.5 are its own
    "scan.jpg": _frame(0, 320),
    "lidar.png": _lidar_from_the_model,
    "known.csv": _known_points_from_the_model,
    "a.jpg": _frame(1, 320), "b.jpg": _frame(2, 320), "c.jpg": _frame(3, 320),
    **{f"photos/{i:04d}.jpg": _frame(i, 320) for i in range(5)},  # scene/depth/0003.npy
    "images/one.jpg": _photo("demo11.jpg"), "images/two.jpg": _photo("demo17.jpg"),
    "shots/day/one.png": _photo("demo17.jpg"), "shots/night/two.png": _photo("demo18.jpg"),
    "list.txt": _text("photo.jpg\nimage.jpg\n"),
    "clip.mp4": _clip(15, fps=5),  # 3 s: the Python example starts at 2.5 s
    "walk.mp4": _clip(30),
    "trajectory.log": _copy("data/rgbd/livingroom/trajectory.log"),  # the ground truth of photos/
    "data/livingroom/trajectory.log": _copy("data/rgbd/livingroom/trajectory.log"),
    "groundtruth.txt": _tum(50),  # every 10th pose -> the 5 views of photos/
    "walk.log": _redwood(30),  # a pose per frame of walk.mp4
    "gt.txt": _tum(20), "pred.txt": _tum(20, noise=0.01),
    "path/to/data": _link("data/rgbd/livingroom"),  # a folder: dataset (color/ + depth/ + intrinsics)
    "path/to/rgbd": _link("data/rgbd/livingroom"),
    "Depth-Anything-V2-Small-hf": _tiny_model_folder,  # `models add NAME FOLDER`
    "optimized_pydnet++.tflite": _copy("models/pydnet/optimized_pydnet++.tflite"),
    "depth_out/photo.npy": _depth_map,  # photo3d --depth: a map made earlier (with its sidecar)
    "train.csv": _manifest(range(4)), "val.csv": _manifest(range(4, 5)),  # finetune --data/--val manifest:
    "scans": _link("data/rgbd"),  # finetune --data folder: three scenes (KITTI, living room, TUM)
    "capture": _stray_capture,  # finetune --data stray:
}

# ----------------------------------------------------------------------------- helpers


def skip_reason(text: str) -> str | None:
    return next((why for pattern, why in SKIPPED if re.search(pattern, text)), None)


def as_run(text: str) -> str:
    for sub in SUBSTITUTIONS:
        text = sub.apply(text)
    return text


PAGE_COMMANDS = h.documented_commands()
HELP_EXAMPLES = h.help_examples()
ALL_COMMANDS = PAGE_COMMANDS + HELP_EXAMPLES
SNIPPETS = h.python_snippets()
#: a page command that runs, by its text (the first page that shows it)
RUN_ON_A_PAGE = {c.text: c for c in reversed(PAGE_COMMANDS) if not skip_reason(c.text)}


def help_duplicate(command: h.DocCommand) -> str | None:
    """A ``--help`` example that a page shows word for word runs there (in the same sandbox and
    cache as any page), not a second time."""
    if command in HELP_EXAMPLES and command.text in RUN_ON_A_PAGE:
        page = RUN_ON_A_PAGE[command.text]
        return f"the same command runs on {page.doc}:{page.line}"
    return None
DOCUMENTS = sorted({c.doc for c in ALL_COMMANDS} | {s.doc for s in SNIPPETS},
                   key=lambda d: (d != "README.md", d))


# ----------------------------------------------------------------------------- what is run, what is not


def test_every_documented_command_is_run_or_skipped_with_a_reason():
    """The harness sees every command (the tricky forms included), and its tables are current."""
    texts = [c.text for c in ALL_COMMANDS]
    assert len(ALL_COMMANDS) > 80, f"only {len(ALL_COMMANDS)} commands found: is the extraction broken?"
    # forms that must come out as one command each
    assert any(t.startswith("for s in off align align+ema; do") and t.endswith("done") for t in texts)
    assert any(t.startswith("curl -s -F image=@photo.jpg") and "| python -c '" in t and t.endswith("m.max())'")
               for t in texts)
    assert any(t.startswith("localdepth eval -m gt -m pydnet -m depth-pro") and "--outdir eval_out" in t for t in texts)
    assert all(h.strip_comment(t) == t for t in texts), "a trailing comment was kept"
    for pattern, why in SKIPPED:
        assert why and any(re.search(pattern, t) for t in texts), f"SKIPPED entry matches no documented command: {pattern}"
    for sub in SUBSTITUTIONS:
        assert sub.why and any(re.search(sub.pattern, t) for t in texts), \
            f"SUBSTITUTIONS entry matches no documented command: {sub.pattern}"
    # a benchmark report records the command that wrote it: that command is on a page, and runs there
    recorded = h.documented_commands(h.REPORTS)
    assert recorded, "no command found in the reports of docs/bench/"
    for command in recorded:
        assert command.text in texts, f"{command}: shown on no page of README.md or docs/, so never run"


def test_a_page_cache_is_its_own_and_its_conversions_are_shared(tmp_path):
    """What one page does to its cache (``models cache --clear``) stays on it; a conversion it makes
    (never a staging folder) serves the later pages; the files are links, not copies."""
    shared, page = tmp_path / "shared", tmp_path / "page"
    old = shared / "converted" / "m" / "w1" / "openvino-fp32-x"
    old.mkdir(parents=True)
    (old / "model.xml").write_text("old")
    (shared / "models" / "m").mkdir(parents=True)
    (shared / "models" / "m" / "model.safetensors").write_text("weights")
    h.page_home(shared, page)
    assert (page / "models" / "m" / "model.safetensors").stat().st_ino == \
        (shared / "models" / "m" / "model.safetensors").stat().st_ino
    shutil.rmtree(page / "converted" / "m")  # the page's `models cache --clear`
    new = page / "converted" / "m" / "w2" / "onnx-fp32-y"
    new.mkdir(parents=True)
    (new / "model.onnx").write_text("new")
    (new.parent / ".onnx-int8-z.staging-1-abc").mkdir()  # a conversion under way
    h.keep_conversions(page, shared)
    assert (old / "model.xml").read_text() == "old"
    assert (shared / "converted" / "m" / "w2" / "onnx-fp32-y" / "model.onnx").read_text() == "new"
    assert not list((shared / "converted" / "m" / "w2").glob(".*"))


def test_help_of_every_subcommand():
    """``localdepth COMMAND --help`` (and ``models ACTION --help``) for every subcommand."""
    from localdepth.cli.main import main

    names = [names for names, _ in h.subcommand_parsers()]
    assert {("run",), ("scene",), ("eval-poses",), ("models", "add")} <= set(names)
    for argv in [(), *names]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
            main([*argv, "--help"])
        assert e.value.code == 0 and out.getvalue().startswith("usage: localdepth"), argv


# ----------------------------------------------------------------------------- running them


@pytest.fixture(scope="module")
def model_home(tmp_path_factory):
    """One localdepth cache for the module, a tiny model under every registry name: the
    documents share its models and conversions as a user's machine would (a conversion made once
    serves every later page), each through a linked copy of its own (doc_harness.page_home)."""
    home = tmp_path_factory.mktemp("ldhome")
    with h.tiny_da3():
        h.fill_model_cache(home, h.build_tiny_models(tmp_path_factory.mktemp("tiny-models"), SHARED))
    return home


@pytest.fixture(scope="module")
def files_server():
    """A file server on 127.0.0.1 standing in for https://example.org/; it serves the folder
    that the running document's sandbox sets."""
    state = {"root": os.getcwd()}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=state["root"], **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], state
    server.shutdown()


def _steps(doc: str):
    """The document's commands and Python snippets, in page order."""
    steps = [(c.line, c) for c in ALL_COMMANDS if c.doc == doc] + [(s.line, s) for s in SNIPPETS if s.doc == doc]
    return [s for _, s in sorted(steps, key=lambda x: x[0])]


def _run_snippet(snippet: h.Snippet) -> h.Outcome:
    t0, cpu0 = time.perf_counter(), time.process_time()
    out = io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(snippet.code, f"{snippet.doc}:{snippet.line}", "exec"), {"__name__": "__snippet__"})
    except Exception:  # noqa: BLE001 - the report shows it
        out.write(traceback.format_exc(limit=4))
        code = 1
    command = h.DocCommand(snippet.doc, snippet.line, "python snippet: " + snippet.code.strip().splitlines()[0])
    return h.Outcome(command, command.text, code, out.getvalue(), time.perf_counter() - t0, time.process_time() - cpu0)


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_documented_commands_run(doc, model_home, files_server, tmp_path, monkeypatch):
    """Every command and Python example of one document, in page order, as a reader runs them."""
    if not SHARED.is_dir() or not PYDNET.is_file() or not IMAGES.is_dir() or not RGBD.is_dir():
        pytest.skip(f"{SHARED} is absent: the documents' photos, frames and PyDNet++ come from shared/ "
                    "(README, Tests)")
    # ../shared from the sandbox, as from the checkout
    (tmp_path / "shared").symlink_to(SHARED, target_is_directory=True)
    sandbox = tmp_path / re.sub(r"\W+", "-", Path(doc).stem).strip("-")
    sandbox.mkdir()
    # the page's environment, for every command (in process, in the server's thread, through bash)
    monkeypatch.chdir(sandbox)
    t0 = time.perf_counter()
    home = tmp_path / "ldhome"  # the page's own cache: its `models cache --clear` leaves the others' alone
    h.page_home(model_home, home)
    for key, value in {"LOCALDEPTH_HOME": str(home), "HF_HOME": str(model_home / "hf"), "HF_HUB_OFFLINE": "1",
                       "LOCALDEPTH_SHARED": str(SHARED), "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LOCALDEPTH_AUTO_OPENVINO", raising=False)  # --backend auto as on a user's machine
    h.make_inputs(sandbox, SHARED, INPUTS)
    _repository_files(sandbox)
    setup_s = time.perf_counter() - t0
    bin_dir = tmp_path / "bin"
    h.write_shims(bin_dir)
    curl_home = tmp_path / "curl"
    curl_home.mkdir()
    (curl_home / ".curlrc").write_text("fail-with-body\nshow-error\n")  # an HTTP error is a failed command
    port = free_port()
    files_port, state = files_server
    state["root"] = str(sandbox / "www")
    runner = h.Runner(sandbox, bin_dir, curl_home)
    outcomes, skipped = [], []
    fill = {"port": str(port), "files_port": str(files_port), "shared": str(SHARED)}
    with h.tiny_da3():
        try:
            for step in _steps(doc):
                h.keep_conversions(home, model_home)  # before a later `models cache --clear` removes them
                if isinstance(step, h.Snippet):
                    outcomes.append(_run_snippet(step))
                    continue
                why = skip_reason(step.text) or help_duplicate(step)
                if why:
                    skipped.append((step, why))
                    continue
                text = as_run(step.text)
                for key, value in fill.items():
                    text = text.replace("{" + key + "}", value)
                outcomes.append(runner.run(step, text))
        finally:
            runner.stop_server()
            h.keep_conversions(home, model_home)
    timings = "\n".join([f"  {o.seconds:6.1f} s {o.cpu_seconds:6.1f} s CPU  {o.command}" for o in outcomes]
                         + [f"  skipped: {c}  ({why})" for c, why in skipped])
    print(f"{doc}: {len(outcomes)} run, {len(skipped)} skipped, {sum(o.seconds for o in outcomes):.0f} s "
          f"({sum(o.cpu_seconds for o in outcomes):.0f} s CPU), after {setup_s:.1f} s making its inputs\n{timings}")
    failed = [o for o in outcomes if not o.ok]
    assert not failed, "\n\n".join(
        f"{o.command}\n  ran: {o.ran}\n  exit {o.returncode}; {'; '.join(o.problems)}\n"
        + "\n".join("  | " + ln for ln in o.output.strip().splitlines()[-15:]) for o in failed)

