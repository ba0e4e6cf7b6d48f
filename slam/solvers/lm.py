"""Levenberg-Marquardt with a mixed-precision inner CGNR solve and a run summary (Ceres/GTSAM style).

Each iteration: linearize (residual and Jacobian in their precisions), scale the columns of J to
unit norm (Jacobi) and the residual by a power of two, solve the damped normal equations by
preconditioned CG touching J only through J v and J^T u (cgnr.py), update in the update precision,
and accept or reject by the gain ratio (Nielsen's damping update). The preconditioner is the
problem's choice: pose graphs use a static block IC(0) plus a coarse level (twolevel.py), and CG
stops on the model decrease it reached (cgnr.py); other problems may bring their own
(make_preconditioner) or use block Jacobi, with CG stopping on an Eisenstat-Walker-like residual
forcing term.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from slam.solvers.backend import Backend, get_backend, numpy_backend
from slam.solvers.cgnr import ScaledSystem, cgnr, pow2_of_max
from slam.solvers.precision import STAGES, PrecisionPolicy, policy_for
from slam.solvers.precond import BlockJacobi, block_diagonal
from slam.solvers.problem import LeastSquaresProblem
from slam.solvers.twolevel import StaticTwoLevel, scale_columns, span_coefficients

STAGE_NAMES = ("initialization", "residual", "jacobian", "preconditioner", "linear_solve", "update")
# Gain ratio at or above which the last step's quadratic model counts as trusted (cg_model_tol);
# below it the next CG solve stops at cg_model_tol_nonlinear.
MODEL_TRUST_RHO = 0.9


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
    # Strongest reduction of lambda after a good step (Nielsen uses 1/3); None: the problem's
    # `lm_lambda_min_factor` if it has one (pose graphs: 0.01, pgo.py), else 0.1.
    lambda_min_factor: float | None = None
    cg_tol: float = 0.1               # inexact Newton: relative residual of the normal equations
    cg_tol_min: float = 1e-3          # forcing term tightens as the gradient falls, down to this
    cg_max_iterations: int = 500
    # Stop CG when the last iterations add less than this fraction of the model decrease (cgnr.py);
    # None: the problem's `cg_model_tol` if it has one, else the residual test (cg_tol) alone.
    cg_model_tol: float | None = None
    # ... for the first step and after an accepted step whose gain ratio was below MODEL_TRUST_RHO:
    # the quadratic model was poor there, so solving it precisely buys little (the idea of
    # Eisenstat and Walker's forcing terms). None: the problem's `cg_model_tol_nonlinear` if it
    # has one, else cg_model_tol.
    cg_model_tol_nonlinear: float | None = None
    preconditioner: str = "auto"      # auto (the problem's choice), ichol, jacobi, none
    # 'ichol': clusters of the coarse level at the start (0: IC(0) alone, -1: n/32 within [16, 64]);
    # doubled whenever a CG solve needs more than coarse_grow_after iterations, up to 8 poses a
    # cluster or COARSE_MAX_DIM coarse unknowns (twolevel.py, coarse.py).
    coarse_clusters: int = -1
    coarse_grow_after: int = 40
    recycle_steps: int = 2            # 'ichol': previous LM steps added to the exact subspace step
    # fp16 products without the 'ichol' subspace step: rounds of mixed-precision refinement of the
    # CG step with Jacobian-precision products (_refine); 0: none (ba.default_options uses 1).
    refine_steps: int = 0
    ichol_order: str = "auto"         # 'ichol' with fill 'zero': block order of the static IC(0): auto (the problem's), natural, rcm
    # 'ichol': 'amd' factors the static matrix completely in a minimum-degree block order (at most
    # ichol_max_fill times A's nonzeros, smallest entries dropped beyond); 'zero' is block IC(0) on
    # A's pattern; 'auto' takes 'amd' when its fill is small (twolevel.AUTO_MAX_FILL), else 'zero'.
    # The coarse level goes on top of either (fillchol.py, twolevel.py).
    ichol_fill: str = "auto"
    ichol_max_fill: float = 12.0
    # Let a problem repair a step the gain ratio rejects before LM solves again with more damping
    # (its `rescue_step(update_dtype) -> bool`; BA: re-fit the points the step made worse). Off in
    # the engine; ba.default_options (BAL problems, `slam ba`) turns it on, see ba_rescue.py.
    rescue_steps: bool = False
    # Jacobi column scaling, residual scaling and the power-of-two scaling of fp16 operands; False
    # only to study what fp16 does without them.
    scaling: bool = True
    # A problem's own start, before LM (its `initialize(mode, start_cost) -> cost or None`; pose graphs: the
    # chordal rotation estimate, pgo_init.py): 'auto' lets the problem decide, 'none' keeps the
    # given start, other values are the problem's ('chordal').
    initialization: str = "auto"
    callback: Callable[[dict], None] | None = None
    # Checked before every LM iteration after the first: True ends the solve there ('interrupted'),
    # keeping the last accepted state (Ceres: a callback returning SOLVER_ABORT). Global BA in the
    # loop thread stops this way when the run is interrupted.
    interrupt: Callable[[], bool] | None = None


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
    rescued_steps: int = 0  # accepted after the problem's rescue_step repaired them (in accepted_steps too)
    preconditioner: str = "none"
    ichol_shift: float = 0.0
    lambda_history: list[float] = field(default_factory=list)
    coarse_size: int = 0
    initialization: str = "none"  # the problem's own start that replaced the given one (pose graphs: 'chordal')

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
            "rescued_steps": self.rescued_steps,
            "preconditioner": self.preconditioner, "ichol_shift": self.ichol_shift,
            "coarse_size": self.coarse_size, "initialization": self.initialization,
            "cost_history": list(self.cost_history),
        }


class _Timer:
    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.t = {k: 0.0 for k in STAGE_NAMES}
        self.sync = sync  # GPU: wait for queued kernels at span edges, so a stage is charged its own work

    def __call__(self, stage: str) -> "_Span":
        return _Span(self.t, stage, self.sync)


class _Span:
    def __init__(self, acc: dict[str, float], stage: str, sync: Callable[[], None] | None = None) -> None:
        self.acc, self.stage, self.sync = acc, stage, sync

    def __enter__(self) -> None:
        if self.sync is not None:
            self.sync()
        self.t0 = time.perf_counter()

    def __exit__(self, *a: object) -> None:
        if self.sync is not None:
            self.sync()
        self.acc[self.stage] += time.perf_counter() - self.t0


@dataclass
class _Linearization:
    """One linearization in the scaled variables y (dx = S y / sigma), ready for CGNR."""

    J_hi: sp.csr_matrix
    J_mv: Any
    J_mv_T: Any
    S: np.ndarray
    sigma: float
    rhs: Any
    gnorm: float
    half_c2: float  # 1/2 ||c||^2 of the scaled residual c = sigma r: no model decrease exceeds it


class _Transposer:
    """J^T in CSR for a fixed sparsity pattern: the permutation is found once, then one gather per call.

    The pattern of J does not change between LM iterations (only its values), and an explicit
    CSR transpose makes J^T u a row-wise product (faster than the CSC view's scatter).
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._src: tuple = (None, None)

    def __call__(self, J: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
        """(J with values `data`)^T as CSR."""
        key = (J.shape, J.nnz)
        # The problem hands out the same index arrays every time (pgo.py): identity, else compare.
        same = self._key == key and ((J.indptr is self._src[0] and J.indices is self._src[1])
                                     or (np.array_equal(self._indptr, J.indptr)
                                         and np.array_equal(self._indices, J.indices)))
        if not same:
            T = sp.csr_matrix((np.arange(J.nnz, dtype=np.float64), J.indices, J.indptr), shape=J.shape).T.tocsr()
            self._perm = T.data.astype(np.int64)
            self._t_indices, self._t_indptr = T.indices, T.indptr
            self._indptr, self._indices = J.indptr.copy(), J.indices.copy()
            self._key = key
        self._src = (J.indptr, J.indices)
        return sp.csr_matrix((data.take(self._perm), self._t_indices, self._t_indptr), shape=J.shape[::-1])


def _linearize(problem: LeastSquaresProblem, pol: PrecisionPolicy, be: Backend, scaling: bool,
               transpose: _Transposer) -> _Linearization:
    J, r = problem.linearize(pol.residual, pol.jacobian)
    J = sp.csr_matrix(J)
    S = scale_columns(J) if scaling else np.ones(J.shape[1])
    sigma = pow2_of_max(r) if scaling else 1.0  # residual scaling: a power of two, so exact
    host = numpy_backend()
    # take(), not fancy indexing: the same gather, about twice as fast on a pose graph's 450k entries
    # with the process's malloc settings (priority.keep_freed_memory; without them take() pays page
    # faults for its int64 copy of the indices and is slower)
    vals = J.data * S.astype(J.data.dtype).take(J.indices) if J.dtype == np.float32 and pol.jacobian == np.float32 \
        else J.data.astype(np.float64, copy=False) * S.take(J.indices)
    J_hi = sp.csr_matrix((np.asarray(host.cast(vals, pol.jacobian)), J.indices, J.indptr), shape=J.shape)
    data = np.asarray(host.cast(J_hi.data, pol.matvec))
    J_mv = sp.csr_matrix((data, J.indices, J.indptr), shape=J.shape)
    J_mv_T = transpose(J_mv, data)
    rc = (r.astype(np.float64) * sigma).astype(J_hi.dtype)
    rhs = -(J_mv_T @ rc) if data is J_hi.data else -(J_hi.T @ rc)
    gnorm = float(np.max(np.abs(rhs))) / sigma if rhs.size else 0.0
    if be.name != "numpy":
        # Native stage dtype on the device (cupyx.scipy.sparse has no fp16 matrices); J_mv's values
        # are already rounded to it, so this cast is exact.
        from slam.solvers.gpu_sparse import DeviceCSR

        J_mv, J_mv_T = DeviceCSR(J_mv, pol.matvec), DeviceCSR(J_mv_T, pol.matvec)
    rhs = be.asarray(be.cast(np.asarray(rhs, dtype=np.float64), pol.vector))
    half_c2 = 0.5 * float(np.dot(rc.astype(np.float64), rc.astype(np.float64)))
    return _Linearization(J_hi, J_mv, J_mv_T, S, sigma, rhs, gnorm, half_c2)


def solve(problem: LeastSquaresProblem, options: SolverOptions | None = None) -> Summary:
    """Minimize the problem in place with Levenberg-Marquardt; returns the Summary."""
    opt = options or SolverOptions()
    pol = policy_for(opt.precision, problem)
    be = get_backend(opt.backend)
    timer = _Timer(be.synchronize if be.name != "numpy" else None)
    t_start = time.perf_counter()

    with timer("residual"):
        initial_cost = problem.cost(np.float64)
    init = getattr(problem, "initialize", None)
    init_cost = None
    if init is not None and opt.initialization != "none":
        with timer("initialization"):
            init_cost = init(opt.initialization, initial_cost)
    with timer("residual"):
        start_cost = initial_cost if init_cost is None else float(init_cost)
        cost = start_cost if pol.residual == np.float64 else problem.cost(pol.residual)
    # What is reported is measured in fp64 on the state that is kept, so that the last iteration's
    # cost, final_cost and the written result agree. LM itself compares steps by the residual
    # precision's cost; near the optimum of a small problem fp32 rounding of that cost can exceed
    # the decreases it judges, and an accepted step may then raise the fp64 cost: the solve keeps
    # the accepted state of lowest fp64 cost (one extra fp64 cost per accepted step, none in fp64).
    exact = pol.residual == np.float64
    # A problem's own start (initialize) is the history's second entry, before the LM steps.
    history = [float(initial_cost)] + ([float(start_cost)] if init_cost is not None else [])
    best_cost, best_state = float(start_cost), None
    current64 = float(start_cost)  # fp64 cost of the current state (rejected steps are undone)
    lam, nu = opt.initial_lambda, 2.0
    lam_min_factor = opt.lambda_min_factor if opt.lambda_min_factor is not None else \
        float(getattr(problem, "lm_lambda_min_factor", 0.1))
    lin_its: list[int] = []
    lams: list[float] = []
    precond_kind = problem.preconditioner if opt.preconditioner == "auto" else opt.preconditioner
    custom = opt.preconditioner == "auto" and hasattr(problem, "make_preconditioner")
    model_tol = opt.cg_model_tol if opt.cg_model_tol is not None else float(getattr(problem, "cg_model_tol", 0.0))
    model_tol_nonlinear = opt.cg_model_tol_nonlinear if opt.cg_model_tol_nonlinear is not None else \
        float(getattr(problem, "cg_model_tol_nonlinear", model_tol))
    last_rho = None  # gain ratio of the last accepted step
    # The lookahead test trusts r.z/2 as the next gain: only with a preconditioner that says it is
    # close to the inverse of the system (`near_inverse`, BA's exact Schur; not block Jacobi).
    lookahead_tol = float(getattr(problem, "cg_lookahead_tol", 0.0)) if model_tol > 0.0 else 0.0
    bound_decrease = bool(getattr(problem, "cg_bound_decrease", False))
    two_level = StaticTwoLevel(problem, be, pol, scaling=opt.scaling, order=opt.ichol_order,
                               clusters=opt.coarse_clusters, grow_after=opt.coarse_grow_after,
                               recycle=opt.recycle_steps, fill=opt.ichol_fill,
                               max_fill=opt.ichol_max_fill) if precond_kind == "ichol" and not custom else None
    termination = "" if np.isfinite(cost) else "non-finite initial cost"
    accepted = rejected = rescued = 0
    rescue = getattr(problem, "rescue_step", None) if opt.rescue_steps else None
    g0 = None
    it = 0
    transpose = _Transposer()
    while not termination:
        if it >= opt.max_iterations:
            termination = "max iterations"
            break
        if it > 0 and opt.interrupt is not None and opt.interrupt():
            termination = "interrupted"
            break
        with timer("jacobian"):
            lin = _linearize(problem, pol, be, opt.scaling, transpose)
        g0 = lin.gnorm if g0 is None else g0
        if lin.gnorm == 0.0 or lin.gnorm <= opt.gradient_tol * g0:
            termination = "gradient tolerance"
            break
        if not np.isfinite(lin.gnorm):
            termination = "non-finite gradient"
            break
        with timer("preconditioner"):
            if custom:
                pre = _custom_preconditioner(problem, lin, lam, be, pol)
            elif two_level is not None:
                pre = two_level.prepare(lin.J_hi, lin.S, lam)
            else:
                pre = _make_preconditioner(precond_kind, problem, lin.J_hi, lam, be, pol)
        if model_tol > 0.0:
            cg_tol = min(opt.cg_tol_min, 1e-6)  # the model test decides; this only ends a solved system
        else:
            # Inexact Newton: a loose forcing term far from the optimum, tighter as the gradient falls.
            cg_tol = max(opt.cg_tol_min, min(opt.cg_tol, np.sqrt(lin.gnorm / g0) * opt.cg_tol))
        while True:
            system = ScaledSystem(be, lin.J_hi, lin.J_mv, lin.J_mv_T, lin.rhs, lam, pol.matvec, pol.vector,
                                  scale_operands=opt.scaling)
            with timer("linear_solve"):
                trusted = last_rho is not None and last_rho >= MODEL_TRUST_RHO
                res = cgnr(system, pre, tol=cg_tol, maxiter=opt.cg_max_iterations,
                           model_tol=model_tol if trusted or model_tol <= 0.0 else model_tol_nonlinear,
                           negligible=opt.relative_cost_tol * cost * lin.sigma**2 if model_tol > 0.0 else 0.0,
                           lookahead_tol=lookahead_tol if getattr(pre, "near_inverse", False) else 0.0,
                           max_decrease=lin.half_c2 if bound_decrease else np.inf)
            lin_its.append(res.iterations)
            lams.append(lam)
            y = be.to_host(res.x).astype(np.float64)
            if two_level is None and opt.refine_steps > 0 and np.dtype(pol.matvec) == np.float16:
                with timer("linear_solve"):
                    y = _refine(y, np.asarray(be.to_host(lin.rhs), dtype=np.float64), lambda D: _normal_products(lin, D, lam),
                                pre, be, pol, opt.refine_steps)
            if two_level is not None:
                with timer("linear_solve"):
                    y = two_level.refine(y, np.asarray(be.to_host(lin.rhs), dtype=np.float64), lin.S, lin.sigma,
                                         lambda D: _normal_products(lin, D, lam))
            state = problem.get_state()
            with timer("update"):
                problem.retract(lin.S * y / lin.sigma, pol.update)
            with timer("residual"):
                new_cost = problem.cost(pol.residual)
            pred = system.predicted_decrease(y) / lin.sigma**2
            actual = cost - new_cost
            rho = actual / pred if pred > 0 else -1.0
            if not (np.isfinite(new_cost) and np.isfinite(rho) and rho > 1e-4 and actual >= 0) and rescue is not None:
                # The problem's own repair of a failed step (BA: re-fit the points it made worse to
                # its cameras), judged by the same gain ratio: a cheap pass instead of a new solve.
                with timer("update"):
                    moved = rescue(pol.update)
                if moved:
                    with timer("residual"):
                        new_cost = problem.cost(pol.residual)
                    actual = cost - new_cost
                    rho = actual / pred if pred > 0 else -1.0
                    rescued += int(np.isfinite(new_cost) and np.isfinite(rho) and rho > 1e-4 and actual >= 0)
            if np.isfinite(new_cost) and np.isfinite(rho) and rho > 1e-4 and actual >= 0:
                accepted += 1
                last_rho = rho
                lam *= max(lam_min_factor, 1.0 - (2.0 * rho - 1.0) ** 3)  # Nielsen gain-ratio update
                nu = 2.0
                rel = actual / max(cost, 1e-300)
                cost = new_cost
                if exact:
                    cost64 = cost
                else:
                    with timer("residual"):
                        cost64 = problem.cost(np.float64)
                    if cost64 < best_cost:
                        best_state = None  # the current state is the best: nothing to restore
                    elif best_state is None:
                        best_state = state  # the state before this step had the lowest fp64 cost
                best_cost = min(best_cost, cost64)
                current64 = float(cost64)
                history.append(cost64)
                if opt.callback is not None:
                    opt.callback({"iteration": it, "cost": cost64, "lambda": lam, "cg_iterations": res.iterations,
                                  "gain_ratio": float(rho)})
                if two_level is not None:
                    two_level.accepted(lin.S * y / lin.sigma, rel, res.iterations)
                if rel < opt.relative_cost_tol or actual <= opt.absolute_cost_tol:
                    termination = "relative cost decrease"
                elif np.linalg.norm(y) <= opt.step_tol * (np.linalg.norm(y) + opt.step_tol):
                    termination = "step tolerance"
                break
            rejected += 1
            problem.set_state(state)
            if 0.0 < pred < opt.relative_cost_tol * cost:
                # Accepted, this step would have ended the solve on relative cost decrease, and a
                # more damped one promises less: stop instead of spending linear solves on them.
                # Reduced-precision residuals reach this near the optimum, where they can no longer
                # measure a decrease (fp32 PGO: 11% of 1,047 loop-closure graphs ran to max_lambda).
                termination = "relative cost decrease (predicted)"
                break
            lam *= nu
            nu *= 2.0
            if lam > opt.max_lambda:
                termination = "damping too large (no further decrease possible)"
                break
            if two_level is not None:
                with timer("preconditioner"):
                    two_level.damping(lam)
            elif custom or precond_kind != "none":
                with timer("preconditioner"):
                    pre = _custom_preconditioner(problem, lin, lam, be, pol) if custom else \
                        _make_preconditioner(precond_kind, problem, lin.J_hi, lam, be, pol)
        it += 1

    with timer("residual"):
        # The state now is the last accepted one (or the start), whose fp64 cost is known: no
        # evaluation (a window BA's residuals cost as much as 1/4 of one of its two LM iterations).
        final_cost = current64
        if best_state is not None and best_cost < final_cost:
            problem.set_state(best_state)
            final_cost = best_cost
    precision = {**pol.as_dict(), "backend": be.name, "emulated_fp16": be.emulates_fp16 and _uses_fp16(pol),
                 "emulated_stages": be.emulated_stages(pol)}
    coarse_size = two_level.coarse_size if two_level is not None else 0
    if coarse_size:
        precision["coarse"] = np.dtype(np.float32 if pol.vector == np.float16 else pol.vector).name
    return Summary(
        initial_cost=float(initial_cost), final_cost=float(final_cost), cost_history=[float(c) for c in history],
        iterations=it, linear_iterations=lin_its, time_s=time.perf_counter() - t_start, stage_times=dict(timer.t),
        precision=precision, termination=termination, accepted_steps=accepted, rejected_steps=rejected,
        rescued_steps=rescued,
        preconditioner="problem" if custom else (f"ichol ({two_level.fill_used})" if two_level is not None
                                                  else precond_kind),
        ichol_shift=two_level.shift if two_level is not None else 0.0, lambda_history=lams,
        coarse_size=coarse_size, initialization="none" if init_cost is None else str(getattr(
            problem, "initialization_method", "problem")))


def _normal_products(lin: _Linearization, D: np.ndarray, lam: float) -> np.ndarray:
    """(A^T A + lam I) D with the Jacobian-precision A (fp32 in 'mixed'), accumulated in fp64."""
    J = lin.J_hi
    AD = np.asarray(J @ D.astype(J.dtype), dtype=np.float64)
    return np.asarray(J.T @ AD.astype(J.dtype), dtype=np.float64) + lam * D


def _refine(y: np.ndarray, rhs: np.ndarray, normal: Callable[[np.ndarray], np.ndarray], pre: Any, be: Backend,
            pol: PrecisionPolicy, rounds: int) -> np.ndarray:
    """Mixed-precision refinement of a CG step whose products ran in fp16.

    Each round measures the residual g = rhs - N y of the normal equations with Jacobian-precision
    products (fp32 in 'mixed'), preconditions it, and replaces y by the model optimum over
    span(y, M^-1 g), in fp64: what fp16 products could not resolve (curvature below fp16's relative
    precision) is corrected with two fp32 products per round, and the model decrease can only grow.
    """
    for _ in range(rounds):
        Ny = normal(y[:, None])[:, 0]
        g = rhs - Ny
        z = g if pre is None else np.asarray(be.to_host(pre(be.asarray(be.cast(g, pol.vector)))), dtype=np.float64)
        if not np.all(np.isfinite(z)) or not np.any(z):
            break
        D = np.column_stack([y, z])
        alpha = span_coefficients(rhs, D, np.column_stack([Ny, normal(z[:, None])[:, 0]]))
        if not np.any(alpha):  # neither direction carries curvature
            break
        y = D @ alpha
    return y


def _uses_fp16(pol: PrecisionPolicy) -> bool:
    return any(np.dtype(getattr(pol, s)) == np.float16 for s in STAGES)


def _custom_preconditioner(problem: Any, lin: _Linearization, lam: float, be: Backend, pol: PrecisionPolicy) -> Any:
    """The problem's make_preconditioner on J_hi; on the host, J_mv (J_hi already rounded to the matvec dtype) too."""
    if be.name == "numpy" and isinstance(lin.J_mv, sp.csr_matrix):
        return problem.make_preconditioner(lin.J_hi, lam, be, pol, J_matvec=lin.J_mv)
    return problem.make_preconditioner(lin.J_hi, lam, be, pol)


def _make_preconditioner(kind: str, problem: LeastSquaresProblem, J_hi: sp.csr_matrix, lam: float,
                         be: Backend, pol: PrecisionPolicy) -> Any:
    if kind == "none":
        return None
    if kind == "jacobi":
        # A problem that knows its Jacobian's layout sums its blocks directly (BA: per observation).
        own = getattr(problem, "block_diagonal", None)
        blocks = own(J_hi) if own is not None else block_diagonal(J_hi, problem.groups)
        return BlockJacobi(blocks, problem.groups, lam, be, pol.vector)
    raise ValueError(f"unknown preconditioner '{kind}'; choose auto, ichol, jacobi or none")


