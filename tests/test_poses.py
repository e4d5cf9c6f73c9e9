"""Pose geometry and trajectory evaluation on closed-form cases and the living-room ground truth.

Quaternions are checked against SciPy's ``Rotation`` (an independent implementation), the Umeyama
fit against similarity transforms it must recover exactly, ATE against the expected error of
isotropic noise, RPE against a perturbation whose error is known in closed form.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from localdepth import geometry as g
from localdepth.errors import LocalDepthError
from localdepth.evaluation import poses

from tolerance import within

Rotation = pytest.importorskip("scipy.spatial.transform").Rotation


def _random_poses(n: int, seed: int = 0) -> np.ndarray:
    """Camera-to-world poses along a wobbly path (not degenerate: the centres span 3-D)."""
    rng = np.random.default_rng(seed)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = Rotation.random(n, random_state=seed).as_matrix()
    s = np.linspace(0, 4 * np.pi, n)
    T[:, :3, 3] = np.stack([np.cos(s), np.sin(s), 0.3 * s], axis=-1) + rng.normal(0, 0.05, (n, 3))
    return T


def test_quaternions_agree_with_scipy_both_ways():
    rotations = Rotation.random(200, random_state=1)
    # include the hard cases for a trace-based formula: 180 degrees about each axis, and the identity
    extra = Rotation.from_rotvec([[math.pi, 0, 0], [0, math.pi, 0], [0, 0, math.pi], [0, 0, 0], [1e-9, 0, 0]])
    for R, q_xyzw in zip(np.concatenate([rotations.as_matrix(), extra.as_matrix()]),
                         np.concatenate([rotations.as_quat(), extra.as_quat()])):
        q = g.rotation_to_quaternion(R)
        expected = np.roll(q_xyzw, 1)  # scipy writes x, y, z, w
        expected = -expected if expected[0] < 0 else expected
        if abs(expected[0]) < 1e-12:  # w = 0: q and -q are the same rotation
            expected = expected if np.dot(expected, q) > 0 else -expected
        np.testing.assert_allclose(q, expected, atol=1e-12)
        np.testing.assert_allclose(g.quaternion_to_rotation(q), R, atol=1e-12)
    # 90 degrees about z: (cos 45, 0, 0, sin 45); x goes to y
    R = g.quaternion_to_rotation([math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)])
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-15)


def test_rotation_angle_is_accurate_for_tiny_and_large_angles():
    for angle in (1e-9, 1e-4, 0.3, 179.0):
        R = Rotation.from_rotvec(np.radians(angle) * np.array([0.6, 0.0, 0.8])).as_matrix()
        assert g.rotation_angle_deg(R) == pytest.approx(angle, rel=1e-6)


def test_invert_pose_and_camera_centre():
    T = _random_poses(4)
    np.testing.assert_allclose(g.invert_pose(T) @ T, np.tile(np.eye(4), (4, 1, 1)), atol=1e-12)
    camera_from_world = g.invert_pose(T)
    np.testing.assert_allclose(g.camera_centre(camera_from_world), T[:, :3, 3], atol=1e-12)
    # the camera centre maps to the camera frame's origin
    np.testing.assert_allclose(g.transform_points(T[1, :3, 3], camera_from_world[1]), 0, atol=1e-12)


def test_umeyama_recovers_a_known_similarity_exactly():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(50, 3))
    R = Rotation.random(random_state=3).as_matrix()
    s, t = 2.5, np.array([1.0, -2.0, 0.5])
    dst = s * src @ R.T + t
    s_fit, R_fit, t_fit = g.umeyama(src, dst)
    assert s_fit == pytest.approx(s, rel=1e-12)
    np.testing.assert_allclose(R_fit, R, atol=1e-12)
    np.testing.assert_allclose(t_fit, t, atol=1e-12)
    # rigid: scale fixed at 1, the rotation still found
    s1, R1, _ = g.umeyama(src, src @ R.T + t, with_scale=False)
    assert s1 == 1.0 and np.allclose(R1, R, atol=1e-12)


def test_umeyama_never_returns_a_reflection():
    rng = np.random.default_rng(4)
    src = rng.normal(size=(30, 3))
    mirrored = src * [1, 1, -1]
    _, R, _ = g.umeyama(src, mirrored)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_similar_trajectory_has_zero_error_and_the_inverse_scale():
    truth = poses.Trajectory(_random_poses(30), [str(i) for i in range(30)])
    S = g.similarity_matrix(0.2, Rotation.random(random_state=5).as_matrix(), np.array([3.0, 1.0, -1.0]))
    predicted = poses.Trajectory(poses.apply_similarity(truth.world_from_camera, S), truth.names)
    report = poses.evaluate_trajectory(predicted, truth)
    assert report["alignment"]["scale"] == pytest.approx(5.0, rel=1e-10)
    within(report["ate"]["max"], 1e-10, "ATE max")
    within(report["rpe"]["translation"]["max"], 1e-10, "RPE translation max")
    within(report["rpe"]["rotation_deg"]["max"], 1e-8, "RPE rotation max (deg)")


def test_ate_of_isotropic_noise_is_sigma_sqrt3():
    # centres with N(0, sigma^2) noise per axis: after the 7-parameter fit the RMSE distance is
    # sigma * sqrt(3 (N - 7/3) / N) (the fit absorbs 7 of the 3N degrees of freedom)
    n, sigma = 3000, 0.01
    truth = poses.Trajectory(_random_poses(n, seed=6), [str(i) for i in range(n)])
    noisy = truth.world_from_camera.copy()
    noisy[:, :3, 3] += np.random.default_rng(7).normal(0, sigma, (n, 3))
    report = poses.evaluate_trajectory(poses.Trajectory(noisy, truth.names), truth)
    expected = sigma * math.sqrt(3 * (n - 7 / 3) / n)
    assert report["ate"]["rmse"] == pytest.approx(expected, rel=0.03)  # sampling spread ~ 1/sqrt(2 * 3N) = 0.8%


def test_rpe_of_one_turned_camera_in_closed_form():
    n, k, theta = 12, 5, 2.0
    truth = _random_poses(n, seed=8)
    turned = truth.copy()
    Rz = Rotation.from_rotvec([0, 0, math.radians(theta)]).as_matrix()  # about camera k's optical axis
    turned[k, :3, :3] = truth[k, :3, :3] @ Rz  # same centre: the alignment is the identity
    report = poses.evaluate_trajectory(poses.Trajectory(turned, [""] * n), poses.Trajectory(truth, [""] * n))
    within(report["ate"]["max"], 1e-12, "ATE max")
    rot = report["rpe"]["rotation_deg"]
    assert rot["max"] == pytest.approx(theta, rel=1e-9)
    assert rot["mean"] == pytest.approx(2 * theta / (n - 1), rel=1e-9)  # pairs (k-1, k) and (k, k+1)
    # pair (k, k+1): the step seen from the turned camera is turned by -theta about z:
    # |(Rz^T - I) d| = 2 sin(theta / 2) |d_xy| with d the step in camera k's frame
    d = truth[k, :3, :3].T @ (truth[k + 1, :3, 3] - truth[k, :3, 3])
    expected = 2 * math.sin(math.radians(theta) / 2) * math.hypot(d[0], d[1])
    assert report["rpe"]["translation"]["max"] == pytest.approx(expected, rel=1e-9)


def test_redwood_log_reads_the_living_room_trajectory(rgbd_dir):
    traj = poses.read_trajectory(rgbd_dir / "livingroom" / "trajectory.log")
    assert len(traj) == 5 and traj.names == ["0", "1", "2", "3", "4"]
    first = np.loadtxt(rgbd_dir / "livingroom" / "trajectory.log", skiprows=1, max_rows=4)
    np.testing.assert_array_equal(traj.world_from_camera[0], first)
    R = traj.world_from_camera[:, :3, :3]
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.tile(np.eye(3), (5, 1, 1)), atol=1e-9)


def test_tum_written_with_scipy_reads_back(rgbd_dir, tmp_path):
    traj = poses.read_trajectory(rgbd_dir / "livingroom" / "trajectory.log")
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    for i, T in enumerate(traj.world_from_camera):
        q = Rotation.from_matrix(T[:3, :3]).as_quat()
        lines.append(f"{1305031102.0 + i / 30:.6f} " + " ".join(f"{v:.17g}" for v in (*T[:3, 3], *q)))
    (tmp_path / "gt.txt").write_text("\n".join(lines) + "\n")
    back = poses.read_trajectory(tmp_path / "gt.txt")
    np.testing.assert_allclose(back.world_from_camera, traj.world_from_camera, atol=1e-12)


def test_odometry_agrees_with_the_trajectory_up_to_a_similarity(rgbd_dir):
    # odometry.log is the same camera in another world frame (first camera at the origin's axes)
    folder = rgbd_dir / "livingroom"
    report = poses.evaluate_trajectory(poses.read_trajectory(folder / "odometry.log"),
                                       poses.read_trajectory(folder / "trajectory.log"))
    within(report["ate"]["rmse"], 0.005, "ATE RMSE (m)")  # measured 0.43 mm: both trace the same 7 cm of motion
    within(report["rpe"]["rotation_deg"]["max"], 0.5, "RPE rotation max (deg)")  # measured 0.065 degrees
    # pairing poses out of order is caught by the errors
    shuffled = poses.read_trajectory(folder / "odometry.log")
    shuffled.world_from_camera = shuffled.world_from_camera[[4, 0, 3, 1, 2]]
    bad = poses.evaluate_trajectory(shuffled, poses.read_trajectory(folder / "trajectory.log"))
    assert bad["ate"]["rmse"] > 5 * report["ate"]["rmse"]


def test_eval_poses_cli(rgbd_dir, tmp_path, capsys):
    from localdepth.cli.main import main

    traj = poses.read_trajectory(rgbd_dir / "livingroom" / "trajectory.log")
    views = [{"image": f"{i:05d}.jpg", "width": 640, "height": 480,
              "intrinsics": [[525, 0, 319.5], [0, 525, 239.5], [0, 0, 1]],
              "camera_from_world": g.invert_pose(T).tolist()} for i, T in enumerate(traj.world_from_camera)]
    (tmp_path / "cameras.json").write_text(json.dumps({"model": "gt", "views": views}))
    assert main(["eval-poses", str(tmp_path / "cameras.json"), str(rgbd_dir / "livingroom" / "trajectory.log"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["poses"] == 5
    within(report["ate"]["max"], 1e-9, "ATE max")
    # three of the five views against every other ground-truth pose
    (tmp_path / "three.json").write_text(json.dumps({"model": "gt", "views": views[::2]}))
    assert main(["eval-poses", str(tmp_path / "three.json"), str(rgbd_dir / "livingroom" / "trajectory.log"),
                 "--gt-stride", "2"]) == 0
    assert "| ATE (gt units) |" in capsys.readouterr().out
    assert main(["eval-poses", str(tmp_path / "three.json"), str(rgbd_dir / "livingroom" / "trajectory.log")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("localdepth: error: the trajectories have 3 and 5 poses") and "\n" not in err
    # views of frames 4, 1, 3 (any order, as a thinned video gives) matched by their frame numbers
    picked = [dict(views[i], image=f"scene/images/frame_{i:06d}.jpg") for i in (4, 1, 3)]
    (tmp_path / "picked.json").write_text(json.dumps({"model": "gt", "views": picked}))
    assert main(["eval-poses", str(tmp_path / "picked.json"), str(rgbd_dir / "livingroom" / "trajectory.log"),
                 "--match", "frame", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["poses"] == 3
    within(report["ate"]["max"], 1e-9, "ATE max")
    # by order, the same file pairs the wrong poses: a large error
    (tmp_path / "five.json").write_text(json.dumps({"model": "gt", "views": picked + picked[:2]}))
    assert main(["eval-poses", str(tmp_path / "five.json"), str(rgbd_dir / "livingroom" / "trajectory.log"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ate"]["rmse"] > 1e-3
    with pytest.raises(LocalDepthError, match="no such trajectory"):
        poses.read_trajectory(tmp_path / "missing.log")


# ----------------------------------------------------------------------------- poses that are not poses (issue 20, item 18)

def _tum(T: np.ndarray, q_override=None, t_override=None) -> str:
    lines = []
    for i, P in enumerate(T):
        x, y, z, w = Rotation.from_matrix(P[:3, :3]).as_quat()
        q = (x, y, z, w) if q_override is None or i != 2 else q_override
        t = P[:3, 3] if t_override is None or i != 2 else t_override
        lines.append(f"{i}.0 " + " ".join(f"{v:.17g}" for v in (*t, *q)))
    return "\n".join(lines) + "\n"


def _log(T: np.ndarray) -> str:
    return "".join(f"{i} {i} {i + 1}\n" + "\n".join(" ".join(f"{v:.17g}" for v in row) for row in P) + "\n"
                   for i, P in enumerate(T))


def _cameras(T: np.ndarray, bad=None) -> str:
    views = [{"image": f"{i:05d}.jpg", "camera_from_world": (bad if bad is not None and i == 2
                                                              else g.invert_pose(P)).tolist()}
             for i, P in enumerate(T)]
    return json.dumps({"views": views})


def _colmap(T: np.ndarray, q_override=None) -> str:
    lines = []
    for i, P in enumerate(T):
        E = g.invert_pose(P)
        q = g.rotation_to_quaternion(E[:3, :3]) if q_override is None or i != 2 else q_override
        lines.append(f"{i + 1} " + " ".join(f"{v:.17g}" for v in (*q, *E[:3, 3])) + f" 1 {i:05d}.jpg\n")
    return "".join(lines)


def test_trajectories_that_hold_no_rigid_poses_are_refused_in_one_line(tmp_path, capsys):
    """Each of these gave a traceback (LinAlgError, IndexError) or a report with exit 0 (NaN RPE, 180 degrees)."""
    from localdepth.cli.main import main

    truth = _random_poses(6)
    (tmp_path / "truth.log").write_text(_log(truth))
    scaled = truth.copy()
    scaled[:, :3, :3] *= 2.0  # a similarity, not a pose
    sheared = truth.copy()
    sheared[2, 0, 1] += 0.1
    zeros = np.zeros_like(truth)
    zero_rotation = truth.copy()
    zero_rotation[:, :3, :3] = 0.0
    lifted = truth.copy()
    lifted[3, 3, :3] = 0.5
    cases = {
        "nan.txt": (_tum(truth, t_override=(float("nan"), 0, 0)), "non-finite"),
        "inf.txt": (_tum(truth, q_override=(0, 0, float("inf"), 1)), "four finite numbers"),
        "zero_quaternion.txt": (_tum(truth, q_override=(0, 0, 0, 0)), "has norm 0, not 1"),
        "half_quaternion.txt": (_tum(truth, q_override=(0, 0, 0, 0.5)), "has norm 0.5, not 1"),
        "far.txt": (_tum(truth, t_override=(1e300, 0, 0)), "beyond 1e+09"),
        "zeros.log": (_log(zeros), "the last row of the pose is 0 0 0 0, not 0 0 0 1"),
        "zero_rotation.log": (_log(zero_rotation), "not a rigid camera pose"),
        "scaled.log": (_log(scaled), "not a rigid camera pose"),
        "sheared.log": (_log(sheared), "not a rigid camera pose"),
        "last_row.log": (_log(lifted), "not 0 0 0 1"),
        "three_by_three.json": (_cameras(truth, bad=np.eye(3)), "must be a 4x4 matrix, got shape (3, 3)"),
        "mirrored.json": (_cameras(truth, bad=np.diag([1.0, 1.0, -1.0, 1.0])), "det R = -1"),
        "nan.json": (_cameras(truth, bad=np.full((4, 4), np.nan)), "non-finite"),
        "images.txt": (_colmap(truth, q_override=(0, 0, 0, 0)), "has norm 0, not 1"),
    }
    for name, (text, words) in cases.items():
        path = tmp_path / name if name != "images.txt" else tmp_path / "colmap" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        for args in ([str(path), str(tmp_path / "truth.log")], [str(tmp_path / "truth.log"), str(path)]):
            code = main(["eval-poses", *args])
            captured = capsys.readouterr()
            err = captured.err.strip()
            assert code == 2 and "\n" not in err and words in err, (name, code, err, captured.out[:300])
            assert str(path) in err  # names the file (and its line or view)


def test_the_rigidity_tolerance_admits_real_trajectories(rgbd_dir, tmp_path):
    """Open3D's odometry.log is rigid to 1.7e-6 only, and 4-decimal TUM files to about 4e-4: both read."""
    from localdepth import limits

    assert limits.POSE_RIGIDITY_TOLERANCE == 1e-2 and limits.POSE_MAX_COORDINATE == 1e9
    assert len(poses.read_trajectory(rgbd_dir / "livingroom" / "odometry.log")) == 5
    truth = _random_poses(6)
    lines = [f"{i}.0 " + " ".join(f"{v:.4f}" for v in (*P[:3, 3], *Rotation.from_matrix(P[:3, :3]).as_quat()))
             for i, P in enumerate(truth)]
    (tmp_path / "rounded.txt").write_text("\n".join(lines) + "\n")
    back = poses.read_trajectory(tmp_path / "rounded.txt")
    np.testing.assert_allclose(back.world_from_camera, truth, atol=1e-3)

def test_match_by_frame_takes_the_last_number_of_a_name(tmp_path, capsys):
    """KITTI-style names carry a drive number before the frame: drive_0001_0000000005.png is frame 5, not 1.
    Views of frames 5, 2 and 7 of a 10-pose ground truth pair with those poses (zero error); pairing
    them with pose 1 (the first number) or by order would not."""
    from localdepth.cli.main import main

    truth = _random_poses(10, seed=11)
    assert [poses.frame_number(n) for n in ("drive_0001_0000000005.png", "2011_09_26/drive_0002_0000000012.jpg",
                                            "frame_000120.jpg", "00003.png", "left")] == [5, 12, 120, 3, None]
    frames = (5, 2, 7)
    names = [f"drive_0001_{f:010d}.png" for f in frames]
    predicted = poses.Trajectory(truth[list(frames)], names)
    paired, matched = poses.match_by_frame(predicted, poses.Trajectory(truth, [str(i) for i in range(10)]))
    assert matched.names == ["5", "2", "7"]
    np.testing.assert_array_equal(matched.world_from_camera, truth[list(frames)])
    # through the command: a cameras.json with those names against a TUM ground truth
    views = [{"image": n, "width": 64, "height": 48, "intrinsics": [[50, 0, 31.5], [0, 50, 23.5], [0, 0, 1]],
              "camera_from_world": g.invert_pose(T).tolist()} for n, T in zip(names, truth[list(frames)])]
    (tmp_path / "cameras.json").write_text(json.dumps({"model": "gt", "views": views}))
    lines = [f"{i:.1f} " + " ".join(f"{v:.17g}" for v in (*T[:3, 3], *Rotation.from_matrix(T[:3, :3]).as_quat()))
             for i, T in enumerate(truth)]
    (tmp_path / "gt.txt").write_text("\n".join(lines) + "\n")
    assert main(["eval-poses", str(tmp_path / "cameras.json"), str(tmp_path / "gt.txt"), "--match", "frame",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["poses"] == 3
    within(report["ate"]["max"], 1e-9, "ATE max")
    within(report["rpe"]["translation"]["max"], 1e-9, "RPE translation max")


@pytest.mark.parametrize("delta", [1, 3])
def test_rpe_is_zero_for_a_similar_trajectory_through_the_command(tmp_path, capsys, delta):
    """The predicted cameras are the truth moved by a similarity (rotation, scale 0.3, translation), as a
    relative model's scene is: after the alignment, ATE and RPE (translation and rotation, any delta) are 0."""
    from localdepth.cli.main import main

    truth = _random_poses(12, seed=12)
    S = g.similarity_matrix(0.3, Rotation.random(random_state=13).as_matrix(), np.array([-2.0, 0.5, 4.0]))
    moved = poses.apply_similarity(truth, S)
    views = [{"image": f"{i:05d}.png", "width": 64, "height": 48, "intrinsics": [[50, 0, 31.5], [0, 50, 23.5], [0, 0, 1]],
              "camera_from_world": g.invert_pose(T).tolist()} for i, T in enumerate(moved)]
    (tmp_path / "cameras.json").write_text(json.dumps({"model": "x", "views": views}))
    lines = [f"{i:.1f} " + " ".join(f"{v:.17g}" for v in (*T[:3, 3], *Rotation.from_matrix(T[:3, :3]).as_quat()))
             for i, T in enumerate(truth)]
    (tmp_path / "gt.txt").write_text("\n".join(lines) + "\n")
    assert main(["eval-poses", str(tmp_path / "cameras.json"), str(tmp_path / "gt.txt"), "--delta", str(delta),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["alignment"]["scale"] == pytest.approx(1 / 0.3, rel=1e-9)
    assert report["rpe"]["pairs"] == 12 - delta
    within(report["ate"]["max"], 1e-9, "ATE max")
    within(report["rpe"]["translation"]["max"], 1e-9, "RPE translation max")
    within(report["rpe"]["rotation_deg"]["max"], 1e-6, "RPE rotation max (deg)")
