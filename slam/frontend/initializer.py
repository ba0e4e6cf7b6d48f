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

from slam.geometry.guard import affine_rank, attempt, finite_rows
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
        with np.errstate(divide="ignore", invalid="ignore"):  # a point mapped to infinity scores 0
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


@dataclass
class Rejection:
    """Why two views did not initialize: a short reason (a key for counting) and its numbers."""

    reason: str   # too few matches, degenerate matches, no model, ambiguous motion, too few points,
    #               too little parallax, refinement failed
    detail: str


def two_view(a: np.ndarray, b: np.ndarray, K: np.ndarray, min_points: int = 60, min_parallax_deg: float = 1.0,
             sigma: float = 1.0) -> TwoView | None:
    """Initialize from matched pixels a (first view) and b (second view), or None if not possible."""
    res = try_two_view(a, b, K, min_points, min_parallax_deg, sigma)
    return res if isinstance(res, TwoView) else None


def try_two_view(a: np.ndarray, b: np.ndarray, K: np.ndarray, min_points: int = 60, min_parallax_deg: float = 1.0,
                 sigma: float = 1.0) -> TwoView | Rejection:
    """two_view, saying why when it refuses. Degenerate input (NaN, coincident or collinear pixels, a
    pure rotation) is refused, never an exception."""
    a = np.ascontiguousarray(a, np.float64)
    b = np.ascontiguousarray(b, np.float64)
    finite = finite_rows(a, b)
    if not finite.all():  # matches with NaN pixels take no part; points and mask keep the input's rows
        res = try_two_view(a[finite], b[finite], K, min_points, min_parallax_deg, sigma)
        if isinstance(res, TwoView):
            pts = np.full((len(a), 3), np.nan)
            pts[finite] = res.points
            good = np.zeros(len(a), bool)
            good[finite] = res.good
            res = TwoView(res.T_cur_ref, pts, good, res.model, res.score_ratio, res.parallax_deg)
        return res
    if len(a) < max(min_points, 8):
        return Rejection("too few matches", f"{len(a)} matches, {max(min_points, 8)} needed")
    if affine_rank(a) < 2 or affine_rank(b) < 2:
        return Rejection("degenerate matches", "the matched pixels are coincident or on one line")
    # OpenCV refusing the input (OpenCV 5's five-point solver on a pure rotation) counts as no model
    got_e = attempt(cv2.findEssentialMat, a, b, K, method=cv2.RANSAC, prob=0.999, threshold=sigma)
    got_h = attempt(cv2.findHomography, a, b, cv2.RANSAC, 2.0 * sigma)
    E, mask_e = got_e if got_e is not None else (None, None)
    H, mask_h = got_h if got_h is not None else (None, None)
    if E is None or H is None or E.shape[0] < 3 or mask_e is None or mask_h is None:
        return Rejection("no model", "RANSAC found no " + ("essential matrix" if E is None else "homography"))
    E = E[:3]
    if not (np.isfinite(E).all() and np.isfinite(H).all()) or abs(np.linalg.det(H)) < 1e-300:
        return Rejection("no model", "RANSAC returned a singular or non-finite model")
    Kinv = np.linalg.inv(K)
    F = Kinv.T @ E @ Kinv
    s_h, s_f = _h_score(H, a, b, sigma), _f_score(F, a, b, sigma)
    ratio = s_h / max(s_h + s_f, 1e-300)
    if ratio > 0.45:
        model = "homography"
        inl = mask_h.ravel().astype(bool)
        got = attempt(cv2.decomposeHomographyMat, H, K)
        hyps = [] if got is None else [(np.asarray(R), np.asarray(t).ravel()) for R, t in zip(got[1], got[2])]
    else:
        model = "essential"
        inl = mask_e.ravel().astype(bool)
        got = attempt(cv2.decomposeEssentialMat, E)
        hyps = [] if got is None else [(got[0], got[2].ravel()), (got[0], -got[2].ravel()),
                                       (got[1], got[2].ravel()), (got[1], -got[2].ravel())]
    hyps = [(R, t / max(np.linalg.norm(t), 1e-12)) for R, t in hyps if np.linalg.norm(t) > 1e-9]
    if not hyps:
        return Rejection("too little parallax", f"the {model} has no translation (a rotation in place)")
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
    if counts[best] < min_points:
        return Rejection("too few points", f"{counts[best]} points triangulated ({model}, {int(inl.sum())} "
                                           f"inliers of {len(a)} matches), {min_points} needed")
    if second > 0.7 * counts[best]:
        return Rejection("ambiguous motion", f"two {model} decompositions explain {counts[best]} and "
                                             f"{second} points")
    k = min(min_points, int(good.sum())) - 1
    if k < 0:
        return Rejection("too few points", f"no point triangulated ({model})")
    par_k = float(np.sort(par[good])[::-1][k])
    if par_k < min_parallax_deg or good.sum() < min_points:
        return Rejection("too little parallax", f"parallax {par_k:.2f} deg at the {k + 1}-th best point, "
                                                f"{min_parallax_deg:g} deg needed")
    T, X = _refine(Ts[best], X, good, a[inl], b[inl], K, sigma)
    scale = 1.0 / float(np.median(X[good, 2]))
    if not (np.isfinite(T).all() and np.isfinite(X[good]).all() and np.isfinite(scale) and scale > 0):
        return Rejection("refinement failed", "two-view bundle adjustment left non-finite or negative depths")
    T[:3, 3] *= scale
    pts = np.full((len(a), 3), np.nan)
    idx = np.flatnonzero(inl)[good]
    pts[idx] = X[good] * scale
    mask = np.zeros(len(a), bool)
    mask[idx] = True
    return TwoView(T, pts, mask, model, float(ratio), par_k)
