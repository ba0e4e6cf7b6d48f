"""Bundle adjustment: SE(3) cameras, 3-D points, BAL or pinhole projection, robust losses.

Camera c maps a world point into its frame by P = R_c X + t_c (T_cw: world-to-camera, the BAL and
OpenCV convention; a map's T_wc poses are inverted before). Projections, residual r = u - observed:
  'bal':     p = -P.xy / P.z,  u = f (1 + k1 |p|^2 + k2 |p|^4) p      intrinsics [f, k1, k2]
  'pinhole': p =  P.xy / P.z,  u = [fx p_x + cx, fy p_y + cy]          intrinsics [fx, fy, cx, cy]
No point is dropped for lying behind a camera: BAL has a few with P.z > 0 in its own sign
convention and they still project onto their observations.

Retraction: left composition of T_cw with D = (Exp(dw), dt) on SO(3) x R^3 (equivalently the
right perturbation T_wc <- T_wc D^-1 of the project's T_wc convention):
R <- Exp(dw) R,  t <- Exp(dw) t + dt  (so P <- Exp(dw) P + dt),
X <- X + dX,  k <- k + dk.  Hence dP/d[dw, dt] = [-hat(P), I] and dP/dX = R: the camera Jacobian
depends on camera-frame coordinates only, not on how far away the world origin is.
Camera tangent: [dw (3), dt (3), dk (3 or 4, with optimize_intrinsics)]; then 3 per free point.

Robust loss rho(s) on s = |r|^2 per observation, cost 1/2 sum rho(s). Linearized by IRLS: rows and
residual scaled by sqrt(rho'(s)), without the Triggs second-order correction, so the gradient is
exact (rho' J^T r) and the Gauss-Newton matrix stays positive semidefinite.

Precision: state inputs and residuals are rounded to the stage dtype (as pgo.py does); an fp16
Jacobian is returned in power-of-two column units (max column norm < 1, exact in binary) so that
no entry overflows fp16 before lm.py's Jacobi scaling, and retract converts back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from slam.errors import ProblemError
from slam.geometry import lie
from slam.io.bal import BALProblem
from slam.solvers.backend import Backend
from slam.solvers.ba_inputs import LOSSES, as_mask, as_rotations_translations, robust_loss
from slam.solvers.ba_precond import (SchurPreconditioner, SchurStructure, observation_aggregators, observation_blocks,
                                     schur_structure)
from slam.solvers.ba_rescue import refit_worsened_points
from slam.solvers.lm import SolverOptions
from slam.solvers.pgo import _round
from slam.solvers.precision import PrecisionPolicy
from slam.solvers.precond import BlockJacobi, block_diagonal

PROJECTIONS = {"bal": 3, "pinhole": 4}  # convention -> number of intrinsics
# Tangent of a point: 'xyz' moves X directly; 'inverse_depth' moves (bearing, 1/distance) seen from
# the point's anchor camera centre c: X = c + b / rho with |b| = 1, perturbed as
# X(d) = c + (b + d1 e1 + d2 e2) / (rho + d3) (e1, e2 orthonormal to b). A far point drifting
# outward along its ray is a nearly linear move of rho towards 0, which Gauss-Newton takes in one
# step, where in xyz the projection's 1/depth curvature holds LM to a slow tail.
POINT_CHARTS = ("xyz", "inverse_depth")
def default_options(precision: str | PrecisionPolicy = "mixed", **overrides: Any) -> SolverOptions:
    """SolverOptions for BA: the engine's defaults, with CG capped at 100 iterations, one refinement
    round and the rescue of rejected steps (ba_rescue.py).

    With the Schur preconditioner CG needs 1-10 iterations per step; needing 100 means fp16
    products cannot resolve the system further (small LM damping in mixed/fp16), and more
    iterations only cost time. CG stops on the model decrease (the class's cg_model_tol).
    """
    overrides.setdefault("cg_max_iterations", 100)
    # One round of mixed-precision refinement of each fp16 CG step (lm._refine): on dubrovnik-3-7 in
    # inverse depth, 'mixed' otherwise crawls at 5% per LM step and ends at 7.6e-3 after 100.
    overrides.setdefault("refine_steps", 1)
    # Re-fit the points a rejected step made worse before damping more: fewer LM iterations and
    # rejected steps on ladybug-49 in every precision (measurements in ba_rescue.py).
    overrides.setdefault("rescue_steps", True)
    return SolverOptions(precision=precision, **overrides)


def from_bal(bal: BALProblem, **kwargs: Any) -> "BundleAdjustmentProblem":
    """BundleAdjustmentProblem.from_bal (module-level, like pgo.from_pose_graph)."""
    return BundleAdjustmentProblem.from_bal(bal, **kwargs)


class BundleAdjustmentProblem:
    """A bundle-adjustment problem as a LeastSquaresProblem; R, t, intrinsics, points change in place.

    poses: (C,4,4) T_cw, or (R, t) with R (C,3,3) or angle-axis (C,3); intrinsics (C,k) or (k,)
    per `projection` (None: normalized coordinates); cam_idx, pt_idx (O,), observations (O,2) pixels;
    loss 'none' | 'huber' | 'cauchy' with loss_scale in pixels; fixed_cameras / fixed_points as
    boolean masks or index lists (fixed cameras keep their intrinsics too); schur: the
    preconditioner's S~ ('auto', 'exact', 'schur-jacobi', see ba_precond.py); schur_refresh: reuse
    the last S~ until CG needs this many more iterations than with a fresh one (0: form S every time).
    offsets: (O,3) per observation, the observing sensor's origin in its pose's frame, same
    orientation (a rig: a rectified stereo pair's right camera sits at (b, 0, 0) in the left one's).
    point_chart: 'xyz' or 'inverse_depth' (see POINT_CHARTS; from_bal uses inverse depth).
    """

    preconditioner = "jacobi"  # used when SolverOptions.preconditioner names it; 'auto' uses make_preconditioner
    # CG stops when its last iterations add < 1% of the model decrease (cgnr.py): with fp16 products
    # a residual test can stall short of its tolerance while the step is already as good as it gets.
    cg_model_tol = 1e-2
    # ... or when the next iteration would add less than 1e-4 of it (r.z / 2, cgnr.py; only with the
    # exact Schur preconditioner, whose near_inverse lm.py checks): CG converges in 1-2 iterations
    # with it, and with fp16 products the window above would cost 4 (the recursive residual falls
    # on while the true one sits at fp16's floor).
    cg_lookahead_tol = 1e-4
    # Stop CG when its recursive model decrease passes 1/2||c||^2, which no step can gain: fp16
    # products near dubrovnik-3-7's zero-residual optimum break the recurrence, and CG ran to its
    # 100-iteration cap five times there with decreases of 40-300 times that bound.
    cg_bound_decrease = True

    def __init__(self, poses: np.ndarray | tuple[np.ndarray, np.ndarray], points: np.ndarray,
                 cam_idx: np.ndarray, pt_idx: np.ndarray, observations: np.ndarray,
                 intrinsics: np.ndarray | None = None, *, projection: str = "bal",
                 optimize_intrinsics: bool = False, loss: str = "none", loss_scale: float = 1.0,
                 fixed_cameras: np.ndarray | None = None, fixed_points: np.ndarray | None = None,
                 schur: str = "auto", schur_refresh: int = 4, offsets: np.ndarray | None = None,
                 point_chart: str = "xyz") -> None:
        if projection not in PROJECTIONS:
            raise ValueError(f"unknown projection '{projection}'; choose bal or pinhole")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss '{loss}'; choose one of {', '.join(LOSSES)}")
        if loss != "none" and not (np.isfinite(loss_scale) and loss_scale > 0):
            raise ProblemError(f"loss_scale must be a positive number of pixels, got {loss_scale}")
        if point_chart not in POINT_CHARTS:
            raise ValueError(f"unknown point_chart '{point_chart}'; choose one of {', '.join(POINT_CHARTS)}")
        if schur not in ("auto", "exact", "schur-jacobi"):
            raise ValueError(f"unknown schur '{schur}'; choose auto, exact or schur-jacobi")
        self.projection, self.loss, self.loss_scale, self.schur = projection, loss, float(loss_scale), schur
        self.R, self.t = as_rotations_translations(poses)
        C = self.R.shape[0]
        nk = PROJECTIONS[projection]
        if intrinsics is None:  # normalized image coordinates
            intrinsics = [1.0, 0.0, 0.0] if projection == "bal" else [1.0, 1.0, 0.0, 0.0]
        k = np.asarray(intrinsics, dtype=np.float64)
        k = np.tile(k, (C, 1)) if k.shape == (nk,) else k
        if k.shape != (C, nk):
            names = "[f, k1, k2]" if projection == "bal" else "[fx, fy, cx, cy]"
            raise ProblemError(f"intrinsics must be ({C}, {nk}) or ({nk},) {names} for '{projection}', got {k.shape}")
        self.intrinsics = k.copy()
        self.points = np.array(points, dtype=np.float64)
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ProblemError(f"points must be (P, 3), got {self.points.shape}")
        P = self.points.shape[0]
        self.cam_idx = np.asarray(cam_idx).astype(np.int64).ravel()
        self.pt_idx = np.asarray(pt_idx).astype(np.int64).ravel()
        self.obs = np.array(observations, dtype=np.float64)
        O = self.cam_idx.size
        if O == 0 or C == 0 or P == 0:
            raise ProblemError(f"empty problem ({C} cameras, {P} points, {O} observations): nothing to optimize")
        if self.pt_idx.size != O or self.obs.shape != (O, 2):
            raise ProblemError(f"cam_idx, pt_idx and observations must be (O,), (O,), (O, 2) with O = {O}; "
                               f"got {self.pt_idx.shape} and {self.obs.shape}")
        for name, idx, n in (("cam_idx", self.cam_idx, C), ("pt_idx", self.pt_idx, P)):
            bad = np.flatnonzero((idx < 0) | (idx >= n))
            if bad.size:
                raise ProblemError(f"observation {bad[0]}: {name} {idx[bad[0]]} is out of range 0..{n - 1}")
        for name, a in (("rotations", self.R), ("translations", self.t), ("intrinsics", self.intrinsics),
                        ("points", self.points), ("observations", self.obs)):
            if not np.all(np.isfinite(a)):
                raise ProblemError(f"{name} contain NaN or Inf")
        orth = np.abs(np.matmul(self.R, self.R.transpose(0, 2, 1)) - np.eye(3)).max(axis=(1, 2))
        if np.any(orth > 1e-6) or np.any(np.linalg.det(self.R) < 0):
            c = int(np.flatnonzero((orth > 1e-6) | (np.linalg.det(self.R) < 0))[0])
            raise ProblemError(f"camera {c}: the rotation is not a rotation matrix (|R R^T - I| = {orth[c]:.2g})")
        self.offsets = None
        if offsets is not None:
            self.offsets = np.array(offsets, dtype=np.float64)
            if self.offsets.shape != (O, 3) or not np.all(np.isfinite(self.offsets)):
                raise ProblemError(f"offsets must be finite and (O, 3) with O = {O}, got {self.offsets.shape}")
        self.fixed_cameras = as_mask(fixed_cameras, C, "fixed_cameras")
        self.fixed_points = as_mask(fixed_points, P, "fixed_points")
        self.optimize_intrinsics = bool(optimize_intrinsics)
        self.cam_dim = 6 + (nk if optimize_intrinsics else 0)
        n_cf, n_pf = int((~self.fixed_cameras).sum()), int((~self.fixed_points).sum())
        self.cam_col = np.full(C, -1, np.int64)
        self.cam_col[~self.fixed_cameras] = np.arange(n_cf)
        self.pt_col = np.full(P, -1, np.int64)
        self.pt_col[~self.fixed_points] = np.arange(n_pf)
        self.n_cam_params = n_cf * self.cam_dim
        self.n_params = self.n_cam_params + 3 * n_pf
        if self.n_params == 0:
            raise ProblemError("every camera and every point is fixed: nothing to optimize")
        self.groups = [(0, n_cf, self.cam_dim), (self.n_cam_params, n_pf, 3)]
        self._build_pattern()
        self._units: np.ndarray | None = None  # column units of the last fp16 Jacobian
        self._aggregate: tuple[sp.csr_matrix, sp.csr_matrix] | None = None  # observation -> camera / point sums
        self._lin_obs_cost: np.ndarray | None = None  # rho per observation at the last linearization
        self._schur: SchurStructure | None = None
        self._precond_base: tuple[sp.csr_matrix, tuple, dict] | None = None
        self._last_precond: SchurPreconditioner | None = None
        self._fresh_its = 0
        self.schur_refresh = schur_refresh
        self.point_chart = point_chart
        # Inverse-depth chart: each point is seen from an anchor, the centre of the first camera
        # that observes it, as it is when the problem is built (fixed, so the point's columns
        # stay its own and the Schur structure is unchanged).
        first = np.full(P, O, np.int64)
        np.minimum.at(first, self.pt_idx, np.arange(O))
        anchor_cam = self.cam_idx[np.minimum(first, O - 1)]
        self._anchor = -np.einsum("cji,cj->ci", self.R[anchor_cam], self.t[anchor_cam])  # camera centre -R^T t

    @classmethod
    def from_bal(cls, bal: BALProblem, **kwargs: Any) -> "BundleAdjustmentProblem":
        """Problem in the BAL convention from a BALProblem; f, k1, k2 are unknowns unless optimize_intrinsics=False."""
        cam = bal.cameras
        kwargs.setdefault("optimize_intrinsics", True)  # as in BAL's definition and Ceres's BAL example
        kwargs.setdefault("point_chart", "inverse_depth")
        return cls((cam[:, :3], cam[:, 3:6]), bal.points, bal.cam_idx, bal.pt_idx, bal.observations,
                   cam[:, 6:9], projection="bal", **kwargs)

    def to_bal(self) -> BALProblem:
        """The current estimate as a BALProblem (bal projection only)."""
        if self.projection != "bal":
            raise ValueError("to_bal needs the 'bal' projection convention")
        cams = np.concatenate([lie.so3_log(self.R), self.t, self.intrinsics], axis=1)
        return BALProblem(cams, self.points.copy(), self.cam_idx.copy(), self.pt_idx.copy(), self.obs.copy())

    def poses(self) -> np.ndarray:
        """(C,4,4) world-to-camera poses T_cw at the current estimate."""
        return lie.se3_from_Rt(self.R, self.t)

    def _build_pattern(self) -> None:
        """CSR index arrays of J (2 rows per observation: camera columns, then point columns), fixed once."""
        d, O = self.cam_dim, self.cam_idx.size
        cc, pc = self.cam_col[self.cam_idx], self.pt_col[self.pt_idx]
        cols = np.concatenate([cc[:, None] * d + np.arange(d), self.n_cam_params + pc[:, None] * 3 + np.arange(3)], 1)
        keep = np.concatenate([np.repeat(cc[:, None] >= 0, d, 1), np.repeat(pc[:, None] >= 0, 3, 1)], 1)
        keep = np.broadcast_to(keep[:, None, :], (O, 2, d + 3)).reshape(-1)
        self._keep = None if keep.all() else keep
        self._keep_mask = keep
        self._indices = np.broadcast_to(cols[:, None, :], (O, 2, d + 3)).reshape(-1)[keep].astype(np.int32)
        self._indptr = np.concatenate([[0], np.cumsum(keep.reshape(O * 2, d + 3).sum(axis=1))]).astype(np.int32)
        self._shape = (2 * O, self.n_params)

    def block_diagonal(self, J: sp.csr_matrix) -> list[np.ndarray]:
        """Diagonal blocks of J^T J, cameras (n_cf, d, d) then points (n_pf, 3, 3), for J in this problem's pattern.

        Equal to precond.block_diagonal(J, self.groups) (a test checks it); J in this problem's own
        pattern is summed per observation (ba_precond.observation_blocks), any other the generic way.
        """
        if J.shape != self._shape or J.nnz != self._indices.size or not (
                J.indices is self._indices or np.array_equal(J.indices, self._indices)):
            return block_diagonal(J, self.groups)  # another pattern: the generic route
        if self._aggregate is None:
            self._aggregate = observation_aggregators(self.cam_col[self.cam_idx], self.groups[0][1],
                                                      self.pt_col[self.pt_idx], self.groups[1][1])
        full = np.zeros(self._keep_mask.size)
        full[self._keep_mask] = J.data
        return observation_blocks(full.reshape(self.cam_idx.size, 2, self.cam_dim + 3), self._aggregate,
                                  self.cam_dim)

    # ------------------------------------------------------------------------------ model
    def _project(self, dtype: np.dtype, jacobian: bool, chart: str | None = None,
                 sel: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Residuals (O,2) from the state rounded to dtype and, with jacobian, dr/d[cam, point] (O,2,cam_dim+3).

        Point columns in `chart` (default: the problem's point_chart); `sel`: only these
        observations (indices). A state that overflows the dtype (fp16: a point beyond 65504) or a
        point on a camera plane gives non-finite residuals without a warning: LM rejects the step
        that led there.
        """
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._project_unchecked(dtype, jacobian, chart or self.point_chart, sel)

    def _project_unchecked(self, dtype: np.dtype, jacobian: bool, chart: str,
                           sel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """_project without the floating-point error state.

        Computed on columns: every quantity is a contiguous (O,) vector (rows of (k, O) arrays),
        assembled into the (O, 2, d + 3) Jacobian once at the end. Batched 2x3 @ 3x3 products and
        writes into strided (O, 2, 3) slices cost 5x more per entry (NumPy's short inner loops).
        """
        ci, pi = (self.cam_idx, self.pt_idx) if sel is None else (self.cam_idx[sel], self.pt_idx[sel])
        obs = self.obs if sel is None else self.obs[sel]
        R = np.take(_round(self.R, dtype).reshape(-1, 9).T, ci, axis=1)   # row 3a + b: R[a, b]
        t = np.take(_round(self.t, dtype).T, ci, axis=1)
        k = np.take(_round(self.intrinsics, dtype).T, ci, axis=1)
        X = np.take(_round(self.points, dtype).T, pi, axis=1)
        Pb = [R[3 * a] * X[0] + R[3 * a + 1] * X[1] + R[3 * a + 2] * X[2] + t[a] for a in range(3)]
        P = Pb
        if self.offsets is not None:  # in the observing sensor
            off = _round(self.offsets if sel is None else self.offsets[sel], dtype)
            P = [Pb[a] - off[:, a] for a in range(3)]
        z = P[2]
        bal = self.projection == "bal"
        s = -1.0 if bal else 1.0
        px, py = s * P[0] / z, s * P[1] / z
        if bal:
            f, k1, k2 = k[0], k[1], k[2]
            r2 = px * px + py * py
            dist = 1.0 + k1 * r2 + k2 * r2 * r2
            u = np.stack([f * dist * px, f * dist * py], axis=1)
        else:
            u = np.stack([k[0] * px + k[2], k[1] * py + k[3]], axis=1)
        r = _round(u - _round(obs, dtype), dtype)
        if not jacobian:
            return r, None
        zero = np.zeros_like(z)
        # A[i][j] = dr_i/dP_j (= dr/dt); dp/dP = (1/z) [[s, 0, -p_x], [0, s, -p_y]]
        if bal:
            # du/dp = f dist I + 2 f (k1 + 2 k2 r2) p p^T, and p^T dp/dP = (1/z) [s p_x, s p_y, -r2]
            a, b = f * dist / z, 2.0 * f * (k1 + 2.0 * k2 * r2) / z
            A = []
            for i, q in enumerate((px, py)):
                bq = b * q
                row = [bq * s * px, bq * s * py, -bq * r2 - a * q]
                row[i] = row[i] + a * s
                A.append(row)
        else:
            A = [[k[0] / z, zero, -k[0] * px / z], [zero, k[1] / z, -k[1] * py / z]]
        Px, Py, Pz = Pb
        M = np.take(_round(self._chart()[3], dtype).reshape(-1, 9).T, pi, axis=1) \
            if chart == "inverse_depth" else None  # row 3j + c: dX_j / d(chart)_c
        cols = []
        for i, (a0, a1, a2) in enumerate(A):
            # Left perturbation: dP/ddw = -hat(P), so row a of dr/dP maps to (P x a)^T. The sensor
            # frame is the pose's frame shifted by the offset, so the rotation acts on the pose-frame Pb.
            row = [Py * a2 - Pz * a1, Pz * a0 - Px * a2, Px * a1 - Py * a0, a0, a1, a2]
            if self.optimize_intrinsics:
                q = (px, py)[i]
                if bal:
                    row += [dist * q, f * r2 * q, f * r2 * r2 * q]
                else:
                    row += [px, zero, 1.0 + zero, zero] if i == 0 else [zero, py, zero, 1.0 + zero]
            pt = [a0 * R[c] + a1 * R[3 + c] + a2 * R[6 + c] for c in range(3)]  # (A R)[i, c]
            if M is not None:
                pt = [pt[0] * M[c] + pt[1] * M[3 + c] + pt[2] * M[6 + c] for c in range(3)]
            cols += row + pt
        return r, np.stack(cols, axis=1).reshape(len(r), 2, self.cam_dim + 3)

    def _chart(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(b, e1, e2, dX/d(d1, d2, d3)) of every point in the inverse-depth chart, in fp64."""
        v = self.points - self._anchor
        dist = np.linalg.norm(v, axis=1)
        dist = np.where(dist > 0, dist, 1.0)  # a point on its anchor: any bearing will do
        b = v / dist[:, None]
        # e1: b x (the axis b is least aligned with), e2 = b x e1: an orthonormal frame for any b.
        axis = np.eye(3)[np.argmin(np.abs(b), axis=1)]
        e1 = np.cross(b, axis)
        e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
        e2 = np.cross(b, e1)
        M = np.stack([e1 * dist[:, None], e2 * dist[:, None], -b * (dist * dist)[:, None]], axis=2)
        return b, e1, e2, M

    def _weights(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-observation rho(|r|^2) and the IRLS row weight sqrt(rho') (None without a loss)."""
        rho, drho = robust_loss(self.loss, np.sum(r * r, axis=1), self.loss_scale)
        return rho, (None if self.loss == "none" else np.sqrt(drho))

    # ------------------------------------------------------------------------------ LeastSquaresProblem
    def cost(self, dtype: np.dtype = np.float64) -> float:
        """1/2 sum rho(|r|^2): state and residuals rounded to dtype, summed in fp64."""
        r, _ = self._project(dtype, False)
        return 0.5 * float(np.sum(self._weights(r)[0]))

    def linearize(self, residual_dtype: np.dtype, jacobian_dtype: np.dtype) -> tuple[sp.csr_matrix, np.ndarray]:
        """IRLS-weighted Jacobian (CSR in jacobian_dtype; fp16 as rounded fp32 in column units) and residual."""
        r, Jb = self._project(residual_dtype, True)
        rho, w = self._weights(r)
        self._lin_obs_cost = rho  # what rescue_step compares a step's points with
        if w is not None:
            Jb *= w[:, None, None]
            r = _round(r * w[:, None], residual_dtype)
        vals = Jb.reshape(-1) if self._keep is None else Jb.reshape(-1)[self._keep]
        jd = np.dtype(jacobian_dtype)
        self._units = None
        if jd == np.float16:
            norms = np.sqrt(np.bincount(self._indices, weights=vals * vals, minlength=self.n_params))
            self._units = np.ldexp(1.0, -np.frexp(np.where(norms > 0, norms, 1.0))[1])  # 2^-e <= 1/norm
            vals = vals * self._units[self._indices]
        vals = _round(vals, jd).astype(np.float32 if jd == np.float16 else jd, copy=False)
        J = sp.csr_matrix((vals, self._indices, self._indptr), shape=self._shape)
        return J, r.reshape(-1)

    def get_state(self) -> tuple[np.ndarray, ...]:
        """Copies of (R, t, intrinsics, points)."""
        return self.R.copy(), self.t.copy(), self.intrinsics.copy(), self.points.copy()

    def set_state(self, state: tuple[np.ndarray, ...]) -> None:
        """Restore an estimate from get_state."""
        self.R[...], self.t[...], self.intrinsics[...], self.points[...] = state

    def retract(self, dx: np.ndarray, dtype: np.dtype) -> None:
        """R <- Exp(dw) R, t <- Exp(dw) t + dt, k <- k + dk, X <- X + dX; operands in dtype (fp16: fp32 products)."""
        dx = np.asarray(dx, dtype=np.float64)
        if self._units is not None:
            dx = dx * self._units
        dtype = np.dtype(dtype)
        work = np.float32 if dtype == np.float16 else dtype

        def op(a: np.ndarray) -> np.ndarray:
            return _round(a, dtype).astype(work, copy=False)

        def back(a: np.ndarray) -> np.ndarray:
            return _round(np.asarray(a, np.float64), dtype)

        cams, pts = ~self.fixed_cameras, ~self.fixed_points
        d = dx[:self.n_cam_params].reshape(-1, self.cam_dim)
        with np.errstate(over="ignore", invalid="ignore"):  # fp16 overflow: inf state, inf cost, step rejected
            if d.size:
                E = op(lie.so3_exp(d[:, :3]))
                R = back(E @ op(self.R[cams]))
                # A rotation rounded to fp16 is no rotation (and its cost no BA cost): project back
                # onto SO(3), as pgo.py does for poses. fp32/fp64 products stay rotations to rounding.
                self.R[cams] = lie.nearest_rotation(R) if dtype == np.float16 else R
                self.t[cams] = back(np.matmul(E, op(self.t[cams])[:, :, None])[:, :, 0] + op(d[:, 3:6]))
                if self.optimize_intrinsics:
                    self.intrinsics[cams] = back(op(self.intrinsics[cams]) + op(d[:, 6:]))
            if pts.any():
                dp = dx[self.n_cam_params:].reshape(-1, 3)
                if self.point_chart == "inverse_depth":
                    b, e1, e2, _ = self._chart()
                    b, e1, e2 = b[pts], e1[pts], e2[pts]
                    v = self.points[pts] - self._anchor[pts]
                    rho = 1.0 / np.linalg.norm(v, axis=1)
                    # A step through rho = 0 passes through infinity to the far side of the anchor.
                    # Both projections are blind to the sign of P (p = +-P.xy / P.z), so the cost is
                    # continuous there: a point that fits best "beyond infinity" crosses over instead
                    # of crawling outward for ever (as in xyz) or being stopped at rho = 0.
                    rho_new = rho + dp[:, 2]
                    rho_new = np.where(rho_new == 0.0, 1e-300, rho_new)
                    bearing = b + dp[:, 0:1] * e1 + dp[:, 1:2] * e2
                    self.points[pts] = back(op(self._anchor[pts]) + op(bearing / rho_new[:, None]))
                else:
                    self.points[pts] = back(op(self.points[pts]) + op(dp))

    def _per_point(self, obs_cost: np.ndarray, sel: np.ndarray | None = None) -> np.ndarray:
        """Per point, 1/2 the sum of obs_cost over its observations (all, or those of `sel`); non-finite: inf."""
        pi = self.pt_idx if sel is None else self.pt_idx[sel]
        with np.errstate(invalid="ignore"):
            c = 0.5 * np.bincount(pi, weights=obs_cost, minlength=len(self.points))
        return np.where(np.isfinite(c), c, np.inf)

    def rescue_step(self, dtype: np.dtype, iterations: int = 2) -> bool:
        """Re-fit the points whose cost a rejected LM step raised to that step's cameras (ba_rescue.py)."""
        return refit_worsened_points(self, dtype, iterations)

    def make_preconditioner(self, J_scaled: sp.csr_matrix, lam: float, backend: Backend,
                            policy: PrecisionPolicy, J_matvec: sp.csr_matrix | None = None
                            ) -> SchurPreconditioner | BlockJacobi:
        """Schur-complement preconditioner of J_scaled^T J_scaled + lam I (ba_precond.py), called by lm.solve.

        J_matvec: J_scaled rounded to the matvec precision, when the caller has it (saves a rounding).
        """
        if backend.name != "numpy":  # the Schur preconditioner is host code: block Jacobi on the GPU
            return BlockJacobi(self.block_diagonal(J_scaled), self.groups, lam, backend, policy.vector)
        if self._schur is None:
            self._schur = schur_structure(self.cam_col[self.cam_idx], self.pt_col[self.pt_idx], self.cam_dim,
                                          self.groups[0][1], self.groups[1][1], self._keep_mask, self._indices,
                                          self._indptr)
        # LM retries a rejected step with more damping on the same Jacobian: reuse what lam does not touch.
        key = (np.dtype(policy.precond).name, np.dtype(policy.matvec).name)
        cached = self._precond_base
        base = cached[2] if cached is not None and cached[0] is J_scaled and cached[1] == key else None
        # Forming S is most of the cost, and the last S stays a good S~ while the Jacobian changes
        # little: reuse it until CG needs schur_refresh more iterations with it than with a fresh one.
        last = self._last_precond
        if last is not None and not last.lagged:
            self._fresh_its = last.applications
        lagged = last if (last is not None and self.schur_refresh > 0
                          and last.applications <= self._fresh_its + self.schur_refresh
                          and (last.dtype.name, last.vector_dtype.name) == (key[0], np.dtype(policy.vector).name)) \
            else None
        pre = SchurPreconditioner(self._schur, J_scaled, lam, backend, policy.precond, policy.vector, self.schur, base,
                                  policy.matvec, lagged, J_matvec)
        self._precond_base = (J_scaled, key, pre.base)
        self._last_precond = pre
        return pre

    # ------------------------------------------------------------------------------ reports
    def residuals(self) -> np.ndarray:
        """(O,2) reprojection errors in pixels, fp64, without robust weighting."""
        return self._project(np.float64, False)[0]

    def reprojection_cost(self) -> float:
        """1/2 sum |r|^2 in fp64 without the robust loss (the report convention; = bal_cost of to_bal())."""
        r = self.residuals()
        return 0.5 * float(np.sum(r * r))
