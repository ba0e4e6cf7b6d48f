"""Levenberg-Marquardt with a mixed-precision inner CGNR solve and a run summary (Ceres/GTSAM style)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from slam.solvers.backend import Backend, get_backend, pow2_scale
from slam.solvers.cgnr import ScaledSystem, cgnr
from slam.solvers.ichol import ICPreconditioner, block_ichol, permute_blocks, rcm_block_order
from slam.solvers.precision import PrecisionPolicy, get_policy
from slam.solvers.precond import BlockJacobi, block_diagonal
from slam.solvers.problem import LeastSquaresProblem

STAGE_NAMES = ("residual", "jacobian", "preconditioner", "linear_solve", "update")


@dataclass
class SolverOptions:
    """Options of one LM solve; `precision` alone switches every stage's dtype (see precision.py)."""

    precision: str | PrecisionPolicy = "mixed"
    backend: str = "numpy"
    max_iterations: int = 100
    relative_cost_tol: float = 1e-6   # stop when an accepted step lowers the cost by less than this, relative
    absolute_cost_tol: float = 0.0    # ... or by less than this
    step_tol: float = 1e-10           # stop when ||dx|| <= step_tol * (||x|| + step_tol) in scaled units
    gradient_tol: float = 1e-10       # stop when max |scaled gradient| <= gradient_tol * initial value
    initial_lambda: float = 1e-5      # on the Jacobi-scaled system, so relative to diag(J^T J)
    max_lambda: float = 1e10
    lambda_min_factor: float = 0.1    # strongest reduction of lambda after a good step (Nielsen uses 1/3)
    cg_tol: float = 0.1               # inexact Newton: relative residual of the normal equations
    cg_tol_min: float = 1e-3          # forcing term tightens as the gradient falls, down to this
    cg_max_iterations: int = 500
    preconditioner: str = "auto"      # auto (the problem's choice), ichol, jacobi, none
    callback: Callable[[dict], None] | None = None


@dataclass
class Summary:
    """What a solve did: costs, iterations, time per stage, precision that ran, why it stopped."""

    initial_cost: float
    final_cost: float
    cost_history: list[float]
    iterations: int
    linear_iterations: list[int]
    time_s: float
    stage_times: dict[str, float]
    precision: dict[str, Any]
    termination: str
    accepted_steps: int = 0
    rejected_steps: int = 0
    preconditioner: str = "none"
    ichol_shift: float = 0.0
    lambda_history: list[float] = field(default_factory=list)

    @property
    def total_linear_iterations(self) -> int:
        """Sum of CG iterations over all LM steps (accepted and rejected)."""
        return int(sum(self.linear_iterations))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready statistics with the keys of the CLI contract."""
        return {
            "initial_cost": self.initial_cost, "final_cost": self.final_cost,
            "iterations": self.iterations, "linear_iterations": self.total_linear_iterations,
            "linear_iterations_per_step": list(self.linear_iterations),
            "time_s": self.time_s, "stage_times_s": dict(self.stage_times),
            "precision": self.precision, "termination": self.termination,
            "accepted_steps": self.accepted_steps, "rejected_steps": self.rejected_steps,
            "preconditioner": self.preconditioner, "ichol_shift": self.ichol_shift,
            "cost_history": list(self.cost_history),
        }


class _Timer:
    def __init__(self) -> None:
        self.t = {k: 0.0 for k in STAGE_NAMES}

    def __call__(self, stage: str) -> "_Span":
        return _Span(self.t, stage)


class _Span:
    def __init__(self, acc: dict[str, float], stage: str) -> None:
        self.acc, self.stage = acc, stage

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *a: object) -> None:
        self.acc[self.stage] += time.perf_counter() - self.t0


def _scale_columns(J: sp.csr_matrix) -> np.ndarray:
    """Jacobi column scaling S = 1/||J_col|| (1 for empty columns), so J S has unit column norms."""
    sq = np.bincount(J.indices, weights=np.square(J.data.astype(np.float64)), minlength=J.shape[1])
    norms = np.sqrt(sq)
    return np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 1.0)


def solve(problem: LeastSquaresProblem, options: SolverOptions | None = None) -> Summary:
    """Minimize the problem in place with Levenberg-Marquardt; returns the Summary."""
    opt = options or SolverOptions()
    pol = get_policy(opt.precision)
    be = get_backend(opt.backend)
    timer = _Timer()
    t_start = time.perf_counter()

    with timer("residual"):
        initial_cost = problem.cost(np.float64)
        cost = initial_cost if pol.residual == np.float64 else problem.cost(pol.residual)
    history = [cost]
    lam, nu = opt.initial_lambda, 2.0
    lin_its: list[int] = []
    lams: list[float] = []
    precond_kind = problem.preconditioner if opt.preconditioner == "auto" else opt.preconditioner
    ic: ICPreconditioner | None = None
    S0: np.ndarray | None = None
    shifted = 0
    termination = "" if np.isfinite(cost) else "non-finite initial cost"
    accepted = rejected = 0
    g0 = None
    it = 0
    while not termination:
        if it >= opt.max_iterations:
            termination = "max iterations"
            break
        with timer("jacobian"):
            J, r = problem.linearize(pol.residual, pol.jacobian)
            S = _scale_columns(J)
            sigma = pow2_scale(r)  # residual scaling: a power of two, so exact
            J_hi = J.copy()
            J_hi.data = (J.data * S[J.indices]).astype(be.storage_dtype(pol.jacobian))
            rhs = -(J_hi.T @ (r.astype(np.float64) * sigma).astype(J_hi.dtype))
            J_mv = be.cast_sparse(J_hi, pol.matvec)
            J_mv_T = J_mv.T.tocsr()
            rhs = be.cast(rhs, pol.vector)
        gnorm = float(np.max(np.abs(rhs))) / sigma if rhs.size else 0.0
        g0 = gnorm if g0 is None else g0
        if gnorm == 0.0 or gnorm <= opt.gradient_tol * g0:
            termination = "gradient tolerance"
            break
        with timer("preconditioner"):
            if precond_kind == "ichol":
                if ic is None:  # static: factored once per problem, reused by every iteration
                    ic, shifted, S0 = _build_ichol(problem, J_hi, S, lam, be, pol)
                ic.outer = S0 / S  # maps the current column scaling onto the one L was built in
                pre = ic
            else:
                pre = _make_preconditioner(precond_kind, problem, J_hi, lam, be, pol)
        # Inexact Newton: a loose forcing term far from the optimum, tighter as the gradient falls.
        cg_tol = max(opt.cg_tol_min, min(opt.cg_tol, np.sqrt(gnorm / g0) * opt.cg_tol))
        while True:
            system = ScaledSystem(be, J_hi, J_mv, J_mv_T, S, rhs, lam, pol.matvec, pol.vector)
            with timer("linear_solve"):
                res = cgnr(system, pre, tol=cg_tol, maxiter=opt.cg_max_iterations)
            lin_its.append(res.iterations)
            lams.append(lam)
            y = be.to_host(res.x).astype(np.float64)
            state = problem.get_state()
            with timer("update"):
                problem.retract(S * y / sigma, pol.update)
            with timer("residual"):
                new_cost = problem.cost(pol.residual)
            pred = system.predicted_decrease(res.x, 0.0) / sigma**2
            actual = cost - new_cost
            rho = actual / pred if pred > 0 else -1.0
            if np.isfinite(new_cost) and np.isfinite(rho) and rho > 1e-4 and actual >= 0:
                accepted += 1
                lam *= max(opt.lambda_min_factor, 1.0 - (2.0 * rho - 1.0) ** 3)  # Nielsen gain-ratio update
                nu = 2.0
                rel = actual / max(cost, 1e-300)
                cost = new_cost
                history.append(cost)
                if opt.callback is not None:
                    opt.callback({"iteration": it, "cost": cost, "lambda": lam, "cg_iterations": res.iterations})
                if rel < opt.relative_cost_tol or actual <= opt.absolute_cost_tol:
                    termination = "relative cost decrease"
                elif np.linalg.norm(y) <= opt.step_tol * (np.linalg.norm(y) + opt.step_tol):
                    termination = "step tolerance"
                break
            rejected += 1
            problem.set_state(state)
            lam *= nu
            nu *= 2.0
            if lam > opt.max_lambda:
                termination = "damping too large (no further decrease possible)"
                break
        it += 1

    with timer("residual"):
        final_cost = problem.cost(np.float64)
    return Summary(
        initial_cost=float(initial_cost), final_cost=float(final_cost), cost_history=[float(c) for c in history],
        iterations=it, linear_iterations=lin_its, time_s=time.perf_counter() - t_start, stage_times=dict(timer.t),
        precision={**pol.as_dict(), "backend": be.name, "emulated_fp16": be.emulates_fp16 and _uses_fp16(pol)},
        termination=termination, accepted_steps=accepted, rejected_steps=rejected,
        preconditioner=precond_kind, ichol_shift=shifted, lambda_history=lams)


def _uses_fp16(pol: PrecisionPolicy) -> bool:
    return any(np.dtype(getattr(pol, s)) == np.float16 for s in ("residual", "jacobian", "matvec", "precond", "vector", "update"))


def _make_preconditioner(kind: str, problem: LeastSquaresProblem, J_hi: sp.csr_matrix, lam: float,
                         be: Backend, pol: PrecisionPolicy) -> Any:
    if kind == "none":
        return None
    if kind == "jacobi":
        return BlockJacobi(block_diagonal(J_hi, problem.groups), problem.groups, lam, be, pol.vector)
    raise ValueError(f"unknown preconditioner '{kind}'; choose auto, ichol, jacobi or none")


def _build_ichol(problem: LeastSquaresProblem, J_hi: sp.csr_matrix, S: np.ndarray, lam: float, be: Backend,
                 pol: PrecisionPolicy) -> tuple[ICPreconditioner, float, np.ndarray]:
    """Block IC(0) of a scaled, damped normal matrix; the one place J^T J is formed (once per problem).

    Problems that know an iterate-independent Jacobian (pose graphs: the one at zero residual)
    provide static_jacobian(); otherwise the first linearization is used. Returns the
    preconditioner, the diagonal shift IC(0) needed, and the column scaling it was built in.
    """
    if len(problem.groups) != 1:
        raise ValueError("the ichol preconditioner needs one uniform block group (a pose graph)")
    bs = problem.groups[0][2]
    static = getattr(problem, "static_jacobian", None)
    if static is not None:
        Js = static()
        S = _scale_columns(Js)
        J_hi = Js.copy()
        J_hi.data = Js.data * S[Js.indices]
    A = (J_hi.T @ J_hi).astype(np.float64) + lam * sp.eye(J_hi.shape[1])
    order = rcm_block_order(A, bs)
    perm = (order[:, None] * bs + np.arange(bs)).ravel()
    L, stats = block_ichol(permute_blocks(A, order, bs), bs)
    return ICPreconditioner(L, be, pol.precond, pol.vector, perm=perm), stats.shift, S
