"""The pinhole camera as the pipeline uses it: the rig (K, image size, sensor mode, baseline) and
back-projection of pixels with depth. Sources deliver undistorted (rectified) pinhole images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Rig:
    """The camera as the pipeline uses it: pinhole K, mode, and the baseline of stereo residuals.

    For RGB-D the baseline is virtual (ORB-SLAM's bf): depth z becomes u_right = u - fx b / z so
    that stereo and RGB-D share one bundle-adjustment model.
    """

    K: np.ndarray
    width: int
    height: int
    mode: str
    baseline: float  # metres; 0 for mono

    @property
    def fx_baseline(self) -> float:
        """fx * baseline in pixel-metres."""
        return float(self.K[0, 0] * self.baseline)


def backproject(uv: np.ndarray, depth: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray) -> np.ndarray:
    """World points (N,3) of pixels with depth (z) seen from T_world_cam."""
    x = (uv[:, 0] - K[0, 2]) / K[0, 0]
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    pc = np.stack([x * depth, y * depth, depth], axis=1)
    return pc @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]
