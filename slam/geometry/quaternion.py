"""Batched unit quaternions in (x, y, z, w) order (TUM, g2o, Eigen coeffs) and rotation matrices."""

from __future__ import annotations

import numpy as np


def quat_to_rot(q: np.ndarray) -> np.ndarray:
    """(N,4) xyzw quaternions (normalized here) -> (N,3,3) rotation matrices; also accepts (4,)."""
    q = np.asarray(q, dtype=np.float64)
    single = q.ndim == 1
    q = np.atleast_2d(q)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    x, y, z, w = q.T
    R = np.empty((q.shape[0], 3, 3))
    R[:, 0, 0] = 1 - 2 * (y * y + z * z)
    R[:, 0, 1] = 2 * (x * y - z * w)
    R[:, 0, 2] = 2 * (x * z + y * w)
    R[:, 1, 0] = 2 * (x * y + z * w)
    R[:, 1, 1] = 1 - 2 * (x * x + z * z)
    R[:, 1, 2] = 2 * (y * z - x * w)
    R[:, 2, 0] = 2 * (x * z - y * w)
    R[:, 2, 1] = 2 * (y * z + x * w)
    R[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return R[0] if single else R


def rot_to_quat(R: np.ndarray) -> np.ndarray:
    """(N,3,3) rotation matrices -> (N,4) xyzw unit quaternions with w >= 0; also accepts (3,3).

    Uses the largest of the four candidate pivots per matrix (Shepperd), so it is accurate for
    every angle including 180 degrees.
    """
    R = np.asarray(R, dtype=np.float64)
    single = R.ndim == 2
    R = R.reshape(-1, 3, 3)
    tr = np.trace(R, axis1=1, axis2=2)
    d = np.stack([R[:, 0, 0], R[:, 1, 1], R[:, 2, 2], tr], axis=1)
    k = np.argmax(d, axis=1)
    q = np.empty((R.shape[0], 4))
    # pivot w
    s = np.sqrt(np.maximum(1.0 + tr, 1e-300)) * 2
    m = k == 3
    q[m] = np.stack([(R[m, 2, 1] - R[m, 1, 2]) / s[m], (R[m, 0, 2] - R[m, 2, 0]) / s[m],
                     (R[m, 1, 0] - R[m, 0, 1]) / s[m], 0.25 * s[m]], axis=1)
    for i, (a, b, c) in enumerate(((0, 1, 2), (1, 2, 0), (2, 0, 1))):
        m = k == i
        if not m.any():
            continue
        s = np.sqrt(np.maximum(1.0 + R[m, a, a] - R[m, b, b] - R[m, c, c], 1e-300)) * 2
        qq = np.empty((m.sum(), 4))
        qq[:, a] = 0.25 * s
        qq[:, b] = (R[m, b, a] + R[m, a, b]) / s
        qq[:, c] = (R[m, c, a] + R[m, a, c]) / s
        qq[:, 3] = (R[m, c, b] - R[m, b, c]) / s
        q[m] = qq
    q *= np.where(q[:, 3:4] < 0, -1.0, 1.0)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q[0] if single else q
