"""Camera pose from 2-D/3-D matches: projection, robust pose-only Gauss-Newton, RANSAC PnP.

Poses here are T_cam_world (world-to-camera, OpenCV's rvec/tvec). The pose-only refinement uses
the perturbation of slam/solvers/ba.py: R <- Exp(w) R, t <- Exp(w) t + v, so dP/d[w, v] = [-P^, I].
"""

from __future__ import annotations

import cv2
import numpy as np

from slam.geometry.guard import affine_rank, attempt, finite_rows
from slam.geometry import lie


def project(T_cw: np.ndarray, X: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N,2) and depths (N,) of world points X (N,3) in camera T_cw."""
    P = X @ T_cw[:3, :3].T + T_cw[:3, 3]
    z = P[:, 2]
    zs = np.where(np.abs(z) > 1e-9, z, 1e-9)
    uv = np.stack([K[0, 0] * P[:, 0] / zs + K[0, 2], K[1, 1] * P[:, 1] / zs + K[1, 2]], axis=1)
    return uv, z


def _jacobian(P: np.ndarray, iz: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """(N,2,6) d(pixel)/d[w, v] of camera points P with inverse depths iz.

    Row k is [(P x a_k)^T, a_k^T] (a^T (-P^) = (P x a)^T) for the projection rows
    a_0 = (fx/z, 0, -fx x/z^2), a_1 = (0, fy/z, -fy y/z^2): np.cross's products and differences
    written out without its terms with a zero factor, so the values are the same to the bit (the
    sign of a zero aside) in about a third of the time (265 points: 36 -> 12-15 us; np.cross was
    a fifth of refine_pose's time under cProfile).
    """
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    a0, a2 = fx * iz, -fx * x * iz * iz
    b1, b2 = fy * iz, -fy * y * iz * iz
    J = np.zeros((len(P), 2, 6))
    J[:, 0, 0] = y * a2
    J[:, 0, 1] = z * a0 - x * a2
    J[:, 0, 2] = -(y * a0)
    J[:, 1, 0] = y * b2 - z * b1
    J[:, 1, 1] = -(x * b2)
    J[:, 1, 2] = x * b1
    J[:, 0, 3], J[:, 0, 5] = a0, a2
    J[:, 1, 4], J[:, 1, 5] = b1, b2
    return J


def _gauss_newton(T_cw: np.ndarray, X: np.ndarray, uv: np.ndarray, K: np.ndarray, huber: float,
                  iterations: int) -> np.ndarray:
    """Huber-weighted Gauss-Newton on the reprojection error of all given matches."""
    fx, fy = K[0, 0], K[1, 1]
    T = T_cw.copy()
    for _ in range(iterations):
        P = X @ T[:3, :3].T + T[:3, 3]
        z = np.maximum(P[:, 2], 1e-6)
        iz = 1.0 / z
        r = np.stack([fx * P[:, 0] * iz + K[0, 2], fy * P[:, 1] * iz + K[1, 2]], axis=1) - uv
        e = np.linalg.norm(r, axis=1)
        w = np.where(e <= huber, 1.0, huber / np.maximum(e, 1e-12))
        J = _jacobian(P, iz, fx, fy)
        Jw = J * w[:, None, None]
        H = np.einsum("nki,nkj->ij", Jw, J) + 1e-9 * np.eye(6)
        g = np.einsum("nki,nk->i", Jw, r)
        try:
            d = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        E = lie.so3_exp(d[:3])
        T[:3, :3] = E @ T[:3, :3]
        T[:3, 3] = E @ T[:3, 3] + d[3:]
        if np.linalg.norm(d) < 1e-6:  # ~1e-6 rad and um: far below pixel noise
            break
    return T


def refine_pose(T_cw: np.ndarray, X: np.ndarray, uv: np.ndarray, K: np.ndarray, threshold: float,
                rounds: int = 2, iterations: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Pose-only robust refinement (ORB-SLAM's PoseOptimization): (T_cw, inlier mask).

    Each round optimizes on the current inliers with a Huber loss at `threshold` pixels, then
    re-classifies every match by its reprojection error (points behind the camera are outliers).
    """
    finite = finite_rows(X, uv)
    inl = finite.copy()  # a match with a NaN coordinate is an outlier from the start
    T = T_cw.copy()
    if not np.isfinite(T).all():
        return T, np.zeros(len(X), bool)  # no starting pose, no estimate
    for _ in range(rounds):
        if inl.sum() < 4:
            break
        T_new = _gauss_newton(T, X[inl], uv[inl], K, threshold, iterations)
        if not np.isfinite(T_new).all():
            break  # cannot happen on finite matches; a guard so that NaN never reaches the map
        T = T_new
        proj, z = project(T, X, K)
        err = np.linalg.norm(proj - uv, axis=1)
        inl = (err < threshold) & (z > 0) & finite
    return lie.orthonormalize(T), inl


def pnp_ransac(X: np.ndarray, uv: np.ndarray, K: np.ndarray, threshold: float, iterations: int = 200,
               confidence: float = 0.999) -> tuple[np.ndarray, np.ndarray] | None:
    """RANSAC P3P pose (T_cw, inlier mask) from matches, None when it finds no consensus."""
    finite = finite_rows(X, uv)
    if not finite.all():  # matches with NaN coordinates take no part; the mask keeps the input's rows
        res = pnp_ransac(X[finite], uv[finite], K, threshold, iterations, confidence) if finite.any() else None
        if res is None:
            return None
        mask = np.zeros(len(X), bool)
        mask[np.flatnonzero(finite)[res[1]]] = True
        return res[0], mask
    # fewer than 6 matches, or points on one line (the pose can turn about it): no pose
    if len(X) < 6 or affine_rank(X) < 2 or affine_rank(uv) < 2:
        return None
    got = attempt(cv2.solvePnPRansac, np.ascontiguousarray(X, np.float64), np.ascontiguousarray(uv, np.float64),
                  K, None, iterationsCount=iterations, reprojectionError=threshold, confidence=confidence,
                  flags=cv2.SOLVEPNP_AP3P)
    if got is None:
        return None
    ok, rvec, tvec, inliers = got
    if not ok or inliers is None or len(inliers) < 6 or not (np.isfinite(rvec).all() and np.isfinite(tvec).all()):
        return None
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(rvec)[0]
    T[:3, 3] = tvec.ravel()
    mask = np.zeros(len(X), bool)
    mask[inliers.ravel()] = True
    return T, mask
