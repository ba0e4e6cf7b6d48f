"""Preconditioners built from the scaled normal matrix: block Jacobi and (re-exported) block IC(0)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from slam.solvers.backend import Backend


def block_diagonal(J: sp.csr_matrix, groups: list[tuple[int, int, int]]) -> list[np.ndarray]:
    """Diagonal blocks of J^T J for column groups (start, n_blocks, block_size), each (nb, bs, bs).

    Computed group by group as J_g^T J_g, then read block by block: for BA every row touches one
    camera and one point, so within a group J_g^T J_g is block diagonal and this costs O(rows*bs^2).
    """
    Jc = sp.csc_matrix(J)
    out = []
    for start, nb, bs in groups:
        Jg = Jc[:, start:start + nb * bs]
        G = (Jg.T @ Jg).tocsr()
        i = (np.arange(nb)[:, None, None] * bs + np.arange(bs)[None, :, None]).repeat(bs, 2).ravel()
        j = (np.arange(nb)[:, None, None] * bs + np.arange(bs)[None, None, :]).repeat(bs, 1).ravel()
        out.append(np.asarray(G[i, j]).reshape(nb, bs, bs))
    return out


class BlockJacobi:
    """M^-1 = inverse of the block diagonal of (A^T A + lam I), applied in the vector precision."""

    def __init__(self, blocks: list[np.ndarray], groups: list[tuple[int, int, int]], lam: float,
                 backend: Backend, vector_dtype: np.dtype) -> None:
        self.backend = backend
        self.vector_dtype = np.dtype(vector_dtype)
        self.groups = groups
        store = backend.storage_dtype(self.vector_dtype)
        self.inv = []
        for B, (_, nb, bs) in zip(blocks, groups):
            D = B + lam * np.eye(bs)
            # Blocks of fixed/unobserved parameters can be singular: pseudo-inverse-like guard via eigen floor.
            try:
                Dinv = np.linalg.inv(D)
            except np.linalg.LinAlgError:
                Dinv = np.linalg.pinv(D)
            self.inv.append(backend.asarray(backend.cast(Dinv, self.vector_dtype).astype(store)))

    def __call__(self, r: Any) -> Any:
        """z = M^-1 r."""
        xp = self.backend.xp
        parts = []
        for Dinv, (start, nb, bs) in zip(self.inv, self.groups):
            seg = r[start:start + nb * bs].reshape(nb, bs)
            parts.append(xp.einsum("nij,nj->ni", Dinv, seg).reshape(-1))
        return self.backend.cast(xp.concatenate(parts), self.vector_dtype)
