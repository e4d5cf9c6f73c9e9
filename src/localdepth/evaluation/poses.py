"""Camera trajectories: reading them, and ATE / RPE after a similarity (Umeyama) alignment.

A :class:`Trajectory` holds ``world_from_camera`` poses ``(N, 4, 4)`` (camera-to-world: the
camera centre is the translation; camera axes x right, y down, z forward as OpenCV) and a name
per pose. Readers (:func:`read_trajectory`):

* **Redwood / Open3D ``.log``**: blocks of five lines, ``id id next`` then a 4x4 camera-to-world
  matrix (``trajectory.log`` of the Redwood and Open3D RGB-D data);
* **TUM** ``.txt``: ``timestamp tx ty tz qx qy qz qw`` per line, camera-to-world, ``#`` comments;
* localdepth's ``cameras.json`` (``localdepth scene``): ``camera_from_world`` per view;
* COLMAP's ``images.txt``: ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` (world-to-camera),
  each followed by a line of 2-D points.

Every pose read is checked (:func:`localdepth.safety.check_pose`): finite, rigid (rotation
orthonormal with determinant +1, last row 0 0 0 1) and within the coordinate bound; quaternions
must have norm 1. A pose that is not is one line naming its file and line (or view).

Metrics, as the TUM RGB-D benchmark defines them (Sturm et al., IROS 2012) and ``evo`` computes
them with ``--align --correct_scale``: the predicted camera centres are aligned to the ground
truth's by the least-squares similarity (:func:`localdepth.geometry.umeyama`), because a
monocular model knows its world frame and scale only up to such a transform. Then

* **ATE** (absolute trajectory error): distances between aligned and true camera centres
  (RMSE, mean, median, max), in the ground truth's units;
* **RPE** (relative pose error) over ``delta`` frames: ``E_i = (Q_i^-1 Q_{i+d})^-1 (P_i^-1 P_{i+d})``
  with ``Q`` true and ``P`` aligned poses; its translation (RMSE, mean, in ground-truth units)
  and rotation angle (RMSE, mean, degrees). RPE does not depend on the alignment's rotation and
  translation, only on its scale.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LocalDepthError
from ..geometry import (invert_pose, quaternion_to_rotation, rotation_angle_deg, similarity_matrix, umeyama)
from ..safety import check_pose, check_quaternion

TRAJECTORY_FORMATS = ("log", "tum", "cameras", "colmap")


@dataclass
class Trajectory:
    world_from_camera: np.ndarray  # (N, 4, 4) camera-to-world
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def centres(self) -> np.ndarray:
        """Camera centres in world coordinates, ``(N, 3)``."""
        return self.world_from_camera[:, :3, 3]

    def subset(self, start: int = 0, stride: int = 1) -> Trajectory:
        keep = slice(start, None, stride)
        return Trajectory(self.world_from_camera[keep], self.names[keep])


def frame_number(name: str) -> int | None:
    """The frame a view shows, from the last number in its file name (``frame_000120.jpg`` -> 120,
    ``00003.png`` -> 3), or None."""
    found = re.findall(r"\d+", Path(name).stem)
    return int(found[-1]) if found else None


def match_by_frame(predicted: Trajectory, truth: Trajectory) -> tuple[Trajectory, Trajectory]:
    """Pair each predicted pose with the ground-truth pose at the position its image's frame
    number names (a scene of every 10th frame, or of frames spread evenly over a clip, against the
    clip's full trajectory). Raises one line when a name has no number or points past the end."""
    frames = [frame_number(n) for n in predicted.names]
    bad = next((n for n, f in zip(predicted.names, frames) if f is None or f >= len(truth)), None)
    if bad is not None:
        raise LocalDepthError(f"cannot match '{bad}' to a ground-truth pose by its frame number "
                              f"(the ground truth has {len(truth)} poses); pair them by order instead")
    return predicted, Trajectory(truth.world_from_camera[frames], [truth.names[f] for f in frames])


def _pose(q: list[float], t: list[float], where: str) -> np.ndarray:
    """A rigid pose from a rotation quaternion ``(w, x, y, z)`` and a translation, both checked."""
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation(check_quaternion(q, where))
    T[:3, 3] = t
    return check_pose(T, where)


def _numbers(line: str, count: int, where: str) -> list[float]:
    try:
        values = [float(v) for v in line.split()]
    except ValueError:
        values = []
    if len(values) < count:
        raise LocalDepthError(f"{where}: expected {count} numbers, got '{line.strip()[:60]}'")
    return values


def read_redwood_log(path: Path) -> Trajectory:
    lines = [(n, ln) for n, ln in enumerate(Path(path).read_text().splitlines(), 1) if ln.strip()]
    if not lines or len(lines) % 5:
        raise LocalDepthError(f"{path}: not a Redwood/Open3D .log trajectory (blocks of 5 lines: ids, then a 4x4 matrix)")
    poses, names = [], []
    for b in range(0, len(lines), 5):
        ids = lines[b][1].split()
        rows = [_numbers(lines[b + r][1], 4, f"{path}:{lines[b + r][0]}")[:4] for r in range(1, 5)]
        poses.append(check_pose(rows, f"{path}:{lines[b + 1][0]}"))
        names.append(ids[0] if ids else str(b // 5))
    return Trajectory(np.stack(poses), names)


def read_tum(path: Path) -> Trajectory:
    poses, names = [], []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        v = _numbers(line.replace(",", " "), 8, f"{path}:{n}")
        # TUM writes the quaternion x, y, z, w
        poses.append(_pose([v[7], v[4], v[5], v[6]], v[1:4], f"{path}:{n}"))
        names.append(line.split()[0])
    if not poses:
        raise LocalDepthError(f"{path}: no poses (TUM format: timestamp tx ty tz qx qy qz qw per line)")
    return Trajectory(np.stack(poses), names)


def read_cameras_json(path: Path) -> Trajectory:
    try:
        views = json.loads(Path(path).read_text())["views"]
        matrices = [v["camera_from_world"] for v in views]
        names = [str(v.get("image", i)) for i, v in enumerate(views)]
    except (ValueError, KeyError, TypeError) as e:
        raise LocalDepthError(f"{path}: not a localdepth cameras.json ({e})") from None
    if not matrices:
        raise LocalDepthError(f"{path}: has no views")
    poses = [invert_pose(check_pose(m, f"{path}: view {i} ({names[i]}): camera_from_world"))
             for i, m in enumerate(matrices)]
    return Trajectory(np.stack(poses), names)


def read_colmap_images(path: Path) -> Trajectory:
    lines = Path(path).read_text().splitlines()
    entries, i = [], 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        i += 1  # each image line is followed by its (possibly empty) line of 2-D points
        parts = line.split()
        where = f"{path}:{i - 1}"
        v = _numbers(" ".join(parts[:8]), 8, where)
        entries.append((int(v[0]), " ".join(parts[9:]), invert_pose(_pose(v[1:5], v[5:8], where))))
    if not entries:
        raise LocalDepthError(f"{path}: no images (COLMAP images.txt)")
    entries.sort(key=lambda e: e[0])  # COLMAP's order is the image id
    return Trajectory(np.stack([e[2] for e in entries]), [e[1] for e in entries])


def detect_format(path: Path) -> str:
    name = Path(path).name.lower()
    if name.endswith(".log"):
        return "log"
    if name.endswith(".json"):
        return "cameras"
    if name == "images.txt":
        return "colmap"
    return "tum"


def read_trajectory(path: str | Path, fmt: str | None = None) -> Trajectory:
    """Read a trajectory; ``fmt``: one of :data:`TRAJECTORY_FORMATS` (default: from the file name)."""
    path = Path(path)
    if path.is_dir() and (path / "images.txt").is_file():
        path = path / "images.txt"
    if not path.is_file():
        raise LocalDepthError(f"{path}: no such trajectory file")
    fmt = fmt or detect_format(path)
    readers = {"log": read_redwood_log, "tum": read_tum, "cameras": read_cameras_json, "colmap": read_colmap_images}
    if fmt not in readers:
        raise LocalDepthError(f"unknown trajectory format '{fmt}'; use one of {', '.join(TRAJECTORY_FORMATS)}")
    return readers[fmt](path)


# ----------------------------------------------------------------------------- metrics

def align_similarity(predicted: Trajectory, truth: Trajectory, *, with_scale: bool = True) -> tuple[np.ndarray, float]:
    """The similarity ``S`` (4x4, ``[[s R, t], [0, 1]]``) taking the predicted camera centres onto
    the true ones in the least-squares sense, and its scale ``s``."""
    s, R, t = umeyama(predicted.centres, truth.centres, with_scale=with_scale)
    return similarity_matrix(s, R, t), s


def apply_similarity(poses: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Camera-to-world poses ``(N, 4, 4)`` moved by the similarity ``S``: rotations turned by its
    rotation, centres mapped by it (so the result stays a rigid pose per camera)."""
    scale = np.cbrt(np.linalg.det(S[:3, :3]))
    R = S[:3, :3] / scale
    out = np.array(poses, dtype=np.float64, copy=True)
    out[:, :3, :3] = R @ poses[:, :3, :3]
    out[:, :3, 3] = poses[:, :3, 3] @ S[:3, :3].T + S[:3, 3]
    return out


def _stats(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"rmse": None, "mean": None, "median": None, "max": None}
    return {"rmse": float(np.sqrt(np.mean(values ** 2))), "mean": float(values.mean()),
            "median": float(np.median(values)), "max": float(values.max())}


def absolute_trajectory_error(aligned: np.ndarray, truth: np.ndarray) -> dict:
    """ATE of aligned camera-to-world poses ``(N, 4, 4)`` against the true ones: camera centre
    distances (RMSE, mean, median, max)."""
    return _stats(np.linalg.norm(aligned[:, :3, 3] - truth[:, :3, 3], axis=-1))


def relative_pose_error(aligned: np.ndarray, truth: np.ndarray, delta: int = 1) -> dict:
    """RPE over ``delta`` frames: translation (ground-truth units) and rotation (degrees) of
    ``(Q_i^-1 Q_{i+d})^-1 (P_i^-1 P_{i+d})`` for every ``i``."""
    n = len(truth)
    if delta < 1 or delta >= n:
        return {"pairs": 0, "translation": _stats(np.empty(0)), "rotation_deg": _stats(np.empty(0))}
    rel_true = invert_pose(truth[:-delta]) @ truth[delta:]
    rel_pred = invert_pose(aligned[:-delta]) @ aligned[delta:]
    error = invert_pose(rel_true) @ rel_pred
    return {"pairs": n - delta, "translation": _stats(np.linalg.norm(error[:, :3, 3], axis=-1)),
            "rotation_deg": _stats(rotation_angle_deg(error[:, :3, :3]))}


def evaluate_trajectory(predicted: Trajectory, truth: Trajectory, *, delta: int = 1, with_scale: bool = True) -> dict:
    """ATE and RPE of ``predicted`` against ``truth`` (paired by position), after the similarity
    alignment of the camera centres (``with_scale=False``: a rigid one, for metric predictions)."""
    if len(predicted) != len(truth):
        raise LocalDepthError(f"the trajectories have {len(predicted)} and {len(truth)} poses; poses are paired by "
                              "position, so pick the matching ground-truth frames (--gt-start, --gt-stride) or "
                              "match them by the frame numbers in the image names (--match frame)")
    if len(truth) < 3:
        raise LocalDepthError("a trajectory alignment needs at least 3 poses")
    S, scale = align_similarity(predicted, truth, with_scale=with_scale)
    aligned = apply_similarity(predicted.world_from_camera, S)
    return {
        "poses": len(truth),
        "alignment": {"method": "umeyama similarity" if with_scale else "umeyama rigid", "scale": scale,
                      "matrix": S.round(12).tolist()},
        "ate": absolute_trajectory_error(aligned, truth.world_from_camera),
        "rpe": {"delta": delta, **relative_pose_error(aligned, truth.world_from_camera, delta)},
    }
