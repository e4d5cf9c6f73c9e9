"""Evaluation datasets: RGB images with metric ground-truth depth. The user supplies the data.

A dataset is named ``KIND:PATH`` on the command line:

``folder:PATH``
    A folder of RGB-D frames. If it holds ``manifest.csv`` that is read (see below); else
    these layouts are recognised, in the folder and, recursively, its subfolders:

    The layouts are :data:`FOLDER_LAYOUTS` (the same table is in ``localdepth eval --help`` and
    docs/geometry.md). Frames pair by file stem, or else by the key the two names share once the
    prefixes and suffixes that say which half of a pair a file is are stripped (:func:`pair_key`:
    ``rgb_00005.jpg`` and ``sync_depth_00005.png`` share ``5``; ``00005`` and ``5`` are the same
    number). ``--depth-scale``, ``--crop`` and ``--max-depth`` override a layout's. Depth 0 = missing.
``manifest:FILE.csv`` (or ``folder:FILE.csv``)
    CSV with a header: ``rgb,depth,depth_scale`` and optional ``fx,fy,cx,cy`` and ``scene``; paths relative
    to the CSV's folder; ``depth`` is a 16-bit PNG (``metres = value / depth_scale``) or a
    ``.npy`` in metres (``depth_scale`` 1).
``nyu:nyu_depth_v2_labeled.mat``
    The labeled NYU Depth v2 file (MATLAB v7.3 = HDF5, read with h5py): 1449 frames, or the
    frames listed by ``--split`` (a text file of 1-based indices, or the official
    ``splits.mat`` whose ``testNdxs`` is the 654-frame Eigen test split). Eigen crop, 1e-3..10 m.
``kitti:SPLIT.txt``
    KITTI Eigen split files. Lines ``RGB DEPTH [FOCAL]`` (the BTS/AdaBins format; ``DEPTH`` =
    ``None`` lines are skipped) or ``DRIVE_FOLDER FRAME l|r`` (the monodepth2 format:
    ``DRIVE_FOLDER/image_02/data/FRAME.png`` with ground truth in
    ``DRIVE_FOLDER/proj_depth/groundtruth/image_02/FRAME.png`` or ``DRIVE/proj_depth/…``).
    Paths are relative to ``--data-root`` (default: the split file's folder). Depth is
    value / 256; Garg crop, 1e-3..80 m.
``diode:ROOT``
    DIODE (``*_depth.npy`` in metres, ``*_depth_mask.npy``, ``*.png`` beside them), any depth
    of folders below ROOT (``val/indoors``…). 0.6..350 m.
``stray:CAPTURE``
    A Stray Scanner export (an iPhone or iPad LiDAR capture): ``rgb.mp4`` (or frames in ``rgb/`` or
    ``color/``), ``depth/NNNNNN.png`` (16-bit millimetres, 256x192), ``confidence/NNNNNN.png``
    (0, 1, 2: ARKit's low, medium, high), ``camera_matrix.csv`` (3x3, pixels of the RGB frames) and
    ``odometry.csv``. Frame ``N`` of the video pairs with ``depth/N``; pixels below
    :data:`STRAY_MIN_CONFIDENCE` are not valid. ``CAPTURE`` may also be a folder of captures.

Every sample names its *scene* (the sequence it belongs to: a subfolder, a KITTI drive, a NYU
scene, a DIODE scan, a Stray capture; a manifest's ``scene`` column), so that training can hold
whole scenes out for validation (:mod:`localdepth.training.data`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LocalDepthError
from ..images import IMAGE_EXTENSIONS, load_image
from ..inputs import natural_key


@dataclass
class Sample:
    """One frame: ``rgb()`` -> ``(H, W, 3)``, ``depth()`` -> ``(H, W)`` float32 metres (0 = missing)."""

    name: str
    rgb: Callable[[], np.ndarray]
    depth: Callable[[], np.ndarray]
    intrinsics: dict | None = None
    valid: Callable[[], np.ndarray] | None = None  # extra validity mask (DIODE)
    crop: str | None = None
    min_depth: float = 1e-3
    max_depth: float | None = None
    rgb_path: str | None = None
    #: the scene or sequence the frame belongs to (frames of one scene are alike: a validation split
    #: holds whole scenes out)
    scene: str = ""


@dataclass
class Dataset:
    name: str
    samples: list[Sample] = field(default_factory=list)
    description: str = ""


def read_depth_values(path: Path) -> np.ndarray:
    """A ground-truth depth file (16-bit PNG, ``.npy``...) as stored, float32 ``(H, W)``, through the
    gate every decoded file passes (:func:`localdepth.depthfile.load_depth_values`)."""
    from ..depthfile import load_depth_values

    try:
        return load_depth_values(path, grayscale=True)[0].astype(np.float32)
    except ValueError as e:
        raise LocalDepthError(f"cannot read the depth image: {e}") from None


def read_png_depth(path: Path, scale: float) -> np.ndarray:
    return read_depth_values(path) / np.float32(scale)


def _depth_loader(path: Path, scale: float) -> Callable[[], np.ndarray]:
    if path.suffix.lower() == ".npy":
        return lambda: read_depth_values(path) * np.float32(1.0 / scale)
    return lambda: read_png_depth(path, scale)


def _rgb_loader(path: Path) -> Callable[[], np.ndarray]:
    return lambda: load_image(path)


def _images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir(), key=natural_key)
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS | {".npy"}}


def _open3d_intrinsics(folder: Path) -> dict | None:
    for j in sorted(folder.glob("*.json")):
        try:
            info = json.loads(j.read_text())
            m = info["intrinsic_matrix"]  # column-major 3x3, as Open3D writes it
            return {"fx": m[0], "fy": m[4], "cx": m[6], "cy": m[7], "width": info.get("width"),
                    "height": info.get("height"), "source": j.name}
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
    return None


#: the folder layouts ``folder:PATH`` recognises, in the order they are tried in each folder:
#: (files, depth PNG units per metre, crop and depth range, what it is)
FOLDER_LAYOUTS = (
    ("manifest.csv", "per row", "none", "any frames, listed in a CSV (see manifest:)"),
    ("color.png + depth.png", "5000", "none, <= 10 m", "TUM RGB-D, as in Open3D's samples"),
    ("color/* + depth/*.png", "1000", "none, <= 10 m", "Open3D scenes (intrinsics: *.json beside)"),
    ("rgb/rgb_N.jpg + depth/sync_depth_N.png", "1000", "eigen, <= 10 m", "NYU Depth v2 as BTS/AdaBins export it"),
    ("rgb_N.jpg + sync_depth_N.png", "1000", "eigen, <= 10 m", "the same, in one folder"),
    ("rgb/* or image/* + depth/*", "256", "garg, <= 80 m", "KITTI 16-bit LiDAR PNGs"),
)

#: what starts or ends a file name to say which half of an RGB-D pair it is (stripped by :func:`pair_key`)
PAIR_PREFIXES = ("sync_depth_", "depth_", "rgb_", "image_", "img_", "color_", "colour_", "gt_")
PAIR_SUFFIXES = ("_depth", "_rgb", "_image", "_img", "_color", "_colour", "_gt")


def folder_layouts_text() -> str:
    """:data:`FOLDER_LAYOUTS` as lines for ``localdepth eval --help``."""
    width = max(len(files) for files, *_ in FOLDER_LAYOUTS)
    rows = [("files", "units/m", "crop, range", "what")] + list(FOLDER_LAYOUTS)
    return "\n".join(f"  {files:<{width}}  {units:<8} {crop:<15} {what}" for files, units, crop, what in rows)


def pair_key(stem: str) -> str:
    """The key an RGB and a depth file share: the stem, lower case, with one prefix and one suffix of
    :data:`PAIR_PREFIXES`/:data:`PAIR_SUFFIXES` stripped, and a number as a number (``00005`` -> ``5``)."""
    key = stem.lower()
    for prefix in PAIR_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix):]
            break
    for suffix in PAIR_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[:-len(suffix)]
            break
    return str(int(key)) if key.isdigit() else key


def pair_files(rgbs: dict[str, Path], depths: dict[str, Path]) -> list[tuple[Path, Path]]:
    """RGB and depth files that belong together: the same stem, else the same :func:`pair_key` (a key two
    files of one side share is ambiguous and pairs nothing). Sorted naturally by the RGB file."""
    pairs = {stem: (rgbs[stem], depths[stem]) for stem in set(rgbs) & set(depths)}

    def by_key(files: dict[str, Path]) -> dict[str, Path]:
        keyed: dict[str, list[Path]] = {}
        for stem, path in files.items():
            if stem not in pairs:
                keyed.setdefault(pair_key(stem), []).append(path)
        return {k: v[0] for k, v in keyed.items() if len(v) == 1}

    rgb_keys, depth_keys = by_key(rgbs), by_key(depths)
    for key in set(rgb_keys) & set(depth_keys):
        pairs[rgb_keys[key].stem] = (rgb_keys[key], depth_keys[key])
    return [pairs[stem] for stem in sorted(pairs, key=natural_key)]


def _pairs(rgb_dir: Path, depth_dir: Path, prefix: str, scale: float, **kw) -> list[Sample]:
    return _paired(_images(rgb_dir), _images(depth_dir), prefix, scale, prefix.rstrip("/") or rgb_dir.parent.name,
                   **kw)


def _paired(rgbs: dict[str, Path], depths: dict[str, Path], prefix: str, scale: float, scene: str,
            **kw) -> list[Sample]:
    return [Sample(f"{prefix}{rgb.stem}", _rgb_loader(rgb), _depth_loader(depth, scale), rgb_path=str(rgb),
                   scene=scene, **kw)
            for rgb, depth in pair_files(rgbs, depths)]


def _nyu_named(files: dict[str, Path]) -> bool:
    return any(stem.lower().startswith("sync_depth_") for stem in files)


def _detect(folder: Path, root: Path, depth_scale: float | None) -> list[Sample]:
    prefix = "" if folder == root else f"{folder.relative_to(root).as_posix()}/"
    if (folder / "manifest.csv").is_file():
        return read_manifest(folder / "manifest.csv", prefix, depth_scale)
    if (folder / "color.png").is_file() and (folder / "depth.png").is_file():
        return [Sample(prefix.rstrip("/") or folder.name, _rgb_loader(folder / "color.png"),
                       _depth_loader(folder / "depth.png", depth_scale or 5000.0), rgb_path=str(folder / "color.png"),
                       max_depth=10.0, scene=prefix.rstrip("/") or folder.name)]
    if (folder / "color").is_dir() and (folder / "depth").is_dir():
        return _pairs(folder / "color", folder / "depth", prefix, depth_scale or 1000.0,
                      intrinsics=_open3d_intrinsics(folder), max_depth=10.0)
    for name in ("rgb", "image"):
        if (folder / name).is_dir() and (folder / "depth").is_dir():
            depths = _images(folder / "depth")
            if _nyu_named(depths):  # NYU Depth v2 as BTS/AdaBins export it: millimetres, Eigen crop
                return _paired(_images(folder / name), depths, prefix, depth_scale or 1000.0,
                               prefix.rstrip("/") or folder.name, crop="eigen", max_depth=10.0)
            return _pairs(folder / name, folder / "depth", prefix, depth_scale or 256.0, crop="garg", max_depth=80.0)
    here = _images(folder)
    if _nyu_named(here):  # the same export with both halves in one folder
        depths = {stem: p for stem, p in here.items() if stem.lower().startswith("sync_depth_")}
        rgbs = {stem: p for stem, p in here.items() if stem not in depths and p.suffix.lower() != ".npy"}
        found = _paired(rgbs, depths, prefix, depth_scale or 1000.0, prefix.rstrip("/") or folder.name, crop="eigen",
                        max_depth=10.0)
        if found:
            return found
    samples: list[Sample] = []
    for sub in sorted((p for p in folder.iterdir() if p.is_dir()), key=natural_key):
        samples += _detect(sub, root, depth_scale)
    return samples


def read_manifest(path: Path, prefix: str = "", depth_scale: float | None = None) -> list[Sample]:
    """Samples from a ``manifest.csv`` (see the module docstring). The scene of a row is its ``scene``
    column where there is one, else the folder of its RGB file."""
    base = path.parent
    samples = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"rgb", "depth"} <= set(reader.fieldnames):
            raise LocalDepthError(f"{path}: a manifest needs a header with rgb,depth[,depth_scale,fx,fy,cx,cy]")
        for i, row in enumerate(reader, 2):
            try:
                rgb, depth = base / row["rgb"].strip(), base / row["depth"].strip()
                scale = depth_scale or float(row.get("depth_scale") or (1.0 if depth.suffix == ".npy" else 1000.0))
                intr = None
                if row.get("fx"):
                    intr = {k: float(row[k]) for k in ("fx", "fy", "cx", "cy")}
                    intr["source"] = path.name
            except (ValueError, TypeError) as e:
                raise LocalDepthError(f"{path}:{i}: bad row ({e})") from None
            scene = (row.get("scene") or "").strip() or Path(row["rgb"].strip()).parent.as_posix()
            samples.append(Sample(f"{prefix}{rgb.stem}", _rgb_loader(rgb), _depth_loader(depth, scale),
                                  intrinsics=intr, rgb_path=str(rgb), scene=f"{prefix}{scene}"))
    return samples


# ----------------------------------------------------------------------------- NYU Depth v2

NYU_RANGE = (1e-3, 10.0)


def read_split_indices(path: Path) -> list[int]:
    """1-based frame indices from a text file (numbers separated by white space or commas)
    or from the official ``splits.mat`` (``testNdxs``)."""
    if path.suffix.lower() == ".mat":
        from scipy.io import loadmat

        return [int(v) for v in np.asarray(loadmat(path)["testNdxs"]).ravel()]
    return [int(v) for v in path.read_text().replace(",", " ").split()]


def nyu_dataset(path: Path, split: Path | None = None) -> Dataset:
    try:
        import h5py
    except ImportError:
        raise LocalDepthError("the NYU .mat file needs h5py: pip install 'localdepth[geometry]'") from None
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise LocalDepthError(f"{path}: not a MATLAB v7.3 (HDF5) file ({e})") from None
    if "images" not in f or "depths" not in f:
        raise LocalDepthError(f"{path}: no 'images'/'depths' arrays: not nyu_depth_v2_labeled.mat")
    images, depths = f["images"], f["depths"]
    count = images.shape[0]
    indices = read_split_indices(split) if split else list(range(1, count + 1))
    bad = [i for i in indices if not 1 <= i <= count]
    if bad:
        raise LocalDepthError(f"{split}: index {bad[0]} outside 1..{count}")

    # MATLAB stores column-major: images are (N, 3, W, H), depths (N, W, H)
    def rgb(i: int) -> Callable[[], np.ndarray]:
        return lambda: np.ascontiguousarray(np.asarray(images[i - 1]).transpose(2, 1, 0))

    def depth(i: int) -> Callable[[], np.ndarray]:
        return lambda: np.ascontiguousarray(np.asarray(depths[i - 1], dtype=np.float32).T)

    samples = [Sample(f"{i:04d}", rgb(i), depth(i), crop="eigen", min_depth=NYU_RANGE[0], max_depth=NYU_RANGE[1],
                      intrinsics={"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362, "width": 640,
                                  "height": 480, "source": "NYU Depth v2 toolbox"}, scene=_nyu_scene(f, i))
               for i in indices]
    return Dataset(f"nyu:{path.name}", samples, f"NYU Depth v2 labeled, {len(samples)} frames")


def _nyu_scene(f, i: int) -> str:
    """The scene name of frame ``i`` (1-based: ``bedroom_0001``), from the file's ``scenes`` cell
    array of strings (MATLAB v7.3: references to uint16 character arrays); "" when absent."""
    try:
        ref = np.asarray(f["scenes"]).ravel()[i - 1]
        return "".join(chr(int(c)) for c in np.asarray(f[ref]).ravel())
    except Exception:  # a file without scene names (or another layout) still evaluates
        return ""


# ----------------------------------------------------------------------------- KITTI

KITTI_RANGE = (1e-3, 80.0)


def kitti_dataset(split: Path, root: Path | None = None) -> Dataset:
    root = root or split.parent
    samples = []
    for lineno, line in enumerate(split.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) >= 2 and parts[1].lower() == "none":
            continue  # BTS lists frames without ground truth this way
        if len(parts) == 3 and parts[2] in ("l", "r"):  # monodepth2: folder frame side
            cam = "image_02" if parts[2] == "l" else "image_03"
            frame = f"{int(parts[1]):010d}"
            rgb = next((root / parts[0] / cam / "data" / f"{frame}{ext}" for ext in (".png", ".jpg")
                        if (root / parts[0] / cam / "data" / f"{frame}{ext}").is_file()),
                       root / parts[0] / cam / "data" / f"{frame}.png")
            drive = Path(parts[0]).name
            candidates = [root / parts[0] / "proj_depth" / "groundtruth" / cam / f"{frame}.png",
                          root / drive / "proj_depth" / "groundtruth" / cam / f"{frame}.png"]
            gt = next((c for c in candidates if c.is_file()), candidates[0])
            intr = None
        elif len(parts) >= 2:
            rgb, gt = root / parts[0], root / parts[1]
            intr = {"fx": float(parts[2]), "fy": float(parts[2])} if len(parts) >= 3 else None
        else:
            raise LocalDepthError(f"{split}:{lineno}: expected 'RGB DEPTH [FOCAL]' or 'FOLDER FRAME l|r'")
        samples.append(Sample(Path(parts[0]).stem if len(parts) != 3 or parts[2] not in ("l", "r") else f"{parts[0]}/{parts[1]}",
                              _rgb_loader(rgb), _depth_loader(gt, 256.0), intrinsics=intr, crop="garg",
                              min_depth=KITTI_RANGE[0], max_depth=KITTI_RANGE[1], rgb_path=str(rgb),
                              scene=_kitti_drive(parts[0])))
    return Dataset(f"kitti:{split.name}", samples, f"KITTI split {split.name}, {len(samples)} frames")


def _kitti_drive(path: str) -> str:
    """The drive a KITTI path belongs to (``2011_09_26_drive_0002_sync``), else its folder."""
    parts = Path(path).parts
    return next((p for p in reversed(parts) if "_drive_" in p), Path(path).parent.as_posix())


# ----------------------------------------------------------------------------- DIODE

DIODE_RANGE = (0.6, 350.0)


def diode_dataset(root: Path) -> Dataset:
    samples = []
    for d in sorted(root.rglob("*_depth.npy"), key=natural_key):
        stem = d.name[: -len("_depth.npy")]
        rgb = d.with_name(f"{stem}.png")
        mask = d.with_name(f"{stem}_depth_mask.npy")
        valid = (lambda m=mask: read_depth_values(m) > 0) if mask.is_file() else None
        rel = d.parent.relative_to(root)
        samples.append(Sample(rel.joinpath(stem).as_posix(), _rgb_loader(rgb),
                              _depth_loader(d, 1.0), valid=valid, min_depth=DIODE_RANGE[0],
                              max_depth=DIODE_RANGE[1], rgb_path=str(rgb),
                              scene=(rel.parent if rel.name.startswith("scan_") else rel).as_posix()))
    return Dataset(f"diode:{root.name}", samples, f"DIODE, {len(samples)} frames")


# ----------------------------------------------------------------------------- Stray Scanner

#: ARKit's confidence levels are 0 (low), 1 (medium), 2 (high); only high-confidence LiDAR depth is used
STRAY_MIN_CONFIDENCE = 2


def _is_stray_capture(folder: Path) -> bool:
    return (folder / "depth").is_dir() and (folder / "camera_matrix.csv").is_file()


def _stray_camera(folder: Path) -> dict | None:
    try:
        rows = [[float(v) for v in line.split(",")] for line in (folder / "camera_matrix.csv").read_text().split("\n")
                if line.strip()]
        return {"fx": rows[0][0], "fy": rows[1][1], "cx": rows[0][2], "cy": rows[1][2], "source": "camera_matrix.csv"}
    except (OSError, ValueError, IndexError):
        return None


def _video_frame(video: Path, index: int) -> Callable[[], np.ndarray]:
    """Frame ``index`` (0-based) of ``video``, decoded when called (seeking near it first)."""

    def read() -> np.ndarray:
        try:
            from ..video.readers import Position, Selection, VideoFileReader
        except ImportError:
            raise LocalDepthError(f"{video.name}: reading a video needs PyAV: pip install 'localdepth[video]'") from None

        reader = VideoFileReader(video, Selection(start=Position(float(index), "f"), max_frames=1))
        try:
            for frame in reader:
                if frame.index == index:
                    return frame.rgb
        finally:
            reader.close()
        raise LocalDepthError(f"{video.name}: has no frame {index}")

    return read


def _stray_confidence(path: Path) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        return read_depth_values(path) >= STRAY_MIN_CONFIDENCE  # through the decoding gate, as every file

    return read


def _stray_capture(folder: Path, root: Path) -> list[Sample]:
    scene = folder.relative_to(root).as_posix() if folder != root else folder.name
    depths = _images(folder / "depth")
    frames_dir = next((folder / d for d in ("rgb", "color") if (folder / d).is_dir()), None)
    frames = _images(frames_dir) if frames_dir else {}
    video = folder / "rgb.mp4"
    if not frames and not video.is_file():
        raise LocalDepthError(f"{folder}: a Stray Scanner capture needs rgb.mp4 or a folder rgb/ of frames")
    camera = _stray_camera(folder)
    samples = []
    for stem in sorted(depths, key=natural_key):
        if frames and stem not in frames:
            continue
        if not frames and not stem.isdigit():
            continue
        rgb = _rgb_loader(frames[stem]) if frames else _video_frame(video, int(stem))
        conf = folder / "confidence" / f"{stem}.png"
        samples.append(Sample(f"{scene}/{stem}", rgb, _depth_loader(depths[stem], 1000.0), intrinsics=camera,
                              valid=_stray_confidence(conf) if conf.is_file() else None,
                              rgb_path=str(frames[stem]) if frames else None, scene=scene))
    return samples


def stray_dataset(path: Path) -> Dataset:
    """A Stray Scanner capture, or a folder of them (see the module docstring)."""
    captures = [path] if _is_stray_capture(path) else sorted(
        (p for p in path.iterdir() if p.is_dir() and _is_stray_capture(p)), key=natural_key)
    samples: list[Sample] = []
    for capture in captures:
        samples += _stray_capture(capture, path)
    return Dataset(f"stray:{path.name}", samples,
                   f"Stray Scanner, {len(captures)} capture(s), {len(samples)} frames")


# ----------------------------------------------------------------------------- entry point

KINDS = ("folder", "manifest", "nyu", "kitti", "diode", "stray")


def open_dataset(spec: str, *, depth_scale: float | None = None, split: str | Path | None = None,
                 data_root: str | Path | None = None, limit: int | None = None) -> Dataset:
    """``KIND:PATH`` (see the module docstring) -> :class:`Dataset`; a bare path means ``folder:``."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in KINDS:
        kind, rest = "folder", spec
    path = Path(rest).expanduser()
    if not path.exists():
        raise LocalDepthError(f"{path}: no such dataset path (give {'|'.join(KINDS)}:PATH)")
    if kind in ("folder", "manifest") and path.is_file():
        ds = Dataset(f"manifest:{path.name}", read_manifest(path, depth_scale=depth_scale))
    elif kind == "folder":
        ds = Dataset(f"folder:{path.name}", _detect(path, path, depth_scale))
    elif kind == "manifest":
        raise LocalDepthError(f"{path}: manifest: wants a .csv file")
    elif kind == "nyu":
        ds = nyu_dataset(path, Path(split) if split else None)
    elif kind == "kitti":
        ds = kitti_dataset(path, Path(data_root) if data_root else None)
    elif kind == "stray":
        ds = stray_dataset(path)
    else:
        ds = diode_dataset(path)
    if not ds.samples:
        raise LocalDepthError(f"{spec}: no RGB + depth frames found (see `localdepth eval --help` for the layouts)")
    if limit:
        ds.samples = ds.samples[:limit]
    return ds
