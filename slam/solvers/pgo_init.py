"""Chordal initialization of a pose graph: rotations first, by a linear relaxation, then translations.

LM (ours and GTSAM's) converges to the nearest local minimum of the start it is given. A start by
dead reckoning over thousands of noisy rotations is far from the optimum (sphere2500: cost 1.3e6
against 676; a 2-D Manhattan walk with 0.1 rad of heading noise: 4.4e7 against ~2.7e3), and there
LM crawls for tens of iterations or stops in a local minimum (1,000 poses, 0.1 rad: GTSAM 27,811
and our fp64 35,625, where the noise level lets one expect ~2.7e3). The rotation estimate of
Carlone et al. (ICRA 2015, "Initialization techniques for 3D SLAM") removes most of that:

- rotations: minimize sum_ij k_ij ||R_j - R_i R_ij||_F^2 over unconstrained 3x3 matrices, the held
  poses' rotations fixed. With X_i = R_i^T each column c obeys X_j[:, c] = R_ij^T X_i[:, c]: one
  sparse 3n x 3n least-squares problem with three right-hand sides (k_ij: the mean of the edge's
  rotational information). Each result is projected onto SO(3) (SVD). Planar graphs: rotations as
  unit complex numbers, u_j = u_ij u_i, one 2n x 2n problem, each result normalized.
- translations, the rotations held: R_i^T (t_j - t_i) = t_ij is linear in t; least squares weighted
  by the edge's translational information block.

Both are solved through their sparse normal equations (SuperLU, in a minimum-degree order of the
pose blocks, shared by the two). Sim(3) graphs (monocular loop closure, started from odometry) are
left alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from slam.geometry.lie import nearest_rotation
from slam.solvers.fillchol import min_degree_block_order


def _solve_blocks(problem: Any, Ai: np.ndarray, Aj: np.ndarray, known: np.ndarray, rhs: np.ndarray,
                  order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Least squares over the free poses' k-vectors for residuals Ai x_i + Aj x_j - rhs (per edge, (m, r, k)
    blocks and (m, r, q) right-hand sides); held poses take `known` (n, k, q). Returns ((n, k, q), the
    block order used, which a system on the same edges can reuse)."""
    q, (m, r, k) = rhs.shape[2], Ai.shape
    col = problem.col_of
    nf = int((col >= 0).sum())
    i, j = problem.edges[:, 0], problem.edges[:, 1]
    ci, cj = col[i], col[j]
    # Held ends move to the right-hand side.
    b = rhs - np.where((ci < 0)[:, None, None], Ai @ known[i], 0.0) \
        - np.where((cj < 0)[:, None, None], Aj @ known[j], 0.0)
    rows = np.arange(r * m).reshape(m, r)
    r_idx, c_idx, vals = [], [], []
    for A, c in ((Ai, ci), (Aj, cj)):
        ok = c >= 0
        r_idx.append(np.broadcast_to(rows[ok][:, :, None], (ok.sum(), r, k)).reshape(-1))
        cols = (k * c[ok])[:, None, None] + np.arange(k)[None, None, :]
        c_idx.append(np.broadcast_to(cols, (ok.sum(), r, k)).reshape(-1))
        vals.append(A[ok].reshape(-1))
    J = sp.csr_matrix((np.concatenate(vals), (np.concatenate(r_idx), np.concatenate(c_idx))), shape=(r * m, k * nf))
    N = (J.T @ J).tocsr()
    N = N + sp.eye(k * nf, format="csr") * (1e-12 * float(N.diagonal().max()) if nf else 0.0)
    # Minimum-degree order of the k x k blocks (the pose graph's own), then Cholesky-like LU without
    # pivoting: the normal matrix is SPD (every piece of the graph holds a pose).
    order = min_degree_block_order(N, k) if order is None else order
    perm = (order[:, None] * k + np.arange(k)).ravel()
    lu = spla.splu(sp.csc_matrix(N[perm][:, perm]), permc_spec="NATURAL", diag_pivot_thresh=0.0,
                   options=dict(SymmetricMode=True))
    x = np.empty((k * nf, q))
    x[perm] = lu.solve(np.asarray(J.T @ b.reshape(r * m, q))[perm])
    out = known.copy()
    out[np.flatnonzero(col >= 0)] = x.reshape(nf, k, q)
    return out, order


def chordal_initialization(problem: Any) -> np.ndarray | None:
    """Poses (n, 4, 4) from the chordal rotation estimate and the translations it implies, held poses
    unchanged; None for groups it does not serve (Sim(3))."""
    if problem.group not in ("se3", "se2") or not np.any(problem.col_of >= 0):
        return None  # Sim(3), or nothing free to move
    planar = problem.group == "se2"
    X = problem.poses
    Z = np.linalg.inv(problem.Zinv)
    W = problem.W
    Om = W.transpose(0, 2, 1) @ W
    m = len(Z)
    if planar:
        # Rotations as unit complex numbers u = (cos, sin): u_j = u_ij u_i is linear in u_i.
        # Tangent [v_x, v_y, theta]: rotational weight Om[2, 2], translational block Om[:2, :2].
        sk = np.sqrt(np.maximum(Om[:, 2, 2], 0.0))[:, None, None]
        c, s_ = Z[:, 0, 0], Z[:, 1, 0]
        Mij = np.stack([np.stack([c, -s_], -1), np.stack([s_, c], -1)], 1)  # multiplication by u_ij
        u, order = _solve_blocks(problem, -sk * Mij, sk * np.broadcast_to(np.eye(2), Mij.shape),
                                 X[:, :2, :1].copy(), np.zeros((m, 2, 1)))
        u = u[:, :, 0] / np.maximum(np.linalg.norm(u[:, :, 0], axis=1), 1e-300)[:, None]
        R = np.zeros((len(X), 3, 3))
        R[:, 0, 0], R[:, 1, 0], R[:, 0, 1], R[:, 1, 1], R[:, 2, 2] = u[:, 0], u[:, 1], -u[:, 1], u[:, 0], 1.0
        Ot, dim = Om[:, :2, :2], 2
    else:
        # X_j - R_ij^T X_i = 0 per column of X = R^T, weighted by sqrt(k), k the mean rotational information.
        sk = np.sqrt(np.maximum(np.trace(Om[:, :3, :3], axis1=1, axis2=2) / 3.0, 0.0))[:, None, None]
        Xr, order = _solve_blocks(problem, -sk * Z[:, :3, :3].transpose(0, 2, 1),
                                  sk * np.broadcast_to(np.eye(3), (m, 3, 3)),
                                  X[:, :3, :3].transpose(0, 2, 1).copy(), np.zeros((m, 3, 3)))
        R = nearest_rotation(Xr.transpose(0, 2, 1))
        Ot, dim = Om[:, 3:, 3:], 3
    # W_t R_i^T (t_j - t_i) = W_t t_ij, with W_t^T W_t the translational information.
    Wt = np.linalg.cholesky(Ot + 1e-12 * np.eye(dim)).transpose(0, 2, 1)
    B = Wt @ R[problem.edges[:, 0], :dim, :dim].transpose(0, 2, 1)
    t, _ = _solve_blocks(problem, -B, B, X[:, :dim, 3:].copy(), Wt @ Z[:, :dim, 3:], order)
    out = X.copy()
    free = problem.col_of >= 0
    out[free, :3, :3] = R[free]
    out[free, :dim, 3] = t[free, :, 0]
    return out
