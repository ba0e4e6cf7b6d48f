"""Relocalization against the map alone: landmarks placed from the renderer's depth and ground-truth
pose of one frame, a later frame found again by ORB matching and PnP."""

from __future__ import annotations

import numpy as np

from slam.frontend.features import detect, make_orb, orb_descriptors, to_gray
from slam.frontend.relocalizer import relocalize
from slam.frontend.stereo import depth_lookup
from slam.geometry.pinhole import backproject
from slam.geometry import lie
from slam.map.keyframe import KeyframeData
from slam.map.map import Map
from slam.synthetic import SyntheticSource


def _map_from(frame, K: np.ndarray, orb) -> Map:
    gray = to_gray(frame.left)
    uv = detect(gray, np.zeros((0, 2)), 400, 8, 6, 10, 0.005, 20).astype(np.float64)
    depth = depth_lookup(frame.depth, uv, 0.2, 10.0)
    desc, ok = orb_descriptors(gray, uv, orb)
    m = Map()
    ids = m.allocate_ids(len(uv))
    n = len(uv)
    m.insert_keyframe(KeyframeData(0, frame.index, frame.timestamp, frame.gt_pose, 0, ids, uv, np.full(n, np.nan),
                                   depth, desc, ok))
    have = np.isfinite(depth)
    m.create_landmarks(ids[have], backproject(uv[have], depth[have], K, frame.gt_pose), ref_kf=0)
    return m


def test_relocalizes_a_later_frame_against_ground_truth() -> None:
    src = SyntheticSource("room_loop", "rgbd", frames=12)
    frames = list(src)
    K = src.calibration.camera.K
    orb = make_orb()
    m = _map_from(frames[0], K, orb)
    rel = relocalize(to_gray(frames[10].left), m, K, orb, n_keyframes=5, min_inliers=25, threshold=2.5)
    assert rel is not None and rel.inliers >= 25 and len(rel.ids) == rel.inliers
    T_true = lie.se3_inverse(frames[10].gt_pose)
    R_err = rel.T_cw[:3, :3] @ T_true[:3, :3].T
    assert np.degrees(np.arccos(np.clip((np.trace(R_err) - 1) / 2, -1, 1))) < 0.3
    assert np.linalg.norm(lie.se3_inverse(rel.T_cw)[:3, 3] - frames[10].gt_pose[:3, 3]) < 0.02
    # the returned tracks are landmarks of the map seen where the pose projects them
    X = m.positions(rel.ids)
    P = X @ rel.T_cw[:3, :3].T + rel.T_cw[:3, 3]
    uv = P[:, :2] / P[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
    assert np.median(np.linalg.norm(uv - rel.uv, axis=1)) < 1.0


def test_no_pose_from_a_blank_frame_or_an_empty_map() -> None:
    src = SyntheticSource("room_loop", "rgbd", frames=2)
    frames = list(src)
    K = src.calibration.camera.K
    orb = make_orb()
    m = _map_from(frames[0], K, orb)
    assert relocalize(np.zeros_like(to_gray(frames[1].left)), m, K, orb, 5, 25, 2.5) is None
    assert relocalize(to_gray(frames[1].left), Map(), K, orb, 5, 25, 2.5) is None
