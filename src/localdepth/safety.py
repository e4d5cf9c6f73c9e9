"""Distrust every input in one place.

* **Output containment**: an output path is its root joined with a relative path that has no
  ``..`` and is not absolute, and it must still lie under the root once symbolic links are
  followed. Everything that writes under an output root (``run``, ``batch``, ``video`` frames,
  ``run --pointcloud`` for several inputs) gets its paths from :func:`under_root`; a path that
  would escape raises :class:`UnsafePathError`, which costs that input only.
* **Names in messages**: :func:`quoted` shows a file name on one line (a newline in a name must
  not cut an error message in two); :func:`one_line` is the last guard where messages are printed.
* **Numeric options**: :data:`NUMERIC_OPTIONS` gives the range of every numeric command-line
  option and server parameter, by name; :func:`check_options` checks them all, for the command
  line (once, before any command runs) and for the server's settings and query parameters.
* **Named outputs**: every file a command writes under a name the user chose (``--output``,
  ``--mesh``, a sidecar beside them, a scene's files) goes through :func:`check_outputs` first:
  an output that is one of the command's inputs (the same path once links are followed, or the
  same file by device and inode: a hard link, a bind mount), or that two outputs share, is
  refused in one line before anything is written.

The check of a path against symbolic links happens when the path is planned, just before the
write: it protects against links already in the output tree, not against someone who swaps a
folder for a link while localdepth runs (that needs write access to the output tree anyway).
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from . import limits
from .errors import LocalDepthError, OutputClashError


class UnsafePathError(LocalDepthError):
    """An output path would leave its output root."""


class InvalidValueError(LocalDepthError, ValueError):
    """A numeric option is not finite or out of its range."""


# ----------------------------------------------------------------------------- names in messages

_PLAIN_NAME = re.compile(r"^[^\s'\"]([^'\"]*[^\s'\"])?$")


def _escape(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def quoted(name: str | os.PathLike) -> str:
    """A file name for a message: as it is when it is plain, else quoted with its control
    characters escaped, so that it always reads as one piece on one line.

    ``photo.jpg`` -> ``photo.jpg``; ``my photo.jpg`` -> ``my photo.jpg``; ``a\\nb.jpg`` -> ``'a\\nb.jpg'``.
    """
    text = os.fspath(name)
    escaped = _escape(text)
    if escaped == text and text and _PLAIN_NAME.match(text) and ": " not in text:
        return text
    return "'" + escaped.replace("'", "\\'") + "'"


def one_line(text: str) -> str:
    """A message as exactly one line: control characters escaped (the last guard before printing)."""
    return _escape(str(text).strip())


# ----------------------------------------------------------------------------- output containment

def relative_output(rel: str | os.PathLike) -> PurePosixPath:
    """A relative output path, checked without touching the disk: not empty, not absolute, no
    drive, no ``..``. Raises :class:`UnsafePathError`."""
    text = os.fspath(rel)
    posix = PurePosixPath(text.replace("\\", "/")) if os.sep == "\\" else PurePosixPath(text)
    reason = None
    if not text or text in (".", "/"):
        reason = "it is empty"
    elif "\0" in text:
        reason = "it holds a NUL character"
    elif posix.is_absolute() or PureWindowsPath(text).drive or PureWindowsPath(text).root:
        reason = "it is absolute"
    elif ".." in posix.parts:
        reason = "it holds '..'"
    if reason:
        raise UnsafePathError(f"output path {quoted(text)} refused: {reason}; outputs stay under their output folder")
    return posix


def contained(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` itself, after checking that it lies under ``root`` once symbolic links (of the
    folders on the way and of the file itself) are followed. Raises :class:`UnsafePathError`."""
    root_real = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != root_real and not real.is_relative_to(root_real):
        raise UnsafePathError(f"output {quoted(path)} refused: it resolves to {quoted(real)}, outside the output folder "
                              f"{quoted(root)} (a symbolic link?)")
    return Path(path)


def check_outdir(outdir: str | os.PathLike) -> None:
    """An output folder that exists must be a folder (``--outdir photo.jpg`` is a usage error).
    URLs (``s3://…``) are left to their filesystem."""
    text = os.fspath(outdir)
    if "://" in text:
        return
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise InvalidValueError(f"--outdir {quoted(text)} is a file, not a folder; choose a folder "
                                "(it is created when missing)")


def under_root(root: str | os.PathLike, rel: str | os.PathLike) -> Path:
    """``root / rel``, refused (:class:`UnsafePathError`) unless it stays under ``root``."""
    return contained(root, Path(root) / relative_output(rel))


# ----------------------------------------------------------------------------- named outputs

def _identity(path: str | os.PathLike) -> tuple[str, tuple[int, int] | None]:
    """(the path with every link resolved, (device, inode) when it exists)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return real, None
    return real, (st.st_dev, st.st_ino)


def check_outputs(outputs, inputs=(), *, advice: str = "choose another output name") -> None:
    """Refuse (:class:`OutputClashError`) to write over an input, or one output over another.

    ``outputs`` and ``inputs`` are ``(label, path)`` pairs, ``label`` saying how the user named
    the path (``--output``, ``the input``); pairs whose path is None are skipped. Two paths clash
    when they are one file: the same path once symbolic links are followed, or the same device
    and inode (a hard link). An input may be a folder: an output may not replace it either.
    ``advice`` ends the message (what to do instead).
    """
    seen_real: dict[str, str] = {}
    seen_inode: dict[tuple[int, int], str] = {}
    for label, path in inputs:
        if path is None:
            continue
        real, inode = _identity(path)
        seen_real.setdefault(real, f"{label} {quoted(path)}")
        if inode is not None:
            seen_inode.setdefault(inode, f"{label} {quoted(path)}")
    taken: dict[str, str] = {}
    for label, path in outputs:
        if path is None:
            continue
        real, inode = _identity(path)
        clash = seen_real.get(real) or (seen_inode.get(inode) if inode is not None else None)
        if clash is not None:
            raise OutputClashError(f"{label} {quoted(path)} is {clash} itself: writing it would overwrite the "
                                   f"input; {advice}")
        if real in taken:
            raise OutputClashError(f"{label} {quoted(path)} and {taken[real]} are one file: one would overwrite "
                                   "the other; give them different names")
        taken[real] = f"{label} {quoted(path)}"


#: tests only: the name of a :func:`crash_point` at which the process kills itself
CRASH_AT_ENV = "LOCALDEPTH_TEST_CRASH_AT"


def crash_point(name: str) -> None:
    """Tests only: SIGKILL this process here when ``$LOCALDEPTH_TEST_CRASH_AT`` is ``name``, so a
    test can check what a kill at the worst moment leaves on disk. Users never set it; unset,
    it costs one lookup."""
    if os.environ.get(CRASH_AT_ENV) == name:
        import signal

        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


# ----------------------------------------------------------------------------- network addresses

def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.0.0.1``, ``::1`` (and the rest of 127.0.0.0/8): only this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------- numeric options

@dataclass(frozen=True)
class Range:
    """A closed or open interval of finite numbers (``None``: unbounded on that side)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo < value instead of lo <= value
    hi_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        kind = "an integer" if self.integer else "a finite number"
        return kind + (" " + " and ".join(parts) if parts else "")

    def contains(self, value) -> bool:
        if isinstance(value, bool):
            return False
        try:
            v = float(value)
        except (TypeError, ValueError, OverflowError):
            return False
        if not math.isfinite(v) or (self.integer and v != int(v)):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        return True

    def check(self, label: str, value):
        """``value`` itself when it is in range; else :class:`InvalidValueError` in one line."""
        if not self.contains(value):
            raise InvalidValueError(f"{label} must be {self.describe()} (got {value!r})")
        return value


_POSITIVE = Range(0, None, lo_open=True)
_FOCAL = Range(limits.CAMERA_MIN_FOCAL_PX, None)
_NON_NEGATIVE = Range(0, None)
_FINITE = Range()
_COUNT = Range(1, None, integer=True)

#: every numeric option, by its name (the argparse ``dest``; server settings and query parameters
#: use the same names). One name means one thing across commands.
NUMERIC_OPTIONS: dict[str, Range] = {
    # cameras and geometry (run, pointcloud, align, the server's ply answers)
    "fov": Range(limits.CAMERA_MIN_FOV_DEG, 180, hi_open=True),
    "fx": _FOCAL, "fy": _FOCAL, "cx": _FINITE, "cy": _FINITE,
    "voxel_size": _POSITIVE,
    "max_depth": _POSITIVE,
    "min_depth": _NON_NEGATIVE,
    "edge_threshold": _POSITIVE,
    "reference_scale": _POSITIVE,
    "depth_scale": _POSITIVE,
    "max_points": _COUNT,
    "prompt_scale": _POSITIVE,
    # work and batching
    "batch_size": Range(1, 1024, integer=True),
    "workers": Range(1, 1024, integer=True),
    "num_cpus": _COUNT,
    "gpus_per_worker": Range(0, 64),
    "cpus_per_worker": Range(0, 1024, lo_open=True),
    "input_size": Range(1, 8192, integer=True),
    "threads": Range(1, 1024, integer=True),
    "limit": _COUNT,
    "runs": _COUNT,
    "warmup": Range(0, None, integer=True),
    "e2e_images": _COUNT,
    "rounds": _COUNT,
    "folder_images": Range(0, None, integer=True),
    "time_budget": _POSITIVE,
    # int8 calibration (quantize)
    "count": Range(1, 100_000, integer=True),
    "eval_limit": _COUNT,
    # images and video
    "max_pixels": _COUNT,
    "fps": Range(0, 1000, lo_open=True),
    "stride": _COUNT,
    "max_frames": _COUNT,
    "max_res": Range(16, None, integer=True),
    "ema": Range(0, 1, lo_open=True),
    # URL inputs
    "url_timeout": Range(0, 3600, lo_open=True),
    "url_max_mb": Range(0, 4096, lo_open=True),
    # the server
    "port": Range(1, 65535, integer=True),
    "max_upload_mb": Range(0, 4096, lo_open=True),
    "max_upload_bytes": _COUNT,
    "max_queued_pixels": _COUNT,
    "max_bodies_mb": Range(0, 65536, lo_open=True),
    "max_bodies_bytes": _COUNT,
    "max_batch": Range(1, 1024, integer=True),
    "max_wait_ms": Range(0, 60_000),
    "queue_size": _COUNT,
    "timeout": _POSITIVE, "timeout_s": _POSITIVE,
    "header_timeout": _POSITIVE, "header_timeout_s": _POSITIVE, "body_timeout": _POSITIVE, "body_timeout_s": _POSITIVE,
    "keep_alive": _POSITIVE, "keep_alive_s": _POSITIVE,
    "max_connections": _COUNT,
    "retry_after_s": _NON_NEGATIVE,
    # rendering: 3D photos, stereo, ControlNet pictures (and the server's budgets for them)
    "seconds": Range(0, 600, lo_open=True),
    "size": Range(16, 8192, integer=True),  # pixels: a video's short side, bench's network input sides
    "amplitude": Range(0, 1, lo_open=True),
    "focus": _POSITIVE,
    "stereo_budget": Range(0, 20, lo_open=True),
    "controlnet_size": Range(64, 8192, integer=True),
    "max_video_seconds": Range(0, 600, lo_open=True),
    "max_video_fps": Range(0, 240, lo_open=True),
    "max_video_frames": Range(1, 100_000, integer=True),
    "max_render_size": Range(16, 8192, integer=True),
    # fine-tuning
    "steps": _COUNT, "epochs": _POSITIVE, "accumulate": Range(1, 1024, integer=True), "lr": Range(0, 1, lo_open=True),
    "warmup_steps": Range(0, None, integer=True), "clip_grad": _NON_NEGATIVE, "val_every": _COUNT,
    "val_fraction": Range(0, 1, hi_open=True), "val_limit": _COUNT, "save_every": _COUNT,
    "unfreeze_last": _COUNT, "lora": Range(1, 1024, integer=True), "lora_alpha": _POSITIVE,
    "seed": Range(0, 2**32 - 1, integer=True), "loader_threads": Range(1, 64, integer=True),
    # scenes (several views) and pose evaluation
    "max_views": Range(1, 64, integer=True),
    "max_scene_views": Range(1, 64, integer=True),
    "conf_percentile": Range(0, 100, hi_open=True),
    "delta": _COUNT,
    "gt_start": Range(0, None, integer=True),
    "gt_stride": _COUNT,
}


def option_label(name: str) -> str:
    """``voxel_size`` -> ``--voxel-size`` (how the command line spells it)."""
    return "--" + name.replace("_", "-")


def check_options(values: Mapping[str, object], *, label=option_label) -> None:
    """Check every known numeric option present (not ``None``) in ``values``; the first one out
    of range raises :class:`InvalidValueError`. ``label`` names it in the message."""
    for name, value in values.items():
        spec = NUMERIC_OPTIONS.get(name)
        if spec is not None and value is not None:
            # a list option (``bench --size 518,1036``) is checked item by item
            for item in (value if isinstance(value, (list, tuple)) else (value,)):
                spec.check(label(name), item)


def check_camera(fx: float, fy: float, cx: float, cy: float, width: int = 0, height: int = 0,
                 what: str = "the camera") -> None:
    """A pinhole camera (pixels) that puts points at finite, physical places, or
    :class:`InvalidValueError` in one line. The one check for every camera that comes from outside:
    ``--intrinsics``, ``--fov``, the server's ``fx, fy, cx, cy, fov``, a sidecar's predicted
    camera, a scene's ``cameras.json``, a dataset's intrinsics, a photo's EXIF.

    Focal lengths at least :data:`~localdepth.limits.CAMERA_MIN_FOCAL_PX` and, for a known
    ``width x height``, at most the focal of a :data:`~localdepth.limits.CAMERA_MIN_FOV_DEG`
    field of view across the longer side; the principal point within
    :data:`~localdepth.limits.CAMERA_MAX_PRINCIPAL_OFFSET` image sizes of the image centre.
    ``width, height`` 0: the size is not known yet, only the size-free checks apply.
    """
    values = {"fx": fx, "fy": fy, "cx": cx, "cy": cy}
    for name, value in values.items():
        try:
            finite = math.isfinite(float(value))
        except (TypeError, ValueError, OverflowError):
            finite = False
        if not finite:
            raise InvalidValueError(f"{what}: {name} must be a finite number of pixels (got {value!r})")
    if min(fx, fy) < limits.CAMERA_MIN_FOCAL_PX:
        raise InvalidValueError(f"{what}: the focal length must be at least {limits.CAMERA_MIN_FOCAL_PX:g} pixel "
                                f"(got fx={fx:.6g}, fy={fy:.6g})")
    if width > 0 and height > 0:
        longest = max(width, height) / (2.0 * math.tan(math.radians(limits.CAMERA_MIN_FOV_DEG) / 2.0))
        if max(fx, fy) > longest:
            raise InvalidValueError(f"{what}: a focal length of {max(fx, fy):.6g} pixels is a field of view under "
                                    f"{limits.CAMERA_MIN_FOV_DEG:g} degrees on a {width}x{height} image (at most "
                                    f"{longest:.6g})")
        reach = limits.CAMERA_MAX_PRINCIPAL_OFFSET
        if abs(cx - (width - 1) / 2.0) > reach * width or abs(cy - (height - 1) / 2.0) > reach * height:
            raise InvalidValueError(f"{what}: the principal point ({cx:.6g}, {cy:.6g}) is more than {reach:g} image "
                                    f"sizes from the centre of the {width}x{height} image")


def check_pose(pose, where: str) -> "numpy.ndarray":  # noqa: F821 - numpy is imported where it is used
    """A camera pose read from a file, as ``(4, 4)`` float64, once it is a rigid transform
    ``[[R, t], [0, 0, 0, 1]]``: finite, ``R`` orthonormal with determinant +1 and the last row
    0 0 0 1 within :data:`~localdepth.limits.POSE_RIGIDITY_TOLERANCE`, coordinates within
    :data:`~localdepth.limits.POSE_MAX_COORDINATE`. Else :class:`InvalidValueError` in one line
    that starts with ``where`` (a file and line, or a view)."""
    import numpy as np

    try:
        T = np.asarray(pose, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidValueError(f"{where}: a pose must be a 4x4 matrix of numbers ({e})") from None
    if T.shape != (4, 4):
        raise InvalidValueError(f"{where}: a pose must be a 4x4 matrix, got shape {T.shape}")
    if not np.isfinite(T).all():
        raise InvalidValueError(f"{where}: the pose holds non-finite numbers (NaN or inf)")
    far = float(np.abs(T[:3, 3]).max())
    if far > limits.POSE_MAX_COORDINATE:
        raise InvalidValueError(f"{where}: a camera coordinate of {far:.6g} is beyond {limits.POSE_MAX_COORDINATE:g}, "
                                "the largest a trajectory may hold")
    tol = limits.POSE_RIGIDITY_TOLERANCE
    if float(np.abs(T[3] - (0.0, 0.0, 0.0, 1.0)).max()) > tol:
        raise InvalidValueError(f"{where}: the last row of the pose is {' '.join(f'{v:g}' for v in T[3])}, not 0 0 0 1")
    R = T[:3, :3]
    off = float(np.abs(R.T @ R - np.eye(3)).max())
    det = float(np.linalg.det(R))
    if off > tol or abs(det - 1.0) > tol:
        raise InvalidValueError(f"{where}: not a rigid camera pose: its rotation must be orthonormal with determinant "
                                f"+1 (max |R^T R - I| = {off:.3g}, det R = {det:.6g}; tolerance {tol:g})")
    return T


def check_quaternion(q, where: str):
    """A rotation quaternion read from a file: four finite numbers of norm 1 within
    :data:`~localdepth.limits.POSE_RIGIDITY_TOLERANCE` (a zero quaternion is no rotation). Returns
    it as float64; :class:`InvalidValueError` in one line otherwise."""
    import numpy as np

    q = np.asarray(q, dtype=np.float64)
    if q.shape != (4,) or not np.isfinite(q).all():
        raise InvalidValueError(f"{where}: a rotation quaternion must be four finite numbers")
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > limits.POSE_RIGIDITY_TOLERANCE:
        raise InvalidValueError(f"{where}: the rotation quaternion has norm {norm:.6g}, not 1 (tolerance "
                                f"{limits.POSE_RIGIDITY_TOLERANCE:g}): not a rotation")
    return q


def check_intrinsics_text(text: str) -> None:
    """``--intrinsics fx,fy,cx,cy``: four finite numbers, fx and fy positive."""
    from .geometry import parse_intrinsics

    try:
        parse_intrinsics(text, 0, 0)
    except ValueError as e:
        raise InvalidValueError(str(e)) from None

