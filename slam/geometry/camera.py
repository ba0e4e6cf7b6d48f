"""Lens models (pinhole, radial-tangential, equidistant): undistortion and stereo rectification maps.

Cameras are passed as plain arrays (K 3x3, D coefficients, model name, image size (w, h)) so that
this core module does not depend on the sources layer. Maps are float32 (x, y) pixel lookups for
cv2.remap: output pixel (u, v) samples the raw image at (map_x[v, u], map_y[v, u]).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MODELS = ("none", "radtan", "equidistant")


def _check_model(model: str, D: np.ndarray) -> np.ndarray:
    """Validated distortion vector in the shape OpenCV expects for `model`."""
    if model not in MODELS:
        raise ValueError(f"unknown distortion model '{model}'; expected one of {', '.join(MODELS)}")
    D = np.asarray(D, dtype=np.float64).ravel()
    if model == "equidistant":
        if D.size != 4:
            raise ValueError(f"equidistant distortion needs 4 coefficients k1..k4, got {D.size}")
        return D.reshape(4, 1)
    if model == "radtan" and D.size not in (4, 5, 8):
        raise ValueError(f"radtan distortion needs 4, 5 or 8 coefficients (k1 k2 p1 p2 [k3...]), got {D.size}")
    return D if D.size else np.zeros(4)


def new_camera_matrix(K: np.ndarray, D: np.ndarray, model: str, size: tuple[int, int],
                      alpha: float = 0.0) -> np.ndarray:
    """Pinhole K of the undistorted image; alpha 0 keeps only valid pixels, 1 keeps every raw pixel."""
    K = np.asarray(K, dtype=np.float64)
    D = _check_model(model, D)
    if model == "none" or not np.any(D):
        return K.copy()
    if model == "equidistant":
        return cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
            K, D, size, np.eye(3), balance=float(alpha))
    Knew, _ = cv2.getOptimalNewCameraMatrix(K, D, size, float(alpha), size)
    return Knew


def undistort_rectify_maps(K: np.ndarray, D: np.ndarray, model: str, size: tuple[int, int],
                           R: np.ndarray, P: np.ndarray,
                           new_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Float32 maps (map_x, map_y) from the rectified pinhole image (rotation R, projection P) to raw pixels."""
    K = np.asarray(K, dtype=np.float64)
    D = _check_model(model, D)
    new_size = size if new_size is None else new_size
    P = np.asarray(P, dtype=np.float64)
    if model == "equidistant":
        mx, my = cv2.fisheye.initUndistortRectifyMap(K, D, np.asarray(R, np.float64), P, new_size, cv2.CV_32FC1)
    else:
        mx, my = cv2.initUndistortRectifyMap(K, D, np.asarray(R, np.float64), P, new_size, cv2.CV_32FC1)
    return mx, my


@dataclass
class StereoRectification:
    """Result of stereo rectification: rotations raw->rectified, pinhole projections, baseline (m)."""

    R0: np.ndarray  # 3x3, rotates points of raw cam0 into the rectified cam0 frame
    R1: np.ndarray
    P0: np.ndarray  # 3x4 projection of the rectified left image
    P1: np.ndarray  # 3x4, P1[0, 3] = -fx * baseline
    baseline: float

    @property
    def K(self) -> np.ndarray:
        """Shared 3x3 intrinsics of both rectified images."""
        return self.P0[:, :3].copy()


def stereo_rectify(K0: np.ndarray, D0: np.ndarray, K1: np.ndarray, D1: np.ndarray, model: str,
                   size: tuple[int, int], T_cam0_cam1: np.ndarray, alpha: float = 0.0) -> StereoRectification:
    """Rectify a stereo pair whose cam1 pose in cam0 is T_cam0_cam1 (x_cam0 = T_cam0_cam1 @ x_cam1).

    The rectified images share one K and row alignment, principal points coincide
    (CALIB_ZERO_DISPARITY), and cam1 lies on the +x axis of the rectified cam0 frame.
    """
    T = np.linalg.inv(np.asarray(T_cam0_cam1, dtype=np.float64))  # OpenCV wants x_cam1 = R x_cam0 + t
    R, t = np.ascontiguousarray(T[:3, :3]), np.ascontiguousarray(T[:3, 3].reshape(3, 1))
    D0c, D1c = _check_model(model, D0), _check_model(model, D1)
    K0 = np.asarray(K0, np.float64)
    K1 = np.asarray(K1, np.float64)
    if model == "equidistant":
        R0, R1, P0, P1, _ = cv2.fisheye.stereoRectify(
            K0, D0c, K1, D1c, size, R, t, cv2.CALIB_ZERO_DISPARITY,
            newImageSize=size, balance=float(alpha))
    else:
        R0, R1, P0, P1, _, _, _ = cv2.stereoRectify(
            K0, D0c, K1, D1c, size, R, t, flags=cv2.CALIB_ZERO_DISPARITY, alpha=float(alpha),
            newImageSize=size)
    baseline = float(-P1[0, 3] / P1[0, 0])
    if abs(P1[1, 3]) > 1e-9 * max(1.0, abs(P1[0, 3])):
        raise ValueError("stereo cameras are stacked vertically; only left/right rigs are supported")
    if baseline <= 0:
        raise ValueError("cam1 is to the left of cam0; swap the cameras (cam0 must be the left one)")
    return StereoRectification(R0=R0, R1=R1, P0=P0, P1=P1, baseline=baseline)
