"""The optional extras each command needs, checked in one place before any command runs.

``localdepth scene`` without Open3D used to run the network, leave a partial folder and only then
fail; ``run --pointcloud`` failed every image after inference. :func:`check_command` looks at the
parsed command line, works out which optional pieces the command will use (:func:`needed`), tries to
import each, and raises one :class:`~localdepth.errors.LocalDepthError` naming what is missing and
the install command, before any input is read or any model is loaded (``localdepth.cli.main``).

Imports are real, not ``find_spec``: Open3D's wheel can be installed and still fail to load a system
library (libusb), which only an import shows. The modules imported here are imported by the command
a moment later anyway.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from .errors import LocalDepthError


@dataclass(frozen=True)
class Extra:
    """One optional piece: what it is for, the modules it takes, and the pip extra that installs them."""

    purpose: str
    modules: tuple[str, ...]
    extra: str
    #: what to install when the module is there but a system library it loads is not
    system_hint: str | None = None


EXTRAS = {
    "open3d": Extra("point clouds and meshes", ("open3d",), "geometry",
                    system_hint="on Debian/Ubuntu: apt-get install -y libusb-1.0-0 libgomp1"),
    "trimesh": Extra(".glb files", ("trimesh",), "geometry"),
    "av": Extra("video files", ("av",), "video"),
    "openexr": Extra("EXR frames", ("OpenEXR",), "video"),
    "server": Extra("the server", ("fastapi", "uvicorn", "multipart", "prometheus_client"), "server"),
    "ray": Extra("localdepth batch", ("ray", "ray.data", "pyarrow", "pandas"), "distributed"),
    "nyu": Extra("the NYU .mat dataset", ("h5py", "scipy.io"), "geometry"),
    "peft": Extra("LoRA adapters (finetune --lora)", ("peft",), "train"),
    "ray_train": Extra("training on Ray (finetune --workers/--ray-address)", ("ray", "ray.train", "ray.train.torch"),
                       "distributed"),
}


def _suffix(path) -> str:
    return Path(str(path)).suffix.lower() if path else ""


def _formats(args) -> set[str]:
    return {f.strip().lower() for f in str(getattr(args, "format", None) or "").split(",") if f.strip()}


def needed(args) -> list[str]:
    """The keys of :data:`EXTRAS` the parsed command line ``args`` will use, in a stable order."""
    command = getattr(args, "command", None)
    want: list[str] = []
    mesh = getattr(args, "mesh", None)
    if command == "run" and (getattr(args, "pointcloud", None) or mesh):
        want.append("open3d")
    if command == "pointcloud":
        want.append("open3d")
    if command in ("run", "pointcloud") and _suffix(mesh) == ".glb":
        want.append("trimesh")
    if command == "scene":
        from .video.readers import VIDEO_EXTENSIONS

        want += ["open3d", "trimesh"]  # points.ply, scene.glb
        if any(_suffix(i) in VIDEO_EXTENSIONS for i in getattr(args, "inputs", None) or ()):
            want.append("av")
    if command == "video":
        want.append("av")
        if "exr" in _formats(args):
            want.append("openexr")
    if command == "serve":
        want.append("server")
    if command == "batch":
        want.append("ray")
    datasets = [getattr(args, name, None) for name in ("dataset", "data", "val")]
    if command in ("eval", "finetune") and any(str(d or "").lower().startswith("nyu:") for d in datasets):
        want.append("nyu")
    if command == "finetune":
        if getattr(args, "lora", None):
            want.append("peft")
        if (getattr(args, "workers", None) or 1) > 1 or getattr(args, "ray_address", None):
            want.append("ray_train")
    if command == "photo3d" and _suffix(getattr(args, "output", None)) not in (".gif", ".webp"):
        want.append("av")  # an MP4
    return want


def problem(key: str) -> str | None:
    """Why the extra ``key`` cannot be used here (its first missing module), or None when it can."""
    extra = EXTRAS[key]
    for module in extra.modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            return f"{extra.purpose}: {module} is missing ({_first_line(e)}); pip install 'localdepth[{extra.extra}]'"
        except OSError as e:  # installed, but a system library it loads is absent
            hint = extra.system_hint or f"reinstall it: pip install --force-reinstall 'localdepth[{extra.extra}]'"
            return f"{extra.purpose}: {module} cannot load ({_first_line(e)}); {hint}"
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_command(args) -> None:
    """Raise one line naming every extra the command needs and lacks, with its install command."""
    problems = [p for p in (problem(key) for key in needed(args)) if p]
    if problems:
        command = getattr(args, "command", None) or "this command"
        raise LocalDepthError(f"localdepth {command}: " + "; ".join(problems))
