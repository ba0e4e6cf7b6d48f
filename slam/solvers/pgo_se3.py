"""Closed-form batched SE(3) between-factor errors and Jacobians, structure-of-arrays layout.

The generic path of pgo.py works on (m, 4, 4) matrices and (m, 6, 6) Jacobians through the
lie.py group functions; for SE(3) most of that work is products with zeros and ones. Here every
3x3 matrix is a (3, 3, m) array (one contiguous row of m values per entry), so a product is 27
vectorized multiply-adds instead of m small matrix products, and the Lie-group pieces use their
closed forms:

- error e = [w, v] = Log(Z^-1 X_i^-1 X_j): w from the quaternion of R_e (Shepperd's pivot, as
  lie.so3_log; the rare edges with another pivot than w go through lie.so3_log itself),
  v = J_l(w)^-1 t_e = t_e - w x t_e / 2 + E (w x (w x t_e));
- J_r(e)^-1 = [[Ji, 0], [-Ji Q(-w, -v) Ji, Ji]] with Ji = I + W/2 + E W^2 and Barfoot's Q
  reduced with a^ b^ = b a^T - (a.b) I to
  Q(w, v) = V/2 + c2 (v w^T + w v^T - 2 s I - s W) - c3 (hat(s w + th^2 v) - 3 s W) - 2 s c4 W^2,
  s = w.v (W = w^, V = v^; c2, c3, c4 the coefficients of lie._se3_q);
- Ad(X_ij^-1) = [[R^T, 0], [-R^T t^, R^T]] for X_ij = (R, t).
Values equal the generic path to rounding (tests compare both and finite differences).
"""

from __future__ import annotations

import numpy as np

from slam.geometry import lie


def soa(M: np.ndarray) -> np.ndarray:
    """(m, a, b) -> contiguous (a, b, m)."""
    return np.ascontiguousarray(np.moveaxis(M, 0, -1))


def mm(A: np.ndarray, B: np.ndarray, ta: bool = False) -> np.ndarray:
    """Batched 3x3 product A B (A^T B with ta) of (3, 3, m) arrays."""
    C = np.empty(B.shape)
    for a in range(3):
        Aa, Ca = (A[:, a] if ta else A[a]), C[a]  # row a of A (of A^T): (3, m)
        np.multiply(Aa[0], B[0], out=Ca)  # C[a, :] = sum_b A[a, b] B[b, :]
        Ca += Aa[1] * B[1]
        Ca += Aa[2] * B[2]
    return C


def mv(A: np.ndarray, x: np.ndarray, ta: bool = False) -> np.ndarray:
    """Batched A x (A^T x with ta) for A (3, 3, m), x (3, m)."""
    if ta:
        return np.stack([A[0, a] * x[0] + A[1, a] * x[1] + A[2, a] * x[2] for a in range(3)])
    return np.stack([A[a, 0] * x[0] + A[a, 1] * x[1] + A[a, 2] * x[2] for a in range(3)])


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched a x b for (3, m) arrays."""
    return np.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def hat(w: np.ndarray) -> np.ndarray:
    """(3, m) -> (3, 3, m) skew matrices."""
    z = np.zeros_like(w[0])
    return np.array([[z, -w[2], w[1]], [w[2], z, -w[0]], [-w[1], w[0], z]])


def _log_rotation(R: np.ndarray) -> np.ndarray:
    """(3, 3, m) rotations -> (3, m) rotation vectors, as lie.so3_log."""
    tr = R[0, 0] + R[1, 1] + R[2, 2]
    s = np.sqrt(np.maximum(1.0 + tr, 1e-300)) * 2
    q = np.stack([(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s])
    q /= np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    n = np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2])
    qw = q[3]
    tiny = n < 1e-8
    safe_n, safe_w = np.where(tiny, 1.0, n), np.where(tiny, qw, 1.0)
    scale = np.where(tiny, 2.0 / safe_w * (1.0 - n * n / (3.0 * safe_w**2)), 2.0 * np.arctan2(n, qw) / safe_n)
    w = q[:3] * scale
    # Shepperd: rotations whose largest pivot is not w (angles beyond ~90 degrees) take lie.so3_log.
    other = np.maximum(np.maximum(R[0, 0], R[1, 1]), R[2, 2]) >= tr
    if other.any():
        k = np.flatnonzero(other)
        w[:, k] = lie.so3_log(np.moveaxis(R[:, :, k], -1, 0)).T
    return w


def between_errors(R: np.ndarray, dt: np.ndarray, i: np.ndarray, j: np.ndarray, RZ: np.ndarray,
                   tZ: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Errors e (6, m) of Log(Z^-1 X_i^-1 X_j) and X_ij = (R_ij, t_ij) in (3, 3, m), (3, m).

    R (3, 3, n): vertex rotations; dt (3, m): t_j - t_i; RZ, tZ: Z^-1 as (3, 3, m), (3, m).
    """
    Ri, Rj = R.take(i, axis=2), R.take(j, axis=2)
    Rij = mm(Ri, Rj, ta=True)
    tij = mv(Ri, dt, ta=True)
    Re = mm(RZ, Rij)
    te = mv(RZ, tij) + tZ
    w = _log_rotation(Re)
    th = np.sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2])
    wxt = cross(w, te)
    v = te - 0.5 * wxt + lie._e_coeff(th) * cross(w, wxt)
    return np.concatenate([w, v]), Rij, tij


def _coeffs(th: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """E, c2, c3, c4 of J_r^-1 and Q at angle th (series below lie's switch, as lie.py)."""
    c2 = lie._d_coeff(th)
    c3 = lie._series_or(th, lie._C3_SERIES, lambda t: (np.cos(t) - 1.0 + 0.5 * t * t) / t**4)
    c4 = lie._series_or(th, lie._C4_SERIES, lambda t: (2 * t - 3 * np.sin(t) + t * np.cos(t)) / (2 * t**5))
    return lie._e_coeff(th), c2, c3, c4


def right_jacobian_inv(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Ji, Lo) with J_r(e)^-1 = [[Ji, 0], [Lo, Ji]], each (3, 3, m), for errors e (6, m)."""
    w, v = e[:3], e[3:]
    th2 = w[0] * w[0] + w[1] * w[1] + w[2] * w[2]
    E, c2, c3, c4 = _coeffs(np.sqrt(th2))
    s = w[0] * v[0] + w[1] * v[1] + w[2] * v[2]
    W = hat(w)
    WW = w[:, None] * w[None, :]  # W^2 = w w^T - th^2 I
    for a in range(3):
        WW[a, a] -= th2
    Ji = 0.5 * W + E * WW
    for a in range(3):
        Ji[a, a] += 1.0
    # Q(-w, -v) = -V/2 + c2 (v w^T + w v^T - 2 s I + s W) + c3 (hat(s w + th^2 v) - 3 s W) - 2 s c4 W^2
    sym = v[:, None] * w[None, :]
    sym += sym.transpose(1, 0, 2)
    for a in range(3):
        sym[a, a] -= 2.0 * s
    Q = -0.5 * hat(v) + c2 * sym + (c2 * s - 3.0 * c3 * s) * W + c3 * hat(s * w + th2 * v) - (2.0 * s * c4) * WW
    return Ji, -mm(mm(Ji, Q), Ji)


CHUNK = 8192  # edges per pass of between_jacobians: its temporaries then stay in the CPU caches


def between_jacobians(e: np.ndarray, Rij: np.ndarray, tij: np.ndarray, Wa: np.ndarray, Wb: np.ndarray | None,
                      Wc: np.ndarray) -> np.ndarray:
    """Whitened [d e/d x_i, d e/d x_j] as (m, 6, 12): -W J_r^-1(e) Ad(X_ij^-1) and W J_r^-1(e).

    W = [[Wa, Wb], [0, Wc]] (upper block triangular, each (3, 3, m); Wb None when zero). Edges
    are processed CHUNK at a time (a loop over chunks, not edges).
    """
    m = e.shape[1]
    out = np.empty((m, 6, 12))
    for a in range(0, m, CHUNK):
        k = slice(a, min(a + CHUNK, m))
        out[k] = _jacobian_chunk(e[:, k], Rij[:, :, k], tij[:, k], Wa[:, :, k],
                                 None if Wb is None else Wb[:, :, k], Wc[:, :, k])
    return out


def _jacobian_chunk(e: np.ndarray, Rij: np.ndarray, tij: np.ndarray, Wa: np.ndarray, Wb: np.ndarray | None,
                    Wc: np.ndarray) -> np.ndarray:
    Ji, Lo = right_jacobian_inv(e)
    RT = Rij.transpose(1, 0, 2)
    K = mm(Ji, RT)  # Ji R^T
    M = mm(Lo, RT)
    M -= np.stack([cross(K[a], tij) for a in range(3)])  # row a of K t^ is K[a, :] x t
    out = np.empty((6, 12, e.shape[1]))
    # W [[P, 0], [Q, P]] = [[Wa P + Wb Q, Wb P], [Wc Q, Wc P]]; block i: -(K, M), block j: (Ji, Lo)
    K *= -1.0
    M *= -1.0
    for col, P, Q in ((0, K, M), (6, Ji, Lo)):
        top = mm(Wa, P)
        if Wb is not None:
            top += mm(Wb, Q)
            out[:3, col + 3:col + 6] = mm(Wb, P)
        else:
            out[:3, col + 3:col + 6] = 0.0
        out[:3, col:col + 3] = top
        out[3:, col:col + 3] = mm(Wc, Q)
        out[3:, col + 3:col + 6] = mm(Wc, P)
    return np.moveaxis(out, -1, 0)
