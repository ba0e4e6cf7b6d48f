"""Trajectory error metrics as evo 1.38 computes them: ATE (evo_ape -r trans_part) and RPE (evo_rpe).

Arrays in, numbers out. The estimate is aligned first (SE(3), Sim(3) or not at all); RPE is then
computed on the aligned estimate, which equals `evo_rpe --align [--correct_scale]` (an SE(3)
alignment leaves RPE unchanged; a Sim(3) one rescales its translations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slam.errors import ProblemError
from slam.eval.align import Alignment, align
from slam.geometry.quaternion import rot_to_quat

DELTA_UNITS = ("f", "m")


@dataclass(frozen=True)
class ErrorStats:
    """Summary of an error sequence (population std, as evo)."""

    rmse: float
    mean: float
    median: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, errors: np.ndarray) -> ErrorStats:
        """Statistics of a non-empty 1-D error array."""
        e = np.asarray(errors, dtype=np.float64)
        if e.size == 0:
            raise ValueError("no errors to summarize")
        return cls(rmse=math.sqrt(float(np.mean(e * e))), mean=float(np.mean(e)),
                   median=float(np.median(e)), std=float(np.std(e)),
                   min=float(np.min(e)), max=float(np.max(e)))

    def as_dict(self) -> dict[str, float]:
        """{'rmse': ..., 'mean': ..., 'median': ..., 'std': ..., 'min': ..., 'max': ...}."""
        return {"rmse": self.rmse, "mean": self.mean, "median": self.median,
                "std": self.std, "min": self.min, "max": self.max}


def ate_errors(ref_positions: np.ndarray, est_positions: np.ndarray) -> np.ndarray:
    """Per-pose absolute translation errors ‖p_est − p_ref‖ (N,) of already aligned positions."""
    return np.linalg.norm(np.asarray(est_positions) - np.asarray(ref_positions), axis=1)


def _inverse(poses: np.ndarray) -> np.ndarray:
    """Inverse of (N,4,4) rigid poses through the transpose (as evo's se3_inverse)."""
    inv = np.zeros_like(poses)
    rt = np.transpose(poses[:, :3, :3], (0, 2, 1))
    inv[:, :3, :3] = rt
    inv[:, :3, 3] = -np.einsum("nij,nj->ni", rt, poses[:, :3, 3])
    inv[:, 3, 3] = 1.0
    return inv


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a⁻¹ b for stacks of poses."""
    return _inverse(a) @ b


def rpe_pairs(poses: np.ndarray, delta: float = 1, unit: str = "f") -> np.ndarray:
    """(M,2) index pairs of consecutive poses `delta` frames ('f') or `delta` metres of path ('m') apart.

    Mirrors evo's filter_pairs_by_index / filter_pairs_by_path with all_pairs off: ids 0, δ, 2δ, ...
    for frames; for metres a new id whenever the path travelled since the last one reaches δ.
    """
    n = poses.shape[0]
    if unit == "f":
        if delta < 1 or float(delta) != int(delta):
            raise ProblemError(f"RPE delta in frames must be a positive integer, got {delta}")
        ids = np.arange(0, n, int(delta))
    elif unit == "m":
        if not delta > 0:
            raise ProblemError(f"RPE delta in metres must be positive, got {delta}")
        ids = _ids_by_path(poses[:, :3, 3], float(delta))
    else:
        raise ValueError(f"unknown delta unit {unit!r}; expected one of {', '.join(DELTA_UNITS)}")
    return np.column_stack([ids[:-1], ids[1:]]).astype(np.int64)


def _ids_by_path(positions: np.ndarray, delta: float) -> np.ndarray:
    """Indices where the path since the previous index first reaches delta (evo's running sum)."""
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    total = np.concatenate([[0.0], np.cumsum(steps)])
    ids = [0]
    start = 0
    n = positions.shape[0]
    while start < n - 1:
        # Window guessed from the global cumulative sum; the test itself uses a running sum restarted
        # at `start` (np.cumsum adds in order, like evo's loop), so the chosen ids are bit-identical.
        guess = int(np.searchsorted(total, total[start] + delta, side="left"))
        width = max(guess - start + 8, 16)
        while True:
            run = np.cumsum(steps[start:start + width])
            hit = np.flatnonzero(run >= delta)
            if hit.size or start + width >= n - 1:
                break
            width *= 2
        if not hit.size:
            break
        start = start + int(hit[0]) + 1
        ids.append(start)
    return np.asarray(ids, dtype=np.int64)


def rotation_angles(rotations: np.ndarray) -> np.ndarray:
    """Rotation angles in radians of (N,3,3) matrices, projected onto SO(3) first (as SciPy >= 1.17).

    Files hold rounded matrices (KITTI: 7 digits), off SO(3) by ~1e-7: the nearest rotation (polar
    factor U Vᵀ) is taken first, then the angle 2·atan2(‖v‖, |w|) of its quaternion, which is
    accurate for small angles, unlike arccos of the trace.
    """
    u, _, vt = np.linalg.svd(rotations.reshape(-1, 3, 3))
    q = rot_to_quat(u @ vt)
    return 2.0 * np.arctan2(np.linalg.norm(q[:, :3], axis=1), np.abs(q[:, 3]))


def rpe_errors(ref_poses: np.ndarray, est_poses: np.ndarray,
               pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relative pose errors over index pairs: (translation norms, rotation angles in degrees).

    E = (Q_i⁻¹ Q_j)⁻¹ (P_i⁻¹ P_j) with Q the reference and P the estimate (TUM RGB-D benchmark, evo).
    """
    i, j = pairs[:, 0], pairs[:, 1]
    q_rel = _relative(ref_poses[i], ref_poses[j])
    p_rel = _relative(est_poses[i], est_poses[j])
    e = _relative(q_rel, p_rel)
    return np.linalg.norm(e[:, :3, 3], axis=1), np.degrees(rotation_angles(e[:, :3, :3]))


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Result of comparing matched poses: alignment, ATE and RPE (with per-pose/per-pair errors)."""

    alignment: Alignment
    method: str
    est_aligned: np.ndarray
    ate: ErrorStats
    ate_errors: np.ndarray
    rpe_trans: ErrorStats
    rpe_rot_deg: ErrorStats
    rpe_pairs: np.ndarray
    rpe_trans_errors: np.ndarray
    rpe_rot_errors_deg: np.ndarray


def evaluate(ref_poses: np.ndarray, est_poses: np.ndarray, method: str = "se3",
             delta: float = 1, delta_unit: str = "f") -> Evaluation:
    """Align est onto ref (matched (N,4,4) poses, same order), then ATE and RPE as evo_ape/evo_rpe."""
    ref_poses = np.asarray(ref_poses, dtype=np.float64)
    est_poses = np.asarray(est_poses, dtype=np.float64)
    if ref_poses.shape != est_poses.shape or ref_poses.ndim != 3 or ref_poses.shape[1:] != (4, 4):
        raise ValueError(f"expected two (N,4,4) pose stacks of equal shape, got {ref_poses.shape} "
                         f"and {est_poses.shape}")
    if ref_poses.shape[0] < 2:
        raise ProblemError(f"need at least 2 matched poses to evaluate, got {ref_poses.shape[0]}")
    alignment = align(ref_poses[:, :3, 3], est_poses[:, :3, 3], method)
    est = alignment.apply(est_poses)
    ate = ate_errors(ref_poses[:, :3, 3], est[:, :3, 3])
    # evo picks RPE pairs on the (aligned) estimate unless asked to use the reference.
    pairs = rpe_pairs(est, delta, delta_unit)
    if pairs.shape[0] == 0:
        unit = "frames" if delta_unit == "f" else "m"
        raise ProblemError(f"RPE delta {delta} {unit} gives no pose pairs among {est.shape[0]} matched "
                           "poses; use a smaller delta")
    trans, rot = rpe_errors(ref_poses, est, pairs)
    return Evaluation(alignment=alignment, method=method, est_aligned=est, ate=ErrorStats.of(ate),
                      ate_errors=ate, rpe_trans=ErrorStats.of(trans), rpe_rot_deg=ErrorStats.of(rot),
                      rpe_pairs=pairs, rpe_trans_errors=trans, rpe_rot_errors_deg=rot)
