"""Bundle adjustment of keyframes with stereo (or RGB-D virtual stereo) observations.

A stereo keyframe is a rig: the right camera of the rectified pair is the left one shifted by the
baseline b along its own x axis. The problem is one slam.solvers.ba.BundleAdjustmentProblem over
the left poses and the points, whose observations are the left measurements (u, v) followed by the
right ones (u_r, v) of the stereo features, the latter with the sensor offset (b, 0, 0): the right
camera's projection and its Jacobian with respect to the left pose come from the engine directly,
with no second set of cameras to keep rigid. A right observation carries the left row v again
(rectified), so v weighs sqrt(2) times u for stereo points: a documented simplification.
"""

from __future__ import annotations

import numpy as np

from slam.solvers.ba import BundleAdjustmentProblem


class StereoBundleAdjustment(BundleAdjustmentProblem):
    """BundleAdjustmentProblem over C keyframe poses (T_cw) and P points with mono and stereo observations."""

    def __init__(self, T_cw: np.ndarray, points: np.ndarray, cam: np.ndarray, pt: np.ndarray, uv: np.ndarray,
                 u_right: np.ndarray, K: np.ndarray, baseline: float, fixed_cameras: np.ndarray,
                 loss: str = "huber", loss_scale: float = 2.0) -> None:
        self.b = float(baseline)
        stereo = np.isfinite(u_right) if self.b > 0 else np.zeros(len(cam), bool)
        self.n_left, self.n_right = len(cam), int(stereo.sum())
        self._stereo = np.flatnonzero(stereo)
        offsets = np.zeros((self.n_left + self.n_right, 3))
        offsets[self.n_left:, 0] = self.b
        super().__init__(
            np.asarray(T_cw, np.float64), points, np.concatenate([cam, cam[stereo]]),
            np.concatenate([pt, pt[stereo]]),
            np.concatenate([uv, np.stack([u_right[stereo], uv[stereo, 1]], axis=1)]),
            np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]), projection="pinhole", loss=loss, loss_scale=loss_scale,
            fixed_cameras=np.asarray(fixed_cameras, bool), offsets=offsets)

    @property
    def T_cw(self) -> np.ndarray:
        """(C,4,4) current left camera poses (world-to-camera)."""
        return self.poses()

    def errors(self) -> tuple[np.ndarray, np.ndarray]:
        """Per observation: left reprojection error (px) and right one (NaN for mono), fp64."""
        r = np.linalg.norm(self.residuals(), axis=1)
        right = np.full(self.n_left, np.nan)
        right[self._stereo] = r[self.n_left:]
        return r[:self.n_left], right
