"""The interface every nonlinear least-squares problem offers to the LM driver."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp


class LeastSquaresProblem(Protocol):
    """A problem min_x 1/2 sum rho(||e_k(x)||^2_Omega) on a manifold, linearized as whitened J, r.

    `groups` describes the tangent vector layout as (start, n_blocks, block_size) triples; the
    preconditioner uses it ('ichol' needs a single uniform group, 'jacobi' any).
    """

    n_params: int
    groups: list[tuple[int, int, int]]
    preconditioner: str  # 'ichol' (pose graphs) or 'jacobi' (bundle adjustment)

    # Optional hooks the LM driver uses when a problem has them (getattr):
    #   initialize(mode, start_cost) -> cost | None   replace the start before LM (pose graphs: chordal, pgo_init.py)
    #   static_jacobian() -> csr         an iterate-independent Jacobian to factor the static IC(0) from
    #   block_order() -> ndarray         block order for IC(0) (pose graphs: file order or RCM)
    #   coarse_basis(...)                rigid-cluster coarse space of the two-level preconditioner
    #   coarse_level(J_scaled, S, k) -> (basis, (G, D) or None)   ... with its Galerkin matrices assembled by the problem
    #   make_preconditioner(J_scaled, lam, backend, policy[, J_matvec])   a problem-specific preconditioner (BA: Schur);
    #                                    on NumPy also given J_scaled rounded to the matvec dtype
    #   cg_model_tol: float              CG stopping on model decrease instead of the residual norm
    #   cg_lookahead_tol: float          ... and on the next iteration's estimated gain (cgnr.py)
    #   cg_bound_decrease: bool          stop CG when its model decrease passes 1/2||c||^2 (cgnr.py)
    #   rescue_step(update_dtype) -> bool   repair a rejected step before a new solve (SolverOptions.rescue_steps)

    def cost(self, dtype: np.dtype) -> float:
        """1/2 sum of robustified squared whitened residuals at the current state, computed in dtype."""

    def linearize(self, residual_dtype: np.dtype, jacobian_dtype: np.dtype) -> tuple[sp.csr_matrix, np.ndarray]:
        """Whitened (and robust-reweighted) Jacobian (m, n_params) and residual (m,) at the current state."""

    def get_state(self) -> Any:
        """An opaque copy of the current estimate."""

    def set_state(self, state: Any) -> None:
        """Restore an estimate obtained from get_state."""

    def retract(self, dx: np.ndarray, dtype: np.dtype) -> None:
        """x <- x [+] dx (manifold retraction), computed in dtype; dx has n_params entries."""
