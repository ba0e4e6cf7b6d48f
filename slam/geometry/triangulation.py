"""Batched two-view triangulation with the checks a new landmark must pass."""

from __future__ import annotations

import numpy as np


def triangulate(T_cw_a: np.ndarray, T_cw_b: np.ndarray, uv_a: np.ndarray, uv_b: np.ndarray,
                K: np.ndarray) -> np.ndarray:
    """World points (N,3) by linear (DLT) triangulation; each point has its own pair of cameras.

    T_cw_a, T_cw_b: (N,4,4) or (4,4) world-to-camera poses; uv_a, uv_b: (N,2) pixels.
    Rows of the DLT system are in normalized coordinates, so the SVD is well scaled.
    """
    n = len(uv_a)
    Ta = np.broadcast_to(T_cw_a, (n, 4, 4))
    Tb = np.broadcast_to(T_cw_b, (n, 4, 4))
    xa = (uv_a - K[:2, 2]) / np.diag(K)[:2]
    xb = (uv_b - K[:2, 2]) / np.diag(K)[:2]
    A = np.empty((n, 4, 4))
    A[:, 0] = xa[:, 0:1] * Ta[:, 2] - Ta[:, 0]
    A[:, 1] = xa[:, 1:2] * Ta[:, 2] - Ta[:, 1]
    A[:, 2] = xb[:, 0:1] * Tb[:, 2] - Tb[:, 0]
    A[:, 3] = xb[:, 1:2] * Tb[:, 2] - Tb[:, 1]
    A /= np.linalg.norm(A, axis=2, keepdims=True) + 1e-300
    bad = ~np.isfinite(A).all(axis=(1, 2))  # a NaN pixel or pose: no point (SVD would raise)
    A[bad] = 0.0
    _, _, vt = np.linalg.svd(A)
    Xh = vt[:, -1]
    w = Xh[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        X = Xh[:, :3] / w[:, None]
    X[(np.abs(w) < 1e-12) | bad] = np.nan
    return X


def parallax_cos(X: np.ndarray, center_a: np.ndarray, center_b: np.ndarray) -> np.ndarray:
    """Cosine of the angle at each point between the rays to the two camera centres."""
    ra = X - center_a
    rb = X - center_b
    return np.einsum("ni,ni->n", ra, rb) / (np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1) + 1e-300)


def reprojection_error(T_cw: np.ndarray, X: np.ndarray, uv: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pixel error (N,), depth (N,)) of world points in cameras T_cw ((N,4,4) or (4,4))."""
    T = np.broadcast_to(T_cw, (len(X), 4, 4))
    P = np.einsum("nij,nj->ni", T[:, :3, :3], X) + T[:, :3, 3]
    z = P[:, 2]
    zs = np.where(np.abs(z) > 1e-12, z, 1e-12)
    u = K[0, 0] * P[:, 0] / zs + K[0, 2]
    v = K[1, 1] * P[:, 1] / zs + K[1, 2]
    return np.hypot(u - uv[:, 0], v - uv[:, 1]), z


def checked_triangulation(T_cw_a: np.ndarray, T_cw_b: np.ndarray, uv_a: np.ndarray, uv_b: np.ndarray,
                          K: np.ndarray, max_error: float,
                          min_parallax_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points (N,3), good (N,), parallax in degrees (N,)): DLT points in front of both cameras,
    reprojecting within max_error pixels in both, with at least min_parallax_deg between the rays."""
    X = triangulate(T_cw_a, T_cw_b, uv_a, uv_b, K)
    finite = np.isfinite(X).all(axis=1)
    X[~finite] = 0.0
    ea, za = reprojection_error(T_cw_a, X, uv_a, K)
    eb, zb = reprojection_error(T_cw_b, X, uv_b, K)
    Ta = np.broadcast_to(T_cw_a, (len(X), 4, 4))
    Tb = np.broadcast_to(T_cw_b, (len(X), 4, 4))
    ca = -np.einsum("nji,nj->ni", Ta[:, :3, :3], Ta[:, :3, 3])  # camera centres -R^T t
    cb = -np.einsum("nji,nj->ni", Tb[:, :3, :3], Tb[:, :3, 3])
    cos = parallax_cos(X, ca, cb)
    good = (finite & (za > 0) & (zb > 0) & (ea < max_error) & (eb < max_error)
            & (cos < np.cos(np.radians(min_parallax_deg))))
    return X, good, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
