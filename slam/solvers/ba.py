"""Bundle adjustment: SE(3) cameras, 3-D points, pinhole or BAL projection, robust losses.

Camera c maps a world point to its frame by P = R_c X + t_c (T_cw, world-to-camera, as in BAL and
OpenCV). Projection conventions:
  'bal':     p = -P.xy / P.z,  u = f (1 + k1 |p|^2 + k2 |p|^4) p      intrinsics [f, k1, k2]
  'pinhole': p =  P.xy / P.z,  u = [fx p_x + cx, fy p_y + cy]          intrinsics [fx, fy, cx, cy]
Residual r = u - observed (pixels). No point is dropped for lying behind a camera: BAL has a few
with P.z > 0 in its own sign convention and they still project to their observations.

Retraction (left composition with (Exp(dw), dt), a first-order SE(3) left perturbation):
  R <- Exp(dw) R,  t <- Exp(dw) t + dt,  so  P <- Exp(dw) P + dt;  X <- X + dX;  k <- k + dk.
Hence dP/d[dw, dt] = [-hat(P), I] and dP/dX = R: the camera Jacobian depends on camera-frame
coordinates only, not on how far the world origin is (better conditioned than the additive t).
Camera tangent: [dw (3), dt (3), dk (3 or 4 when optimize_intrinsics)].

Robust loss rho(s) on s = |r|^2 per observation, cost 1/2 sum rho(s). Linearized by IRLS: rows and
residual scaled by sqrt(rho'(s)), without the Triggs second-order correction, so the gradient is
exact (rho' J^T r) and the Gauss-Newton matrix stays positive semidefinite.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from slam.errors import ProblemError
from slam.geometry import lie
from slam.io.bal import BALProblem
from slam.solvers.pgo import _round

PROJECTIONS = {"bal": 3, "pinhole": 4}  # convention -> number of intrinsics
LOSSES = ("none", "huber", "cauchy")


def robust_loss(name: str, s: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """rho(s) and rho'(s) of a loss on squared norms s (Ceres's HuberLoss / CauchyLoss with a = scale)."""
    if name == "none":
        return s, np.ones_like(s)
    b = scale * scale
    if name == "huber":
        root = np.sqrt(np.maximum(s, b))  # >= scale > 0, so the division is safe
        inlier = s <= b
        return np.where(inlier, s, 2.0 * scale * root - b), np.where(inlier, 1.0, scale / root)
    if name == "cauchy":
        return b * np.log1p(s / b), 1.0 / (1.0 + s / b)
    raise ValueError(f"unknown loss '{name}'; choose one of {', '.join(LOSSES)}")


def _mask(m: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if m is None:
        return np.zeros(n, bool)
    m = np.asarray(m)
    if m.dtype != bool and m.ndim == 1 and m.size and np.issubdtype(m.dtype, np.integer):
        if m.min() < 0 or m.max() >= n:
            raise ProblemError(f"{name}: index out of range 0..{n - 1}")
        out = np.zeros(n, bool)
        out[m] = True
        return out
    if m.shape != (n,):
        raise ProblemError(f"{name} must be a boolean mask of shape ({n},) or an index list, got shape {m.shape}")
    return m.astype(bool).copy()


class BundleAdjustmentProblem:
    """A bundle-adjustment problem as a LeastSquaresProblem; R, t, intrinsics, points are updated in place."""

    preconditioner = "jacobi"

    def __init__(self, poses: np.ndarray | tuple[np.ndarray, np.ndarray], points: np.ndarray,
                 cam_idx: np.ndarray, pt_idx: np.ndarray, observations: np.ndarray,
                 intrinsics: np.ndarray | None = None, *, projection: str = "bal",
                 optimize_intrinsics: bool = False, loss: str = "none", loss_scale: float = 1.0,
                 fixed_cameras: np.ndarray | None = None, fixed_points: np.ndarray | None = None) -> None:
        if projection not in PROJECTIONS:
            raise ValueError(f"unknown projection '{projection}'; choose bal or pinhole")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss '{loss}'; choose one of {', '.join(LOSSES)}")
        if loss != "none" and not (np.isfinite(loss_scale) and loss_scale > 0):
            raise ProblemError(f"loss_scale must be a positive number of pixels, got {loss_scale}")
        self.projection, self.loss, self.loss_scale = projection, loss, float(loss_scale)
        self.R, self.t = self._poses(poses)
        C = self.R.shape[0]
        nk = PROJECTIONS[projection]
        if intrinsics is None:  # normalized image coordinates
            intrinsics = [1.0, 0.0, 0.0] if projection == "bal" else [1.0, 1.0, 0.0, 0.0]
        k = np.asarray(intrinsics, dtype=np.float64)
        if k.shape == (nk,):
            k = np.tile(k, (C, 1))
        if k.shape != (C, nk):
            names = "[f, k1, k2]" if projection == "bal" else "[fx, fy, cx, cy]"
            raise ProblemError(f"intrinsics must be ({C}, {nk}) or ({nk},) {names} for '{projection}', got {k.shape}")
        self.intrinsics = k.copy()
        self.points = np.array(points, dtype=np.float64)
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ProblemError(f"points must be (P, 3), got {self.points.shape}")
        P = self.points.shape[0]
        self.cam_idx = np.asarray(cam_idx, dtype=np.int64).ravel()
        self.pt_idx = np.asarray(pt_idx, dtype=np.int64).ravel()
        self.obs = np.array(observations, dtype=np.float64)
        O = self.cam_idx.size
        if O == 0 or C == 0 or P == 0:
            raise ProblemError(f"empty problem ({C} cameras, {P} points, {O} observations): nothing to optimize")
        if self.pt_idx.size != O or self.obs.shape != (O, 2):
            raise ProblemError(f"cam_idx, pt_idx and observations must have {O} entries ((O,), (O,), (O, 2)); "
                               f"got {self.pt_idx.shape}, {self.obs.shape}")
        for name, idx, n in (("cam_idx", self.cam_idx, C), ("pt_idx", self.pt_idx, P)):
            bad = np.flatnonzero((idx < 0) | (idx >= n))
            if bad.size:
                raise ProblemError(f"observation {bad[0]}: {name} {idx[bad[0]]} out of range 0..{n - 1}")
        for name, a in (("poses", self.R), ("poses", self.t), ("intrinsics", self.intrinsics),
                        ("points", self.points), ("observations", self.obs)):
            if not np.all(np.isfinite(a)):
                raise ProblemError(f"{name} contain NaN or Inf")
        self.fixed_cameras = _mask(fixed_cameras, C, "fixed_cameras")
        self.fixed_points = _mask(fixed_points, P, "fixed_points")
        self.optimize_intrinsics = bool(optimize_intrinsics)
        self.cam_dim = 6 + (nk if optimize_intrinsics else 0)
        self.cam_col = np.full(C, -1, np.int64)
        self.cam_col[~self.fixed_cameras] = np.arange(int((~self.fixed_cameras).sum()))
        self.pt_col = np.full(P, -1, np.int64)
        self.pt_col[~self.fixed_points] = np.arange(int((~self.fixed_points).sum()))
        n_cf, n_pf = int((~self.fixed_cameras).sum()), int((~self.fixed_points).sum())
        self.n_cam_params = n_cf * self.cam_dim
        self.n_params = self.n_cam_params + 3 * n_pf
        if self.n_params == 0:
            raise ProblemError("every camera and every point is fixed: nothing to optimize")
        self.groups = [(0, n_cf, self.cam_dim), (self.n_cam_params, n_pf, 3)]
        self._build_pattern()

    @staticmethod
    def _poses(poses: Any) -> tuple[np.ndarray, np.ndarray]:
        """(R, t) from (C,4,4) T_cw or a pair (R (C,3,3) or angle-axis (C,3), t (C,3))."""
        if isinstance(poses, tuple):
            R, t = (np.asarray(a, dtype=np.float64) for a in poses)
            if R.ndim == 2 and R.shape[1:] == (3,):
                R = lie.so3_exp(R)
        else:
            T = np.asarray(poses, dtype=np.float64)
            if T.ndim != 3 or T.shape[1:] != (4, 4):
                raise ProblemError(f"poses must be (C, 4, 4) world-to-camera matrices or (R, t), got {T.shape}")
            R, t = T[:, :3, :3], T[:, :3, 3]
        if R.ndim != 3 or R.shape[1:] != (3, 3) or t.shape != (R.shape[0], 3):
            raise ProblemError(f"rotations must be (C, 3, 3) or (C, 3) and translations (C, 3), got {R.shape}, {t.shape}")
        return R.copy(), t.copy()

    @classmethod
    def from_bal(cls, bal: BALProblem, **kwargs: Any) -> "BundleAdjustmentProblem":
        """Problem in the BAL convention from slam.io.bal.BALProblem (kwargs: loss, optimize_intrinsics, ...)."""
        cam = bal.cameras
        return cls((cam[:, :3], cam[:, 3:6]), bal.points, bal.cam_idx, bal.pt_idx, bal.observations,
                   cam[:, 6:9], projection="bal", **kwargs)

    def to_bal(self) -> BALProblem:
        """The current estimate as a BALProblem (bal projection only)."""
        if self.projection != "bal":
            raise ValueError("to_bal needs the 'bal' projection convention")
        cams = np.concatenate([lie.so3_log(self.R), self.t, self.intrinsics], axis=1)
        return BALProblem(cams, self.points.copy(), self.cam_idx.copy(), self.pt_idx.copy(), self.obs.copy())

    def _build_pattern(self) -> None:
        """CSR index arrays of J (2 rows per observation: camera columns, then point columns), fixed once."""
        d, O = self.cam_dim, self.cam_idx.size
        cc, pc = self.cam_col[self.cam_idx], self.pt_col[self.pt_idx]
        cols = np.concatenate([cc[:, None] * d + np.arange(d), self.n_cam_params + pc[:, None] * 3 + np.arange(3)], 1)
        keep = np.concatenate([np.repeat(cc[:, None] >= 0, d, 1), np.repeat(pc[:, None] >= 0, 3, 1)], 1)
        keep = np.broadcast_to(keep[:, None, :], (O, 2, d + 3))
        self._keep = keep.reshape(-1)
        self._indices = np.broadcast_to(cols[:, None, :], (O, 2, d + 3)).reshape(-1)[self._keep].astype(np.int32)
        self._indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=2).reshape(-1))]).astype(np.int32)
        self._shape = (2 * O, self.n_params)

    # ------------------------------------------------------------------------------ model
    def _project(self, dtype: np.dtype, jacobians: bool) -> tuple[np.ndarray, ...]:
        """Residuals (O,2) from the state rounded to dtype; with jacobians, dr/dcam (O,2,cam_dim) and dr/dX (O,2,3)."""
        R, t = _round(self.R, dtype)[self.cam_idx], _round(self.t, dtype)[self.cam_idx]
        k = _round(self.intrinsics, dtype)[self.cam_idx]
        X = _round(self.points, dtype)[self.pt_idx]
        P = np.einsum("oij,oj->oi", R, X) + t
        z = P[:, 2:3]
        sign = -1.0 if self.projection == "bal" else 1.0
        p = sign * P[:, :2] / z
        if self.projection == "bal":
            f, k1, k2 = k[:, 0:1], k[:, 1:2], k[:, 2:3]
            r2 = np.sum(p * p, axis=1, keepdims=True)
            dist = 1.0 + k1 * r2 + k2 * r2 * r2
            u = f * dist * p
        else:
            u = k[:, 0:2] * p + k[:, 2:4]
        r = _round(u - _round(self.obs, dtype), dtype)
        if not jacobians:
            return (r,)
        O = len(r)
        dp_dP = np.zeros((O, 2, 3))
        dp_dP[:, 0, 0] = dp_dP[:, 1, 1] = sign / z[:, 0]
        dp_dP[:, :, 2] = -p / z
        if self.projection == "bal":
            du_dp = (f * dist)[:, :, None] * np.eye(2) + (2.0 * f * (k1 + 2.0 * k2 * r2))[:, :, None] * (p[:, :, None] * p[:, None, :])
            du_dk = np.stack([dist * p, f * r2 * p, f * r2 * r2 * p], axis=2)
        else:
            du_dp = k[:, 0:2, None] * np.eye(2)
            du_dk = np.zeros((O, 2, 4))
            du_dk[:, 0, 0], du_dk[:, 1, 1] = p[:, 0], p[:, 1]
            du_dk[:, 0, 2] = du_dk[:, 1, 3] = 1.0
        A = du_dp @ dp_dP  # dr/dP (O,2,3)
        # Left perturbation: dP/ddw = -hat(P), so row a of A maps to a^T (-hat(P)) = (P x a)^T.
        blocks = [np.cross(P[:, None, :], A), A]
        if self.optimize_intrinsics:
            blocks.append(du_dk)
        return r, np.concatenate(blocks, axis=2), A @ R

    def _weights(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-observation rho(s) and sqrt(rho'(s)) (the IRLS row weight)."""
        rho, drho = robust_loss(self.loss, np.sum(r * r, axis=1), self.loss_scale)
        return rho, np.sqrt(drho)

    # ------------------------------------------------------------------------------ LeastSquaresProblem
    def cost(self, dtype: np.dtype = np.float64) -> float:
        """1/2 sum rho(|r|^2): state and residuals rounded to dtype, summed in fp64."""
        (r,) = self._project(dtype, False)
        return 0.5 * float(np.sum(self._weights(r)[0]))

    def linearize(self, residual_dtype: np.dtype, jacobian_dtype: np.dtype) -> tuple[sp.csr_matrix, np.ndarray]:
        """IRLS-weighted Jacobian (CSR, values in jacobian_dtype; fp16 as rounded fp32) and residual (fp64)."""
        r, Jc, Jp = self._project(residual_dtype, True)
        w = self._weights(r)[1]
        vals = (np.concatenate([Jc, Jp], axis=2) * w[:, None, None]).reshape(-1)[self._keep]
        jd = np.dtype(jacobian_dtype)
        vals = _round(vals, jd).astype(np.float32 if jd == np.float16 else jd)
        J = sp.csr_matrix((vals, self._indices, self._indptr), shape=self._shape)
        return J, _round(r * w[:, None], residual_dtype).reshape(-1)

    def get_state(self) -> tuple[np.ndarray, ...]:
        """Copies of (R, t, intrinsics, points)."""
        return self.R.copy(), self.t.copy(), self.intrinsics.copy(), self.points.copy()

    def set_state(self, state: tuple[np.ndarray, ...]) -> None:
        """Restore an estimate from get_state."""
        self.R[...], self.t[...], self.intrinsics[...], self.points[...] = state

    def retract(self, dx: np.ndarray, dtype: np.dtype) -> None:
        """R <- Exp(dw) R, t <- Exp(dw) t + dt, k <- k + dk, X <- X + dX; operands in dtype (fp16: fp32 products)."""
        dx = np.asarray(dx, dtype=np.float64)
        dtype = np.dtype(dtype)
        work = np.float32 if dtype == np.float16 else dtype
        op: Callable[[np.ndarray], np.ndarray] = lambda a: _round(a, dtype).astype(work)  # noqa: E731
        back: Callable[[np.ndarray], np.ndarray] = lambda a: _round(np.asarray(a, np.float64), dtype)  # noqa: E731
        cams = ~self.fixed_cameras
        d = dx[:self.n_cam_params].reshape(-1, self.cam_dim)
        if d.size:
            E = op(lie.so3_exp(d[:, :3]))
            self.R[cams] = back(E @ op(self.R[cams]))
            self.t[cams] = back(np.einsum("nij,nj->ni", E, op(self.t[cams])) + op(d[:, 3:6]))
            if self.optimize_intrinsics:
                self.intrinsics[cams] = back(op(self.intrinsics[cams]) + op(d[:, 6:]))
        pts = ~self.fixed_points
        if pts.any():
            self.points[pts] = back(op(self.points[pts]) + op(dx[self.n_cam_params:].reshape(-1, 3)))

    # ------------------------------------------------------------------------------ reports
    def residuals(self) -> np.ndarray:
        """(O,2) reprojection errors in pixels, fp64, without robust weighting."""
        return self._project(np.float64, False)[0]

    def reprojection_cost(self) -> float:
        """1/2 sum |r|^2 in fp64 without the robust loss (the report convention, = bal_cost of to_bal())."""
        r = self.residuals()
        return 0.5 * float(np.sum(r * r))
