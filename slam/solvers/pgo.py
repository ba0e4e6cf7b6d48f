"""Pose-graph optimization problems: SE(3) (6-DoF), Sim(3) (7-DoF) and SE(2) (3-DoF) between factors.

Residual of edge (i, j) with measurement Z_ij: e = Log(Z_ij^-1 X_i^-1 X_j) (GTSAM's BetweenFactor
with the Pose3 logmap), cost 1/2 sum e^T Omega e. Right perturbation X <- X Exp(d):
  de/dd_j = J_r^-1(e),   de/dd_i = -J_r^-1(e) Ad(X_j^-1 X_i).
Fixed vertices (g2o FIX lines, or one per connected piece as gauge) are left out of the unknowns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from slam.errors import ProblemError
from slam.geometry import lie, lie_se2
from slam.io.g2o_planar import PLANAR_TOLERANCE, off_plane, planar_information
from slam.solvers import pgo_se2, pgo_se3
from slam.solvers.coarse import MIN_CLUSTER
from slam.solvers.pgo_galerkin import EdgeGalerkin
from slam.solvers.pgo_init import chordal_initialization

# 'auto' initialization (PoseGraphProblem.initialize): the chordal start replaces one whose mean
# whitened squared residual 2 cost / (edges * dof) exceeds this. Dead-reckoned benchmark starts lie
# far above it (sphere2500 88, smallGrid3D 94, a 2-D Manhattan walk with 0.1 rad heading noise
# ~1e4), a loop-closure graph started from odometry and parking-garage (0.44) below.
INIT_AUTO_RESIDUAL = 10.0


@dataclass(frozen=True)
class _Group:
    dof: int
    exp: Any
    log: Any
    inverse: Any
    adjoint: Any
    jr_inv: Any


GROUPS = {
    "se3": _Group(6, lie.se3_exp, lie.se3_log, lie.se3_inverse, lie.se3_adjoint, lie.se3_right_jacobian_inv),
    "sim3": _Group(7, lie.sim3_exp, lie.sim3_log, lie.sim3_inverse, lie.sim3_adjoint, lie.sim3_right_jacobian_inv),
    # Planar poses kept as 4x4 SE(3) matrices in the plane z = 0, tangent [v_x, v_y, theta] (Pose2).
    "se2": _Group(3, lie_se2.se2_exp, lie_se2.se2_log, lie.se3_inverse, lie_se2.se2_adjoint,
                  lie_se2.se2_right_jacobian_inv),
}


def _round(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round float64 values to `dtype` and hold them in float64 (emulates a stage's input/output precision)."""
    dtype = np.dtype(dtype)
    return x if dtype == np.float64 else x.astype(dtype).astype(np.float64)


class PoseGraphProblem:
    """A pose graph as a LeastSquaresProblem; `poses` is updated in place by the solver."""

    preconditioner = "ichol"
    # 'mixed' for a pose graph (DESIGN.md): fp16 in the two triangular solves of the static IC
    # preconditioner, everything else fp32 (precision.policy_for)
    mixed_fp16_stages = ("precond",)
    # CG stops on the damped model decrease (see cgnr.py): pose graphs keep most of their error in
    # soft directions that a residual-norm test does not see.
    cg_model_tol = 1e-2
    # ... and 20% while LM's quadratic model is poor (the first step, and after a step with gain
    # ratio < 0.9, lm.MODEL_TRUST_RHO): far from the optimum of a hard graph an exact solve of a
    # model that misjudges the cost is wasted. Measured (mixed, same LM iterations or one fewer,
    # final costs within 5e-8 of GTSAM's): torus-noisy 265 -> 151 CG (0.94 -> 0.65 s),
    # parking-garage 104 -> 91, smallGrid3D 62 -> 47, lattice-noisy 86 -> 59, torus-hard
    # 97 -> 93; sphere2500 93 -> 95. 10% or 30% instead: torus-noisy 177 or 173, the rest within 6.
    cg_model_tol_nonlinear = 0.2
    # LM may cut its damping by up to 1000x after a good step (the engine's default is 10x): near
    # the optimum a pose graph's gain ratio is ~1 and its soft directions (long chains) stay damped
    # for several steps at 10x. The Nielsen factor 1 - (2 rho - 1)^3 only falls below 1e-2 for
    # rho > 0.998, a step the quadratic model predicted almost exactly. Measured (fp64, same final
    # costs to 1e-7), 10x -> 100x: parking-garage 8 -> 6 LM iterations (138 -> 98 CG), torus-noisy
    # 16 -> 13 (388 -> 265), 85 office_long loop-closure graphs 1,405 -> 1,277 CG in mixed;
    # 100x -> 1000x (with the 20% CG tolerance of cg_model_tol_nonlinear): parking-garage mixed
    # 91 -> 74 CG, 119 office_long stereo loop-closure graphs (seed 11) mixed 342 -> 322 LM
    # iterations and 1,788 -> 1,527 CG, fp64 1,564 -> 1,428 CG, same costs; the other benchmark
    # graphs unchanged; 1e-4 and 1e-6 as 1e-3. BA keeps 10x (neutral on ladybug-49; on dubrovnik it
    # moved the zero-residual end point).
    lm_lambda_min_factor = 1e-3
    initialization_method = "chordal"  # what initialize() puts in place of the start (pgo_init.py)

    def __init__(self, poses: np.ndarray, edges: np.ndarray, measurements: np.ndarray, information: np.ndarray,
                 fixed: np.ndarray | None = None, group: str = "se3", gauge: str = "per-component") -> None:
        if group not in GROUPS:
            raise ValueError(f"unknown group '{group}'; choose se3, sim3 or se2")
        self.g = GROUPS[group]
        d = self.g.dof
        self.group = group
        self.poses = np.array(poses, dtype=np.float64)
        n = self.poses.shape[0]
        self.edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        m = self.edges.shape[0]
        if n == 0 or m == 0:
            raise ProblemError(f"empty pose graph ({n} vertices, {m} edges): nothing to optimize")
        if self.edges.min() < 0 or self.edges.max() >= n:
            raise ProblemError(f"edge refers to vertex index outside 0..{n - 1}")
        if np.any(self.edges[:, 0] == self.edges[:, 1]):
            k = int(np.flatnonzero(self.edges[:, 0] == self.edges[:, 1])[0])
            raise ProblemError(f"edge {k} connects vertex index {self.edges[k, 0]} to itself")
        Z = np.asarray(measurements, dtype=np.float64)
        Om = np.asarray(information, dtype=np.float64)
        if Om.shape != (m, d, d):
            raise ProblemError(f"information must be ({m}, {d}, {d}) for {group}, got {Om.shape}")
        for name, a in (("poses", self.poses), ("measurements", Z), ("information", Om)):
            if not np.all(np.isfinite(a)):
                raise ProblemError(f"{name} contain NaN or Inf")
        try:
            Lc = np.linalg.cholesky(0.5 * (Om + Om.transpose(0, 2, 1)))
        except np.linalg.LinAlgError:
            bad = [k for k in range(m) if np.linalg.eigvalsh(Om[k])[0] <= 0][:5]
            raise ProblemError(f"information matrix of edge(s) {bad} is not positive definite") from None
        self.W = Lc.transpose(0, 2, 1)  # Omega = W^T W, whitened residual W e
        self.Zinv = self.g.inverse(Z)
        self.fixed = np.zeros(n, bool) if fixed is None else np.asarray(fixed, bool).copy()
        self.gauge_vertices = self._fix_gauge(gauge)
        free = ~self.fixed
        self.col_of = np.full(n, -1, np.int64)
        self.col_of[free] = np.arange(free.sum())
        self.n_params = int(free.sum()) * d
        self.groups = [(0, int(free.sum()), d)]
        self._build_pattern()
        self._soa = group == "se3"  # closed-form structure-of-arrays path (pgo_se3.py)
        self._planar = group == "se2"  # closed-form planar path (pgo_se2.py)
        if self._planar:
            off = off_plane(np.concatenate([self.poses, Z]))
            if off.max() > PLANAR_TOLERANCE:  # an SE(2) solve would silently drop height and tilt
                raise ProblemError(f"group se2 needs planar poses and measurements (in the plane z = 0); "
                                   f"found height or tilt {off.max():.3g}")
            self._Zinv_planar: dict[np.dtype, pgo_se2.Planar] = {}
        if self._soa:
            Wb = self.W[:, :3, 3:]
            self._W_soa = (pgo_se3.soa(self.W[:, :3, :3]), None if not Wb.any() else pgo_se3.soa(Wb),
                           pgo_se3.soa(self.W[:, 3:, 3:]))
            self._Zinv_soa: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}

    def _fix_gauge(self, gauge: str) -> np.ndarray:
        """Hold one vertex of every connected piece that has no fixed vertex (the gauge freedom)."""
        if gauge == "none":
            return np.zeros(0, np.int64)
        add, self.n_components = gauge_vertices(self.edges, self.fixed)
        self.fixed[add] = True
        return add

    def _build_pattern(self) -> None:
        """CSR index arrays of J, fixed once; linearize only fills the values."""
        d, m = self.g.dof, len(self.edges)
        ci = self.col_of[self.edges[:, 0]]
        cj = self.col_of[self.edges[:, 1]]
        cols = np.concatenate([ci[:, None] * d + np.arange(d), cj[:, None] * d + np.arange(d)], axis=1)  # (m, 2d)
        keep = np.concatenate([np.repeat(ci[:, None] >= 0, d, 1), np.repeat(cj[:, None] >= 0, d, 1)], axis=1)
        cols = np.broadcast_to(cols[:, None, :], (m, d, 2 * d))
        keep = np.broadcast_to(keep[:, None, :], (m, d, 2 * d))
        self._keep = keep.reshape(-1)
        # Integer positions of the kept entries (None when every entry is kept: no edge touches a
        # held vertex), so filling J's values is one gather instead of a boolean mask per call.
        self._take = None if self._keep.all() else np.flatnonzero(self._keep)
        self._indices = cols.reshape(-1)[self._keep].astype(np.int32)
        per_row = keep.sum(axis=2).reshape(-1)
        self._indptr = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int32)
        self._shape = (m * d, self.n_params)

    # ---------------------------------------------------------------- LeastSquaresProblem interface
    def _errors(self, dtype: np.dtype) -> tuple[np.ndarray, Any]:
        """Edge errors e (m, dof) and relative poses X_i^-1 X_j (planar: their parts), operands rounded to dtype.

        The translation difference t_j - t_i is taken from the (fp64) state before it is rounded:
        rounding absolute coordinates first would cost |t| * eps of every relative translation
        (a 100 m map in fp32: 6 um, enough noise to hide the last LM decreases of a pose graph).
        """
        if self._planar:
            return self._errors_planar(dtype)
        X = self.poses
        i, j = self.edges[:, 0], self.edges[:, 1]
        lin = _round(X, dtype).copy()
        lin[:, :3, 3] = 0.0
        Xj = lin[j].copy()
        Xj[:, :3, 3] = _round(X[j, :3, 3] - X[i, :3, 3], dtype)
        XiinvXj = self.g.inverse(lin[i]) @ Xj
        e = self.g.log(_round(self.Zinv, dtype) @ XiinvXj)
        return _round(e, dtype), XiinvXj

    def _errors_planar(self, dtype: np.dtype) -> tuple[np.ndarray, pgo_se2.Planar]:
        """SE(2) errors e (m, 3) rounded to dtype and X_i^-1 X_j as (cos, sin, t (2, m)), as _errors."""
        dtype = np.dtype(dtype)
        if dtype not in self._Zinv_planar:
            self._Zinv_planar[dtype] = pgo_se2.planar_parts(_round(self.Zinv, dtype))
        X = self.poses
        i, j = self.edges[:, 0], self.edges[:, 1]
        c, s = _round(X[:, 0, 0], dtype), _round(X[:, 1, 0], dtype)
        t = X[:, :2, 3].T
        dt = _round(t.take(j, axis=1) - t.take(i, axis=1), dtype)
        e, Xij = pgo_se2.between_errors(c, s, dt, i, j, *self._Zinv_planar[dtype])
        return _round(e, dtype), Xij

    def _errors_soa(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """SE(3) errors e (6, m) rounded to dtype and X_i^-1 X_j as (R (3, 3, m), t (3, m)), as _errors."""
        dtype = np.dtype(dtype)
        if dtype not in self._Zinv_soa:
            Zr = _round(self.Zinv, dtype)
            self._Zinv_soa[dtype] = (pgo_se3.soa(Zr[:, :3, :3]), pgo_se3.soa(Zr[:, :3, 3]))
        RZ, tZ = self._Zinv_soa[dtype]
        X = self.poses
        i, j = self.edges[:, 0], self.edges[:, 1]
        R = pgo_se3.soa(_round(X[:, :3, :3], dtype))
        t = X[:, :3, 3].T
        dt = _round(t.take(j, axis=1) - t.take(i, axis=1), dtype)
        e, Rij, tij = pgo_se3.between_errors(R, dt, i, j, RZ, tZ)
        return _round(e, dtype), Rij, tij

    def _whiten_soa(self, e: np.ndarray) -> np.ndarray:
        """W e for errors e (6, m): (6, m)."""
        Wa, Wb, Wc = self._W_soa
        top = pgo_se3.mv(Wa, e[:3])
        if Wb is not None:
            top += pgo_se3.mv(Wb, e[3:])
        return np.concatenate([top, pgo_se3.mv(Wc, e[3:])])

    def edge_chi2(self) -> np.ndarray:
        """(m,) e^T Omega e of every edge at the current poses, in fp64 (the normalized residual a
        consistency test compares with a chi-square quantile of the group's dof)."""
        e, _ = self._errors(np.float64)
        r = np.einsum("mab,mb->ma", self.W, e)
        return np.sum(r * r, axis=1)

    def cost(self, dtype: np.dtype = np.float64) -> float:
        """1/2 sum e^T Omega e, inputs and whitened residuals rounded to dtype, summed in fp64."""
        if self._soa:
            r = _round(self._whiten_soa(self._errors_soa(dtype)[0]), dtype)
            return 0.5 * float(np.sum(r * r))
        e, _ = self._errors(dtype)
        r = _round(np.einsum("mab,mb->ma", self.W, e), dtype)
        return 0.5 * float(np.sum(r * r))

    def linearize(self, residual_dtype: np.dtype, jacobian_dtype: np.dtype) -> tuple[sp.csr_matrix, np.ndarray]:
        """Whitened Jacobian (CSR, values in jacobian_dtype) and whitened residual at the current poses."""
        if self._soa:
            e, Rij, tij = self._errors_soa(residual_dtype)
            r = _round(self._whiten_soa(e).T.reshape(-1), residual_dtype)
            flat = pgo_se3.between_jacobians(e, Rij, tij, *self._W_soa).reshape(-1)
            vals = flat if self._take is None else flat.take(self._take)
        elif self._planar:
            e, Xij = self._errors_planar(residual_dtype)
            r = _round(np.einsum("mab,mb->ma", self.W, e), residual_dtype).reshape(-1)
            vals = self._values(*pgo_se2.between_jacobians(e, Xij, self.W))
        else:
            e, XiinvXj = self._errors(residual_dtype)
            r = _round(np.einsum("mab,mb->ma", self.W, e), residual_dtype).reshape(-1)
            Jinv = self.g.jr_inv(e)
            WJ = self.W @ Jinv
            Ai = -WJ @ self.g.adjoint(self.g.inverse(XiinvXj))
            vals = self._values(Ai, WJ)
        J = sp.csr_matrix((vals.astype(jacobian_dtype if np.dtype(jacobian_dtype) != np.float16 else np.float32,
                                       copy=False), self._indices, self._indptr), shape=self._shape)
        if np.dtype(jacobian_dtype) == np.float16:
            J.data = J.data.astype(np.float16).astype(np.float32)
        return J, r.astype(np.float64)

    def _values(self, Ai: np.ndarray, Aj: np.ndarray) -> np.ndarray:
        """CSR values of J from the per-edge blocks d e/d x_i (m,d,d) and d e/d x_j (m,d,d)."""
        m, d = Ai.shape[0], self.g.dof
        buf = np.empty((m, d, 2 * d))
        buf[:, :, :d] = Ai
        buf[:, :, d:] = Aj
        flat = buf.reshape(-1)
        return flat if self._take is None else flat.take(self._take)

    def static_jacobian(self) -> sp.csr_matrix:
        """Whitened Jacobian at zero residual (X_i^-1 X_j = Z_ij): J_r^-1 = I, Ad(X_j^-1 X_i) = Ad(Z_ij^-1).

        It depends on the measurements only, not on the iterate, and it is what the Jacobian tends
        to at the optimum; the static incomplete-Cholesky preconditioner is factored from it once.
        """
        Ai = -self.W @ self.g.adjoint(self.Zinv)
        vals = self._values(Ai, self.W)
        return sp.csr_matrix((vals, self._indices, self._indptr), shape=self._shape)

    def initialize(self, mode: str = "auto", start_cost: float | None = None) -> float | None:
        """Replace the start by the chordal initialization (pgo_init.py); returns its fp64 cost, or
        None where the start is kept. 'chordal': always (SE(3), SE(2)); 'auto': only from a start
        whose mean whitened squared residual exceeds INIT_AUTO_RESIDUAL (dead reckoning over many
        noisy edges), and only if the new start has the lower cost; 'none': never. start_cost: the
        fp64 cost of the current poses when the caller has it (the LM driver does)."""
        if mode == "none" or self.group not in ("se3", "se2"):
            return None
        if mode not in ("auto", "chordal"):
            raise ValueError(f"unknown initialization '{mode}'; choose auto, chordal or none")
        start = self.cost(np.float64) if start_cost is None else float(start_cost)
        if mode == "auto" and 2.0 * start <= INIT_AUTO_RESIDUAL * self.W.shape[0] * self.g.dof:
            return None
        try:
            poses = chordal_initialization(self)
        except (RuntimeError, np.linalg.LinAlgError):  # a singular relaxation (e.g. no rotational information)
            return None
        if poses is None or not np.all(np.isfinite(poses)):
            return None
        kept = self.poses.copy()
        self.poses[...] = poses
        new = self.cost(np.float64)
        if mode == "auto" and not new < start:
            self.poses[...] = kept
            return None
        return new

    def chain_ordered(self) -> bool:
        """True when most consecutive free vertices share an edge (an odometry chain in file order)."""
        nf = int((self.col_of >= 0).sum())
        if nf < 2:
            return True
        ci, cj = self.col_of[self.edges[:, 0]], self.col_of[self.edges[:, 1]]
        chain = np.zeros(nf - 1, bool)
        chain[np.minimum(ci, cj)[(ci >= 0) & (cj >= 0) & (np.abs(ci - cj) == 1)]] = True
        return bool(chain.mean() >= 0.5)

    def block_order(self) -> np.ndarray:
        """Order of the free vertices that keeps graph neighbours close: the file order for an
        odometry chain, else reverse Cuthill-McKee (breadth-first). Used by IC(0) and the clusters."""
        nf = int((self.col_of >= 0).sum())
        if self.chain_ordered():
            return np.arange(nf)
        from scipy.sparse.csgraph import reverse_cuthill_mckee

        ci, cj = self.col_of[self.edges[:, 0]], self.col_of[self.edges[:, 1]]
        both = (ci >= 0) & (cj >= 0)
        G = sp.csr_matrix((np.ones(both.sum()), (ci[both], cj[both])), shape=(nf, nf))
        return np.asarray(reverse_cuthill_mckee((G + G.T).tocsr(), symmetric_mode=True), np.int64)

    def coarse_clusters(self, max_clusters: int) -> np.ndarray:
        """Cluster label of every free vertex: runs of about n/max_clusters neighbouring poses in
        block_order() (at least MIN_CLUSTER poses each). Fixed once per problem."""
        nf = int((self.col_of >= 0).sum())
        size = max(MIN_CLUSTER, -(-nf // max(int(max_clusters), 1)))
        labels = np.empty(nf, np.int64)
        labels[self.block_order()] = np.arange(nf) // size
        return labels

    def coarse_basis(self, max_clusters: int = 128) -> sp.csr_matrix:
        """Rigid motions of clusters of poses as tangent vectors: (n_params, dof * n_clusters).

        Column block c moves every pose k of cluster c by X_k <- X_a Exp(xi) X_a^-1 X_k (anchor a:
        the cluster's first pose), i.e. dx_k = Ad(X_k^-1 X_a) xi, a motion no edge inside the
        cluster sees. The coarse level of the two-level preconditioner (coarse.py).
        """
        labels, Ad = self._coarse_adjoints(max_clusters)
        return self._basis(labels, Ad)

    def coarse_level(self, J: sp.csr_matrix, col_scale: np.ndarray,
                     max_clusters: int) -> tuple[sp.csr_matrix, tuple[np.ndarray, np.ndarray] | None]:
        """(coarse_basis, (P^T A^T A P, P^T P) in the scaled variables) for the scaled Jacobian
        A = J (this problem's CSR pattern) and P = basis / col_scale, assembled from the edges'
        blocks (pgo_galerkin.py); the pair is None when J has another pattern (then coarse.py forms it)."""
        labels, Ad = self._coarse_adjoints(max_clusters)
        P = self._basis(labels, Ad)
        if J.shape != self._shape or J.nnz != self._indices.size:
            return P, None
        key = int(max_clusters)
        if getattr(self, "_galerkin", (None,))[0] != key:
            d, m = self.g.dof, len(self.edges)
            pos = np.arange(m * d * 2 * d) if self._take is None else np.full(m * d * 2 * d, -1, np.int64)
            if self._take is not None:
                pos[self._take] = np.arange(self._take.size)
            self._galerkin = (key, EdgeGalerkin(self.col_of[self.edges], labels, pos.reshape(m, d, 2 * d), d))
        return P, self._galerkin[1](J.data, Ad, col_scale)

    def _coarse_adjoints(self, max_clusters: int) -> tuple[np.ndarray, np.ndarray]:
        """(cluster label of every free vertex, Ad(X_k^-1 X_a) of every free vertex (nf, d, d))."""
        key = int(max_clusters)
        if getattr(self, "_clusters", (None,))[0] != key:
            self._clusters = (key, self.coarse_clusters(key))
        labels = self._clusters[1]
        free = np.flatnonzero(self.col_of >= 0)
        nf, nc = free.size, int(labels.max()) + 1 if labels.size else 0
        first = np.full(nc, nf, np.int64)
        np.minimum.at(first, labels, np.arange(nf))
        X = self.poses[free]
        return labels, self.g.adjoint(self.g.inverse(X) @ X[first[labels]])

    def _basis(self, labels: np.ndarray, Ad: np.ndarray) -> sp.csr_matrix:
        """The basis as CSR: row k*d+a holds Ad_k[a, :] in column block labels[k]."""
        d, nf = self.g.dof, labels.size
        nc = int(labels.max()) + 1 if nf else 0
        cols = np.broadcast_to(labels[:, None, None] * d + np.arange(d)[None, None, :], (nf, d, d))
        indptr = np.arange(0, nf * d * d + 1, d)
        return sp.csr_matrix((Ad.reshape(-1), cols.reshape(-1), indptr), shape=(self.n_params, nc * d))

    def get_state(self) -> np.ndarray:
        """Copy of the poses."""
        return self.poses.copy()

    def set_state(self, state: np.ndarray) -> None:
        """Restore poses from get_state."""
        self.poses[...] = state

    def retract(self, dx: np.ndarray, dtype: np.dtype) -> None:
        """X_k <- X_k Exp(dx_k) for free vertices, the product computed with operands in dtype."""
        d = self.g.dof
        free = self.col_of >= 0
        delta = self.g.exp(dx.reshape(-1, d))
        dtype = np.dtype(dtype)
        if dtype == np.float64:
            self.poses[free] = self.poses[free] @ delta
        else:
            work = np.float32 if dtype == np.float16 else dtype  # fp16 emulated: fp16 operands, fp32 product
            prod = _round(self.poses[free], dtype).astype(work) @ _round(delta, dtype).astype(work)
            # A rotation block rounded to fp16 is no rotation (|R R^T - I| up to 3.5e-3 on
            # smallGrid3D after 13 steps), and the cost of such poses could fall below the group's
            # optimum (smallGrid3D fp16 reported 517.886 against 517.925): the product is projected
            # back onto the group. Residuals still see the poses through their own rounding.
            self.poses[free] = _project_to_group(_round(prod.astype(np.float64), dtype), self.group)


def _project_to_group(T: np.ndarray, group: str) -> np.ndarray:
    """The nearest group elements to (n, 4, 4) matrices: SE(3)/SE(2) rotation blocks by SVD (planar:
    the normalized cos/sin pair), Sim(3) as s R with s the mean singular value."""
    out = np.array(T, dtype=np.float64, copy=True)
    if group == "se2":
        c, s_ = T[:, 0, 0], T[:, 1, 0]
        n = np.hypot(c, s_)
        n = np.where(n > 0, n, 1.0)
        out[:, 0, 0] = out[:, 1, 1] = c / n
        out[:, 1, 0], out[:, 0, 1] = s_ / n, -s_ / n
        return out
    out[:, :3, :3] = lie.nearest_rotation(T[:, :3, :3], with_scale=group == "sim3")
    return out


def gauge_vertices(edges: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, int]:
    """(vertices to hold, number of connected pieces): the first vertex of each piece without a fixed one.

    The GTSAM comparison (slam.eval.peers) holds the same vertices, so both solve the same problem.
    """
    n = len(fixed)
    G = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    ncomp, labels = connected_components(G, directed=False)
    has_fixed = np.bincount(labels, weights=np.asarray(fixed, float), minlength=ncomp) > 0
    first = np.full(ncomp, n, np.int64)
    np.minimum.at(first, labels, np.arange(n))
    return first[~has_fixed], int(ncomp)


def from_pose_graph(graph: Any, group: str | None = None) -> PoseGraphProblem:
    """Build the problem from slam.io.g2o.PoseGraph: SE(2) for a planar (2-D file) graph, Sim(3) for a
    graph of g2o's Sim(3) types, else SE(3).

    A planar graph's poses stay 4x4 matrices in the plane z = 0; its information is the 3x3 block
    over (x, y, theta) of the lifted 6x6 one (entries [v_x, v_y, w_z], slam.io.g2o_planar).
    group='se3' solves a planar graph as the lifted 3-D graph instead (same optimum, twice the unknowns).
    """
    group = group or ("se2" if getattr(graph, "planar", False) else "sim3" if getattr(graph, "sim3", False) else "se3")
    info = np.asarray(graph.information)
    if group == "se2" and info.shape[1:] == (6, 6):
        info = planar_information(info)
    return PoseGraphProblem(graph.poses, graph.edges, graph.measurements, info, graph.fixed, group=group)
