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
