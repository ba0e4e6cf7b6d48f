"""The viewer's scene without Open3D: frusta, view camera, ground-truth alignment, loop edges, run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slam.errors import InputError
from slam.geometry import lie
from slam.io.trajectory import Trajectory, write_tum
from slam.map.export import write_ply
from slam.viewer.run_folder import load_run, read_map_points
from slam.viewer.scene import Scene, align_ground_truth, default_view, frustum_lines, look_at, loop_edges, nominal_K


def _pose(rng: np.random.Generator) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = lie.so3_exp(rng.normal(size=3))
    T[:3, 3] = rng.normal(size=3)
    return T


def test_frustum_corners_project_to_image_corners() -> None:
    rng = np.random.default_rng(0)
    K = np.array([[450.0, 0, 370], [0, 455, 245], [0, 0, 1]])
    poses = np.stack([_pose(rng) for _ in range(3)])
    verts, lines = frustum_lines(poses, K, (752, 480), depth=0.3)
    assert verts.shape == (15, 3) and lines.shape == (24, 2)
    for i, T in enumerate(poses):
        v = verts[5 * i:5 * i + 5]
        np.testing.assert_allclose(v[0], T[:3, 3], atol=1e-12)  # apex at the camera centre
        Xc = (v[1:] - T[:3, 3]) @ T[:3, :3]  # world -> camera
        np.testing.assert_allclose(Xc[:, 2], 0.3, atol=1e-12)
        uv = (Xc @ K.T)[:, :2] / Xc[:, 2:]
        np.testing.assert_allclose(uv, [[0, 0], [752, 0], [752, 480], [0, 480]], atol=1e-9)
    assert lines.min() == 0 and lines.max() == 14


def test_look_at_puts_target_at_image_centre_and_up_upwards() -> None:
    eye, target, up = np.array([3.0, -2.0, 5.0]), np.array([0.5, 0.2, -0.1]), np.array([0.0, 0.0, 1.0])
    T = look_at(eye, target, up)
    R = T[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) > 0
    Xc = R @ target + T[:3, 3]
    np.testing.assert_allclose(Xc[:2], 0, atol=1e-12)
    assert Xc[2] > 0
    above = R @ (target + 0.1 * up) + T[:3, 3]
    assert above[1] < 0  # OpenCV image y points down: a point above the target is higher in the image


def test_default_view_frames_every_camera() -> None:
    a = np.linspace(0, 2 * np.pi, 40)
    poses = np.tile(np.eye(4), (40, 1, 1))
    poses[:, :3, 3] = np.stack([3 * np.cos(a), np.zeros_like(a), 2 * np.sin(a)], 1)  # a loop in the x-z plane
    scene = Scene(keyframe_poses=poses, trajectory=poses[:, :3, 3])
    view = default_view(scene, 800, 500)
    uv, front = view.project(poses[:, :3, 3])
    assert front.all()
    assert (uv[:, 0] > 0).all() and (uv[:, 0] < 800).all() and (uv[:, 1] > 0).all() and (uv[:, 1] < 500).all()
    # cameras look along +z with y down: up is -y, and the view looks down on the loop's plane
    assert view.T_cam_world[2, :3] @ np.array([0, -1.0, 0]) < -0.5


def test_align_ground_truth_recovers_a_similarity() -> None:
    rng = np.random.default_rng(1)
    est = rng.normal(size=(50, 3))
    R, t, s = lie.so3_exp(np.array([0.3, -0.2, 0.9])), np.array([1.0, 2.0, -3.0]), 2.5
    gt = (s * est) @ R.T + t  # gt = s R est + t, so est = R^T (gt - t) / s
    times = np.arange(50) * 0.1
    back = align_ground_truth(times, est, times, gt, with_scale=True)
    np.testing.assert_allclose(back, est, atol=1e-9)
    assert align_ground_truth(times[:2], est[:2], times[:2], gt[:2], True) is None
    assert align_ground_truth(times, est, times + 100.0, gt, True) is None  # no matching timestamps


def test_loop_edges_match_timestamp_then_id() -> None:
    ids, times = np.array([0, 1, 2, 3]), np.array([0.0, 0.5, 1.0, 1.5])
    pos = np.arange(12.0).reshape(4, 3)
    loops = [{"query": {"keyframe": 3, "timestamp": 1.5}, "match": {"keyframe": 0, "timestamp": 0.0}},
             {"query": {"keyframe": 99, "timestamp": 1.0}, "match": {"keyframe": 1}},  # timestamp wins over id
             {"query": {"keyframe": 7}, "match": {"keyframe": 0}}]                    # unknown keyframe: skipped
    e = loop_edges(loops, ids, times, pos)
    np.testing.assert_array_equal(e, [[pos[3], pos[0]], [pos[2], pos[1]]])


def _write_run(d: Path, with_gt: bool = True) -> np.ndarray:
    d.mkdir(parents=True, exist_ok=True)
    a = np.linspace(0, 1.5 * np.pi, 30)
    poses = np.tile(np.eye(4), (30, 1, 1))
    poses[:, :3, 3] = np.stack([np.cos(a), 0.1 * np.sin(3 * a), np.sin(a)], 1)
    t = np.arange(30) * 0.05
    write_tum(d / "trajectory.tum", Trajectory(t, poses))
    write_tum(d / "keyframes.tum", Trajectory(t[::3], poses[::3]))
    pts = np.random.default_rng(0).normal(size=(200, 3)) * 2
    write_ply(d / "map.ply", pts, poses[::3, :3, 3])
    if with_gt:
        gt = poses.copy()
        gt[:, :3, 3] = poses[:, :3, 3] + np.array([10.0, 0, 0])
        write_tum(d / "groundtruth.tum", Trajectory(t, gt))
    (d / "loops.json").write_text(json.dumps([{"query": {"keyframe": 9, "timestamp": float(t[27])},
                                               "match": {"keyframe": 0, "timestamp": 0.0}}]))
    (d / "report.json").write_text(json.dumps({"resolution": [752, 480], "sensor": "stereo",
                                               "ate": {"align": "se3", "rmse": 0.01}}))
    return pts


def test_load_run(tmp_path: Path) -> None:
    pts = _write_run(tmp_path / "run")
    scene = load_run(tmp_path / "run")
    np.testing.assert_allclose(scene.points, pts, atol=1e-5)  # keyframe centres (red) left out
    assert scene.keyframe_poses.shape == (10, 4, 4) and scene.trajectory.shape == (30, 3)
    np.testing.assert_allclose(scene.ground_truth, scene.trajectory, atol=1e-9)  # SE(3)-aligned onto the estimate
    np.testing.assert_allclose(scene.loop_edges[0], [scene.keyframe_poses[9, :3, 3], scene.keyframe_poses[0, :3, 3]])
    np.testing.assert_allclose(scene.K, nominal_K(752, 480))
    assert [label for label, _ in scene.legend()] == ["map points", "keyframes", "estimated trajectory",
                                                      "ground truth (aligned)", "loop closures"]


def test_load_run_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such run folder"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a run folder"):
        load_run(tmp_path / "empty")
    _write_run(tmp_path / "run", with_gt=False)
    (tmp_path / "run" / "loops.json").write_text("[{]")
    with pytest.raises(InputError, match=r"loops.json: line 1"):
        load_run(tmp_path / "run")
    (tmp_path / "run" / "loops.json").write_text("{}")
    with pytest.raises(InputError, match="JSON list"):
        load_run(tmp_path / "run")
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n")
    with pytest.raises(InputError, match="expected the binary PLY"):
        read_map_points(tmp_path / "bad.ply")
    write_ply(tmp_path / "cut.ply", np.zeros((10, 3)))
    (tmp_path / "cut.ply").write_bytes((tmp_path / "cut.ply").read_bytes()[:-20])
    with pytest.raises(InputError, match="truncated"):
        read_map_points(tmp_path / "cut.ply")


def test_live_message_follows_keyframes_and_aligns_ground_truth() -> None:
    from slam.viewer.live import feature_image, scene_from_message

    rng = np.random.default_rng(2)
    kf = np.stack([_pose(rng) for _ in range(4)])
    T_ref = np.stack([_pose(rng) for _ in range(6)])
    ref = np.array([0, 0, 1, 2, 3, -1])  # the last frame has no keyframe yet: its tracking-time pose is kept
    T_wc = np.stack([_pose(rng) for _ in range(6)])
    expect = np.concatenate([(kf[ref[:5]] @ T_ref[:5])[:, :3, 3], T_wc[5:, :3, 3]])
    R, t = lie.so3_exp(np.array([0.1, 0.7, -0.3])), np.array([4.0, -1.0, 2.0])
    gt = expect @ R.T + t  # ground truth in its own frame
    msg = {"points": rng.normal(size=(10, 3)).astype(np.float32), "kf_ids": np.arange(4),
           "kf_times": np.arange(4) * 0.5, "kf_poses": kf, "ref": ref, "t_ref": T_ref[:, :3, 3], "t_wc": T_wc[:, :3, 3], "gt": gt,
           "image": np.full((48, 64), 100, np.uint8), "uv": np.array([[10.0, 10.0], [40.0, 30.0]]),
           "in_map": np.array([True, False]), "current": T_wc[-1],
           "loops": [{"query": {"keyframe": 3, "timestamp": 1.5}, "match": {"keyframe": 0, "timestamp": 0.0}}],
           "status": ""}
    K = nominal_K(64, 48)
    scene, img, status = scene_from_message(msg, K, (64, 48), with_scale=False)
    np.testing.assert_allclose(scene.trajectory, expect, atol=1e-12)
    np.testing.assert_allclose(scene.ground_truth, expect, atol=1e-9)
    np.testing.assert_allclose(scene.loop_edges, [[kf[3, :3, 3], kf[0, :3, 3]]])
    assert "4 keyframes" in status and "1 loop, " in status
    assert img.shape == (48, 64, 3)
    assert (img[10, 13] == [0, 200, 0]).all() and (img[30, 43] == [230, 200, 0]).all()  # rings: map point, new
    assert (img[10, 10] == 100).all()  # the feature itself is not covered
    assert feature_image(None, msg["uv"], msg["in_map"]) is None
