"""Tracking follows a loop correction: current pose, landmark positions, fused track ids."""

from __future__ import annotations

import numpy as np

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
