"""Nothing a user has is destroyed or silently overwritten (issue 20, items 1-7).

* a named output that is one of the inputs (by path, symbolic link or hard link) is refused, in
  every command that writes one, before anything is written;
* output names are unique per run, decided once by the input layer, recorded in the sidecars;
* the depth video, a copied model set and a scene are replaced whole or not at all: a failure
  or a SIGKILL at the worst moment leaves the previous result as it was (victim files are kept
  and compared byte for byte);
* a killed video run's spool is removed by the next run, which says so;
* full disks, folders that cannot be written and a broken LOCALDEPTH_HOME are one line each.

Kills happen at named points: ``LOCALDEPTH_TEST_CRASH_AT=NAME`` makes the process SIGKILL itself
there (:func:`localdepth.safety.crash_point`). A full disk is simulated as root can feel it too:
``RLIMIT_FSIZE`` in a child process (writes past it fail with EFBIG, SIGXFSZ ignored), or a
patched ``open`` in the writers' module that fails with ENOSPC; a folder that cannot be written is
a path through a file (ENOTDIR), which holds for root as well, where chmod would not.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from localdepth.errors import OutputClashError
from localdepth.safety import CRASH_AT_ENV, check_outputs

from conftest import rng_image


def run_cli(*args, env: dict | None = None, cwd=None, fsize: int | None = None) -> subprocess.CompletedProcess:
    """``python -m localdepth ARGS`` in a child; ``fsize``: its RLIMIT_FSIZE in bytes (a "full disk")."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "localdepth", *map(str, args)], capture_output=True, text=True,
                          env=environment, cwd=cwd, preexec_fn=limit if fsize else None, timeout=300)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("localdepth: error:")]


def one_error_line(text: str) -> str:
    """The one ``localdepth: error:`` line of ``text``, and no traceback."""
    assert "Traceback" not in text, text
    lines = error_lines(text)
    assert len(lines) == 1, text
    return lines[0]


def save_photo(path: Path, seed: int, size=(48, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng_image(*size, seed=seed)).save(path)
    return path


def write_clip(path: Path, frames: int = 8) -> Path:
    pytest.importorskip("av")
    from test_video import write_clip as write

    return write(path, [k / 24 for k in range(frames)])


def tiny(tiny_da_dir) -> list[str]:
    return ["--weights", str(tiny_da_dir), "--device", "cpu", "--input-size", "56", "-q"]


class _FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, f):
        self._f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def full_disk_for(monkeypatch, predicate) -> None:
    """The writers' module sees a full disk for the files where ``predicate(path)`` holds."""
    from localdepth import writers

    def choosy_open(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        writing = any(m in mode for m in "wxa")
        return _FullDisk(f) if writing and predicate(str(path)) else f

    monkeypatch.setattr(writers, "open", choosy_open, raising=False)


# ----------------------------------------------------------------------------- 1. outputs that are inputs

def test_one_file_is_seen_through_links_and_dots(tmp_path):
    victim = tmp_path / "clip.mp4"
    victim.write_bytes(b"precious")
    (tmp_path / "link.mp4").symlink_to(victim)
    os.link(victim, tmp_path / "hard.mp4")
    for output in (victim, tmp_path / "link.mp4", tmp_path / "hard.mp4", tmp_path / "sub" / ".." / "clip.mp4"):
        with pytest.raises(OutputClashError, match=r"is the input .*clip.mp4 itself: writing it would overwrite"):
            check_outputs([("--output", output)], [("the input", victim)])
    check_outputs([("--output", tmp_path / "other.mp4")], [("the input", victim), ("--image", None)])
    with pytest.raises(OutputClashError, match="are one file"):
        check_outputs([("--output", tmp_path / "a.ply"), ("--mesh", tmp_path / "x" / ".." / "a.ply")])
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_video_refuses_to_write_over_its_source_clip(tmp_path, tiny_da_dir, capsys, how):
    """`localdepth video clip.mp4 --output clip.mp4` replaced the source clip with the depth video."""
    from localdepth.cli.main import main

    clip = write_clip(tmp_path / "clip.mp4")
    before = clip.read_bytes()
    output = {"same": clip, "symlink": tmp_path / "link.mp4", "hardlink": tmp_path / "hard.mp4"}[how]
    if how == "symlink":
        output.symlink_to(clip)
    elif how == "hardlink":
        os.link(clip, output)
    assert main(["video", str(clip), "--output", str(output), *tiny(tiny_da_dir)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "would overwrite the input" in line and "--output" in line
    assert clip.read_bytes() == before


def test_video_frames_never_replace_the_images_they_come_from(tmp_path, tiny_da_dir, capsys):
    pytest.importorskip("av")
    from localdepth.cli.main import main

    frames = tmp_path / "frames"
    for i in range(3):
        save_photo(frames / f"{i:04d}.png", seed=i)
    before = {p.name: p.read_bytes() for p in frames.iterdir()}
    assert main(["video", str(frames), "--format", "png16", "--outdir", str(frames), *tiny(tiny_da_dir)]) == 2
    assert "would overwrite the input" in one_error_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in frames.iterdir()} == before


@pytest.mark.parametrize("argv", [
    "align {map} --output {map} --points {points}",
    "align {map} --output {tmp}/map.pfm --points {points}",  # its sidecar would be map.json, the map's
    "pointcloud {map} --output {map} --relative",
    "pointcloud {map} --image {photo} --output {photo}",
    "pointcloud {map} --output {tmp}/a.ply --mesh {tmp}/a.ply",
    "export --weights {weights} --output {weights}",
    "quantize --weights {weights} --calibration {tmp} --output {tmp}",
    "bench --image {photo} --json {photo}",
    "bench --image {map} --image {photo} --markdown {photo}",  # --image repeats: each photo is an input
    "bench --suite gpu --device cpu --quick --image {photo} --json {photo}",  # the GPU suite's dry run
], ids=["align-map", "align-sidecar", "pointcloud-map", "pointcloud-image", "pointcloud-mesh", "export-weights",
        "quantize-calibration", "bench-image", "bench-second-image", "bench-gpu-image"])
def test_every_command_with_a_named_output_refuses_its_inputs(tmp_path, tiny_da_dir, capsys, monkeypatch, argv):
    from localdepth import conversion
    from localdepth.cli.main import main

    depth = tmp_path / "map.npy"
    np.save(depth, np.full((8, 8), 2.0, np.float32))
    sidecar = tmp_path / "map.json"
    sidecar.write_text(json.dumps({"kind": "depth", "units": "m"}))
    points = tmp_path / "points.csv"
    points.write_text("u,v,depth_m\n1,1,2\n5,5,3\n2,6,4\n")
    photo = save_photo(tmp_path / "photo.png", seed=3)
    victims = {p: p.read_bytes() for p in (depth, sidecar, points, photo, *tiny_da_dir.iterdir())}
    monkeypatch.setattr(conversion, "convert", lambda *a, **k: pytest.fail("converted before refusing"))
    args = argv.format(map=depth, points=points, photo=photo, tmp=tmp_path, weights=tiny_da_dir).split()
    assert main(args) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "would overwrite the input" in line or "are one file" in line, line
    assert all(p.read_bytes() == data for p, data in victims.items())
    assert not (tmp_path / "a.ply").exists()


def test_eval_refuses_an_outdir_report_that_is_its_dataset(tmp_path, capsys):
    from localdepth.cli.main import main

    manifest = tmp_path / "eval.json"
    manifest.write_text("[]")
    assert main(["eval", "-m", "gt", "--dataset", f"manifest:{manifest}", "--outdir", str(tmp_path)]) == 2
    assert "would overwrite the input" in one_error_line(capsys.readouterr().err)
    assert manifest.read_text() == "[]"


def test_run_refuses_an_output_hard_linked_to_its_input(tmp_path, tiny_da_dir, capsys):
    from localdepth.cli.main import main

    photo = save_photo(tmp_path / "in" / "x.png", seed=1)
    before = photo.read_bytes()
    (tmp_path / "out").mkdir()
    os.link(photo, tmp_path / "out" / "x.png")
    assert main(["run", str(photo), "--outdir", str(tmp_path / "out"), "-f", "png16", *tiny(tiny_da_dir)]) == 1
    assert "would overwrite the input" in one_error_line(capsys.readouterr().err)
    assert photo.read_bytes() == before


def test_a_scene_never_writes_over_its_own_views(tmp_path, monkeypatch, capsys):
    pytest.importorskip("open3d", reason="the scene's point cloud is written through Open3D")
    pytest.importorskip("trimesh", reason="scene.glb is written through trimesh")
    from localdepth.cli import scene as scene_cli
    from localdepth.cli.main import main
    from scene_support import PlaneViews

    view = save_photo(tmp_path / "out" / "images" / "a.png", seed=2)  # the images/ of an earlier scene
    before = view.read_bytes()
    monkeypatch.setattr(scene_cli, "load_from_args", lambda args: PlaneViews())
    assert main(["scene", str(view), "--output", str(tmp_path / "out")]) == 2
    assert "would overwrite the input" in one_error_line(capsys.readouterr().err)
    assert view.read_bytes() == before


# ----------------------------------------------------------------------------- 2. unique output names

def test_two_inputs_of_one_name_keep_both_results_and_resume_by_input(tmp_path, tiny_da_dir, capsys):
    """`localdepth run d1/x.jpg d2/x.jpg` left one set of outputs and said "2 ok"."""
    from localdepth.cli.main import main

    one, two = save_photo(tmp_path / "d1" / "x.jpg", seed=1), save_photo(tmp_path / "d2" / "x.jpg", seed=2)
    out = tmp_path / "out"
    args = ["--outdir", str(out), "-f", "npy", *tiny(tiny_da_dir)]
    assert main(["run", str(one), str(two), *args]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x.json", "x.npy", "x_2.json", "x_2.npy"]
    first, second = (json.loads((out / n).read_text())["input"] for n in ("x.json", "x_2.json"))
    assert first == {"source": os.path.abspath(one), "name": "x.jpg"}
    assert second["source"] == os.path.abspath(two) and second["renamed_from"] == "x.jpg"
    assert not np.array_equal(np.load(out / "x.npy"), np.load(out / "x_2.npy"))
    made = {n: np.load(out / n) for n in ("x.npy", "x_2.npy")}

    capsys.readouterr()
    assert main(["run", str(one), str(two), "--skip-existing", *args]) == 0  # the same names again: resumed
    assert "0 ok, 0 failed, 2 skipped" in capsys.readouterr().err
    # the other order: x is now d2's name; the sidecars say the files are not its, so both are made again
    assert main(["run", str(two), str(one), "--skip-existing", *args]) == 0
    assert "2 ok, 0 failed, 0 skipped" in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(out / "x.npy"), made["x_2.npy"])
    assert json.loads((out / "x.json").read_text())["input"]["source"] == os.path.abspath(two)


def test_names_are_unique_over_every_file_an_input_writes(tmp_path, tiny_da_dir):
    """``a.jpg``'s colour picture is ``a_color.png``, which is also ``a_color.jpg``'s png16."""
    from localdepth.cli.main import main

    a, a_color = save_photo(tmp_path / "a.jpg", seed=1), save_photo(tmp_path / "a_color.jpg", seed=2)
    out = tmp_path / "out"
    assert main(["run", str(a), str(a_color), "--outdir", str(out), "-f", "png16,color", *tiny(tiny_da_dir)]) == 0
    sidecars = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    files = [entry["file"] for meta in sidecars for entry in meta["outputs"].values()]
    assert len(sidecars) == 2 and len(files) == len(set(files)) == 4
    assert {meta["input"]["source"] for meta in sidecars} == {os.path.abspath(a), os.path.abspath(a_color)}


def test_unique_outputs_is_deterministic_and_never_takes_another_inputs_name():
    from localdepth.inputs import InputItem, unique_outputs

    items = [InputItem(Path(p), Path(Path(p).name)) for p in ("x.jpg", "d/x.jpg", "x_2.jpg", "e/X.JPG", "a.jpg", "a.png")]
    names = [item.rel.as_posix() for item in unique_outputs(items)]
    # x_2 belongs to the third input, so the second x becomes x_3; case-insensitive; a.jpg/a.png fold
    assert names == ["x.jpg", "x_3.jpg", "x_2.jpg", "X_4.JPG", "a_jpg.jpg", "a_png.png"]
    assert [i.rel for i in unique_outputs(items)] == [i.rel for i in unique_outputs(items)]


def test_a_sequence_with_two_images_of_one_name_keeps_both_frames(tmp_path, tiny_da_dir):
    pytest.importorskip("av")
    from localdepth.cli.main import main

    frames = tmp_path / "frames"
    one, two = save_photo(tmp_path / "d1" / "f.png", seed=1), save_photo(tmp_path / "d2" / "f.png", seed=2)
    assert main(["video", str(one), str(two), "--format", "npz", "--outdir", str(frames), *tiny(tiny_da_dir)]) == 0
    assert sorted(p.name for p in frames.glob("*.npz")) == ["f.npz", "f_2.npz"]


def test_batch_lists_two_inputs_of_one_name_under_two_names(tmp_path):
    pytest.importorskip("pandas")
    from localdepth.distributed.sources import collect

    one, two = save_photo(tmp_path / "d1" / "x.jpg", seed=1), save_photo(tmp_path / "d2" / "x.jpg", seed=2)
    assert [s.rel for s in collect([str(one), str(two)])] == ["x.jpg", "x_2.jpg"]


# ----------------------------------------------------------------------------- 3. the depth video, whole or not at all

def test_a_kill_while_the_video_is_written_keeps_the_previous_video(tmp_path, tiny_da_dir):
    """A SIGKILL in the second pass replaced a good out.mp4 with an unreadable file."""
    clip = write_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out.mp4"
    out.write_bytes(clip.read_bytes())  # the previous result (any bytes do: they must stay as they are)
    r = run_cli("video", clip, "--output", out, "--side", *tiny(tiny_da_dir), env={CRASH_AT_ENV: "video-writing"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert out.read_bytes() == clip.read_bytes()


def test_a_full_temporary_folder_keeps_the_previous_video(tmp_path, tiny_da_dir):
    """A failure in the first pass (a full TMPDIR) deleted the existing output."""
    clip = write_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the previous depth video" * 100)  # 2.4 kB, under the limit below
    before = out.read_bytes()
    spools = tmp_path / "tmp"
    spools.mkdir()
    # 96x64 float32 maps are 24 kB a frame: the spool's first write fails (NumPy: "requested and written")
    r = run_cli("video", clip, "--output", out, *tiny(tiny_da_dir), fsize=16_000, env={"TMPDIR": str(spools)})
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert f"cannot write {spools}/localdepth-video-" in line and "set TMPDIR to a folder with room" in line, line
    assert out.read_bytes() == before
    assert not list(tmp_path.glob(".out.*")), "the temporary video was left behind"
    assert not list(spools.iterdir()), "the spool was left behind"


# ----------------------------------------------------------------------------- 4. spools of killed runs

_KILLED_SPOOL = """
import os, signal
import numpy as np
from localdepth.video.pipeline import _Spool
spool = _Spool(keep_rgb=False)
np.save(spool.dir / "0000000.npy", np.zeros((64, 96), np.float32))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_spool_of_a_killed_run_is_removed_by_the_next_one(tmp_path, tiny_da_dir, monkeypatch, capsys):
    """A SIGKILL leaked the video spool (209 MB for 177 frames)."""
    import tempfile

    from localdepth.cli.main import main

    spools = tmp_path / "tmp"
    spools.mkdir()
    killed = subprocess.run([sys.executable, "-c", _KILLED_SPOOL], env={**os.environ, "TMPDIR": str(spools)})
    assert killed.returncode == -signal.SIGKILL
    left = list(spools.glob("localdepth-video-*"))
    assert len(left) == 1 and (left[0] / "0000000.npy").is_file()
    monkeypatch.setattr(tempfile, "tempdir", str(spools))  # this process's temporary folder
    clip = write_clip(tmp_path / "clip.mp4")
    assert main(["video", str(clip), "--output", str(tmp_path / "b.mp4"), *tiny(tiny_da_dir)]) == 0
    err = capsys.readouterr().err
    assert f"localdepth: removed {left[0]} (0.0 MB), the video spool of a run that was killed" in err, err
    assert not list(spools.iterdir())


def test_only_abandoned_spools_of_this_user_are_removed(tmp_path):
    import fcntl

    from localdepth.video.pipeline import UNLOCKED_SPOOL_AGE_S, clean_stale_spools

    live = tmp_path / "localdepth-video-live"
    live.mkdir()
    (live / "0000000.npy").write_bytes(b"x")
    fd = os.open(live / ".lock", os.O_CREAT | os.O_WRONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a run in progress (another process, as far as flock is concerned)
    young, old = tmp_path / "localdepth-video-young", tmp_path / "localdepth-video-old"  # no lock file
    young.mkdir()
    old.mkdir()
    past = time.time() - UNLOCKED_SPOOL_AGE_S - 60
    os.utime(old, (past, past))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (tmp_path / "localdepth-video-link").symlink_to(elsewhere)
    lines: list[str] = []
    try:
        assert clean_stale_spools(tmp_path, say=lines.append) == [old]
        assert live.is_dir() and young.is_dir() and (elsewhere / "keep.txt").read_text() == "mine"
    finally:
        os.close(fd)  # the run ends without cleaning up (as a SIGKILL would)
    assert clean_stale_spools(tmp_path, say=lines.append) == [live]
    assert len(lines) == 2 and str(old) in lines[0] and str(live) in lines[1]


def test_video_help_says_where_the_spool_is():
    r = run_cli("video", "--help")
    text = " ".join(r.stdout.split())
    assert "localdepth-video-*" in text and "$TMPDIR" in text and "removes it" in text


# ----------------------------------------------------------------------------- 5. a model set, whole or not at all

def _a_set(folder: Path, tag: str) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"model.xml": f"<xml {tag}/>".encode(), "model.bin": tag.encode() * 1000,
             "report.json": json.dumps({"set": tag}).encode()}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


_COPY = """
import sys
from pathlib import Path
from localdepth.conversion import Converted, Target, copy_to
copy_to(Converted(Target("openvino", "int8"), Path(sys.argv[1]) / "model.xml"), Path(sys.argv[2]))
"""


def test_a_kill_while_a_model_set_is_copied_leaves_the_old_set(tmp_path):
    """`quantize --output`: a SIGKILL just after "cached:" left a new model.bin beside the old model.xml."""
    new = _a_set(tmp_path / "cache", "new")
    old = _a_set(tmp_path / "out", "old")
    env = {**os.environ, CRASH_AT_ENV: "copy-set"}
    r = subprocess.run([sys.executable, "-c", _COPY, tmp_path / "cache", tmp_path / "out"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert _contents(tmp_path / "out") == old  # the old set, whole
    from localdepth.conversion import Converted, Target, copy_to

    copy_to(Converted(Target("openvino", "int8"), tmp_path / "cache" / "model.xml"), tmp_path / "out")
    assert _contents(tmp_path / "out") == new  # the new set, whole
    # beside it, only the killed copy's staging folder (the one that finished cleaned up after itself)
    assert [p.name.split("-")[0] for p in tmp_path.iterdir() if p.name.startswith(".")] == [".out.staging"]


@pytest.mark.parametrize("exchange", [True, False])
def test_a_model_set_replaces_its_folder_with_or_without_an_atomic_exchange(tmp_path, monkeypatch, exchange):
    from localdepth import writers
    from localdepth.conversion import Converted, Target, copy_to

    new = _a_set(tmp_path / "cache", "new")
    _a_set(tmp_path / "out", "old")
    if not exchange:  # a system without renameat2/renamex_np: rename aside, then into place
        monkeypatch.setattr(writers, "_exchange", lambda a, b: False)
    copy_to(Converted(Target("openvino", "int8"), tmp_path / "cache" / "model.xml"), tmp_path / "out")
    assert _contents(tmp_path / "out") == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]  # nothing left beside it


def test_a_model_set_never_replaces_a_folder_with_other_files(tmp_path):
    from localdepth.conversion import Converted, Target, copy_to

    _a_set(tmp_path / "cache", "new")
    mine = tmp_path / "models"
    (mine / "notes.txt").parent.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputClashError, match="holds other files .*notes.txt"):
        copy_to(Converted(Target("openvino", "int8"), tmp_path / "cache" / "model.xml"), mine)
    assert _contents(mine) == {"notes.txt": b"mine"}


# ----------------------------------------------------------------------------- 6. a scene's marker

@pytest.fixture
def plane_scene(tmp_path, monkeypatch):
    pytest.importorskip("open3d", reason="the scene's point cloud is written through Open3D")
    pytest.importorskip("trimesh", reason="scene.glb is written through trimesh")
    from localdepth.cli import scene as scene_cli
    from localdepth.cli.main import main
    from scene_support import PlaneViews

    photos = [str(save_photo(tmp_path / "photos" / f"{i}.png", seed=i, size=(60, 80))) for i in range(2)]
    monkeypatch.setattr(scene_cli, "load_from_args", lambda args: PlaneViews())
    return lambda out: main(["scene", *photos, "--output", str(out)])


def test_a_failed_scene_leaves_no_marker_of_a_complete_one(tmp_path, monkeypatch, capsys, plane_scene):
    """After a failed `scene` (full disk), the old scene.json stayed beside the new files."""
    out = tmp_path / "scene"
    assert plane_scene(out) == 0
    assert (out / "scene.json").is_file()
    capsys.readouterr()
    full_disk_for(monkeypatch, lambda path: path.endswith(".glb"))
    assert plane_scene(out) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot write {out / 'scene.glb'}: No space left on device (ENOSPC)" in line
    assert not (out / "scene.json").exists()
    assert not list(out.glob(".*tmp*"))


# ----------------------------------------------------------------------------- 7. one line for the filesystem

def test_run_a_full_disk_costs_one_input_not_the_run(tmp_path, tiny_da_dir, monkeypatch, capsys):
    from localdepth.cli.main import main

    a, b = save_photo(tmp_path / "a.png", seed=1), save_photo(tmp_path / "b.png", seed=2)
    full_disk_for(monkeypatch, lambda path: Path(path).name.startswith(".b."))
    out = tmp_path / "out"
    assert main(["run", str(a), str(b), "--outdir", str(out), "-f", "npy", *tiny(tiny_da_dir)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"localdepth: error: {b}: cannot write {out / 'b.npy'}: No space left on device (ENOSPC); "
                    "free some space or choose another folder")
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.npy"]


def test_scene_video_and_run_under_a_file_are_one_line_each(tmp_path, tiny_da_dir, plane_scene, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder is expected: no one, root included, can write under it")
    assert plane_scene(blocker / "scene") == 2
    assert "Not a directory (ENOTDIR)" in one_error_line(capsys.readouterr().err)

    from localdepth.cli.main import main

    clip = write_clip(tmp_path / "clip.mp4")
    assert main(["video", str(clip), "--output", str(blocker / "out.mp4"), *tiny(tiny_da_dir)]) == 2
    assert f"cannot write {blocker / 'out.mp4'}" in one_error_line(capsys.readouterr().err)

    photo = save_photo(tmp_path / "a.png", seed=1)
    assert main(["run", str(photo), "--outdir", str(blocker / "out"), *tiny(tiny_da_dir)]) == 1
    assert "Not a directory (ENOTDIR)" in one_error_line(capsys.readouterr().err)


def test_models_add_and_conversions_with_an_unusable_home_are_one_line(tmp_path, tiny_da_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env = {"LOCALDEPTH_HOME": str(blocker / "home")}
    r = run_cli("models", "add", "depth-anything-v2-small", tiny_da_dir, env=env)
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert f"cannot write {blocker / 'home'}" in line and "set LOCALDEPTH_HOME to a folder you can write" in line
