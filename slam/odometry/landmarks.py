"""New landmarks of a keyframe: from measured depth, from the frontend, or triangulated across keyframes."""

from __future__ import annotations

import numpy as np

from slam.frontend.stereo import backproject
from slam.frontend.triangulation import checked_triangulation
from slam.geometry import lie
from slam.map.keyframe import KeyframeData
from slam.map.map import ALIVE, NONE, Map


def from_measurements(the_map: Map, kf: KeyframeData, K: np.ndarray) -> int:
    """Landmarks for the keyframe's tracks that have depth (stereo / RGB-D) and no position yet."""
    n = 0
    if len(kf.new_ids):
        fresh = the_map.states(kf.new_ids) == NONE  # the worker may have triangulated some already
        the_map.create_landmarks(kf.new_ids[fresh], kf.new_points[fresh], kf.id)
        n += int(fresh.sum())
    cand = (the_map.states(kf.ids) == NONE) & np.isfinite(kf.depth)
    if cand.any():
        the_map.create_landmarks(kf.ids[cand], backproject(kf.uv[cand], kf.depth[cand], K, kf.pose), kf.id)
        n += int(cand.sum())
    return n


def triangulate_tracks(the_map: Map, kf: KeyframeData, K: np.ndarray, lookback: int, max_error: float,
                       min_parallax_deg: float) -> int:
    """Triangulate the keyframe's tracks without a position against their oldest observation among
    the previous `lookback` keyframes (the widest baseline); returns how many became landmarks."""
    with the_map.lock:
        cand = kf.ids[the_map.states(kf.ids) == NONE]
        if cand.size == 0 or kf.id == 0:
            return 0
        rows = the_map.observation_rows(max(0, kf.id - lookback), kf.id - 1)
        lm = the_map.obs_lm.a[rows]
        sel = rows[np.isin(lm, cand) & the_map.obs_ok.a[rows]]
        if sel.size == 0:
            return 0
        # rows are in keyframe order: the first row of each track is its oldest observation
        ids_a, first = np.unique(the_map.obs_lm.a[sel], return_index=True)
        rows_a = sel[first]
        kf_a = the_map.obs_kf.a[rows_a]
        uv_a = the_map.obs_uv.a[rows_a].copy()
        T_cw_a = lie.se3_inverse(the_map.kf_pose.a[kf_a])
    pos_b = np.searchsorted(kf.ids, ids_a) if np.all(np.diff(kf.ids) > 0) else None
    if pos_b is None:
        order = np.argsort(kf.ids)
        pos_b = order[np.searchsorted(kf.ids[order], ids_a)]
    uv_b = kf.uv[pos_b]
    T_cw_b = lie.se3_inverse(kf.pose)
    X, good, _ = checked_triangulation(T_cw_a, T_cw_b, uv_a, uv_b, K, max_error, min_parallax_deg)
    if good.any():
        with the_map.lock:  # the tracker may not have changed them, but check once more under the lock
            still = the_map.states(ids_a[good]) != ALIVE
            the_map.create_landmarks(ids_a[good][still], X[good][still], kf.id)
        return int(good.sum())
    return 0
