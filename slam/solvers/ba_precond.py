"""Schur-complement preconditioner for bundle adjustment, applied matrix-free in the full space.

The scaled, damped normal matrix of BA, cameras first and points second, is
    H = A^T A + lam I = [[B, E], [E^T, C]],   B, C block diagonal (points: 3x3 blocks).
Eliminating the points gives the block LDL^T form
    H = [[I, E C^-1], [0, I]] [[S, 0], [0, C]] [[I, 0], [C^-1 E^T, I]],   S = B - E C^-1 E^T,
and the preconditioner replaces S by S~:
    M^-1 r = [x_c; x_p],  x_c = S~^-1 (r_c - E C^-1 r_p),  x_p = C^-1 (r_p - E^T x_c).
The spectrum of M^-1 H is that of S~^-1 S plus ones, so CG on the full system converges like CG on
the reduced camera system with the same preconditioner (Ceres's ITERATIVE_SCHUR) while its products
stay the full J v, J^T u of CGNR. E is never stored: E v = A_c^T (A_p v), E^T u = A_p^T (A_c u).
  'schur-jacobi': S~ = block diagonal of S (Ceres's SCHUR_JACOBI); cheap, any problem size.
  'exact':        S~ = S, dense Cholesky (M = H up to rounding); for a few thousand camera
                  parameters at most; costs sum over points of (observations * cam_dim)^2 flops.
Precision. B, C, E are formed in fp64 from J rounded as CGNR's products see it (matvec dtype).
J's camera and point columns, the bulk of M's flops, are held in the precond dtype (fp16 in
'mixed'); the vectors they multiply stay in the vector dtype (fp16 ones after an exact power-of-two
scaling). The point blocks, applied as V^T V with C^-1 = V^T V and a power-of-two scale per
block, and S~ (its Cholesky factor, or V^T V blocks) hold the conditioning of the problem (points
seen with little parallax, the gauge): they stay in fp32 at least. Measured on BAL ladybug-49, fp16
there, or fp16 vectors inside M, turn 1-10 CG iterations per LM step into hundreds. Both factors are
applied as products with their transposes, so M stays symmetric positive definite under rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from slam.solvers.backend import F16, Backend
from slam.solvers.cgnr import pow2_of_max

DENSE_MAX = 2000  # largest reduced camera system that 'auto' factors densely


def exact_schur_fits(n_cam_params: int) -> bool:
    """Whether 'auto' factors the reduced camera system of this many free camera unknowns densely."""
    return n_cam_params <= DENSE_MAX


@dataclass
class SchurStructure:
    """The BA Jacobian's pattern as the preconditioner needs it, computed once per problem."""

    cam_dim: int
    n_obs: int
    n_cams: int            # free cameras
    n_points: int          # free points
    pos: np.ndarray        # where J.data entries go in the dense (O, 2, cam_dim + 3) per-observation blocks
    nnz: int
    cam_sel: np.ndarray    # J.data entries that lie in camera columns
    jc: tuple[np.ndarray, np.ndarray]  # CSR (indices, indptr) of the camera columns
    jp: tuple[np.ndarray, np.ndarray]  # CSR (indices, indptr) of the point columns
    Gc: sp.csr_matrix      # free camera <- observation (sums per-observation blocks)
    Gp: sp.csr_matrix      # free point <- observation
    both: np.ndarray       # observations with a free camera and a free point, in (camera, point) order
    Gpair: sp.csr_matrix | None  # (camera, point) pair <- observation of `both`; None when pairs are unique
    pair_cam: np.ndarray   # sorted
    pair_pt: np.ndarray
    cam_ptr: np.ndarray    # pairs of free camera c: pair_cam[cam_ptr[c]:cam_ptr[c + 1]]

    @property
    def n_cam_params(self) -> int:
        """Number of camera unknowns (they come first)."""
        return self.n_cams * self.cam_dim


def schur_structure(cam_col: np.ndarray, pt_col: np.ndarray, cam_dim: int, n_cams: int, n_points: int,
                    keep: np.ndarray, indices: np.ndarray, indptr: np.ndarray) -> SchurStructure:
    """Structure from per-observation free camera / point numbers (-1: fixed) and J's CSR pattern."""
    O = len(cam_col)
    cam_sel = indices < n_cams * cam_dim
    rows = np.repeat(np.arange(2 * O), np.diff(indptr))

    def ptr(sel: np.ndarray) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(np.bincount(rows[sel], minlength=2 * O))]).astype(np.int32)

    fc, fp = cam_col >= 0, pt_col >= 0
    both = np.flatnonzero(fc & fp)
    key = cam_col[both] * max(n_points, 1) + pt_col[both]
    order = np.argsort(key, kind="stable")
    both, key = both[order], key[order]
    ukey, inv = np.unique(key, return_inverse=True)
    Gpair = None if len(ukey) == len(key) else sp.csr_matrix(
        (np.ones(len(key)), (inv.ravel(), np.arange(len(key)))), shape=(len(ukey), len(key)))
    pair_cam, pair_pt = ukey // max(n_points, 1), ukey % max(n_points, 1)
    return SchurStructure(
        cam_dim=cam_dim, n_obs=O, n_cams=n_cams, n_points=n_points, pos=np.flatnonzero(keep),
        nnz=int(indptr[-1]), cam_sel=cam_sel,
        jc=(indices[cam_sel].astype(np.int32), ptr(cam_sel)),
        jp=((indices[~cam_sel] - n_cams * cam_dim).astype(np.int32), ptr(~cam_sel)),
        Gc=sp.csr_matrix((np.ones(fc.sum()), (cam_col[fc], np.flatnonzero(fc))), shape=(n_cams, O)),
        Gp=sp.csr_matrix((np.ones(fp.sum()), (pt_col[fp], np.flatnonzero(fp))), shape=(n_points, O)),
        both=both, Gpair=Gpair, pair_cam=pair_cam, pair_pt=pair_pt,
        cam_ptr=np.searchsorted(pair_cam, np.arange(n_cams + 1)))


def _inv_factor(A: np.ndarray) -> np.ndarray:
    """Batched V with A^-1 = V^T V (V = inverse of the lower Cholesky factor L of A)."""
    if len(A) == 0:
        return A.copy()
    if A.shape[1] != 3:
        return np.linalg.inv(np.linalg.cholesky(A))
    # 3x3 in closed form: LAPACK's per-matrix overhead dominates for thousands of point blocks.
    a = A.reshape(-1, 9)
    l00 = np.sqrt(a[:, 0])
    l10, l20 = a[:, 3] / l00, a[:, 6] / l00
    l11 = np.sqrt(a[:, 4] - l10 * l10)
    l21 = (a[:, 7] - l20 * l10) / l11
    l22 = np.sqrt(a[:, 8] - l20 * l20 - l21 * l21)
    if not (np.all(l00 > 0) and np.all(l11 > 0) and np.all(l22 > 0)):
        return np.linalg.inv(np.linalg.cholesky(A))  # raises LinAlgError naming the failure
    V = np.zeros_like(A)
    V[:, 0, 0], V[:, 1, 1], V[:, 2, 2] = 1.0 / l00, 1.0 / l11, 1.0 / l22
    V[:, 1, 0] = -l10 * V[:, 0, 0] * V[:, 1, 1]
    V[:, 2, 1] = -l21 * V[:, 1, 1] * V[:, 2, 2]
    V[:, 2, 0] = -(l20 * V[:, 0, 0] + l21 * V[:, 1, 0]) * V[:, 2, 2]
    return V


class SchurPreconditioner:
    """M^-1 of the scaled, damped BA normal matrix by point elimination (see the module docstring).

    `base` (the `.base` of an earlier preconditioner of the same Jacobian) skips the part that does
    not depend on lam, for LM's retries with a larger damping. `lagged` (an earlier 'exact' one)
    reuses its factor of S instead of forming S again: M is then exact in the point elimination and
    stale only in S~, still SPD, and CG pays for the staleness in iterations (`applications` counts
    them, so the caller can decide when a fresh S is worth its cost).
    """

    def __init__(self, st: SchurStructure, J: sp.csr_matrix, lam: float, backend: Backend, dtype: np.dtype,
                 vector_dtype: np.dtype, kind: str = "auto", base: dict | None = None,
                 matvec_dtype: np.dtype | None = None, lagged: "SchurPreconditioner | None" = None,
                 J_matvec: sp.csr_matrix | None = None) -> None:
        if J.nnz != st.nnz or J.shape[1] != st.n_cam_params + 3 * st.n_points:
            raise ValueError("the Jacobian does not have the bundle-adjustment problem's sparsity pattern")
        if kind == "auto":
            kind = "exact" if exact_schur_fits(st.n_cam_params) else "schur-jacobi"
        if kind not in ("exact", "schur-jacobi"):
            raise ValueError(f"unknown Schur preconditioner '{kind}'; choose auto, exact or schur-jacobi")
        if backend.name != "numpy":
            raise ValueError("the Schur preconditioner runs on the numpy backend only")
        self.kind, self.st, self.backend = kind, st, backend
        # M = H up to rounding (and, lagged, up to a stale S): CG may trust r.z/2 as its next gain (lm.py)
        self.near_inverse = kind == "exact"
        self.dtype, self.vector_dtype = np.dtype(dtype), np.dtype(vector_dtype)
        # The point blocks and S~ carry the problem's conditioning (small-parallax points, gauge):
        # fp16 cannot hold them, so they stay in fp32 at least, as the PGO coarse level does.
        self.block_dtype = np.promote_types(self.dtype, np.float32)
        self.work = backend.storage_dtype(self.dtype)
        self.base = base if base is not None else self._base(J, np.dtype(matvec_dtype or self.dtype), J_matvec)
        d, ncp = st.cam_dim, st.n_cam_params
        V = _inv_factor(self.base["C"] + lam * np.eye(3))  # C^-1 = V^T V
        self.applications, self.lagged = 0, lagged is not None and kind == "exact" and ncp > 0
        if self.lagged:
            self._L = lagged._L
        elif ncp:
            B = self._lazy("B") + lam * np.eye(d)
            F = np.matmul(self._lazy("E"), V[st.pair_pt].transpose(0, 2, 1))  # E C^-1 E^T = F F^T, per pair
            if kind == "exact":
                S = np.zeros((ncp, ncp))
                if len(F):
                    Fm = sp.bsr_matrix((F, st.pair_pt, st.cam_ptr), shape=(ncp, 3 * st.n_points))
                    S -= (Fm @ Fm.T).toarray()
                i = np.arange(st.n_cams)
                S.reshape(st.n_cams, d, st.n_cams, d)[i, :, i, :] += B
                self._L = self._factor(S)
            else:
                has = np.flatnonzero(np.diff(st.cam_ptr) > 0)
                if has.size:
                    B[has] -= np.add.reduceat(np.matmul(F, F.transpose(0, 2, 1)), st.cam_ptr[has], axis=0)
                self._W, self._W2 = self._blocks(_inv_factor(B))
        self._V, self._V2 = self._blocks(V)
        self._Jc, self._Jp = self.base["Jc"], self.base["Jp"]
        # Transposed views made once: a sparse .T per application cost more than the product on
        # small problems (dubrovnik-3-7: ~40% of the CG time).
        self._JcT, self._JpT = self.base["JcT"], self.base["JpT"]

    def _base(self, J: sp.csr_matrix, matvec_dtype: np.dtype, J_matvec: sp.csr_matrix | None = None) -> dict:
        """The lam-independent part: point blocks C, J's camera and point columns (B, E on demand).

        Built from J rounded as CGNR's products see it (the matvec dtype): M then inverts the
        operator CG iterates with, not a neighbour that fp16 would make differ in exactly the
        directions of small curvature M is there for. `J_matvec`, when given, is J already rounded
        so (lm.py's J_mv): its values are taken as they are instead of rounding J's a second time.
        """
        st, d, O = self.st, self.st.cam_dim, self.st.n_obs
        data = self._round(J.data, matvec_dtype) if J_matvec is None else \
            np.asarray(J_matvec.data).astype(self.work, copy=False)
        full = np.zeros(O * 2 * (d + 3))
        full[st.pos] = data
        blk = full.reshape(O, 2, d + 3)
        Ap = blk[:, :, d:]
        C = (st.Gp @ np.matmul(Ap.transpose(0, 2, 1), Ap).reshape(O, -1)).reshape(-1, 3, 3)
        # Rounding is idempotent: data already holds matvec-dtype values, so when the precond dtype
        # is the same ('mixed': both fp16) the columns need no second rounding.
        again = np.dtype(matvec_dtype) != self.dtype
        Jc = self._sparse(data[st.cam_sel], st.jc, (J.shape[0], st.n_cam_params), again)
        Jp = self._sparse(data[~st.cam_sel], st.jp, (J.shape[0], 3 * st.n_points), again)
        return {"blk": blk, "C": C, "Jc": Jc, "Jp": Jp, "JcT": Jc.T, "JpT": Jp.T}

    def _lazy(self, name: str) -> np.ndarray:
        """Camera blocks B or camera-point blocks E of the normal matrix, computed once per Jacobian."""
        if name not in self.base:
            st, d, O = self.st, self.st.cam_dim, self.st.n_obs
            blk = self.base["blk"]
            AcT = blk[:, :, :d].transpose(0, 2, 1)
            if name == "B":
                self.base["B"] = (st.Gc @ np.matmul(AcT, blk[:, :, :d]).reshape(O, -1)).reshape(-1, d, d)
            else:
                E = np.matmul(AcT[st.both], blk[st.both, :, d:])
                if st.Gpair is not None:
                    E = (st.Gpair @ E.reshape(len(E), -1)).reshape(-1, d, 3)
                self.base["E"] = E
        return self.base[name]

    def _round(self, a: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
        """a rounded to dtype (default: the precond dtype), held in the working dtype."""
        return self.backend.cast(np.asarray(a), np.dtype(dtype or self.dtype)).astype(self.work, copy=False)

    def _sparse(self, data: np.ndarray, pattern: tuple[np.ndarray, np.ndarray],
                shape: tuple[int, int], rounding: bool = True) -> sp.csr_matrix:
        """CSR matrix of J's entries `data` on `pattern`, rounded to the precond dtype unless `rounding` is False."""
        return sp.csr_matrix((self._round(data) if rounding else data.astype(self.work, copy=False),
                              pattern[0], pattern[1]), shape=shape)

    def _blocks(self, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Blocks as (rounded V / s, s^2) with s a power of two per block, so no block over- or underflows."""
        m = np.abs(V).max(axis=(1, 2)) if len(V) else np.zeros(0)
        s = np.ldexp(1.0, np.frexp(np.where(m > 0, m, 1.0))[1])
        return self._round(V / s[:, None, None], self.block_dtype), (s * s).astype(self.work)[:, None]

    def _factor(self, S: np.ndarray) -> np.ndarray:
        """Rounded lower Cholesky factor of the reduced camera matrix (shifted if rounding made S indefinite)."""
        shift, diag = 0.0, np.diag(S).copy()
        for _ in range(8):
            try:
                return self._round(np.linalg.cholesky(S + shift * np.diag(diag)), self.block_dtype)
            except np.linalg.LinAlgError:
                shift = 1e-12 if shift == 0.0 else 100.0 * shift
        raise np.linalg.LinAlgError("the reduced camera system is not positive definite")

    def _vtv(self, V: np.ndarray, s2: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Blockwise V^T V v (block operands in block_dtype, at least fp32, so v needs no rounding)."""
        bs = V.shape[1]
        y = np.einsum("nij,nj->ni", V, v.reshape(-1, bs))
        return (np.einsum("nji,nj->ni", V, y) * s2).reshape(-1)

    def _mul(self, M: sp.spmatrix, v: np.ndarray) -> np.ndarray:
        """M v: M's values in the precond dtype, v in the vector dtype (fp16: after a power-of-two scaling)."""
        if self.vector_dtype != F16:
            return M @ v
        s = pow2_of_max(v)
        return (M @ self._round(v * s, F16)) * (1.0 / s)

    def _sinv(self, v: np.ndarray) -> np.ndarray:
        if self.kind == "schur-jacobi":
            return self._vtv(self._W, self._W2, v)
        y = sla.solve_triangular(self._L, v, lower=True, check_finite=False)
        return sla.solve_triangular(self._L, y, lower=True, trans="T", check_finite=False)

    def __call__(self, r: np.ndarray) -> np.ndarray:
        """z = M^-1 r."""
        self.applications += 1
        ncp = self.st.n_cam_params
        r = np.asarray(r).astype(self.work, copy=False)
        rc, rp = r[:ncp], r[ncp:]
        yp = self._vtv(self._V, self._V2, rp)
        if ncp == 0:
            return self.backend.cast(yp, self.vector_dtype)
        xc = self._sinv(rc - self._mul(self._JcT, self._mul(self._Jp, yp)))
        xp = yp - self._vtv(self._V, self._V2, self._mul(self._JpT, self._mul(self._Jc, xc)))
        return self.backend.cast(np.concatenate([xc, xp]), self.vector_dtype)


def observation_aggregators(cam_of_obs: np.ndarray, n_cams: int, pt_of_obs: np.ndarray,
                            n_pts: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """0/1 matrices (n_cams, O) and (n_pts, O) summing per-observation values per free camera / point (-1: fixed)."""
    out = []
    for c, n in ((cam_of_obs, n_cams), (pt_of_obs, n_pts)):
        on = c >= 0
        out.append(sp.csr_matrix((np.ones(int(on.sum())), (c[on], np.flatnonzero(on))), shape=(n, c.size)))
    return out[0], out[1]


def observation_blocks(J_obs: np.ndarray, aggregate: tuple[sp.csr_matrix, sp.csr_matrix],
                       cam_dim: int) -> list[np.ndarray]:
    """Diagonal blocks of J^T J from J laid out per observation, J_obs (O, 2, cam_dim + 3) = its two rows of
    [camera | point] columns (zeros where fixed): cameras (n_cams, d, d), then points (n_pts, 3, 3).

    Each block is a sum over observations of two outer products, formed entry by entry on whole
    columns (upper triangle) and summed per camera / point by one sparse product.
    """
    O = J_obs.shape[0]
    # (2, d + 3, O): every Jacobian entry as a contiguous column over observations. Entry-wise
    # products of these columns run at memory speed; a broadcast (O, n, n) outer product of the
    # small blocks was 10x slower (NumPy's inner loops of length n), an einsum 3-10x.
    cols = np.ascontiguousarray(J_obs.transpose(1, 2, 0))
    out = []
    tmp = np.empty(O)
    for agg, lo, n in ((aggregate[0], 0, cam_dim), (aggregate[1], cam_dim, 3)):
        iu, ju = np.triu_indices(n)
        prod = np.empty((len(iu), O))
        for k, (i, j) in enumerate(zip(iu, ju)):  # over the n (n + 1) / 2 entries, not observations
            np.multiply(cols[0, lo + i], cols[0, lo + j], out=prod[k])
            np.multiply(cols[1, lo + i], cols[1, lo + j], out=tmp)
            prod[k] += tmp
        upper = np.asarray(agg @ prod.T)  # (blocks, n (n + 1) / 2)
        blocks = np.empty((agg.shape[0], n, n))
        blocks[:, iu, ju] = upper
        blocks[:, ju, iu] = upper
        out.append(blocks)
    return out
