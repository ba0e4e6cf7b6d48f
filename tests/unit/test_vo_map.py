"""The shared map: ids, keyframes, observations, covisibility (against a brute-force count), snapshots, PLY."""

from __future__ import annotations

import threading

import numpy as np

from slam.map.export import frame_poses, read_ply_points, write_ply
from slam.map.keyframe import KeyframeData
from slam.map.map import ALIVE, CULLED, NONE, Map


def _kf(i: int, ids: np.ndarray) -> KeyframeData:
    n = len(ids)
    T = np.eye(4)
    T[0, 3] = float(i)
    return KeyframeData(id=i, frame_index=10 * i, timestamp=0.5 * i, pose=T, segment=0, ids=ids,
                        uv=np.tile([100.0, 50.0], (n, 1)), u_right=np.full(n, np.nan), depth=np.full(n, np.nan))


def test_keyframes_observations_and_covisibility() -> None:
    m = Map()
    ids = m.allocate_ids(100)
    rng = np.random.default_rng(0)
    sets = [np.sort(rng.choice(ids, 40, replace=False)) for _ in range(6)]
    for i, s in enumerate(sets):
        m.insert_keyframe(_kf(i, s))
    assert m.n_keyframes == 6
    for i in range(6):
        for j in range(6):
            shared = len(np.intersect1d(sets[i], sets[j]))
            if i != j and shared:
                assert m.covisibility[i][j] == shared
    rows = m.observation_rows(2, 3)
    np.testing.assert_array_equal(m.obs_lm.a[rows], np.concatenate([sets[2], sets[3]]))
    np.testing.assert_array_equal(m.obs_kf.a[rows], np.repeat([2, 3], 40))


def test_landmark_states_positions_and_snapshot() -> None:
    m = Map()
    ids = m.allocate_ids(10)
    m.create_landmarks(ids[:6], np.arange(18.0).reshape(6, 3), ref_kf=0)
    m.cull_landmarks(ids[4:6])
    np.testing.assert_array_equal(m.states(ids), [ALIVE] * 4 + [CULLED] * 2 + [NONE] * 4)
    pos = m.positions(ids)
    assert np.isfinite(pos[:4]).all() and np.isnan(pos[4:]).all()
    m.insert_keyframe(_kf(0, ids[:5]))
    v = m.version
    m.update(np.array([0]), np.eye(4)[None] * 2.0, ids[:2], np.zeros((2, 3)))
    assert m.version > v
    snap = m.snapshot()
    np.testing.assert_array_equal(snap.point_ids, ids[:4])
    np.testing.assert_array_equal(snap.points[:2], 0.0)
    assert snap.keyframe_poses[0, 0, 0] == 2.0 and snap.n_observations == 5


def test_ids_are_unique_across_threads() -> None:
    m = Map()
    out: list[np.ndarray] = []

    def grab() -> None:
        for _ in range(50):
            out.append(m.allocate_ids(7))

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    allids = np.concatenate(out)
    assert len(np.unique(allids)) == len(allids) == 4 * 50 * 7


def test_ply_round_trip_and_frame_poses(tmp_path) -> None:
    pts = np.random.default_rng(1).normal(size=(50, 3))
    write_ply(tmp_path / "m.ply", pts, np.zeros((3, 3)))
    back = read_ply_points(tmp_path / "m.ply")
    np.testing.assert_allclose(back[:50], pts, rtol=1e-6, atol=1e-6)
    assert back.shape == (53, 3)
    kf = np.tile(np.eye(4), (2, 1, 1))
    kf[1, :3, 3] = [1.0, 0.0, 0.0]
    rel = np.tile(np.eye(4), (3, 1, 1))
    rel[:, 1, 3] = 0.5
    out = frame_poses(np.array([0, 1, -1]), rel, kf, np.zeros((3, 4, 4)))
    np.testing.assert_allclose(out[:, :3, 3], [[0, 0.5, 0], [1, 0.5, 0], [0, 0, 0]])


def _se3(rvec: list[float], t: list[float]) -> np.ndarray:
    import cv2
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.asarray(rvec, float))[0]
    T[:3, 3] = t
    return T


def test_apply_correction_moves_anchored_landmarks_exactly() -> None:
    m = Map()
    ids = m.allocate_ids(6)
    for i in range(3):
        m.insert_keyframe(_kf(i, ids))
    old = [m.keyframe_pose(i) for i in range(3)]
    P = np.array([[0.0, 0, 2], [1, 1, 3], [-1, 0.5, 4], [2, 0, 5], [0, 0, 1], [3, 3, 3]])
    m.create_landmarks(ids[:2], P[:2], ref_kf=0)
    m.create_landmarks(ids[2:4], P[2:4], ref_kf=1)
    m.create_landmarks(ids[4:5], P[4:5], ref_kf=2)  # anchored to a keyframe the correction leaves alone
    m.create_landmarks(ids[5:6], P[5:6], ref_kf=1)
    m.cull_landmarks(ids[5:6])                       # culled: must not move
    new = [_se3([0.1, -0.2, 0.3], [1, 2, 3]), _se3([0, 0.5, 0], [-1, 0, 2])]
    v0 = m.version
    v = m.apply_correction(np.array([0, 1]), np.stack(new), scales=np.array([1.0, 2.0]))
    assert v == m.version == v0 + 1
    np.testing.assert_array_equal(m.keyframe_pose(0), new[0])
    np.testing.assert_array_equal(m.keyframe_pose(1), new[1])
    np.testing.assert_array_equal(m.keyframe_pose(2), old[2])
    # independent expectation: through the camera frame with homogeneous matrices
    expect = P.copy()
    for j, (r, s) in enumerate([(0, 1.0), (0, 1.0), (1, 2.0), (1, 2.0)]):
        p_cam = np.linalg.inv(old[r]) @ np.append(P[j], 1.0)
        expect[j] = (new[r] @ np.append(s * p_cam[:3], 1.0))[:3]
    pos, states, refs, _ = m.landmarks(ids)
    np.testing.assert_allclose(pos[:4], expect[:4], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pos[4], P[4])
    np.testing.assert_array_equal(pos[5], P[5])
    np.testing.assert_array_equal(refs, [0, 0, 1, 1, 2, 1])


def test_apply_correction_refuses_unknown_keyframes() -> None:
    m = Map()
    m.insert_keyframe(_kf(0, m.allocate_ids(3)))
    import pytest
    with pytest.raises(ValueError):
        m.apply_correction(np.array([3]), np.eye(4)[None])
    with pytest.raises(ValueError):
        m.apply_correction(np.array([0]), np.stack([np.eye(4)] * 2))


def test_loop_queries_copy_and_filter() -> None:
    m = Map()
    ids = m.allocate_ids(10)
    m.insert_keyframe(_kf(0, ids[:8]))
    m.insert_keyframe(_kf(1, ids[2:10]))
    m.insert_keyframe(_kf(2, ids[6:10]))
    m.create_landmarks(ids[:9], np.arange(27.0).reshape(9, 3), ref_kf=0)
    m.cull_landmarks(ids[3:4])
    lm, uv, ur = m.keyframe_observations(0)
    np.testing.assert_array_equal(lm, np.delete(ids[:8], 3))
    assert uv.shape == (7, 2) and ur.shape == (7,)
    assert m.covisible(1) == {0: 6, 2: 4}
    assert m.covisible(1, min_shared=5) == {0: 6}
    edges = m.covisibility_edges(4)
    np.testing.assert_array_equal(edges[np.lexsort(edges.T[::-1])], [[0, 1, 6], [1, 2, 4]])
    poses, times, frames, segs = m.keyframe_table()
    np.testing.assert_array_equal(times, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(frames, [0, 10, 20])
    poses[0, 0, 0] = 99.0  # a copy: the map is untouched
    assert m.keyframe_pose(0)[0, 0] == 1.0
