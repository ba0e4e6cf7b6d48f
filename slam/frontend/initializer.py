"""Monocular initialization from two views: homography or essential matrix, chosen by score.

As in ORB-SLAM (Mur-Artal et al. 2015, sec. IV): both models are fitted with RANSAC and scored by
their symmetric transfer (H) or epipolar (E) errors; the homography is chosen when
S_H / (S_H + S_E) > 0.45 (planar or low-parallax scenes), otherwise the essential matrix. Every
decomposition of the chosen model is triangulated and the one with clearly the most points in
front of both cameras wins; the initialization is refused when the choice is ambiguous, when too
few points are triangulated, or when their parallax is too small.

Scale: the first camera is the world origin and the map is scaled so that the median depth of the
initial points in the first camera is 1 (the unit of a monocular map).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from slam.geometry.triangulation import checked_triangulation
from slam.geometry import lie
from slam.solvers.ba import BundleAdjustmentProblem
from slam.solvers.lm import SolverOptions, solve

CHI2_1, CHI2_2 = 3.841, 5.991  # 95% chi-square bounds for 1 and 2 degrees of freedom


@dataclass
class TwoView:
    """An accepted initialization: second camera T_cur_ref, points in the first camera frame."""

    T_cur_ref: np.ndarray   # 4x4, X_cur = R X_ref + t, scaled
    points: np.ndarray      # (N,3) for every input match (NaN where not good)
    good: np.ndarray        # (N,) which matches became points
    model: str              # 'essential' or 'homography'
    score_ratio: float      # S_H / (S_H + S_E)
    parallax_deg: float     # parallax of the min_points-th best point


def _h_score(H: np.ndarray, a: np.ndarray, b: np.ndarray, sigma: float) -> float:
    Hinv = np.linalg.inv(H)

    def transfer(M: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = np.column_stack([x, np.ones(len(x))]) @ M.T
        return np.sum((p[:, :2] / p[:, 2:3] - y) ** 2, axis=1) / sigma ** 2

    s = 0.0
    for chi in (transfer(H, a, b), transfer(Hinv, b, a)):
        s += float(np.sum(np.where(chi < CHI2_2, CHI2_2 - chi, 0.0)))
    return s


def _f_score(F: np.ndarray, a: np.ndarray, b: np.ndarray, sigma: float) -> float:
    ah = np.column_stack([a, np.ones(len(a))])
    bh = np.column_stack([b, np.ones(len(b))])
    s = 0.0
    for M, x, y in ((F, ah, bh), (F.T, bh, ah)):
        line = x @ M.T
        num = np.einsum("ni,ni->n", y, line)
        chi = num ** 2 / (line[:, 0] ** 2 + line[:, 1] ** 2 + 1e-300) / sigma ** 2
        s += float(np.sum(np.where(chi < CHI2_1, CHI2_2 - chi, 0.0)))
    return s


def _refine(T: np.ndarray, X: np.ndarray, good: np.ndarray, a: np.ndarray, b: np.ndarray, K: np.ndarray,
            sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-view bundle adjustment of the RANSAC motion and the good points (first camera fixed).

    RANSAC returns the best minimal-sample model; refining it on every inlier is what makes the
    initial map as good as the matches allow. The scale direction is left to LM's damping.
    """
    n = int(good.sum())
    cam = np.repeat([0, 1], n)
    pt = np.tile(np.arange(n), 2)
    obs = np.concatenate([a[good], b[good]])
    prob = BundleAdjustmentProblem(np.stack([np.eye(4), T]), X[good], cam, pt, obs,
                                   [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], projection="pinhole", loss="huber",
                                   loss_scale=2.0 * sigma, fixed_cameras=np.array([True, False]))
    solve(prob, SolverOptions(precision="fp64", max_iterations=10))
    X_out = X.copy()
    X_out[good] = prob.points
    return prob.poses()[1], X_out


def two_view(a: np.ndarray, b: np.ndarray, K: np.ndarray, min_points: int = 60, min_parallax_deg: float = 1.0,
             sigma: float = 1.0) -> TwoView | None:
    """Initialize from matched pixels a (first view) and b (second view), or None if not possible."""
    if len(a) < max(min_points, 8):
        return None
    a = np.ascontiguousarray(a, np.float64)
    b = np.ascontiguousarray(b, np.float64)
    E, mask_e = cv2.findEssentialMat(a, b, K, method=cv2.RANSAC, prob=0.999, threshold=sigma)
    H, mask_h = cv2.findHomography(a, b, cv2.RANSAC, 2.0 * sigma)
    if E is None or H is None or E.shape[0] < 3:
        return None
    E = E[:3]
    Kinv = np.linalg.inv(K)
    F = Kinv.T @ E @ Kinv
    s_h, s_f = _h_score(H, a, b, sigma), _f_score(F, a, b, sigma)
    ratio = s_h / max(s_h + s_f, 1e-300)
    if ratio > 0.45:
        model = "homography"
        inl = mask_h.ravel().astype(bool)
        _, Rs, ts, _ = cv2.decomposeHomographyMat(H, K)
        hyps = [(np.asarray(R), np.asarray(t).ravel()) for R, t in zip(Rs, ts)]
    else:
        model = "essential"
        inl = mask_e.ravel().astype(bool)
        R1, R2, t = cv2.decomposeEssentialMat(E)
        t = t.ravel()
        hyps = [(R1, t), (R1, -t), (R2, t), (R2, -t)]
    hyps = [(R, t / max(np.linalg.norm(t), 1e-12)) for R, t in hyps if np.linalg.norm(t) > 1e-9]
    if not hyps:
        return None
    Ts = [lie.se3_from_Rt(R, t) for R, t in hyps]
    # ORB-SLAM's CheckRT: in front of both cameras, within 2 sigma (chi2 4 sigma^2), parallax above
    # 0.36 deg (cos < 0.99998)
    results = [checked_triangulation(np.eye(4), T, a[inl], b[inl], K, 2.0 * sigma, 0.36) for T in Ts]
    # rank by points in front with some parallax: for a plane the wrong decomposition also puts
    # most points in front, but farther away, so with less parallax
    counts = np.array([int(r[1].sum()) for r in results])
    best = int(np.argmax(counts))
    second = np.sort(counts)[-2] if len(counts) > 1 else 0
    X, good, par = results[best]
    if counts[best] < min_points or second > 0.7 * counts[best]:
        return None  # too few points, or two motions explain the matches about equally
    k = min(min_points, int(good.sum())) - 1
    if k < 0:
        return None
    par_k = float(np.sort(par[good])[::-1][k])
    if par_k < min_parallax_deg or good.sum() < min_points:
        return None
    T, X = _refine(Ts[best], X, good, a[inl], b[inl], K, sigma)
    scale = 1.0 / float(np.median(X[good, 2]))
    T[:3, 3] *= scale
    pts = np.full((len(a), 3), np.nan)
    idx = np.flatnonzero(inl)[good]
    pts[idx] = X[good] * scale
    mask = np.zeros(len(a), bool)
    mask[idx] = True
    return TwoView(T, pts, mask, model, float(ratio), par_k)
