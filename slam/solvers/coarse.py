"""Two-level correction for the static IC preconditioner: the pose graph of rigid clusters.

Block IC(0) is a local preconditioner: it gets the stiff, short-range part of a pose graph right
but not its soft long-range modes (bending of a trajectory between loop closures, the whole graph
turning about the held pose), which hold most of the error of a PGO problem and which CG then
needs hundreds of iterations to find. Those modes are close to rigid motions of whole pieces of
the graph. The coarse space is exactly that: vertices are grouped into clusters of neighbouring
poses and each cluster may move rigidly (a left perturbation X_k <- X_a Exp(xi) X_a^-1 X_k, i.e.
dx_k = Ad(X_k^-1 X_a) xi for every pose k of the cluster with anchor a). Edges inside a cluster do
not see such a motion (their error is invariant to a common left transform), so the Galerkin
matrix P^T (A^T A + lam I) P is the normal matrix of the small pose graph of clusters.

The preconditioner is additive: M^-1 = (L L^T)^-1 + P A_c^-1 P^T, symmetric positive definite
whatever the rounding (A_c^-1 is applied as W^T W with W = C^-1, C its Cholesky factor). A_c is
dense and small (dof x clusters: a few hundred to COARSE_MAX_DIM), formed and factored in fp64
from the current linearization (the clusters are fixed per problem, the rigid motions follow the
poses; when it is rebuilt is decided in twolevel.py), and applied in the vector precision, fp32
at least: its condition number is that of the whole problem, far beyond fp16.

The same factor gives the exact subspace step (subspace_step): after CG, the step is replaced by
the model optimum over span(P) + span(CG step, last LM steps), with Jacobian-precision products.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from slam.solvers.backend import F16, F32, Backend

COARSE_MAX_DIM = 1536  # largest coarse matrix the solver grows to: its dense Cholesky costs ~k^3/3 per LM step
MIN_CLUSTER = 8  # poses a cluster at least: smaller clusters turn the coarse level into a direct solve


class CoarseCorrection:
    """z = P (P^T (A^T A + lam I) P)^-1 P^T r for a coarse basis P in the scaled variables."""

    def __init__(self, A: sp.csr_matrix, basis: sp.spmatrix, col_scale: np.ndarray, lam: float,
                 backend: Backend, vector_dtype: np.dtype,
                 gram: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """gram: (P^T A^T A P, P^T P) of the scaled basis when the problem assembled them itself
        (pose graphs: from edge blocks, pgo_galerkin.py); else they are formed here as sparse products."""
        # basis columns are tangent directions dx; the CG variables are y with dx = S y.
        P = sp.csr_matrix(basis, dtype=np.float64, copy=True)
        P.data *= np.repeat(1.0 / col_scale, np.diff(P.indptr))
        if gram is None:
            AP = sp.csr_matrix(A, dtype=np.float64) @ P
            self.G = np.asarray((AP.T @ AP).toarray())
            self.D = np.asarray((P.T @ P).toarray())  # block diagonal: clusters do not share poses
        else:
            self.G, self.D = gram
        self.backend = backend
        self.vector_dtype = np.dtype(vector_dtype)
        self.dtype = F32 if self.vector_dtype == F16 else self.vector_dtype  # see module notes
        store = backend.storage_dtype(self.dtype)
        self._P64 = P
        self._P = backend.sparse.csr_matrix(P.astype(store)) if backend.name != "numpy" else P.astype(store)
        self._PT = backend.sparse.csr_matrix(P.T.tocsr().astype(store)) if backend.name != "numpy" \
            else P.T.tocsr().astype(store)
        self.size = P.shape[1]
        self.shift = 0.0
        self.set_lambda(lam)

    def set_lambda(self, lam: float) -> None:
        """Refactor A_c = G + lam D (after LM changed its damping)."""
        self.lam = lam
        Ac = self.G + lam * self.D
        scale = float(np.max(np.abs(np.diagonal(Ac)))) if self.size else 1.0
        shift, C = 0.0, None
        for _ in range(8):  # a cluster held only by very weak edges can leave A_c numerically singular
            try:
                C = np.linalg.cholesky(Ac + shift * np.eye(self.size))
                break
            except np.linalg.LinAlgError:
                shift = scale * 1e-12 if shift == 0.0 else 100.0 * shift
        if C is None:
            raise np.linalg.LinAlgError("coarse matrix of the two-level preconditioner is not positive definite")
        self.shift = shift
        self._C = C
        W, info = sla.lapack.dtrtri(C, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("coarse Cholesky factor is singular")
        store = self.backend.storage_dtype(self.dtype)
        self._W = self.backend.asarray(W.astype(store))
        self._WT = self.backend.asarray(np.ascontiguousarray(W.T).astype(store))

    def subspace_step(self, rhs: np.ndarray, D: np.ndarray, ND: np.ndarray) -> np.ndarray:
        """The maximizer of the model rhs.z - z.N z / 2 over z in span(P) + span(D), in fp64.

        D (n, q) holds a few directions (the CG step, the previous LM steps) and ND = N D their
        products with the normal matrix N = A^T A + lam I in the Jacobian precision. The coarse
        block is eliminated with A_c's Cholesky factor (block Gaussian elimination), leaving a
        q x q system. The CG step is in the span, so the model decrease can only grow: this
        repairs what products in fp16 cannot resolve (directions whose curvature is below fp16's
        relative precision) on the coarse space, and scales and combines the steps with exact
        curvature information elsewhere.
        """
        P, cf = self._P64, (self._C, True)
        Pb = P.T @ rhs
        PND = np.asarray(P.T @ ND)
        Ab = sla.cho_solve(cf, Pb, check_finite=False)
        AND = sla.cho_solve(cf, PND, check_finite=False)
        schur = D.T @ ND - PND.T @ AND
        schur = 0.5 * (schur + schur.T)
        w, V = np.linalg.eigh(schur)
        keep = w > 1e-10 * max(float(w.max()), 0.0) if w.size else np.zeros(0, bool)
        if not np.any(keep):  # the directions lie in the coarse space (or carry no curvature)
            return P @ Ab
        ra = D.T @ rhs - PND.T @ Ab
        alpha = V[:, keep] @ ((V[:, keep].T @ ra) / w[keep])
        return P @ (Ab - AND @ alpha) + D @ alpha

    def __call__(self, r: Any) -> Any:
        """P A_c^-1 P^T r in the coarse precision."""
        c = self._PT @ r.astype(self._W.dtype, copy=False)
        c = self._WT @ (self._W @ c)
        return self._P @ c


class TwoLevel:
    """Additive two-level preconditioner: fine (static IC) plus coarse correction."""

    def __init__(self, fine: Callable[[Any], Any], coarse: CoarseCorrection) -> None:
        self.fine = fine
        self.coarse = coarse

    def __call__(self, r: Any) -> Any:
        """z = M_fine^-1 r + P A_c^-1 P^T r, in the vector precision."""
        z = self.fine(r)
        z = z + self.coarse(r).astype(z.dtype, copy=False)
        return self.coarse.backend.cast(z, self.coarse.vector_dtype)
