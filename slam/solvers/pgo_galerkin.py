"""The coarse level of a pose graph assembled from its edges' Jacobian blocks (coarse.py, twolevel.py).

The coarse space moves clusters of poses rigidly: its basis P has one d x d block Ad(X_k^-1 X_a)
per free pose k of cluster c (anchor a), in column block c (PoseGraphProblem.coarse_basis). The
two-level preconditioner needs the Galerkin matrix G = P^T A^T A P and D = P^T P of that basis in
the scaled variables (A = J S, P / S). Formed as sparse products (A P, then (A P)^T (A P)) they
cost 25-40 ms on a 2,500-pose graph, rebuilt after nearly every LM step of a graph far from its
optimum: a quarter of the solve on the torus benchmarks.

Here the same matrices come from per-edge blocks. Edge e = (i, j) contributes the row block
[B_i | B_j] with B_i = A_e,i (Ad_i / S_i) in column blocks c(i), c(j), hence the blocks
B_i^T B_i, B_i^T B_j, B_j^T B_j of G: three batched d x d products per edge (6 x 6 for SE(3))
and one scatter-add, whose indices are fixed per clustering. Edges inside one cluster contribute
nothing: the error of an edge is invariant to a common left transform of both ends, so
B_i + B_j = 0 (to rounding) and they are skipped. A held pose has no column: its block is zero.
"""

from __future__ import annotations

import numpy as np


class EdgeGalerkin:
    """G = P^T A^T A P and D = P^T P of a fixed clustering, from the values of A (the problem's CSR pattern)."""

    def __init__(self, edge_cols: np.ndarray, labels: np.ndarray, data_pos: np.ndarray, dof: int) -> None:
        """edge_cols (m, 2): column block of each edge end (-1: held pose); labels (nf,): cluster of
        every column block; data_pos (m, d, 2d): index into A.data of each Jacobian entry of an edge
        (-1 where its column is held)."""
        d = dof
        nf = labels.size
        self.d, self.nc = d, int(labels.max()) + 1 if nf else 0
        self.n = self.nc * d
        lab = np.concatenate([labels, [-1]])  # index nf: a held end, cluster -1
        ends = np.where(edge_cols >= 0, edge_cols, nf)
        li, lj = lab[ends[:, 0]], lab[ends[:, 1]]
        cross = np.flatnonzero(li != lj)
        self.ends = ends[cross]  # (mc, 2), nf for a held end
        pos = data_pos[cross]
        self.held = pos < 0
        self.pos = np.where(self.held, 0, pos)
        li, lj = np.maximum(li[cross], 0), np.maximum(lj[cross], 0)  # a held end's block is zero anyway
        self.idx_diag = np.concatenate([self._flat(li, li), self._flat(lj, lj)])
        self.idx_off = self._flat(li, lj)
        self.idx_d = self._flat(labels, labels)

    def _flat(self, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
        """Flat indices into the dense (n, n) matrix of the d x d blocks (la, lb), row-major per block."""
        d, n = self.d, self.n
        a = np.arange(d)
        return ((la[:, None, None] * d + a[None, :, None]) * n + lb[:, None, None] * d + a[None, None, :]).reshape(-1)

    def __call__(self, data: np.ndarray, adjoints: np.ndarray, col_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(G, D), dense fp64, for A's values `data`, the basis blocks Ad_k (nf, d, d) and the column scaling S."""
        d, n = self.d, self.n
        nf = adjoints.shape[0]
        Pk = np.empty((nf + 1, d, d))
        Pk[:nf] = adjoints / np.asarray(col_scale, np.float64).reshape(nf, d)[:, :, None]
        Pk[nf] = 0.0  # a held end
        blocks = data.take(self.pos).astype(np.float64, copy=False)
        blocks[self.held] = 0.0
        Bi = np.ascontiguousarray(blocks[:, :, :d]) @ Pk[self.ends[:, 0]]
        Bj = np.ascontiguousarray(blocks[:, :, d:]) @ Pk[self.ends[:, 1]]
        BiT = np.ascontiguousarray(Bi.transpose(0, 2, 1))
        diag = np.concatenate([(BiT @ Bi).reshape(-1), (np.ascontiguousarray(Bj.transpose(0, 2, 1)) @ Bj).reshape(-1)])
        G = np.bincount(self.idx_diag, weights=diag, minlength=n * n).reshape(n, n)
        off = np.bincount(self.idx_off, weights=(BiT @ Bj).reshape(-1), minlength=n * n).reshape(n, n)
        G += off
        G += off.T
        Dk = np.ascontiguousarray(Pk[:nf].transpose(0, 2, 1)) @ Pk[:nf]
        D = np.bincount(self.idx_d, weights=Dk.reshape(-1), minlength=n * n).reshape(n, n)
        return G, D
