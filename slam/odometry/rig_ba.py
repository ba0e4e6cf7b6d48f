"""Bundle adjustment of keyframes with stereo (or RGB-D virtual stereo) observations.

slam.solvers.ba.BundleAdjustmentProblem has independent cameras; a stereo keyframe is a rig of two
(the right camera is the left one shifted by the baseline b along x in its own frame). This
problem wraps one BundleAdjustmentProblem holding 2C cameras, C left and C right, and exposes only
the left poses as unknowns. The right camera of keyframe c is T_r = B T_c with B = [I | -b e_x];
under ba.py's perturbation T <- E(dw, dt) T the right camera moves by
    dw_r = dw,   dt_r = dt - hat(b e_x) dw      (to first order),
so a right observation's Jacobian row [a_w, a_t] on the right camera becomes
[a_w + (b e_x) x a_t, a_t] on the left camera: the same sparsity pattern as a left observation of
that keyframe. A right observation is (u_r, v) with v the left row (rectified), so the row residual
is counted twice for stereo points: v weighs sqrt(2) times u, a documented simplification.
Retraction updates the left cameras and re-derives the right ones exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from slam.solvers.ba import BundleAdjustmentProblem


class StereoBundleAdjustment:
    """LeastSquaresProblem over C keyframe poses (T_cw) and P points with mono and stereo observations."""

    preconditioner = "jacobi"

    def __init__(self, T_cw: np.ndarray, points: np.ndarray, cam: np.ndarray, pt: np.ndarray, uv: np.ndarray,
                 u_right: np.ndarray, K: np.ndarray, baseline: float, fixed_cameras: np.ndarray,
                 loss: str = "huber", loss_scale: float = 2.0, schur: bool = True) -> None:
        C = len(T_cw)
        self.C, self.b = C, float(baseline)
        stereo = np.isfinite(u_right) if baseline > 0 else np.zeros(len(cam), bool)
        self.n_left, self.n_right = len(cam), int(stereo.sum())
        R, t = T_cw[:, :3, :3], T_cw[:, :3, 3]
        shift = np.array([self.b, 0.0, 0.0])
        obs_r = np.stack([u_right[stereo], uv[stereo, 1]], axis=1)
        intr = np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
        fixed = np.asarray(fixed_cameras, bool)
        self.inner = BundleAdjustmentProblem(
            (np.concatenate([R, R]), np.concatenate([t, t - shift])), points,
            np.concatenate([cam, C + cam[stereo]]), np.concatenate([pt, pt[stereo]]),
            np.concatenate([uv, obs_r]), intr, projection="pinhole", loss=loss, loss_scale=loss_scale,
            fixed_cameras=np.concatenate([fixed, fixed]))
        inner = self.inner
        self.n_free_cams = int((~fixed).sum())
        self.n_cam_params = 6 * self.n_free_cams
        self.n_points = inner.points.shape[0]
        self.n_params = self.n_cam_params + (inner.n_params - inner.n_cam_params)
        self.groups = [(0, self.n_free_cams, 6), (self.n_cam_params, (self.n_params - self.n_cam_params) // 3, 3)]
        self._stereo = np.flatnonzero(stereo)
        self.cg_model_tol = getattr(inner, "cg_model_tol", 0.0)
        self._pattern: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        # The dx of the inner problem: right camera increments from left ones (M of the docstring).
        rows, cols, vals = [], [], []
        nl = self.n_free_cams
        eye6 = np.arange(6)
        k = np.arange(nl)
        for base in (0, 6 * nl):  # identity onto the left block and onto the right block
            rows.append((base + 6 * k[:, None] + eye6).ravel())
            cols.append((6 * k[:, None] + eye6).ravel())
            vals.append(np.ones(6 * nl))
        # dt_r += -hat(b e_x) dw: -hat([b,0,0]) = [[0,0,0],[0,0,b],[0,-b,0]]
        rows += [6 * nl + 6 * k + 4, 6 * nl + 6 * k + 5]
        cols += [6 * k + 2, 6 * k + 1]
        vals += [np.full(nl, self.b), np.full(nl, -self.b)]
        n_pt = inner.n_params - inner.n_cam_params
        rows.append(inner.n_cam_params + np.arange(n_pt))
        cols.append(self.n_cam_params + np.arange(n_pt))
        vals.append(np.ones(n_pt))
        self._M = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                shape=(inner.n_params, self.n_params))
        self._twin = None
        if schur:
            self._twin = BundleAdjustmentProblem(
                (R, t), points, np.concatenate([cam, cam[stereo]]), np.concatenate([pt, pt[stereo]]),
                np.concatenate([uv, obs_r]), intr, projection="pinhole", fixed_cameras=fixed)

    # ------------------------------------------------------------------ structure
    def _rig_pattern(self, J: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(new column indices, entries of right rows in camera columns, their 6-blocks) of J's pattern."""
        inner = self.inner
        idx = J.indices.astype(np.int64)
        row = np.repeat(np.arange(J.shape[0]), np.diff(J.indptr))
        is_cam = idx < inner.n_cam_params
        nl = self.n_free_cams
        cam_free = idx // 6
        cam_left = np.where(cam_free >= nl, cam_free - nl, cam_free)
        new = np.where(is_cam, 6 * cam_left + idx % 6, idx - inner.n_cam_params + self.n_cam_params)
        right = is_cam & (row >= 2 * self.n_left)
        sel = np.flatnonzero(right)
        if sel.size % 6 or not np.all(np.diff(idx[sel].reshape(-1, 6), axis=1) == 1):
            raise RuntimeError("unexpected Jacobian layout of BundleAdjustmentProblem")
        return new.astype(np.int32), sel, sel.reshape(-1, 6)

    def _to_rig(self, J: sp.csr_matrix) -> sp.csr_matrix:
        """J of the inner problem (2C cameras) -> J over left cameras and points."""
        if not J.has_sorted_indices:
            J = J.sorted_indices()
        if self._pattern is None or len(self._pattern[0]) != J.nnz:
            self._pattern = self._rig_pattern(J)
        new_idx, _, blocks = self._pattern
        data = J.data.copy()
        if blocks.size:
            a = data[blocks].astype(np.float64)
            b = self.b
            # a_w += (b e_x) x a_t = (0, -b a_t,z, b a_t,y)
            a[:, 1] -= b * a[:, 5]
            a[:, 2] += b * a[:, 4]
            data[blocks] = a.astype(data.dtype)
        out = sp.csr_matrix((data, new_idx, J.indptr), shape=(J.shape[0], self.n_params))
        out.has_sorted_indices = True
        return out

    # ------------------------------------------------------------------ LeastSquaresProblem
    def cost(self, dtype: np.dtype = np.float64) -> float:
        """1/2 sum rho(|r|^2) over left and right observations."""
        return self.inner.cost(dtype)

    def linearize(self, residual_dtype: np.dtype, jacobian_dtype: np.dtype) -> tuple[sp.csr_matrix, np.ndarray]:
        """Jacobian over the left cameras and points, residual of every observation."""
        J, r = self.inner.linearize(residual_dtype, jacobian_dtype)
        return self._to_rig(J.tocsr()), r

    def get_state(self) -> Any:
        """A copy of the estimate."""
        return self.inner.get_state()

    def set_state(self, state: Any) -> None:
        """Restore an estimate from get_state."""
        self.inner.set_state(state)

    def retract(self, dx: np.ndarray, dtype: np.dtype) -> None:
        """Update left cameras and points; right cameras follow exactly."""
        self.inner.retract(self._M @ np.asarray(dx, np.float64), dtype)
        C = self.C
        self.inner.R[C:] = self.inner.R[:C]
        self.inner.t[C:] = self.inner.t[:C] - np.array([self.b, 0.0, 0.0])

    def make_preconditioner(self, J_scaled: sp.csr_matrix, lam: float, backend: Any, policy: Any) -> Any:
        """The engine's BA (Schur) preconditioner of a left-camera twin with the same sparsity."""
        if self._twin is None:
            from slam.solvers.lm import _make_preconditioner  # block Jacobi from groups
            return _make_preconditioner("jacobi", self, J_scaled, lam, backend, policy)
        return self._twin.make_preconditioner(J_scaled, lam, backend, policy)

    # ------------------------------------------------------------------ results
    @property
    def T_cw(self) -> np.ndarray:
        """(C,4,4) current left camera poses (world-to-camera)."""
        T = np.tile(np.eye(4), (self.C, 1, 1))
        T[:, :3, :3] = self.inner.R[:self.C]
        T[:, :3, 3] = self.inner.t[:self.C]
        return T

    @property
    def points(self) -> np.ndarray:
        """(P,3) current points."""
        return self.inner.points

    def errors(self) -> tuple[np.ndarray, np.ndarray]:
        """Per observation: left reprojection error (px) and right one (NaN for mono), fp64."""
        r = np.linalg.norm(self.inner.residuals(), axis=1)
        right = np.full(self.n_left, np.nan)
        right[self._stereo] = r[self.n_left:]
        return r[:self.n_left], right
