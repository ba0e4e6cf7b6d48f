"""Registration of two 3-D point sets: Umeyama's closed form and a RANSAC Sim(3)/SE(3) on top of it.

API (stable):

    umeyama(src, dst, with_scale=True) -> (scale, R, t)
        least-squares dst ≈ scale · R · src + t (Umeyama 1991); src, dst (N,3), N >= 3.
    ransac_sim3(src, dst, threshold, with_scale=True, iterations=200, rng=None, min_inliers=3) -> (S, scale, inlier_mask) | None
        S the 4x4 similarity [sR t; 0 1] mapping src to dst; threshold a distance in dst units (a
        float or one per point (N,), e.g. growing with depth); None for degenerate input (fewer than
        3 finite pairs, collinear points, NaN/inf, no consensus).

Minimal sets are 3 pairs; all hypotheses are solved at once (batched SVD), scored by inlier count
then by the truncated error, and the winner is refined by Umeyama on its inliers until the set stops
changing.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def _proper(U: np.ndarray, Vt: np.ndarray) -> np.ndarray:
    """Diagonal sign matrix that makes U D Vt a rotation (det +1), batched over leading axes."""
    d = np.sign(np.linalg.det(U) * np.linalg.det(Vt))
    d = np.where(d == 0, 1.0, d)
    D = np.zeros(U.shape[:-2] + (3,))
    D[..., :2] = 1.0
    D[..., 2] = d
    return D


def _umeyama_batch(src: np.ndarray, dst: np.ndarray, with_scale: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Umeyama on a batch of point sets (H,n,3) each: scales (H,), rotations (H,3,3), translations (H,3)."""
    mu_s = src.mean(axis=-2)
    mu_d = dst.mean(axis=-2)
    xs = src - mu_s[..., None, :]
    xd = dst - mu_d[..., None, :]
    n = src.shape[-2]
    cov = np.einsum("...ni,...nj->...ij", xd, xs) / n
    U, sig, Vt = np.linalg.svd(cov)
    D = _proper(U, Vt)
    R = U @ (D[..., :, None] * Vt)
    if with_scale:
        var_s = np.einsum("...ni,...ni->...", xs, xs) / n
        s = np.einsum("...i,...i->...", sig, D) / np.maximum(var_s, _EPS)
    else:
        s = np.ones(src.shape[:-2])
    t = mu_d - s[..., None] * np.einsum("...ij,...j->...i", R, mu_s)
    return s, R, t


def _spread(p: np.ndarray) -> np.ndarray:
    """Singular values (..., 3) of centred point sets: the second one is ~0 for collinear points."""
    return np.linalg.svd(p - p.mean(axis=-2, keepdims=True), compute_uv=False)


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (scale, R, t) with dst ≈ scale R src + t (scale 1 when with_scale is False).

    The same estimate as slam.eval.align.umeyama (evo-compatible, raises on degenerate sets); this one is
    the batched kernel RANSAC needs and returns plain arrays.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise ValueError(f"umeyama needs two (N,3) arrays with N >= 3, got {src.shape} and {dst.shape}")
    s, R, t = _umeyama_batch(src, dst, with_scale)
    return float(s), R, t


def _as_threshold(threshold: float | np.ndarray, n: int) -> np.ndarray:
    th = np.broadcast_to(np.asarray(threshold, np.float64), (n,))
    return th


def ransac_sim3(src: np.ndarray, dst: np.ndarray, threshold: float | np.ndarray, with_scale: bool = True,
                iterations: int = 200, rng: np.random.Generator | None = None,
                min_inliers: int = 3) -> tuple[np.ndarray, float, np.ndarray] | None:
    """RANSAC similarity (SE(3) when with_scale is False) from 3-point sets: (S 4x4, scale, inliers) or None."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.ndim != 2 or src.shape[-1] != 3 or src.shape != dst.shape:
        return None
    n = len(src)
    th = _as_threshold(threshold, n)
    finite = np.isfinite(src).all(axis=1) & np.isfinite(dst).all(axis=1) & np.isfinite(th) & (th > 0)
    idx = np.flatnonzero(finite)
    if len(idx) < max(3, min_inliers):
        return None
    P, Q, T2 = src[idx], dst[idx], th[idx] ** 2
    sv_p, sv_q = _spread(P), _spread(Q)
    # Collinear (or coincident) points leave a rotation about their line free: no unique answer.
    if sv_p[1] <= 1e-9 * max(sv_p[0], _EPS) or sv_q[1] <= 1e-9 * max(sv_q[0], _EPS) or sv_p[0] < _EPS:
        return None
    rng = rng if rng is not None else np.random.default_rng(0)
    m = len(idx)
    # Three distinct indices per hypothesis: the first k columns of random permutations' keys.
    samples = np.argsort(rng.random((iterations, m)), axis=1)[:, :3] if m <= 256 else _triples(rng, m, iterations)
    Ps, Qs = P[samples], Q[samples]
    # Minimal sets that are nearly collinear give wild rotations: drop them before scoring.
    area_p = np.linalg.norm(np.cross(Ps[:, 1] - Ps[:, 0], Ps[:, 2] - Ps[:, 0]), axis=1)
    area_q = np.linalg.norm(np.cross(Qs[:, 1] - Qs[:, 0], Qs[:, 2] - Qs[:, 0]), axis=1)
    ok = (area_p > 1e-6 * sv_p[0] ** 2 / m) & (area_q > 1e-6 * sv_q[0] ** 2 / m)
    if not ok.any():
        return None
    s, R, t = _umeyama_batch(Ps[ok], Qs[ok], with_scale)
    good = np.isfinite(s) & (s > 0)
    s, R, t = s[good], R[good], t[good]
    if len(s) == 0:
        return None
    pred = s[:, None, None] * np.einsum("hij,nj->hni", R, P) + t[:, None, :]
    e2 = np.sum((pred - Q[None]) ** 2, axis=2)
    inl = e2 < T2[None]
    # MSAC score: inliers cost their error, outliers the threshold (ties in count broken by accuracy).
    cost = np.minimum(e2 / T2[None], 1.0).sum(axis=1)
    best = int(np.argmin(cost))
    mask = inl[best]
    if mask.sum() < max(3, min_inliers):
        return None
    for _ in range(5):
        if mask.sum() < 3 or (_spread(P[mask])[1] <= 1e-9 * _spread(P[mask])[0]):
            return None
        sb, Rb, tb = _umeyama_batch(P[mask], Q[mask], with_scale)
        pred = sb * P @ Rb.T + tb
        new = np.sum((pred - Q) ** 2, axis=1) < T2
        if np.array_equal(new, mask):
            break
        mask = new
    if mask.sum() < max(3, min_inliers) or not (np.isfinite(sb) and sb > 0):
        return None
    S = np.eye(4)
    S[:3, :3] = sb * Rb
    S[:3, 3] = tb
    full = np.zeros(n, bool)
    full[idx[mask]] = True
    return S, float(sb), full


def _triples(rng: np.random.Generator, m: int, h: int) -> np.ndarray:
    """h rows of 3 distinct indices in [0, m), without building (h, m) keys for large m."""
    a = rng.integers(0, m, size=(h, 3))
    # Redraw the few rows with a repeat; for m > 256 the expected number of redraws is tiny.
    for _ in range(20):
        bad = (a[:, 0] == a[:, 1]) | (a[:, 0] == a[:, 2]) | (a[:, 1] == a[:, 2])
        if not bad.any():
            break
        a[bad] = rng.integers(0, m, size=(int(bad.sum()), 3))
    return a
