"""Matrix-free CGNR for damped linear least squares, with products in the policy's precision.

Solves  min_y ||A y + c||^2 + lam ||y||^2  through the normal equations
(A^T A + lam I) y = -A^T c, touching A only through A*v and A^T*u (never forming A^T A).
A is the column-scaled Jacobian J S (unit column norms) and c the scaled residual, so every
operand has a known range before it is rounded to fp16 (see ScaledSystem).

Stopping. CG minimizes the damped quadratic model; iteration i raises the model decrease by
alpha_i r_i.z_i / 2, and the decrease still missing at iterate k is half the sum of those terms
from k on (Hestenes-Stiefel). The sum over a short window after k is a cheap lower estimate of it
(Strakos-Tichy), so `model_tol` stops CG once the last `window` iterations gained less than
model_tol times the decrease reached: the step then holds about (1 - model_tol) of the model
decrease of the exact LM step, which is what LM needs (a residual norm instead says little about
the directions of small curvature, where pose graphs keep most of their error).
The window looks back, so it always costs `window` iterations. `lookahead_tol` looks forward: the
next iteration gains alpha r.z / 2 with alpha near 1 when M^-1 is close to the inverse of the
system (BA's exact Schur preconditioner), so CG stops once r.z / 2 <= lookahead_tol times the
decrease reached. With fp16 products the recursive residual then lies below the floor the true
residual cannot pass (the rounding of each product's operands), and further iterations only
refine the solution of a system that differs from the true one by that rounding.
`max_decrease` bounds the model decrease: the damped model 1/2||A y + c||^2 + lam/2 ||y||^2 is
never negative, so no step gains more than 1/2||c||^2. When rounding has made the products
inconsistent (fp16 near a zero-residual optimum), CG's recursive decrease runs past that bound
and its iterates are noise: CG then stops and returns the iterate before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from slam.solvers.backend import F16, Backend


def pow2_of_max(x: Any, xp: Any = np) -> float:
    """A power of two s with max|x|*s in [0.5, 1) (1 for zero or non-finite x): exact to scale by."""
    if x.size == 0:
        return 1.0
    m = float(max(xp.max(x), -xp.min(x)))  # no |x| temporary
    if not np.isfinite(m) or m == 0.0:
        return 1.0
    return float(np.ldexp(1.0, -int(np.frexp(m)[1])))


@dataclass
class ScaledSystem:
    """The Jacobi-scaled, residual-scaled LM system of one linearization.

    J_hi: J S in the Jacobian precision (used for the predicted decrease and the gradient);
    J_mv: J S rounded to the matvec precision (used inside CGNR), J_mv_T its transpose (CSR);
    rhs: -(J S)^T r in the vector precision; lam: LM damping on the
    scaled variables (Marquardt).
    """

    backend: Backend
    J_hi: Any
    J_mv: Any
    J_mv_T: Any
    rhs: Any
    lam: float
    matvec_dtype: np.dtype
    vector_dtype: np.dtype
    scale_operands: bool = True  # power-of-two scaling before fp16 rounding (off only to study its effect)

    def normal_matvec(self, p: Any) -> Any:
        """(A^T A + lam I) p with both products in the matvec precision, the rest in the vector precision."""
        be = self.backend
        half, u = np.dtype(self.matvec_dtype) == F16, None
        if half and self.scale_operands and be.name == "cupy":
            # The same scaling and roundings on the device, without host round trips (gpu_sparse.py);
            # None when its kernels cannot be built here: then the host-scaled path below.
            from slam.solvers.gpu_sparse import half_normal_product

            u = half_normal_product(self.J_mv, self.J_mv_T, p)
        if u is None and half:
            # fp16 operands: an exact power-of-two scaling first keeps them in range (no overflow,
            # the fewest subnormals); products accumulate in fp32.
            s = pow2_of_max(p, be.xp) if self.scale_operands else 1.0
            q = self.J_mv @ be.cast(p * s, F16)
            t = pow2_of_max(q, be.xp) if self.scale_operands else 1.0
            u = self.J_mv_T @ be.cast(q * t, F16)
            u *= 1.0 / (s * t)
        elif u is None:
            u = self.J_mv_T @ (self.J_mv @ p.astype(self.J_mv.dtype, copy=False))
        u += self.lam * p
        return be.cast(u, self.vector_dtype)

    def predicted_decrease(self, y: Any) -> float:
        """Model decrease 0.5||c||^2 - 0.5||c + A y||^2 = rhs.y - 0.5||A y||^2 (in scaled units), in fp64."""
        be = self.backend
        y = np.asarray(be.to_host(y), dtype=np.float64)
        Ay = np.asarray(self.J_hi @ y.astype(self.J_hi.dtype), dtype=np.float64)
        rhs = np.asarray(be.to_host(self.rhs), dtype=np.float64)
        return float(rhs @ y - 0.5 * (Ay @ Ay))


@dataclass
class CGResult:
    """What one CGNR solve did: the step, iterations, final relative residual, and the damped
    model decrease the CG recurrence accumulated (scaled units)."""

    x: Any
    iterations: int
    rel_residual: float
    converged: bool
    model_decrease: float = 0.0


def cgnr(system: ScaledSystem, precond: Callable[[Any], Any] | None = None, tol: float = 1e-6,
         maxiter: int = 200, *, model_tol: float = 0.0, window: int = 4, negligible: float = 0.0,
         lookahead_tol: float = 0.0, max_decrease: float = np.inf) -> CGResult:
    """Preconditioned CG on the damped normal equations of `system`, starting from zero.

    Stops when ||(A^T A + lam I) y - rhs|| <= tol ||rhs|| (recursive residual), when the model
    decrease of the last `window` iterations is <= model_tol times the decrease so far (model_tol
    > 0, see the module notes), when even a generous bound of the whole decrease (reached so far
    plus ten windows at the current rate) is below `negligible` (the caller stops after such a
    step anyway), when the next iteration's estimated gain r.z / 2 is <= lookahead_tol times the
    decrease so far (lookahead_tol > 0, see the module notes), or after maxiter. When the
    recursive model decrease exceeds `max_decrease` (impossible in exact arithmetic: rounding has
    broken the recurrence), CG stops unconverged with the iterate before that iteration. Vectors, dots and step lengths are in the vector precision.
    """
    be = system.backend
    xp = be.xp
    vdt = np.dtype(system.vector_dtype)
    rnd = (lambda a: be.cast(a, vdt)) if vdt == F16 else (lambda a: a)  # noqa: E731
    b = be.cast(system.rhs, vdt)
    x = xp.zeros_like(b)
    r = b.copy()
    bnorm = float(xp.linalg.norm(b))
    if bnorm == 0.0 or not np.isfinite(bnorm):
        return CGResult(x, 0, 0.0 if bnorm == 0.0 else float("nan"), bnorm == 0.0)
    z = precond(r) if precond is not None else r
    p = z.copy()
    rz = float(xp.dot(r, z))
    rel, it, q = 1.0, 0, 0.0
    gains = np.zeros(max(window, 1))
    if not (rz > 0.0 and np.isfinite(rz)):
        return CGResult(x, 0, rel, False)
    while it < maxiter:
        Ap = system.normal_matvec(p)
        pAp = float(xp.dot(p, Ap))
        if not (pAp > 0.0 and np.isfinite(pAp)):
            break  # loss of positive definiteness in low precision: keep the last good iterate
        alpha = rz / pAp
        gain = 0.5 * alpha * rz
        if q + gain > max_decrease:
            break
        x = rnd(x + alpha * p) if vdt == F16 else _axpy(x, alpha, p)
        r = rnd(r - alpha * Ap) if vdt == F16 else _axpy(r, -alpha, Ap)
        q += gain
        gains[it % gains.size] = gain
        it += 1
        rel = float(xp.linalg.norm(r)) / bnorm
        if rel <= tol or (it >= gains.size and ((model_tol > 0.0 and gains.sum() <= model_tol * q)
                                                 or q + 10.0 * gains.sum() < negligible)):
            return CGResult(x, it, rel, True, q)
        z = precond(r) if precond is not None else r
        rz_new = float(xp.dot(r, z))
        if not (np.isfinite(rz_new) and rz_new > 0.0):
            break
        if 0.5 * rz_new <= lookahead_tol * q:
            return CGResult(x, it, rel, True, q)
        p = rnd(z + (rz_new / rz) * p) if vdt == F16 else _xpby(z, rz_new / rz, p)
        rz = rz_new
    return CGResult(x, it, rel, rel <= tol, q)


def _axpy(y: Any, a: float, x: Any) -> Any:
    """y + a x in place (y is CG's own vector)."""
    y += a * x
    return y


def _xpby(x: Any, b: float, y: Any) -> Any:
    """x + b y, written into y (CG's old search direction is not needed afterwards)."""
    y *= b
    y += x
    return y
