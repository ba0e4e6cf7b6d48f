"""New landmarks of a keyframe: from measured depth, from the frontend, or triangulated across keyframes."""

from __future__ import annotations

import numpy as np

from slam.geometry import lie
from slam.geometry.pinhole import backproject
from slam.geometry.triangulation import checked_triangulation
from slam.map.keyframe import KeyframeData
from slam.map.map import CULLED, NONE, Map


def from_measurements(the_map: Map, kf: KeyframeData, K: np.ndarray) -> int:
    """Landmarks for the keyframe's tracks that have depth (stereo / RGB-D) and no position yet."""
    n = 0
    at = (kf.pose.copy(), kf.scale)  # positions below are computed at the keyframe's pose as inserted
    if len(kf.new_ids):  # the worker may have triangulated some already
        n += int(the_map.create_landmarks(kf.new_ids, kf.new_points, kf.id, if_states=(NONE,), measured_at=at).sum())
    cand = (the_map.states(kf.ids) == NONE) & np.isfinite(kf.depth)
    if cand.any():
        n += int(the_map.create_landmarks(kf.ids[cand], backproject(kf.uv[cand], kf.depth[cand], K, kf.pose), kf.id,
                                          if_states=(NONE,), measured_at=at).sum())
    return n


def triangulate_tracks(the_map: Map, kf: KeyframeData, K: np.ndarray, lookback: int, max_error: float,
                       min_parallax_deg: float) -> int:
    """Triangulate the keyframe's tracks without a position against their oldest observation among
    the previous `lookback` keyframes (the widest baseline); returns how many became landmarks."""
    if kf.id == 0:
        return 0
    ids_a, _, uv_a, T_wc_a = the_map.oldest_observations(kf.ids, max(0, kf.id - lookback), kf.id - 1, state=NONE)
    if ids_a.size == 0:
        return 0
    T_cw_a = lie.se3_inverse(T_wc_a)
    pos_b = np.searchsorted(kf.ids, ids_a) if np.all(np.diff(kf.ids) > 0) else None
    if pos_b is None:
        order = np.argsort(kf.ids)
        pos_b = order[np.searchsorted(kf.ids[order], ids_a)]
    uv_b = kf.uv[pos_b]
    T_cw_b = lie.se3_inverse(kf.pose)
    X, good, _ = checked_triangulation(T_cw_a, T_cw_b, uv_a, uv_b, K, max_error, min_parallax_deg)
    if good.any():
        # positions may have been given meanwhile: the map checks the states under its lock
        the_map.create_landmarks(ids_a[good], X[good], kf.id, if_states=(NONE, CULLED),
                                 measured_at=(kf.pose.copy(), kf.scale))
        return int(good.sum())
    return 0
