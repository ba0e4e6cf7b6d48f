"""Tracking follows a loop correction: current pose, landmark positions, fused track ids."""

from __future__ import annotations

import numpy as np
import pytest

from slam.config import RunConfig
from slam.geometry.pinhole import Rig
from slam.frontend.state import Tracks
from slam.frontend.tracker import TRACKING, Tracker
from slam.geometry import lie
from slam.map.keyframe import KeyframeData
from slam.map.map import Map


def test_refresh_moves_the_current_pose_with_its_keyframe_and_renames_fused_tracks() -> None:
    m = Map()
    ids = m.allocate_ids(6)
    K = np.array([[400.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    poses = [np.eye(4), lie.se3_exp(np.array([0.0, 0.1, 0.0, 0.3, 0.0, 0.1]))]
    for i, T in enumerate(poses):
        m.insert_keyframe(KeyframeData(id=i, frame_index=i, timestamp=i, pose=T, segment=0, ids=ids[3 * i:3 * i + 3],
                                       uv=np.zeros((3, 2)), u_right=np.full(3, np.nan), depth=np.full(3, np.nan)))
    P = np.arange(18.0).reshape(6, 3) + [0, 0, 5]
    m.create_landmarks(ids[:3], P[:3], ref_kf=0)
    m.create_landmarks(ids[3:], P[3:], ref_kf=1)
    cfg = RunConfig()
    tr = Tracker(cfg.frontend, cfg.keyframes, Rig(K, 640, 480, "stereo", 0.1), m, emit=lambda kf: None)
    tr.state, tr.kf_id = TRACKING, 1
    tr.kf_poses = {0: poses[0], 1: poses[1]}
    tr.kf_T_wc = poses[1]
    T_wc = poses[1] @ lie.se3_exp(np.array([0.01, 0.0, 0.0, 0.05, 0.0, 0.02]))  # a frame after keyframe 1
    tr.T_cw = lie.se3_inverse(T_wc)
    tr.V = lie.se3_exp(np.array([0.0, 0.01, 0.0, 0.02, 0.0, 0.0]))
    V0 = tr.V.copy()
    tr.tracks = Tracks()
    tr.tracks.add(ids[3:], np.zeros((3, 2)), P[3:].copy())
    tr.map_version = m.version
    # the loop: a rigid world correction G of both keyframes, then track 3 fused into landmark 0
    G = lie.se3_exp(np.array([0.0, 0.0, 0.2, 0.5, -0.3, 0.0]))
    m.apply_correction(np.array([0, 1]), np.stack([G @ p for p in poses]))
    m.fuse_landmarks(ids[[0]], ids[[3]])
    tr._refresh_from_map()
    np.testing.assert_allclose(lie.se3_inverse(tr.T_cw), G @ T_wc, atol=1e-12)
    np.testing.assert_allclose(tr.kf_T_wc, G @ poses[1], atol=1e-12)
    np.testing.assert_array_equal(tr.V, V0)  # a camera-frame increment: unchanged by a world correction
    np.testing.assert_array_equal(tr.tracks.ids, ids[[0, 4, 5]])
    expect = np.concatenate([(G[:3, :3] @ P[0] + G[:3, 3])[None], P[4:] @ G[:3, :3].T + G[:3, 3]])
    np.testing.assert_allclose(tr.tracks.xyz, expect, atol=1e-12)


def _sim3(s: float, xi: np.ndarray) -> np.ndarray:
    C = lie.se3_exp(xi)
    C[:3, :3] *= s
    return C


def _act(C: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ C[:3, :3].T + C[:3, 3]


def _se3_part(S: np.ndarray) -> np.ndarray:
    T = S.copy()
    T[:3, :3] /= np.cbrt(np.linalg.det(S[:3, :3]))
    return T


def test_a_sim3_correction_rescales_what_tracking_measured_in_the_corrected_frames() -> None:
    """A monocular loop's world similarity C (scale 1.2) applied to the map: tracking's current pose,
    a keyframe still queued for the worker, provisional points in it and in a map keyframe, and the
    motion model all end up as C would map them (positions C(p), poses C's rigid part with the
    camera centre at C(c), camera-frame translations times 1.2); the worker then inserts the queued
    keyframe where C puts it, with its new points, and with the map's scale for it."""
    from slam.odometry.config import OdometryConfig
    from slam.odometry.worker import OdometryWorker

    m = Map()
    ids = m.allocate_ids(8)
    K = np.array([[400.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    poses = [np.eye(4), lie.se3_exp(np.array([0.0, 0.1, 0.0, 0.3, 0.0, 0.1])),
             lie.se3_exp(np.array([0.02, 0.15, 0.0, 0.55, 0.05, 0.12]))]  # keyframe 2: queued, not in the map
    for i in range(2):
        m.insert_keyframe(KeyframeData(id=i, frame_index=i, timestamp=i, pose=poses[i], segment=0,
                                       ids=ids[3 * i:3 * i + 3], uv=np.zeros((3, 2)), u_right=np.full(3, np.nan),
                                       depth=np.full(3, np.nan)))
    P = np.arange(24.0).reshape(8, 3) * 0.1 + [0, 0, 5]
    m.create_landmarks(ids[:3], P[:3], ref_kf=0)
    cfg = RunConfig()
    tr = Tracker(cfg.frontend, cfg.keyframes, Rig(K, 640, 480, "mono", 0.0), m, emit=lambda kf: None)
    tr.state, tr.kf_id = TRACKING, 2
    tr.kf_poses = {k: T for k, T in enumerate(poses)}
    tr.kf_scale = {0: 1.0, 1: 1.0, 2: 1.0}
    T_12 = lie.se3_inverse(poses[1]) @ poses[2]
    tr.kf_rel = {2: (1, T_12, 1.0)}
    tr.kf_T_wc = poses[2]
    T_wc = poses[2] @ lie.se3_exp(np.array([0.01, 0.0, 0.0, 0.05, 0.0, 0.02]))
    tr.T_cw = lie.se3_inverse(T_wc)
    tr.V = lie.se3_exp(np.array([0.0, 0.01, 0.0, 0.02, 0.0, 0.01]))
    V0 = tr.V.copy()
    tr.tracks = Tracks()
    tr.tracks.add(ids[3:6], np.zeros((3, 2)), P[3:6].copy())  # provisional, measured in keyframe 1 ...
    tr.tracks.add(ids[6:], np.zeros((2, 2)), P[6:].copy())    # ... and in the queued keyframe 2
    tr.tracks.xyz_kf[:] = [1, 1, 1, 2, 2]
    tr.map_version = m.version
    C = _sim3(1.2, np.array([0.0, 0.0, 0.2, 0.5, -0.3, 0.0]))
    m.correct_keyframes(np.stack([C, C]), sim3=True)
    assert m.keyframe_scale(0) == m.keyframe_scale(1) == pytest.approx(1.2)
    np.testing.assert_allclose(m.positions(ids[:3]), _act(C, P[:3]), atol=1e-12)  # the map's own landmarks
    tr._refresh_from_map()
    np.testing.assert_allclose(tr.kf_poses[2], _se3_part(C @ poses[2]), atol=1e-12)
    np.testing.assert_allclose(lie.se3_inverse(tr.T_cw), _se3_part(C @ T_wc), atol=1e-12)
    np.testing.assert_allclose(tr.tracks.xyz, _act(C, P[3:]), atol=1e-12)
    np.testing.assert_allclose(tr.V[:3, :3], V0[:3, :3], atol=1e-15)
    np.testing.assert_allclose(tr.V[:3, 3], 1.2 * V0[:3, 3], atol=1e-15)
    assert tr.kf_scale[2] == pytest.approx(1.2)
    # the worker inserts the queued keyframe, measured before the correction, where C puts it
    new_pts = P[6:].copy()
    kf2 = KeyframeData(id=2, frame_index=2, timestamp=2, pose=poses[2], segment=0, ids=ids[6:],
                       uv=np.zeros((2, 2)), u_right=np.full(2, np.nan), depth=np.full(2, np.nan),
                       new_ids=ids[6:], new_points=new_pts, ref_kf=1, T_ref_kf=T_12, scale=1.0)
    OdometryWorker(m, Rig(K, 640, 480, "mono", 0.0), OdometryConfig())._insert(kf2)
    np.testing.assert_allclose(m.keyframe_pose(2), _se3_part(C @ poses[2]), atol=1e-12)
    np.testing.assert_allclose(kf2.new_points, _act(C, P[6:]), atol=1e-12)
    assert m.keyframe_scale(2) == pytest.approx(1.2)


def test_a_rigid_correction_leaves_the_scales_and_the_motion_model() -> None:
    m = Map()
    ids = m.allocate_ids(3)
    m.insert_keyframe(KeyframeData(id=0, frame_index=0, timestamp=0, pose=np.eye(4), segment=0, ids=ids,
                                   uv=np.zeros((3, 2)), u_right=np.full(3, np.nan), depth=np.full(3, np.nan)))
    G = lie.se3_exp(np.array([0.0, 0.0, 0.2, 0.5, -0.3, 0.0]))
    m.correct_keyframes(G[None], sim3=False)
    assert m.keyframe_scale(0) == 1.0
    m.correct_keyframes(_sim3(0.9, np.zeros(6))[None], sim3=True)
    assert m.keyframe_scale(0) == pytest.approx(0.9)
    assert m.tracking_view(ids).keyframe_scales.tolist() == pytest.approx([0.9])


def test_two_sim3_corrections_and_a_chain_of_queued_keyframes() -> None:
    """Correction 1 (scale 1.3) lands before keyframe 3 is made against queued keyframe 2, correction 2
    (scales 0.8 and 0.7 on keyframes 0 and 1) after it: tracking and the worker's later inserts put
    every keyframe where the two similarities put it, keyframe 3's new points where the second one
    puts them, and a refresh after the inserts changes nothing (nothing is rescaled twice)."""
    from slam.odometry.config import OdometryConfig
    from slam.odometry.worker import OdometryWorker

    m = Map()
    ids = m.allocate_ids(2)
    K = np.array([[400.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    rig = Rig(K, 640, 480, "mono", 0.0)
    poses = [lie.se3_exp(np.array([0.0, 0.02 * i, 0.01 * i, 0.25 * i, 0.02 * i, 0.05 * i])) for i in range(4)]
    none = dict(ids=ids[:0], uv=np.zeros((0, 2)), u_right=np.zeros(0), depth=np.zeros(0))
    for i in range(2):
        m.insert_keyframe(KeyframeData(id=i, frame_index=i, timestamp=i, pose=poses[i], segment=0, **none))
    cfg = RunConfig()
    tr = Tracker(cfg.frontend, cfg.keyframes, rig, m, emit=lambda kf: None)
    tr.state, tr.kf_id, tr.kf_T_wc = TRACKING, 2, poses[2]
    tr.kf_poses = {k: T for k, T in enumerate(poses[:3])}
    tr.kf_scale = {0: 1.0, 1: 1.0, 2: 1.0}
    T_12 = lie.se3_inverse(poses[1]) @ poses[2]
    tr.kf_rel = {2: (1, T_12, 1.0)}
    T_wc = poses[2] @ lie.se3_exp(np.array([0.0, 0.01, 0.0, 0.04, 0.0, 0.01]))  # a frame after keyframe 2
    tr.T_cw, tr.V, tr.tracks = lie.se3_inverse(T_wc), np.eye(4), Tracks()
    p2 = np.array([[0.5, 0.1, 5.0]])  # a provisional point measured in queued keyframe 2
    tr.tracks.add(ids[:1], np.zeros((1, 2)), p2.copy())
    tr.tracks.xyz_kf[:] = 2
    tr.map_version = m.version
    C1 = _sim3(1.3, np.array([0.1, 0.0, 0.0, 0.2, 0.0, -0.1]))
    m.correct_keyframes(np.stack([C1, C1]), sim3=True)
    tr._refresh_from_map()
    assert tr.kf_scale[2] == pytest.approx(1.3)
    # keyframe 3 is made now against queued keyframe 2, in the corrected world (as _make_keyframe records it)
    T_w3 = _se3_part(C1 @ poses[3])
    T_23 = lie.se3_inverse(tr.kf_poses[2]) @ T_w3
    tr.kf_rel[3], tr.kf_scale[3], tr.kf_poses[3] = (2, T_23, tr.kf_scale[2]), tr.kf_scale[2], T_w3
    pts3_w = _act(T_w3, np.array([[0.3, -0.2, 4.0], [1.0, 0.5, 6.0]]))
    C2 = [_sim3(0.8, np.array([0.0, 0.05, 0.0, 0.0, 0.3, 0.0])), _sim3(0.7, np.array([0.0, 0.0, 0.1, 0.1, 0.0, 0.2]))]
    m.correct_keyframes(np.stack(C2), sim3=True)  # the queued keyframes follow keyframe 1's correction
    tr._refresh_from_map()
    for k in (2, 3):
        np.testing.assert_allclose(tr.kf_poses[k], _se3_part(C2[1] @ C1 @ poses[k]), atol=1e-12)
        assert tr.kf_scale[k] == pytest.approx(1.3 * 0.7)
    np.testing.assert_allclose(tr.tracks.xyz, _act(C2[1] @ C1, p2), atol=1e-12)  # rescaled by 0.7, then by 1.3 before
    np.testing.assert_allclose(lie.se3_inverse(tr.T_cw), _se3_part(C2[1] @ C1 @ T_wc), atol=1e-12)
    w = OdometryWorker(m, rig, OdometryConfig())
    kf2 = KeyframeData(id=2, frame_index=2, timestamp=2, pose=poses[2], segment=0, ref_kf=1, T_ref_kf=T_12,
                       scale=1.0, **none)
    kf3 = KeyframeData(id=3, frame_index=3, timestamp=3, pose=T_w3, segment=0, ref_kf=2, T_ref_kf=T_23, scale=1.3,
                       new_ids=ids, new_points=pts3_w, **none)
    for kf in (kf2, kf3):
        w._insert(kf)
        np.testing.assert_allclose(m.keyframe_pose(kf.id), tr.kf_poses[kf.id], atol=1e-12)
        assert m.keyframe_scale(kf.id) == pytest.approx(1.3 * 0.7)
    np.testing.assert_allclose(kf3.new_points, _act(C2[1], pts3_w), atol=1e-12)
    before = {k: T.copy() for k, T in tr.kf_poses.items()}
    m.version += 1  # a refresh with nothing new: the inserted keyframes are not rescaled again
    tr._refresh_from_map()
    for k in before:
        np.testing.assert_allclose(tr.kf_poses[k], before[k], atol=1e-12)
    assert tr.kf_rel == {}  # inserted keyframes are no longer queued


def test_frame_poses_rescale_what_was_tracked_before_a_sim3_correction() -> None:
    """trajectory.tum: a frame tracked 0.4 m from its keyframe before a correction of scale 1.25 is
    0.5 m from it after (its keyframe's units), with and without the scales (rigid: unchanged)."""
    from slam.map.export import frame_poses

    kf = np.stack([np.eye(4), lie.se3_exp(np.array([0.0, 0.3, 0.0, 1.0, 0.0, 0.0]))])
    rel = np.stack([np.eye(4), np.eye(4)])
    rel[:, 0, 3] = 0.4
    out = frame_poses(np.array([0, 1]), rel, kf, np.zeros((2, 4, 4)), np.array([1.0, 0.8]), np.array([1.0, 1.0]))
    np.testing.assert_allclose(out[0][:3, 3], [0.4, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(out[1], kf[1] @ lie.se3_exp(np.array([0.0, 0, 0, 0.5, 0, 0])), atol=1e-15)
    np.testing.assert_array_equal(frame_poses(np.array([0, 1]), rel, kf, np.zeros((2, 4, 4))), kf @ rel)


def test_landmarks_computed_before_a_correction_follow_their_keyframe() -> None:
    """The worker computes a new keyframe's landmark positions after inserting it; a loop correction
    (Sim(3), scale 1.2) that lands in between moves them as it moved the keyframe's other landmarks."""
    m = Map()
    ids = m.allocate_ids(3)
    T = lie.se3_exp(np.array([0.0, 0.1, 0.0, 0.3, 0.0, 0.1]))
    m.insert_keyframe(KeyframeData(id=0, frame_index=0, timestamp=0, pose=T, segment=0, ids=ids,
                                   uv=np.zeros((3, 2)), u_right=np.full(3, np.nan), depth=np.full(3, np.nan)))
    P = np.array([[0.2, 0.1, 4.0], [1.0, -0.5, 6.0], [0.0, 0.0, 3.0]])
    m.create_landmarks(ids[:1], P[:1], 0)  # made before the correction
    C = _sim3(1.2, np.array([0.0, 0.0, 0.2, 0.5, -0.3, 0.0]))
    m.correct_keyframes(C[None], sim3=True)
    m.create_landmarks(ids[1:], P[1:], 0, measured_at=(T, 1.0))  # computed before it, written after
    np.testing.assert_allclose(m.positions(ids), _act(C, P), atol=1e-12)
    new = m.allocate_ids(1)
    m.create_landmarks(new, P[:1], 0, measured_at=(m.keyframe_pose(0), 1.2))  # computed after it: kept as given
    np.testing.assert_array_equal(m.positions(new), P[:1])
