"""Static block incomplete Cholesky, IC(0), with triangular solves in the policy's precision.

The factor L (block lower triangular, same block pattern as the lower half of A, no fill) is
computed once per problem from the Jacobi-scaled normal matrix and reused by every LM iteration.
The factorization is right-looking over block columns: each column is a few direct LAPACK calls
on 6x6 blocks, and the symbolic work (which block updates which, dropping fill) is done once,
vectorized. The two triangular solves go through SuperLU (compiled, single or double precision):
a triangular matrix factored with natural ordering and no pivoting has no fill, so SuperLU's
solve *is* the block forward/backward substitution.

Block order (chosen by the caller, see twolevel.build_ichol): the file order when it is an
odometry chain, reverse Cuthill-McKee otherwise. Measured with the coarse level on top: file order
needs 10-15% fewer CG iterations than RCM on sphere2500, 12% fewer on parking-garage in fp64 but
25% more in 'mixed'; on a randomly renumbered graph RCM needs 30-40% fewer than the (random) file
order. IC(0) may meet a non-positive pivot (parking-garage in file order does): it then restarts
with a diagonal shift, reported as ichol_shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg.blas import dtrsm
from scipy.linalg.lapack import dpotrf

from slam.solvers.backend import F16, Backend, numpy_backend
from slam.solvers.cgnr import pow2_of_max


@dataclass
class BlockPattern:
    """Lower-triangular block pattern, column-major: column k holds its diagonal block first."""

    n: int            # number of block rows/columns
    bs: int           # block size (6 for SE(3), 7 for Sim(3))
    col_ptr: np.ndarray
    rows: np.ndarray  # block row of each stored block
    cols: np.ndarray  # block column of each stored block


def block_pattern(A: sp.spmatrix, bs: int) -> BlockPattern:
    """Block pattern of the lower triangle of a symmetric matrix with square blocks of size bs."""
    n = A.shape[0] // bs
    Bp = block_graph(A, bs)  # block-level pattern (where any scalar is stored, explicit zeros included)
    Bp = sp.tril(Bp + sp.eye(n), format="csc")
    Bp.sort_indices()
    rows = Bp.indices.astype(np.int64)
    cols = np.repeat(np.arange(n), np.diff(Bp.indptr))
    # Diagonal first in each column: in sorted lower-triangular CSC the diagonal is the smallest row.
    return BlockPattern(n, bs, Bp.indptr.astype(np.int64), rows, cols)


def block_graph(A: sp.spmatrix, bs: int) -> sp.csr_matrix:
    """(n, n) pattern of the bs x bs blocks of A that hold a stored entry, values 1.

    Block row k is the concatenation of scalar rows k*bs .. k*bs + bs - 1, so the CSR arrays of A
    with every bs-th row pointer and column indices // bs are already the block pattern, with
    repeats that sum_duplicates merges (no product with an aggregation matrix).
    """
    A = sp.csr_matrix(A)
    n = A.shape[0] // bs
    G = sp.csr_matrix((np.ones(A.nnz), A.indices // bs, A.indptr[::bs].copy()), shape=(n, n))
    G.sum_duplicates()
    G.data[:] = 1.0
    return G


def gather_blocks(A: sp.spmatrix, pat: BlockPattern) -> np.ndarray:
    """Dense (nb, bs, bs) blocks of A at the pattern's positions (zeros where A has none)."""
    bs = pat.bs
    A = sp.csr_matrix(A)
    # Address every scalar of every block, then read them in one fancy-indexing call.
    ii = (pat.rows[:, None, None] * bs + np.arange(bs)[None, :, None]).repeat(bs, axis=2)
    jj = (pat.cols[:, None, None] * bs + np.arange(bs)[None, None, :]).repeat(bs, axis=1)
    vals = np.asarray(A[ii.ravel(), jj.ravel()]).ravel()
    return vals.reshape(-1, bs, bs)


def _symbolic_updates(pat: BlockPattern) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every column k, the pairs (a, b) of its off-diagonal blocks whose product L_a L_b^T
    lands on a block that exists in the pattern (IC(0) drops the others). Returns (ptr, a, b, target)."""
    n = pat.n
    key_of = pat.rows * n + pat.cols  # sorted by (col, row) -> sort keys for lookup
    order = np.argsort(key_of, kind="stable")
    sorted_keys = key_of[order]
    counts = np.diff(pat.col_ptr) - 1  # off-diagonal blocks per column
    off_start = pat.col_ptr[:-1] + 1
    # Each off-diagonal block a (position q within its column) pairs with blocks q' <= q of the same column.
    off = np.ones(pat.rows.size, bool)
    off[pat.col_ptr[:-1]] = False
    a_pos = np.flatnonzero(off)  # off-diagonal blocks, column by column
    if a_pos.size == 0:
        z = np.zeros(0, np.int64)
        return np.zeros(n + 1, np.int64), z, z, z
    q = a_pos - np.repeat(off_start, counts)
    reps = q + 1
    a = np.repeat(a_pos, reps)
    first = np.repeat(np.repeat(off_start, counts), reps)
    b = first + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))
    tkey = pat.rows[a] * n + pat.rows[b]  # target block (row_a, row_b), row_a >= row_b
    loc = np.searchsorted(sorted_keys, tkey)
    loc = np.minimum(loc, sorted_keys.size - 1)
    found = sorted_keys[loc] == tkey
    a, b, target = a[found], b[found], order[loc[found]]
    col_of_pair = pat.cols[a]
    ptr = np.searchsorted(col_of_pair, np.arange(n + 1))
    return ptr.astype(np.int64), a, b, target


@dataclass
class ICFactorStats:
    """How the factorization went: restarts needed and the final diagonal shift alpha (0: plain IC(0))."""

    restarts: int
    shift: float


def block_ichol(A: sp.spmatrix, bs: int) -> tuple[sp.csc_matrix, ICFactorStats]:
    """Block IC(0) of a symmetric positive definite sparse A: returns (L, stats), L on A's lower pattern.

    IC(0) can meet an indefinite pivot even when A is SPD (the dropped fill was holding it up).
    Then the factorization restarts on A + alpha diag(A) with growing alpha (Manteuffel's shift),
    which always succeeds for alpha large enough; the shift used is reported.
    """
    pat = block_pattern(A, bs)
    B0 = gather_blocks(A, pat).astype(np.float64)
    symb = _symbolic_updates(pat)
    diag = B0[pat.col_ptr[:-1]].diagonal(axis1=1, axis2=2).copy()  # (n, bs)
    alpha, tries = 0.0, 0
    while True:
        B = B0.copy()
        if alpha > 0:
            idx = np.arange(bs)
            B[pat.col_ptr[:-1][:, None], idx, idx] += alpha * diag
        L = _factor_in_place(B, pat, symb)
        if L is not None:
            break
        tries += 1
        alpha = 1e-3 if alpha == 0 else 4 * alpha
        if tries > 12:
            raise np.linalg.LinAlgError("block IC(0) failed even with a diagonal shift of alpha = 1.6e4: "
                                        "the matrix is not positive definite")
    return _expand(B, pat, A.shape), ICFactorStats(tries, alpha)


def _factor_in_place(B: np.ndarray, pat: BlockPattern, symb: tuple) -> np.ndarray | None:
    """Right-looking block IC(0) on the blocks B; returns B (now L) or None at a non-SPD pivot.

    One pass over block columns (the elimination order is inherently sequential); LAPACK is called
    directly on the 6x6 blocks because NumPy's per-call overhead dominated at this size.
    """
    ptr, pa, pb, tgt = symb
    cp, ptr_l, bs = pat.col_ptr.tolist(), ptr.tolist(), pat.bs
    for k in range(pat.n):
        d, o1 = cp[k], cp[k + 1]
        Lkk, info = dpotrf(B[d], lower=1, clean=1)
        if info != 0:
            return None
        B[d] = Lkk
        if o1 > d + 1:
            # L_ik = A_ik L_kk^-T for all rows i of column k at once (blocks stacked vertically).
            B[d + 1:o1] = dtrsm(1.0, Lkk, B[d + 1:o1].reshape(-1, bs), side=1, lower=1, trans_a=1).reshape(-1, bs, bs)
            p0, p1 = ptr_l[k], ptr_l[k + 1]
            if p1 > p0:
                B[tgt[p0:p1]] -= B[pa[p0:p1]] @ B[pb[p0:p1]].transpose(0, 2, 1)
    return B if np.all(np.isfinite(B)) else None


def _expand(B: np.ndarray, pat: BlockPattern, shape: tuple[int, int]) -> sp.csc_matrix:
    """Scalar CSC lower-triangular matrix from the factor's blocks."""
    bs = pat.bs
    # Expand blocks into a scalar CSC matrix (lower triangular by construction; zero upper part of diagonal blocks).
    r = (pat.rows[:, None, None] * bs + np.arange(bs)[None, :, None]).repeat(bs, 2).ravel()
    c = (pat.cols[:, None, None] * bs + np.arange(bs)[None, None, :]).repeat(bs, 1).ravel()
    v = B.ravel()
    keep = (r >= c) & (v != 0.0)
    keep |= r == c
    L = sp.csc_matrix((v[keep], (r[keep], c[keep])), shape=shape)
    L.sort_indices()
    return L


def rcm_block_order(A: sp.spmatrix, bs: int) -> np.ndarray:
    """Reverse Cuthill-McKee order of the blocks of A: IC(0) drops less (and breaks down less) in it."""
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    return np.asarray(reverse_cuthill_mckee(block_graph(A, bs), symmetric_mode=True), dtype=np.int64)


def permute_blocks(A: sp.spmatrix, order: np.ndarray, bs: int) -> sp.csr_matrix:
    """P A P^T for a block order (new block k = old block order[k])."""
    idx = (order[:, None] * bs + np.arange(bs)).ravel()
    A = sp.csr_matrix(A)
    return A[idx][:, idx].tocsr()


class ICPreconditioner:
    """Applies M^-1 = (L L^T)^-1 with both triangular solves in the policy's precondition dtype.

    L is of a scaled matrix (unit diagonal scale), so its entries are O(1) and fit fp16. Before an
    fp16 rounding the vector is scaled by a power of two so it neither overflows nor underflows
    (exact, and skipped for fp32/fp64 whose range needs no help).
    `outer` (diagonal) maps the current scaled variables to the ones L was factored in.
    """

    def __init__(self, L: sp.csc_matrix, backend: Backend, dtype: np.dtype, vector_dtype: np.dtype,
                 perm: np.ndarray | None = None, upper: bool = False) -> None:
        """upper: L is given as its transpose L^T (upper triangular CSC), as fillchol.static_cholesky returns it."""
        self.perm = perm  # scalar permutation L was factored in: L L^T ~ A[perm][:, perm]
        self.backend = backend
        self.dtype = np.dtype(dtype)
        self.vector_dtype = np.dtype(vector_dtype)
        self._outer: np.ndarray | None = None
        self._outer_p: np.ndarray | None = None
        self._half = self.dtype == F16
        self.scale_operands = True  # power-of-two scaling before fp16 rounding (off only to study its effect)
        store = backend.storage_dtype(self.dtype)
        if backend.name != "numpy" and self._half:
            # cuSPARSE (and cupyx.scipy.sparse) has no fp16 triangular solve: on the GPU the fp16
            # factor and vectors are rounded to fp16 and solved in fp32, like the NumPy emulation.
            store = np.dtype(np.float32)
        self._store = store
        vals = np.asarray(numpy_backend().cast(np.asarray(L.data), self.dtype)).astype(store)
        Ls = sp.csc_matrix((vals, L.indices, L.indptr), shape=L.shape)
        Ut = Ls if upper else sp.csc_matrix(Ls.T)  # L^T as CSC
        self._perm_idx = None if perm is None else backend.asarray(np.asarray(perm))  # device copy on the GPU
        if backend.name == "numpy":
            # Natural ordering, no pivoting: SuperLU's LU of the triangular L^T is I * L^T (no fill),
            # so its solve *is* the backward substitution, and its transposed solve the forward one.
            # (Factoring L^T rather than L: SuperLU's column-wise U solve is ~30% faster here than
            # its supernodal L solve; on the complete factor of parking-garage two such solves take
            # 1.2 ms, one solve with SuperLU's own L D L^T object 2.3 ms, 1.6 ms transposed.)
            self._lu = spla.splu(Ut, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                                 options=dict(SymmetricMode=True))
        else:
            from slam.solvers.gpu_sparse import TriangularSolver  # analysis once per factor

            self._fwd = TriangularSolver(Ut.T.tocsr(), lower=True, dtype=store)
            self._bwd = TriangularSolver(Ut.tocsr(), lower=False, dtype=store)

    @property
    def outer(self) -> np.ndarray | None:
        """Diagonal map from the current scaled variables to the ones L was factored in (None: identity)."""
        return self._outer

    @outer.setter
    def outer(self, value: np.ndarray | None) -> None:
        self._outer = value
        if value is None:
            self._outer_p = None
        else:
            v = self.backend.asarray(np.asarray(value, dtype=self._store))
            self._outer_p = v if self.perm is None else v[self._perm_idx]

    def _solve(self, v: Any, trans: bool) -> Any:
        be = self.backend
        if be.name == "numpy":
            return self._lu.solve(v, trans="N" if trans else "T")
        return (self._bwd if trans else self._fwd)(v)

    def __call__(self, r: Any) -> Any:
        """z = M^-1 r."""
        be = self.backend
        v = r if self.perm is None else r[self._perm_idx]
        v = (v * self._outer_p).astype(self._store, copy=False) if self._outer_p is not None else \
            v.astype(self._store, copy=True)
        if self._half:
            s = pow2_of_max(v, be.xp) if self.scale_operands else 1.0
            v = be.cast(v * s, F16)
        y = self._solve(v, trans=False)
        if self._half:
            t = pow2_of_max(y, be.xp) if self.scale_operands else 1.0
            y = be.cast(y * t, F16)
        z = self._solve(y, trans=True)
        if self._half:
            z *= 1.0 / (s * t)
        if self._outer_p is not None:
            z *= self._outer_p
        if self.perm is not None:
            out = be.xp.empty_like(z)
            out[self._perm_idx] = z
            z = out
        return be.cast(z, self.vector_dtype)
