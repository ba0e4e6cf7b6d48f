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
                assert m.covisible(i)[j] == shared
    m.create_landmarks(ids, np.zeros((100, 3)), ref_kf=0)
    view = m.window_view(2, 0)  # keyframes 4 and 5, in table order
    np.testing.assert_array_equal(view.window.lm, np.concatenate([sets[4], sets[5]]))
    np.testing.assert_array_equal(view.window.kf, np.repeat([4, 5], 40))


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
    assert m.apply_window_solve(np.array([0]), np.eye(4)[None] * 2.0, ids[:2], np.zeros((2, 3))) == v + 1
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


def _random_map(seed: int, n_kf: int = 12, n_ids: int = 60) -> tuple[Map, list[np.ndarray], np.ndarray]:
    """A map with random observations, two segments, culled landmarks, rejected rows and tracks without a position."""
    rng = np.random.default_rng(seed)
    m = Map()
    ids = m.allocate_ids(n_ids)
    sets, inserted = [], []
    for i in range(n_kf):
        s = np.sort(rng.choice(ids, 25, replace=False))
        kf = _kf(i, s)
        kf.segment = 0 if i < 5 else 1
        kf.uv = rng.uniform(0, 600, (25, 2))
        kf.u_right = np.where(rng.random(25) < 0.5, kf.uv[:, 0] - 20.0, np.nan)
        m.insert_keyframe(kf)
        inserted.append(kf)
        sets.append(s)
    m.create_landmarks(ids[:50], rng.normal(size=(50, 3)), ref_kf=0)
    m.cull_landmarks(ids[40:45])
    m.inserted = inserted  # the keyframes as handed in, for the tests' expectations
    return m, sets, ids


def _table(m: Map, sets: list[np.ndarray]) -> list[tuple[int, int, int, tuple]]:
    """(row, keyframe, landmark, (u, v, ur)) of every observation, from the public per-keyframe queries."""
    out, row = [], 0
    for k, s in enumerate(sets):
        for j, lm in enumerate(s):
            out.append((row, k, int(lm)))
            row += 1
    return out


def test_window_view_matches_a_brute_force_selection() -> None:
    m, sets, ids = _random_map(3)
    rejected = np.array([7, 130, 260])  # rows of keyframes 0, 5 and 10
    m.reject_observations(rejected)
    table = _table(m, sets)
    alive = set(int(i) for i in ids[:40]) | set(int(i) for i in ids[45:50])
    for n_window, n_older in [(4, 3), (4, 100), (12, 5), (20, 0)]:
        view = m.window_view(n_window, n_older)
        w0 = max(0, 12 - n_window)
        o0 = max(0, w0 - n_older)
        win = [(r, k, lm) for r, k, lm in table if k >= w0 and lm in alive and r not in rejected]
        lms = sorted({lm for _, _, lm in win})
        older = [(r, k, lm) for r, k, lm in table if o0 <= k < w0 and lm in lms and r not in rejected]
        assert (view.n_keyframes, view.first_kf, view.older_kf) == (12, w0, o0)
        np.testing.assert_array_equal(view.window.rows, [r for r, _, _ in win])
        np.testing.assert_array_equal(view.window.kf, [k for _, k, _ in win])
        np.testing.assert_array_equal(view.window.lm, [lm for _, _, lm in win])
        np.testing.assert_array_equal(view.older.rows, [r for r, _, _ in older])
        np.testing.assert_array_equal(view.older.lm, [lm for _, _, lm in older])
        np.testing.assert_array_equal(view.point_ids, lms)
        np.testing.assert_array_equal(view.points, m.positions(np.array(lms, np.int64)))
        ks = np.arange(o0, 12)
        np.testing.assert_array_equal(view.segments, np.where(ks < 5, 0, 1))
        np.testing.assert_array_equal(view.segment_first, np.where(ks < 5, 0, 5))
        np.testing.assert_array_equal(view.poses, [m.keyframe_pose(int(k)) for k in ks])
        for k in range(w0, 12):  # pixels against the per-keyframe query
            lm_k, uv_k, ur_k = m.keyframe_observations(k)
            sel = view.window.kf == k
            np.testing.assert_array_equal(view.window.lm[sel], lm_k[np.isin(lm_k, view.window.lm[sel])])
            np.testing.assert_array_equal(view.window.uv[sel], uv_k[np.isin(lm_k, view.window.lm[sel])])
            np.testing.assert_array_equal(view.window.ur[sel], ur_k[np.isin(lm_k, view.window.lm[sel])])
        view.points[:] = 99.0  # copies: the map is untouched
        view.poses[:] = 0.0
        assert not np.any(m.positions(ids[:40]) == 99.0) and m.keyframe_pose(w0)[3, 3] == 1.0
    assert Map().window_view(5, 5) is None


def test_oldest_observations_brute_force() -> None:
    m, sets, ids = _random_map(4)
    m.reject_observations(np.array([0, 1, 2]))
    table = [(r, k, lm) for r, k, lm in _table(m, sets) if r not in (0, 1, 2)]
    found, kf, uv, T = m.oldest_observations(ids, 2, 9, state=NONE)
    expect = {}
    for r, k, lm in table:
        if 2 <= k <= 9 and lm >= 50 and lm not in expect:  # ids 50.. have no position (state NONE)
            expect[lm] = k
    np.testing.assert_array_equal(found, sorted(expect))
    np.testing.assert_array_equal(kf, [expect[i] for i in sorted(expect)])
    np.testing.assert_array_equal(T, [m.keyframe_pose(int(k)) for k in kf])
    for i, k, p in zip(found, kf, uv):  # the pixel of that observation, as inserted
        np.testing.assert_array_equal(p, m.inserted[k].uv[np.searchsorted(sets[k], i)])
    found_all, _, _, _ = m.oldest_observations(ids, 0, 11)
    np.testing.assert_array_equal(found_all, sorted({lm for _, _, lm in table}))


def test_tracking_view_is_one_consistent_copy() -> None:
    m, _, ids = _random_map(5)
    q = np.array([3, 42, 55, 10])
    v = m.tracking_view(q)
    assert v.version == m.version
    np.testing.assert_array_equal(v.states, [ALIVE, CULLED, NONE, ALIVE])
    np.testing.assert_array_equal(v.positions[[0, 3]], m.positions(q[[0, 3]]))
    assert np.isnan(v.positions[[1, 2]]).all()
    np.testing.assert_array_equal(v.keyframe_poses, m.keyframe_poses())
    v.keyframe_poses[0, 0, 3] = 42.0
    assert m.keyframe_pose(0)[0, 3] == 0.0
    empty = m.tracking_view(np.zeros(0, np.int64))
    assert empty.states.shape == (0,) and empty.positions.shape == (0, 3)


def test_apply_window_solve_writes_everything_in_one_version() -> None:
    m, _, ids = _random_map(6)
    v = m.version
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[:, 2, 3] = [5.0, 6.0]
    X = np.arange(9.0).reshape(3, 3)
    before = m.landmarks(ids[:50])[0]
    view = m.window_view(3, 0)
    assert m.apply_window_solve(np.array([3, 4]), poses, np.array([1, 41, 2]), X,
                                reject_rows=view.window.rows[:2], cull_ids=np.array([2])) == v + 1
    np.testing.assert_array_equal(m.keyframe_pose(4), poses[1])
    pos = m.positions(ids[:3])
    np.testing.assert_array_equal(pos[1], X[0])  # alive: written
    assert np.isnan(pos[2]).all()  # written, then culled
    np.testing.assert_array_equal(m.landmarks(ids[41:42])[0], before[41:42])  # culled before: not written
    after = m.window_view(3, 0)
    assert not np.isin(view.window.rows[:2], after.window.rows).any()


def test_create_landmarks_only_in_the_given_states() -> None:
    m = Map()
    ids = m.allocate_ids(4)
    m.create_landmarks(ids[:2], np.ones((2, 3)), ref_kf=0)
    m.cull_landmarks(ids[1:2])
    made = m.create_landmarks(ids, np.full((4, 3), 2.0), ref_kf=3, if_states=(NONE, CULLED))
    np.testing.assert_array_equal(made, [False, True, True, True])
    pos, states, refs, _ = m.landmarks(ids)
    np.testing.assert_array_equal(pos[:, 0], [1.0, 2.0, 2.0, 2.0])
    np.testing.assert_array_equal(refs, [0, 3, 3, 3])
    assert (states == ALIVE).all()


def test_a_window_solved_before_a_correction_is_refused() -> None:
    """apply_window_solve with the correction count of its view refuses to write once a loop
    correction moved the map (its poses are in the old frame)."""
    m = Map()
    ids = m.allocate_ids(4)
    for i in range(3):
        m.insert_keyframe(_kf(i, ids))
    m.create_landmarks(ids, np.ones((4, 3)), ref_kf=0)
    view = m.window_view(3, 0)
    assert view.corrections == m.corrections == 0
    m.correct_keyframes(np.stack([_se3([0, 0, 0.1], [1, 0, 0])] * 3))
    before = m.keyframe_poses().copy(), m.version
    assert m.apply_window_solve(np.array([1]), np.eye(4)[None], ids[:1], np.zeros((1, 3)),
                                corrections=view.corrections) is None
    np.testing.assert_array_equal(m.keyframe_poses(), before[0])
    assert m.version == before[1]
    assert m.apply_window_solve(np.array([1]), np.eye(4)[None], ids[:1], np.zeros((1, 3)),
                                corrections=m.window_view(3, 0).corrections) == before[1] + 1


def test_correct_keyframes_and_global_solve_exactly() -> None:
    """Corrections applied to the poses as they are now (later keyframes: the last one's), landmarks
    carried by their reference keyframe; global BA positions carried by what the reference moved since."""
    m = Map()
    ids = m.allocate_ids(3)
    for i in range(4):
        m.insert_keyframe(_kf(i, ids))
    P = np.array([[0.0, 1.0, 5.0], [1.0, -1.0, 4.0], [2.0, 0.5, 6.0]])
    m.create_landmarks(ids[:1], P[:1], ref_kf=0)
    m.create_landmarks(ids[1:2], P[1:2], ref_kf=2)
    m.create_landmarks(ids[2:], P[2:], ref_kf=3)
    now = m.keyframe_poses()
    C = np.stack([_se3([0, 0.1 * k, 0], [0.2 * k, 0, 0]) for k in range(3)])
    assert m.correct_keyframes(C) == (4, 1) and m.corrections == 1
    expect = np.concatenate([C @ now[:3], C[2:] @ now[3:]])
    np.testing.assert_allclose(m.keyframe_poses(), expect, atol=1e-12)
    for j, r in enumerate((0, 2, 3)):
        c = C[min(r, 2)]
        np.testing.assert_allclose(m.positions(ids[j:j + 1])[0], c[:3, :3] @ P[j] + c[:3, 3], atol=1e-12)
    # global BA solved keyframes 0..2 (copied at `copied`), keyframe 3 arrived meanwhile
    copied = m.keyframe_poses()[:3].copy()
    solved = np.stack([_se3([0.01, 0, 0], [0, 0.1, 0]) @ T for T in copied])
    X = np.array([[0.5, 0.5, 5.0], [1.5, -0.5, 4.0], [9.0, 9.0, 9.0]])
    assert m.apply_global_solve(copied, solved, ids, X)
    D = solved @ np.linalg.inv(copied)
    np.testing.assert_allclose(m.keyframe_poses()[:3], solved, atol=1e-12)
    np.testing.assert_allclose(m.keyframe_pose(3), D[2] @ expect[3], atol=1e-12)
    np.testing.assert_allclose(m.positions(ids[:2]), X[:2], atol=1e-12)  # references 0 and 2: unmoved since
    ref3 = m.positions(ids[2:])[0]  # reference keyframe 3 was not in the solve: carried as anchored
    np.testing.assert_allclose(ref3, D[2][:3, :3] @ (C[2][:3, :3] @ P[2] + C[2][:3, 3]) + D[2][:3, 3], atol=1e-12)


def test_tracking_view_follows_fused_landmarks() -> None:
    m = Map()
    ids = m.allocate_ids(4)
    m.insert_keyframe(_kf(0, ids[:2]))
    m.insert_keyframe(_kf(1, ids[2:]))
    m.create_landmarks(ids, np.arange(12.0).reshape(4, 3), ref_kf=0)
    assert m.fuse_landmarks(ids[:1], ids[2:3]) == 1  # landmark 2 is a duplicate of landmark 0
    view = m.tracking_view(ids)
    np.testing.assert_array_equal(view.ids, [ids[0], ids[1], ids[0], ids[3]])
    np.testing.assert_array_equal(view.positions[2], [0.0, 1.0, 2.0])
    assert m.states(ids[2:3])[0] == CULLED and m.covisible(1).get(0, 0) >= 1
    poses, segments, edges, consecutive, corrections = m.pose_graph_view(1)
    assert len(poses) == 2 and corrections == 0 and [0, 1] in edges[:, :2].tolist()
    assert consecutive.tolist() == [m.covisible(0)[1]]
