"""The 'ichol' preconditioner of the LM driver and its state across LM iterations.

Fine level: block IC(0) of a static normal matrix (pose graphs: the whitened Jacobian at zero
residual), factored once per problem and reused by every LM iteration, its triangular solves in
the policy's precond dtype (ichol.py). Coarse level (coarse.py, optional): rigid motions of
clusters of poses, rebuilt after steps that moved the cost by more than 1% (otherwise the
linearization barely changed), refactored when LM's damping moved by more than 10x, and grown
(twice the clusters) after a CG solve that needed many iterations. After each CG solve the step is
made exact on span(coarse space, CG step, last LM steps) with Jacobian-precision products; where
the coarse level is stale (built at an older linearization or damping) and that step has a smaller
model decrease than the optimum over span(CG step, last LM steps), the latter is taken.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from slam.solvers.backend import Backend
from slam.solvers.fillchol import LUPreconditioner, block_order_and_fill, static_cholesky
from slam.solvers.coarse import COARSE_MAX_DIM, MIN_CLUSTER, CoarseCorrection, TwoLevel
from slam.solvers.ichol import ICPreconditioner, block_ichol, permute_blocks, rcm_block_order
from slam.solvers.precision import PrecisionPolicy

# 'auto' fill: the complete factor in minimum-degree order when it has at most this many times the
# blocks of A's lower triangle, else block IC(0) in the problem's order. Measured (mixed, fp64, with
# the coarse level): parking-garage (ratio ~1.1) needs 304 CG in 12 LM iterations with the complete
# factor against 557 in 15 with IC(0); on sphere2500 (~7), the lattices (~12) and the tori, the
# complete factor saves few CG iterations and its fill makes every solve 2-4x dearer.
AUTO_MAX_FILL = 2.0


def scale_columns(J: sp.csr_matrix) -> np.ndarray:
    """Jacobi column scaling S = 1/||J_col|| (1 for empty columns), so J S has unit column norms."""
    sq = np.bincount(J.indices, weights=np.square(J.data.astype(np.float64, copy=False)), minlength=J.shape[1])
    norms = np.sqrt(sq)
    return np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 1.0)


def build_ichol(problem: Any, J_hi: sp.csr_matrix, S: np.ndarray, lam: float, backend: Backend,
                policy: PrecisionPolicy, scaling: bool = True, order: str = "auto",
                fill: str = "zero", max_fill: float = 12.0) -> tuple[Any, float, np.ndarray]:
    """Block IC(0) of a scaled, damped normal matrix; the one place J^T J is formed (once per problem).

    Problems that know an iterate-independent Jacobian (pose graphs: the one at zero residual)
    provide static_jacobian(); otherwise the given (first) linearization J_hi = J S is used. Block
    order 'auto' is the problem's block_order() (pose graphs: file order for an odometry chain,
    else reverse Cuthill-McKee), natural without one. Returns the preconditioner, the diagonal
    shift IC(0) needed, and the column scaling it was built in. fill 'amd': the (complete, up to
    max_fill times A's nonzeros) Cholesky factor in a minimum-degree block order instead (fillchol.py);
    'auto': that when its block fill is at most AUTO_MAX_FILL, else IC(0).
    """
    if len(problem.groups) != 1:
        raise ValueError("the ichol preconditioner needs one uniform block group (a pose graph)")
    bs = problem.groups[0][2]
    static = getattr(problem, "static_jacobian", None)
    if static is not None:
        J = sp.csr_matrix(static(), dtype=np.float64)
        S = scale_columns(J) if scaling else np.ones(J.shape[1])
        J.data = J.data * S[J.indices]
    else:
        J = sp.csr_matrix(J_hi, dtype=np.float64)
    A = (J.T @ J).tocsr() + lam * sp.eye(J.shape[1], format="csr")
    order_md = None
    if fill == "auto":
        order_md, ratio = block_order_and_fill(A, bs)
        fill = "amd" if ratio <= AUTO_MAX_FILL else "zero"
    if fill == "amd":
        # fp64 on the CPU: SuperLU's own L D L^T object, no second factorization; fp32 and fp16: the
        # fp64 factor rounded, applied with two triangular solves (an fp32 refactorization applied
        # the inverse to 1.4e-3 where the rounded factor does to 1e-6, and cost as much to build).
        direct = backend.name == "numpy" and np.dtype(policy.precond) == np.float64
        U, perm, st, lu = static_cholesky(A, bs, max_fill, order=order_md, upper=True, keep_lu=direct)
        pre = LUPreconditioner(lu, perm, policy.precond, policy.vector) if lu is not None else \
            ICPreconditioner(U, backend, policy.precond, policy.vector, perm=perm, upper=True)
        pre.fill = "amd"  # which factor ran, for the Summary
        return pre, st.shift, S
    if fill != "zero":
        raise ValueError(f"unknown ichol_fill '{fill}'; choose auto, amd or zero")
    if order == "auto":
        blocks = problem.block_order() if hasattr(problem, "block_order") else None
    elif order == "rcm":
        blocks = rcm_block_order(A, bs)
    elif order == "natural":
        blocks = None
    else:
        raise ValueError(f"unknown ichol_order '{order}'; choose auto, natural or rcm")
    if blocks is not None and np.array_equal(blocks, np.arange(blocks.size)):
        blocks = None
    if blocks is None:
        perm = None
        L, stats = block_ichol(A, bs)
    else:
        perm = (blocks[:, None] * bs + np.arange(bs)).ravel()
        L, stats = block_ichol(permute_blocks(A, blocks, bs), bs)
    pre = ICPreconditioner(L, backend, policy.precond, policy.vector, perm=perm)
    pre.fill = "zero"
    return pre, stats.shift, S


class StaticTwoLevel:
    """Static IC(0) plus an optional coarse level, with the bookkeeping LM iterations need."""

    def __init__(self, problem: Any, backend: Backend, policy: PrecisionPolicy, *, scaling: bool = True,
                 order: str = "auto", clusters: int = -1, grow_after: int = 40, recycle: int = 2,
                 fill: str = "auto", max_fill: float = 12.0) -> None:
        self.problem, self.backend, self.policy = problem, backend, policy
        self.scaling, self.order, self.fill, self.max_fill = scaling, order, fill, max_fill
        self.grow_after, self.recycle = grow_after, recycle
        self.n_clusters = self._initial_clusters(clusters)
        self.ic: ICPreconditioner | None = None
        self.S0: np.ndarray | None = None
        self.shift = 0.0
        self.coarse: CoarseCorrection | None = None
        self._stale = True
        self.fill_used = fill  # 'amd' or 'zero' once the factor exists ('auto' resolved)
        self._steps: list[np.ndarray] = []  # last accepted steps dx

    @property
    def coarse_size(self) -> int:
        """Unknowns of the coarse level (0: IC alone)."""
        return self.coarse.size if self.coarse is not None else 0

    def _initial_clusters(self, requested: int) -> int:
        if requested == 0 or not hasattr(self.problem, "coarse_basis"):
            return 0
        n_blocks = self.problem.groups[0][1]
        return int(requested) if requested > 0 else int(min(64, max(16, n_blocks // 32)))

    def prepare(self, J_hi: sp.csr_matrix, S: np.ndarray, lam: float) -> Callable[[Any], Any]:
        """The preconditioner for the linearization J_hi = J S (called once per linearization)."""
        if self.ic is None:
            self.ic, self.shift, self.S0 = build_ichol(self.problem, J_hi, S, lam, self.backend, self.policy,
                                                       self.scaling, self.order, self.fill, self.max_fill)
            self.ic.scale_operands = self.scaling
            self.fill_used = self.ic.fill
        self.ic.outer = self.S0 / S  # maps the current column scaling onto the one L was built in
        if self.n_clusters <= 0:
            return self.ic
        if self.coarse is None or self._stale:
            level = getattr(self.problem, "coarse_level", None)
            basis, gram = level(J_hi, S, self.n_clusters) if level is not None else \
                (self.problem.coarse_basis(self.n_clusters), None)
            self.coarse = CoarseCorrection(J_hi, basis, S, lam, self.backend, self.policy.vector, gram=gram)
            self._stale = False
        else:
            self.damping(lam)
        return TwoLevel(self.ic, self.coarse)

    def damping(self, lam: float) -> None:
        """LM changed its damping: refactor the coarse matrix when it moved by more than 10x."""
        if self.coarse is not None and not 0.1 <= lam / self.coarse.lam <= 10.0:
            self.coarse.set_lambda(lam)

    def refine(self, y: np.ndarray, rhs: np.ndarray, S: np.ndarray, sigma: float,
               normal: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The CG step y made exact on span(coarse space, y, last LM steps) (identity without a coarse level),
        or on span(y, last LM steps) alone when that has the larger model decrease (a stale coarse level).

        `normal(D)` returns (A^T A + lam I) D in the Jacobian precision; steps are stored as dx and
        brought to the current scaled variables y = sigma dx / S.
        """
        if self.coarse is None:
            return y
        D = np.column_stack([y] + [sigma * d / S for d in self._steps])
        ND = normal(D)
        z = self.coarse.subspace_step(rhs, D, ND)
        # The coarse block is exact for the linearization and damping A_c was built at; between
        # rebuilds (a step that moved the cost by < 1%, damping within 10x) it is not, and the
        # step can then be far worse than CG's (lattice-noisy fp64: model -1.1e7 against +3.9,
        # four rejected solves). Keep it only when its model decrease beats the exact optimum
        # over span(CG step, last LM steps), which is never worse than the CG step.
        alpha = span_coefficients(rhs, D, ND)
        w = D @ alpha
        return z if _model(rhs, z, normal(z[:, None])[:, 0]) >= _model(rhs, w, ND @ alpha) else w

    def accepted(self, dx: np.ndarray, rel_decrease: float, cg_iterations: int) -> None:
        """LM accepted step dx that lowered the cost by rel_decrease after cg_iterations of CG."""
        self._steps = ([dx] + self._steps)[:self.recycle]
        self._stale = rel_decrease > 0.01
        if self.coarse is not None and 0 < self.grow_after < cg_iterations:
            _, n_blocks, bs = self.problem.groups[0]
            if 2 * self.n_clusters * MIN_CLUSTER <= n_blocks and 2 * self.n_clusters * bs <= COARSE_MAX_DIM:
                self.n_clusters *= 2
                self._stale = True


def _model(rhs: np.ndarray, z: np.ndarray, Nz: np.ndarray) -> float:
    """Damped model decrease rhs.z - z.N z / 2 of a step z, given N z."""
    return float(rhs @ z - 0.5 * (z @ Nz))


def span_coefficients(rhs: np.ndarray, D: np.ndarray, ND: np.ndarray) -> np.ndarray:
    """alpha maximizing the model over span(D): (D^T N D) alpha = D^T rhs, directions without curvature left out."""
    H = D.T @ ND
    w, V = np.linalg.eigh(0.5 * (H + H.T))
    keep = w > 1e-12 * max(float(w.max()), 0.0) if w.size else np.zeros(0, bool)
    return V[:, keep] @ ((V[:, keep].T @ (D.T @ rhs)) / w[keep])
