"""Small loop-closure maps with known answers: a circle of poses, drifting odometry along it, a
map whose keyframes share track ids (shared by test_loop_posegraph.py and test_loop_acceptance.py)."""

from __future__ import annotations

import numpy as np

from slam.geometry import lie
from slam.map.keyframe import KeyframeData
from slam.map.map import Map


def circle(n: int, radius: float = 3.0) -> np.ndarray:
    """Camera poses T_world_cam on a circle, looking outwards, closing after n steps."""
    a = 2 * np.pi * np.arange(n) / n
    R = lie.so3_exp(np.stack([np.zeros(n), a, np.zeros(n)], 1))
    t = np.stack([radius * np.sin(a), np.zeros(n), radius * np.cos(a)], 1)
    return lie.se3_from_Rt(R, t)


def drifted(truth: np.ndarray, yaw_per_step: float, scale_per_step: float = 1.0) -> np.ndarray:
    """Odometry that accumulates a small rotation (and scale) error at every step."""
    rel = lie.se3_inverse(truth[:-1]) @ truth[1:]
    err = lie.se3_exp(np.array([0.0, yaw_per_step, 0.0, 0, 0, 0]))
    out = [truth[0]]
    for k, Z in enumerate(rel):
        Zk = Z.copy()
        Zk[:3, 3] *= scale_per_step ** (k + 1)
        out.append(out[-1] @ err @ Zk)
    return np.stack(out)


def map_with(poses: np.ndarray, shared: int = 80, per_kf: int = 120) -> Map:
    """A map whose keyframes see overlapping runs of track ids (consecutive ones share `shared`)."""
    m = Map()
    step = per_kf - shared
    ids = m.allocate_ids(step * len(poses) + per_kf)
    for i, T in enumerate(poses):
        obs = ids[i * step:i * step + per_kf]
        m.insert_keyframe(KeyframeData(id=i, frame_index=i, timestamp=0.1 * i, pose=T, segment=0, ids=obs,
                                       uv=np.zeros((per_kf, 2)), u_right=np.full(per_kf, np.nan),
                                       depth=np.full(per_kf, np.nan)))
    return m


def rot_err_deg(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Rotation angle (degrees) between corresponding poses of A and B."""
    return np.degrees(np.linalg.norm(lie.so3_log(np.swapaxes(A[:, :3, :3], 1, 2) @ B[:, :3, :3]), axis=1))
