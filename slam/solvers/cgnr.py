"""Matrix-free CGNR for damped linear least squares, with products in the policy's precision.

Solves  min_y ||A y + c||^2 + lam ||y||^2  through the normal equations
(A^T A + lam I) y = -A^T c, touching A only through A*v and A^T*u (never forming A^T A).
A is the column-scaled Jacobian J S (unit column norms) and c the scaled residual, so every
operand has a known range before it is rounded to fp16 (see ScaledSystem).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from slam.solvers.backend import Backend, pow2_scale


@dataclass
class ScaledSystem:
    """The Jacobi-scaled, residual-scaled LM system of one linearization.

    J_hi: J S in the Jacobian precision (used for the predicted decrease and the gradient);
    J_mv: J S rounded to the matvec precision (used inside CGNR); col_scale: S (diagonal);
    rhs: -(J S)^T r in the vector precision; lam: LM damping on the scaled variables (Marquardt).
    """

    backend: Backend
    J_hi: Any
    J_mv: Any
    J_mv_T: Any
    col_scale: np.ndarray
    rhs: Any
    lam: float
    matvec_dtype: np.dtype
    vector_dtype: np.dtype

    def normal_matvec(self, p: Any) -> Any:
        """(A^T A + lam I) p with both products in the matvec precision, the rest in the vector precision."""
        be = self.backend
        s = pow2_scale(p, be.xp)  # exact power-of-two scaling keeps fp16 operands in range
        q = self.J_mv @ be.cast(p * s, self.matvec_dtype)
        t = pow2_scale(q, be.xp)
        u = self.J_mv_T @ be.cast(q * t, self.matvec_dtype)
        return be.cast(u / (s * t) + self.lam * p, self.vector_dtype)

    def predicted_decrease(self, y: Any, r_scaled_norm2: float) -> float:
        """Model decrease 0.5||c||^2 - 0.5||c + A y||^2 = rhs.y - 0.5||A y||^2 (in scaled units)."""
        xp = self.backend.xp
        Ay = self.J_hi @ y.astype(self.J_hi.dtype)
        return float(xp.dot(self.rhs.astype(np.float64), y.astype(np.float64)) - 0.5 * xp.dot(Ay.astype(np.float64), Ay.astype(np.float64)))


@dataclass
class CGResult:
    """What one CGNR solve did."""

    x: Any
    iterations: int
    rel_residual: float
    converged: bool


def cgnr(system: ScaledSystem, precond: Callable[[Any], Any] | None = None, tol: float = 1e-6,
         maxiter: int = 200) -> CGResult:
    """Preconditioned CG on the damped normal equations of `system`, starting from zero.

    Stops when ||(A^T A + lam I) y - rhs|| <= tol ||rhs|| (recursive residual) or after maxiter.
    Vectors, dots and step lengths are in the policy's vector precision.
    """
    be = system.backend
    xp = be.xp
    vdt = system.vector_dtype
    rnd = lambda a: be.cast(a, vdt)  # noqa: E731  (emulated fp16 vectors are re-rounded after each update)
    b = rnd(system.rhs)
    x = xp.zeros_like(b)
    r = b.copy()
    bnorm = float(xp.linalg.norm(b))
    if bnorm == 0.0 or not np.isfinite(bnorm):
        return CGResult(x, 0, 0.0 if bnorm == 0.0 else float("nan"), bnorm == 0.0)
    z = precond(r) if precond is not None else r
    p = z.copy()
    rz = float(xp.dot(r, z))
    rel = 1.0
    it = 0
    while it < maxiter:
        Ap = system.normal_matvec(p)
        pAp = float(xp.dot(p, Ap))
        if not (pAp > 0.0 and np.isfinite(pAp)):
            break  # loss of positive definiteness in low precision: keep the last good iterate
        alpha = rz / pAp
        x = rnd(x + alpha * p)
        r = rnd(r - alpha * Ap)
        it += 1
        rel = float(xp.linalg.norm(r)) / bnorm
        if rel <= tol:
            return CGResult(x, it, rel, True)
        z = precond(r) if precond is not None else r
        rz_new = float(xp.dot(r, z))
        if not np.isfinite(rz_new):
            break
        p = rnd(z + (rz_new / rz) * p)
        rz = rz_new
    return CGResult(x, it, rel, rel <= tol)
