"""What verification needs, read from a keyframe and the shared map (helpers for the loop worker).

API:

    query_features(kf: KeyframeData, K, positions=None, T_world_cam=None) -> QueryFeatures
        the keyframe's described features; 3-D points in its camera from its depth (stereo/RGB-D),
        else from `positions` (world positions of kf.ids, NaN where none: its own landmarks, for
        monocular) moved into the camera with T_world_cam (default kf.pose); `ids` are kf.ids.
    candidate_landmarks(the_map, kf_id, max_covisible=10) -> CandidateLandmarks
        alive, described landmarks of keyframe kf_id (primary) and of its max_covisible most
        covisible keyframes.
"""

from __future__ import annotations

import numpy as np

from slam.loop.verify import CandidateLandmarks, QueryFeatures
from slam.map.keyframe import KeyframeData
from slam.map.map import ALIVE, Map


def query_features(kf: KeyframeData, K: np.ndarray, positions: np.ndarray | None = None,
                   T_world_cam: np.ndarray | None = None) -> QueryFeatures:
    """The keyframe's features with descriptors, and their 3-D points in its camera frame where known."""
    n = len(kf.ids)
    if kf.descriptors is None:
        return QueryFeatures(np.zeros((0, 2)), np.zeros((0, 32), np.uint8), np.zeros((0, 3)), np.zeros(0, np.int64))
    ok = np.asarray(kf.desc_ok, bool) if kf.desc_ok is not None else np.ones(n, bool)
    uv = np.asarray(kf.uv, np.float64)
    z = np.asarray(kf.depth, np.float64) if kf.depth is not None else np.full(n, np.nan)
    z = np.where(z > 0, z, np.nan)
    P = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0] * z, (uv[:, 1] - K[1, 2]) / K[1, 1] * z, z], axis=1)
    if positions is not None:
        T = np.asarray(kf.pose if T_world_cam is None else T_world_cam, np.float64)
        Pl = (np.asarray(positions, np.float64) - T[:3, 3]) @ T[:3, :3]  # R^T (X - t), row-wise
        use = ~np.isfinite(P).all(axis=1) & np.isfinite(Pl).all(axis=1) & (Pl[:, 2] > 0)
        P[use] = Pl[use]
    return QueryFeatures(uv[ok], np.asarray(kf.descriptors)[ok], P[ok], np.asarray(kf.ids, np.int64)[ok])


def candidate_landmarks(the_map: Map, kf_id: int, max_covisible: int = 10) -> CandidateLandmarks:
    """Landmarks around a candidate keyframe: its own (primary) and its most covisible keyframes'."""
    own = the_map.keyframe_observations(kf_id)[0]
    cov = the_map.covisible(kf_id)
    best = sorted(cov, key=lambda k: (-cov[k], k))[:max_covisible]
    ids = np.unique(np.concatenate([own] + [the_map.keyframe_observations(k)[0] for k in best]))
    pos, state, _, desc = the_map.landmarks(ids)
    keep = (state == ALIVE) & desc.any(axis=1) & np.isfinite(pos).all(axis=1)
    ids = ids[keep]
    return CandidateLandmarks(ids, pos[keep], desc[keep], np.isin(ids, own))
