"""Copies the map hands out: each taken in one locked query, owned by the caller afterwards."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MapSnapshot:
    """A consistent copy of the map for viewers and reports."""

    version: int
    keyframe_ids: np.ndarray        # (K,)
    keyframe_timestamps: np.ndarray  # (K,)
    keyframe_frames: np.ndarray     # (K,) source frame index of each keyframe
    keyframe_poses: np.ndarray      # (K, 4, 4) T_world_cam
    keyframe_segments: np.ndarray   # (K,)
    point_ids: np.ndarray           # (P,) alive landmarks
    points: np.ndarray              # (P, 3)
    n_observations: int
    keyframe_scales: np.ndarray | None = None  # (K,) Map.keyframe_scale of each keyframe


@dataclass
class ObservationRows:
    """Observations (one row each) copied out of the map's observation table."""

    rows: np.ndarray   # (O,) row ids, the handles reject_observations / apply_window_solve take
    kf: np.ndarray     # (O,) keyframe ids
    lm: np.ndarray     # (O,) landmark ids
    uv: np.ndarray     # (O,2) pixels
    ur: np.ndarray     # (O,) right-image u (stereo / virtual RGB-D), NaN for none

    def take(self, m: np.ndarray) -> "ObservationRows":
        """The rows selected by a mask or index array."""
        return ObservationRows(self.rows[m], self.kf[m], self.lm[m], self.uv[m], self.ur[m])

    @staticmethod
    def concat(parts: list["ObservationRows"]) -> "ObservationRows":
        """Rows of several parts, in order."""
        return ObservationRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("rows", "kf", "lm", "uv", "ur")))


@dataclass
class WindowView:
    """The newest keyframes, their observations and the older observers of their landmarks.

    Keyframes first_kf..n_keyframes-1 form the window; `older` holds the inlier observations of
    the window's landmarks by keyframes older_kf..first_kf-1 (candidates for fixed cameras).
    Per-keyframe arrays (poses, segments, segment_first) cover older_kf..n_keyframes-1, indexed by
    keyframe id - older_kf.
    """

    version: int
    n_keyframes: int
    first_kf: int
    older_kf: int
    poses: np.ndarray          # (N,4,4) T_world_cam
    segments: np.ndarray       # (N,) map segment of each keyframe
    segment_first: np.ndarray  # (N,) first keyframe id of that segment
    window: ObservationRows    # inlier observations of alive landmarks by the window's keyframes
    older: ObservationRows     # inlier observations of those landmarks by older keyframes
    point_ids: np.ndarray      # (P,) the window's alive landmarks, sorted
    points: np.ndarray         # (P,3) their world positions
    corrections: int = 0       # loop/global corrections so far (apply_window_solve refuses a stale solve)


@dataclass
class TrackingView:
    """What tracking refreshes when the map changed: landmark states and positions of its tracks,
    and every keyframe pose, all of one map version."""

    version: int
    ids: np.ndarray            # (M,) the landmark each asked id now stands for (fused ids resolved)
    states: np.ndarray         # (M,) NONE / ALIVE / CULLED
    positions: np.ndarray      # (M,3) world positions, NaN where not alive
    keyframe_poses: np.ndarray  # (K,4,4) T_world_cam by keyframe id
    keyframe_scales: np.ndarray | None = None  # (K,) depth scale of each keyframe (Map.keyframe_scale)
