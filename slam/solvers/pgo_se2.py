"""Closed-form batched SE(2) between-factor errors and Jacobians on planar 4x4 poses.

The generic path of pgo.py multiplies and inverts (m, 4, 4) matrices; for planar poses all of it
reduces to a few operations on (m,) arrays of cosines, sines and 2-D translations:
- X_i^-1 X_j = (R(th_j - th_i), R_i^T (t_j - t_i)), composed with Z^-1 the same way;
- e = Log(E) = [V(th)^-1 t_E, th], th = atan2(s_E, c_E) (lie_se2.se2_log_parts);
- de/dx_j = J_r^-1(e), de/dx_i = -J_r^-1(e) Ad(X_ij^-1), Ad((R, t)^-1) = [[R^T, R^T (-t_y, t_x)], [0, 1]].
Values equal the generic path to rounding (tests compare both).
"""

from __future__ import annotations

import numpy as np

from slam.geometry.lie_se2 import se2_log_parts, se2_right_jacobian_inv

Planar = tuple[np.ndarray, np.ndarray, np.ndarray]  # (cos, sin, t (2, m)) of m planar poses


def planar_parts(T: np.ndarray) -> Planar:
    """(cos, sin, t (2, m)) of (m, 4, 4) planar poses."""
    return T[:, 0, 0], T[:, 1, 0], T[:, :2, 3].T


def between_errors(c: np.ndarray, s: np.ndarray, dt: np.ndarray, i: np.ndarray, j: np.ndarray,
                   Zc: np.ndarray, Zs: np.ndarray, Zt: np.ndarray) -> tuple[np.ndarray, Planar]:
    """Errors e (m, 3) of edges (i, j) and X_ij = X_i^-1 X_j as (cos, sin, t (2, m)).

    c, s: cos and sin of every pose; dt (2, m): t_j - t_i of every edge; Z*: the parts of Z^-1.
    """
    ci, si, cj, sj = c.take(i), s.take(i), c.take(j), s.take(j)
    cij, sij = ci * cj + si * sj, ci * sj - si * cj
    tij = np.stack([ci * dt[0] + si * dt[1], ci * dt[1] - si * dt[0]])
    ce, se = Zc * cij - Zs * sij, Zs * cij + Zc * sij
    te = np.stack([Zc * tij[0] - Zs * tij[1], Zs * tij[0] + Zc * tij[1]]) + Zt
    return se2_log_parts(ce, se, te[0], te[1]), (cij, sij, tij)


def between_jacobians(e: np.ndarray, Xij: Planar, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(W de/dx_i, W de/dx_j), each (m, 3, 3), for whitening W (m, 3, 3)."""
    cij, sij, tij = Xij
    WJ = W @ se2_right_jacobian_inv(e)
    # Ad(X_ij^-1): X_ij^-1 = (R^T, -R^T t); Ad((R', t')) = [[R', (t'_y, -t'_x)], [0, 1]]
    tx = -(cij * tij[0] + sij * tij[1])
    ty = -(-sij * tij[0] + cij * tij[1])
    Ad = np.zeros((len(e), 3, 3))
    Ad[:, 0, 0], Ad[:, 0, 1], Ad[:, 1, 0], Ad[:, 1, 1] = cij, sij, -sij, cij
    Ad[:, 0, 2], Ad[:, 1, 2], Ad[:, 2, 2] = ty, -tx, 1.0
    return -WJ @ Ad, WJ
