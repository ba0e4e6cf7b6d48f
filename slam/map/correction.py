"""The arithmetic of a loop or global correction (Map.correct_keyframes applies it in one locked step).

The graph was solved from a copy of the map; meanwhile window BA may have refined the newest
keyframes and the odometry worker may have inserted new ones. So the solution is applied as a
world-frame correction per keyframe, C_i = X_i^solved (X_i^copied)^-1, to the keyframe's pose as
it is *now*: a BA refinement made during the solve survives, and keyframes inserted after the copy
get the correction of the newest keyframe of the graph, the one they were tracked from. Every
landmark moves with its reference keyframe (Map.apply_correction); for Sim(3) corrections of a
monocular map its depth is scaled by the keyframe's scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slam.geometry import lie


def propagate(C: np.ndarray, poses_now: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(SE(3) poses (K,4,4), scales (K,)) after applying corrections C (N,4,4) to the K >= N current
    keyframe poses; keyframes N..K-1 get the correction of keyframe N-1."""
    n, k = len(C), len(poses_now)
    if k < n:
        raise ValueError(f"the map has {k} keyframes, fewer than the {n} of the pose graph")
    C_all = np.concatenate([C, np.repeat(C[-1:], k - n, axis=0)]) if k > n else C
    S = C_all @ poses_now
    s = np.cbrt(np.linalg.det(S[:, :3, :3]))
    T = S.copy()
    T[:, :3, :3] /= s[:, None, None]
    return lie.orthonormalize(T), s


def rebase_keyframe(kf: Any, ref_pose: np.ndarray, ref_scale: float) -> None:
    """Move a keyframe that waited in the odometry worker's queue onto its reference's pose and
    units now (Map.insert_keyframe, under the map's lock): pose = T_ref S(r) T_ref_kf with
    r = ref_scale / kf.scale (a monocular Sim(3) correction of the reference since tracking measured
    it), new points p' = pose (r pose_before^-1 p),
    and the keyframe takes the reference's units."""
    r = ref_scale / kf.scale
    pose = lie.orthonormalize(ref_pose @ lie.scale_translation(kf.T_ref_kf, r))
    if len(kf.new_points):
        D = lie.frame_motion(pose, np.linalg.inv(kf.pose), r)
        kf.new_points = kf.new_points @ D[:3, :3].T + D[:3, 3]
    kf.pose, kf.scale = pose, ref_scale
