"""Bundle adjustment's inputs checked and converted (poses, masks) and its robust losses."""

from __future__ import annotations

from typing import Any

import numpy as np

from slam.errors import ProblemError
from slam.geometry import lie

LOSSES = ("none", "huber", "cauchy")


def robust_loss(name: str, s: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """rho(s) and rho'(s) on squared norms s: Ceres's HuberLoss / CauchyLoss with a = scale."""
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


def as_mask(m: np.ndarray | None, n: int, name: str) -> np.ndarray:
    """Boolean mask of length n from a mask or an index list."""
    if m is None:
        return np.zeros(n, bool)
    m = np.asarray(m)
    if m.dtype != bool and np.issubdtype(m.dtype, np.integer) and m.ndim == 1:
        if m.size and (m.min() < 0 or m.max() >= n):
            raise ProblemError(f"{name}: index out of range 0..{n - 1}")
        out = np.zeros(n, bool)
        out[m] = True
        return out
    if m.shape != (n,) or m.dtype != bool:
        raise ProblemError(f"{name} must be a boolean mask of shape ({n},) or a list of indices, "
                           f"got {m.dtype} {m.shape}")
    return m.copy()


def as_rotations_translations(poses: Any) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) from (C,4,4) T_cw or a pair (R as (C,3,3) or angle-axis (C,3), t (C,3))."""
    if isinstance(poses, tuple):
        if len(poses) != 2:
            raise ProblemError(f"poses as a tuple must be (R, t), got {len(poses)} items")
        R, t = (np.asarray(a, dtype=np.float64) for a in poses)
        if R.ndim == 2 and R.shape[1] == 3 and t.shape == R.shape:
            R = lie.so3_exp(R)
    else:
        T = np.asarray(poses, dtype=np.float64)
        if T.ndim != 3 or T.shape[1:] != (4, 4):
            raise ProblemError(f"poses must be (C, 4, 4) world-to-camera matrices or (R, t), got {T.shape}")
        R, t = T[:, :3, :3], T[:, :3, 3]
    if R.ndim != 3 or R.shape[1:] != (3, 3) or t.shape != (R.shape[0], 3):
        raise ProblemError(f"rotations must be (C, 3, 3) or (C, 3) and translations (C, 3); "
                           f"got {R.shape} and {t.shape}")
    return R.copy(), t.copy()
