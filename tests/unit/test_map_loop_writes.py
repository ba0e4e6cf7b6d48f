"""The map's loop-closure writes on small maps with known answers: a Sim(3) correction split into
pose and scale (correction.propagate), duplicate landmarks fused (fusion.py)."""

from __future__ import annotations

import numpy as np
import pytest

from slam.geometry import lie
from slam.map.correction import propagate
from slam.map.keyframe import KeyframeData
from slam.map.map import ALIVE, CULLED, Map


def test_propagate_splits_sim3_into_pose_and_scale() -> None:
    C = lie.sim3_from_sRt(np.array([2.0]), lie.so3_exp(np.array([[0.1, 0.2, 0.3]])), np.array([[1.0, 2, 3]]))
    T0 = lie.se3_exp(np.array([[0.0, 0.1, 0.0, 1, 0, 0], [0.2, 0, 0, 0, 1, 0]]))
    T, s = propagate(C, T0)
    np.testing.assert_allclose(s, [2.0, 2.0])
    S = C @ T0
    np.testing.assert_allclose(T[:, :3, :3] * 2.0, S[:, :3, :3], atol=1e-12)
    np.testing.assert_allclose(T[:, :3, 3], S[:, :3, 3], atol=1e-12)
    with pytest.raises(ValueError):
        propagate(np.stack([C[0]] * 3), T0)


def test_fuse_landmarks_redirects_observations_and_links_the_two_sides() -> None:
    m = Map()
    ids = m.allocate_ids(10)
    # keyframes 0,1 see 0..4 (old side); keyframes 2,3 see 5..9 (new side, duplicates of 0..4)
    sets = [ids[:5], ids[:5], ids[5:], ids[5:]]
    for i, s in enumerate(sets):
        m.insert_keyframe(KeyframeData(id=i, frame_index=i, timestamp=i, pose=np.eye(4), segment=0, ids=s,
                                       uv=np.zeros((5, 2)), u_right=np.full(5, np.nan), depth=np.full(5, np.nan)))
    m.create_landmarks(ids, np.arange(30.0).reshape(10, 3), ref_kf=0)
    assert m.covisible(0).get(2) is None
    # 2 and 7 are each kept in one pair and dropped in the other: neither pair is fused (no chains)
    n = m.fuse_landmarks(ids[[0, 1, 2, 7]], ids[[5, 6, 7, 2]])
    assert n == 2
    st = m.states(ids)
    assert (st[[5, 6]] == CULLED).all() and (st[[0, 1, 2, 3, 4, 7, 8, 9]] == ALIVE).all()
    lm2, _, _ = m.keyframe_observations(2)
    np.testing.assert_array_equal(np.sort(lm2), ids[[0, 1, 7, 8, 9]])
    assert m.covisible(0)[2] == 2 and m.covisible(3)[1] == 2
    np.testing.assert_array_equal(m.resolve(ids[[5, 6, 7, 8]]), ids[[0, 1, 7, 8]])
    # a keyframe that saw both copies keeps one observation
    m.insert_keyframe(KeyframeData(id=4, frame_index=4, timestamp=4, pose=np.eye(4), segment=0, ids=ids[[3, 9]],
                                   uv=np.zeros((2, 2)), u_right=np.full(2, np.nan), depth=np.full(2, np.nan)))
    assert m.fuse_landmarks(ids[[3]], ids[[9]]) == 1
    lm4, _, _ = m.keyframe_observations(4)
    np.testing.assert_array_equal(lm4, ids[[3]])
