"""Keyframe selection: enough parallax or too few tracked points, rate-limited, never while still."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slam.frontend.config import KeyframeConfig


@dataclass
class KeyframeDecision:
    """Why a frame is (or is not) a keyframe; kept for statistics."""

    make: bool
    reason: str
    parallax: float
    tracked_ratio: float


def median_parallax(ids_now: np.ndarray, uv_now: np.ndarray, ids_kf: np.ndarray, uv_kf: np.ndarray) -> tuple[float, int]:
    """(median pixel displacement, number of common tracks) between the last keyframe and now."""
    common, i_now, i_kf = np.intersect1d(ids_now, ids_kf, assume_unique=True, return_indices=True)
    if common.size == 0:
        return 0.0, 0
    return float(np.median(np.linalg.norm(uv_now[i_now] - uv_kf[i_kf], axis=1))), int(common.size)


class KeyframePolicy:
    """Decides per tracked frame whether it becomes a keyframe (sensor time, not wall time)."""

    def __init__(self, cfg: KeyframeConfig) -> None:
        self.cfg = cfg

    def decide(self, t: float, t_last: float, parallax: float, n_tracked_landmarks: int,
               tracked_ratio: float, force: bool = False, pending: int = 0) -> KeyframeDecision:
        """Keyframe when moving (parallax >= min_parallax) and either the parallax reached
        `parallax`, the last keyframe's landmarks are fading (ratio or count), or `force`;
        never sooner than 1 / max_rate_hz after the previous one.

        While the odometry worker has `max_pending` keyframes queued (it is busy with BA) only
        urgent keyframes are made (ORB-SLAM's rule): tracking never waits for BA, and the map
        tracking relies on stays at most a few keyframes behind."""
        c = self.cfg
        if parallax < c.min_parallax:
            return KeyframeDecision(False, "still", parallax, tracked_ratio)
        if not force and t - t_last < 1.0 / c.max_rate_hz - 1e-6:
            return KeyframeDecision(False, "rate", parallax, tracked_ratio)
        if force:
            return KeyframeDecision(True, "forced", parallax, tracked_ratio)
        urgent = n_tracked_landmarks < c.min_tracked // 2 or tracked_ratio < c.min_tracked_ratio / 2
        if c.max_pending > 0 and pending >= c.max_pending and not urgent:
            return KeyframeDecision(False, "busy", parallax, tracked_ratio)
        if parallax >= c.parallax:
            return KeyframeDecision(True, "parallax", parallax, tracked_ratio)
        if tracked_ratio < c.min_tracked_ratio:
            return KeyframeDecision(True, "tracked_ratio", parallax, tracked_ratio)
        if n_tracked_landmarks < c.min_tracked:
            return KeyframeDecision(True, "few_tracked", parallax, tracked_ratio)
        return KeyframeDecision(False, "enough", parallax, tracked_ratio)
