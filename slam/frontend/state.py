"""Tracker state shared by the tracking modules: the tracked features and per-frame results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from slam.geometry import lie


@dataclass
class FrameResult:
    """Outcome of one frame: a pose relative to a keyframe, or none (lost / not initialized)."""

    index: int
    timestamp: float
    status: str                      # tracking, keyframe, relocalized, init, pending, lost
    T_wc: np.ndarray | None = None   # pose at tracking time
    ref_kf: int = -1                 # keyframe the pose is stored relative to
    T_ref_cam: np.ndarray | None = None
    ref_scale: float = 1.0           # the keyframe's Map.keyframe_scale when T_ref_cam was measured
    segment: int = 0
    tracked: int = 0
    inliers: int = 0
    gt_pose: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        """True when the frame has a pose."""
        return self.T_ref_cam is not None


def inv(T: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform."""
    return lie.se3_inverse(T)


@dataclass
class Tracks:
    """The features followed from frame to frame: ids, pixels, world positions (NaN: none yet)."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    uv: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    anchor_kf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))    # first keyframe, -1: none
    anchor_uv: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))         # pixel in that keyframe
    flow: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))              # last motion (px), NaN: new
    xyz_kf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))       # keyframe whose frame a
    # provisional position (not yet in the map) was computed in; -1: from the map or none
    xyz_par: np.ndarray = field(default_factory=lambda: np.zeros(0))                 # its parallax (deg), 0: depth

    def keep(self, m: np.ndarray) -> None:
        """Keep the tracks where m is True."""
        self.ids, self.uv, self.xyz = self.ids[m], self.uv[m], self.xyz[m]
        self.anchor_kf, self.anchor_uv, self.flow = self.anchor_kf[m], self.anchor_uv[m], self.flow[m]
        self.xyz_kf, self.xyz_par = self.xyz_kf[m], self.xyz_par[m]

    def add(self, ids: np.ndarray, uv: np.ndarray, xyz: np.ndarray | None = None) -> None:
        """Append tracks (without an anchor keyframe yet)."""
        xyz = np.full((len(ids), 3), np.nan) if xyz is None else xyz
        self.ids = np.concatenate([self.ids, ids])
        self.uv = np.concatenate([self.uv, uv.astype(np.float32)])
        self.xyz = np.concatenate([self.xyz, xyz])
        self.anchor_kf = np.concatenate([self.anchor_kf, np.full(len(ids), -1, np.int64)])
        self.anchor_uv = np.concatenate([self.anchor_uv, np.full((len(ids), 2), np.nan)])
        self.flow = np.concatenate([self.flow, np.full((len(ids), 2), np.nan)])
        self.xyz_kf = np.concatenate([self.xyz_kf, np.full(len(ids), -1, np.int64)])
        self.xyz_par = np.concatenate([self.xyz_par, np.zeros(len(ids))])

    def renew(self, max_keyframes: int, next_kf: int, allocate_ids: Callable[[int], np.ndarray]) -> None:
        """Tracks anchored max_keyframes or more keyframes before next_kf continue under new ids, as if
        detected now: the old landmark keeps its observations so far, the new one starts from this
        keyframe's depth (FrontendConfig.max_track_keyframes says why)."""
        old = (self.anchor_kf >= 0) & (next_kf - self.anchor_kf >= max_keyframes)
        k = int(old.sum())
        if k:
            self.ids[old] = allocate_ids(k)
            self.anchor_kf[old], self.anchor_uv[old] = -1, np.nan
            self.xyz[old], self.xyz_kf[old], self.xyz_par[old] = np.nan, -1, 0.0

    def __len__(self) -> int:
        return len(self.ids)
