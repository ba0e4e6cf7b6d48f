"""Bringing an estimate onto ground truth: timestamp association and Umeyama SE(3)/Sim(3) alignment.

Both reproduce evo 1.38 (`evo.core.sync.matching_time_indices`, `evo.core.geometry.umeyama_alignment`,
`PosePath3D.align`) so that our metrics are computed on the same pairs with the same alignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slam.errors import ProblemError

ALIGN_METHODS = ("se3", "sim3", "none")


def _nearest(short: np.ndarray, long: np.ndarray, max_diff: float) -> tuple[np.ndarray, np.ndarray]:
    """For each stamp of `short`, the index of the closest stamp of `long` within max_diff (evo's rules)."""
    if short.size == 0 or long.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if not np.all(np.diff(long) >= 0):
        # evo's fallback for unsorted stamps: plain argmin (first index on ties), in chunks for memory.
        best = np.empty(short.size, dtype=np.int64)
        ok = np.empty(short.size, dtype=bool)
        step = max(1, 2_000_000 // long.size)
        for a in range(0, short.size, step):
            diffs = np.abs(long[None, :] - short[a:a + step, None])
            best[a:a + step] = np.argmin(diffs, axis=1)
            ok[a:a + step] = diffs[np.arange(diffs.shape[0]), best[a:a + step]] <= max_diff
        return np.flatnonzero(ok), best[ok]
    # Same float expressions as evo's binary search so that border cases fall the same way.
    in_range = ~((short < long[0] - max_diff) | (short > long[-1] + max_diff))
    upper = np.minimum(np.searchsorted(long, short, side="right"), long.size - 1)
    diff_ub = long[upper] - short
    diff_lb = np.full(short.size, np.inf)
    has_lower = upper > 0
    diff_lb[has_lower] = short[has_lower] - long[upper[has_lower] - 1]
    take_ub = (diff_ub <= max_diff) & (diff_ub < diff_lb)
    take_lb = ~take_ub & (diff_lb <= max_diff) & (diff_lb <= diff_ub)
    keep = in_range & (take_ub | take_lb)
    best = np.where(take_ub, upper, upper - 1)
    return np.flatnonzero(keep), best[keep].astype(np.int64)


def associate(t_1: np.ndarray, t_2: np.ndarray, max_diff: float = 0.02,
              offset_2: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i_1, i_2) of closest timestamps within max_diff, as evo's associate_trajectories.

    Starts from the trajectory with fewer poses (the second one on a tie), keeps its order, and may use
    a pose of the longer one more than once.
    """
    t_1 = np.asarray(t_1, dtype=np.float64)
    t_2 = np.asarray(t_2, dtype=np.float64)
    if max_diff < 0:
        raise ValueError(f"max_diff must be >= 0, got {max_diff}")
    second_longer = t_2.size > t_1.size
    if second_longer:
        i_short, i_long = _nearest(t_1, t_2 + offset_2, max_diff)
        return i_short, i_long
    i_short, i_long = _nearest(t_2, t_1 - offset_2, max_diff)
    return i_long, i_short


@dataclass(frozen=True, eq=False)
class Alignment:
    """x_ref ≈ scale · rotation · x_est + translation (a Sim(3); scale 1 for SE(3))."""

    rotation: np.ndarray
    translation: np.ndarray
    scale: float = 1.0

    @property
    def matrix(self) -> np.ndarray:
        """The 4x4 Sim(3) matrix [sR t; 0 1]."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = self.translation
        return m

    def apply(self, poses: np.ndarray) -> np.ndarray:
        """Move (N,4,4) poses: translation p -> sRp + t, rotation R_i -> R R_i (as evo's align)."""
        out = np.array(poses, dtype=np.float64, copy=True)
        out[:, :3, :3] = np.einsum("ij,njk->nik", self.rotation, poses[:, :3, :3])
        out[:, :3, 3] = (self.scale * poses[:, :3, 3]) @ self.rotation.T + self.translation
        return out


IDENTITY = Alignment(np.eye(3), np.zeros(3), 1.0)


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = False) -> Alignment:
    """Least-squares Sim(3) (or SE(3)) taking points src (N,3) onto dst (N,3) (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise ValueError(f"expected two (N,3) point sets of equal shape, got {src.shape} and {dst.shape}")
    n = src.shape[0]
    if n < 3:
        raise ProblemError(f"alignment needs at least 3 matched poses, got {n}")
    mean_src = src.mean(axis=0)
    mean_dst = dst.mean(axis=0)
    xs = src - mean_src
    ys = dst - mean_dst
    var_src = np.sum(xs * xs) / n
    cov = ys.T @ xs / n
    u, d, vt = np.linalg.svd(cov)
    # Points on one line (or one point) leave the rotation about that line undetermined.
    if not d[0] > 0 or d[1] <= 1e-12 * d[0]:
        raise ProblemError(f"alignment is degenerate: the {n} matched positions lie on a line "
                           f"(singular values of their covariance {d[0]:.3g}, {d[1]:.3g}, {d[2]:.3g})")
    s = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0.0:
        s[2] = -1.0  # keep a proper rotation (det +1), not a reflection
    rotation = (u * s) @ vt
    scale = float(np.sum(d * s) / var_src) if with_scale else 1.0
    translation = mean_dst - scale * rotation @ mean_src
    return Alignment(rotation, translation, scale)


def align(ref_positions: np.ndarray, est_positions: np.ndarray, method: str = "se3") -> Alignment:
    """Alignment of the estimate onto the reference: 'se3', 'sim3' (Umeyama) or 'none' (identity)."""
    if method == "none":
        return IDENTITY
    if method not in ALIGN_METHODS:
        raise ValueError(f"unknown alignment {method!r}; expected one of {', '.join(ALIGN_METHODS)}")
    return umeyama(est_positions, ref_positions, with_scale=method == "sim3")
