"""Chessboard camera calibration: corner detection, a well-spread choice of views, calibrateCamera.

OpenCV's classic pipeline (findChessboardCorners, cornerSubPix, calibrateCameraExtended). A video
of a board held in front of a camera gives hundreds of near-identical views; calibrating on all of
them weights the poses the user lingered on, so views are chosen by farthest-point sampling of a
descriptor (board position, apparent size, perspective tilt) and views whose own reprojection error
is far above the others' (motion blur, a misdetection) are dropped before a final solve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from slam.errors import InputError
from slam.sources.base import CameraModel

DETECT_MAX_SIDE = 1280  # px: larger images are searched downscaled (detection time grows with area)
_DETECT_FLAGS = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
_SUBPIX = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 50, 1e-3)


def parse_board(text: str) -> tuple[int, int]:
    """'9x6' -> (9, 6): inner corners per row and per column (a board of 10x7 squares is 9x6)."""
    parts = text.lower().replace("*", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InputError(f"--board must be COLSxROWS (inner corners, e.g. 9x6), got {text!r}")
    cols, rows = int(parts[0]), int(parts[1])
    if cols < 3 or rows < 3:
        raise InputError(f"--board {text}: a board needs at least 3x3 inner corners")
    return cols, rows


def board_points(pattern: tuple[int, int], square: float) -> np.ndarray:
    """(cols*rows, 3) float32 corner positions on the board plane z=0, row-major as OpenCV finds them."""
    cols, rows = pattern
    grid = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2)
    return np.column_stack([grid * square, np.zeros(len(grid))]).astype(np.float32)


@dataclass
class BoardView:
    """One detection: the frame it came from and its sub-pixel corners (N,2), row-major."""

    frame: int
    corners: np.ndarray


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def detect_board(image: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """Sub-pixel inner corners (N,2) float32 of the board in an image, or None when not all are found.

    The order is made canonical (first corner nearer the image's top-left than the last) so that
    view descriptors compare; reversing a board's corner order is a 180-degree turn of the board in
    its own plane, an equally valid pose for calibration.
    """
    gray = _gray(image)
    scale = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
    small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    found, corners = cv2.findChessboardCorners(small, pattern, flags=_DETECT_FLAGS)
    if not found or corners is None:
        return None
    corners = (corners.reshape(-1, 2) / scale).astype(np.float32)
    # Half the smallest corner spacing bounds the search window: a larger one would see the next corner.
    spacing = float(np.min(np.linalg.norm(np.diff(corners.reshape(pattern[1], pattern[0], 2), axis=1), axis=2)))
    win = int(np.clip(spacing * 0.4, 2, 11))
    corners = cv2.cornerSubPix(gray, corners.reshape(-1, 1, 2), (win, win), (-1, -1), _SUBPIX).reshape(-1, 2)
    if corners[0].sum() > corners[-1].sum():
        corners = corners[::-1].copy()
    return corners


def view_descriptor(corners: np.ndarray, pattern: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(5,) board centre (x, y as image fractions), apparent size, and log side ratios (tilt)."""
    w, h = size
    cols, rows = pattern
    grid = corners.reshape(rows, cols, 2)
    c00, c10, c01, c11 = grid[0, 0], grid[0, -1], grid[-1, 0], grid[-1, -1]
    quad = np.array([c00, c10, c11, c01], dtype=np.float32)
    area = abs(float(cv2.contourArea(quad)))
    top, bottom = np.linalg.norm(c10 - c00), np.linalg.norm(c11 - c01)
    left, right = np.linalg.norm(c01 - c00), np.linalg.norm(c11 - c10)
    centre = corners.mean(axis=0) / np.array([w, h])
    # Tilt shows as foreshortening: opposite sides of the board's outline differ in length.
    return np.array([centre[0], centre[1], np.sqrt(area / (w * h)),
                     3.0 * np.log(top / bottom), 3.0 * np.log(left / right)])


def select_views(views: list[BoardView], pattern: tuple[int, int], size: tuple[int, int],
                 max_views: int) -> list[int]:
    """Indices of at most max_views views spread over position, size and tilt (farthest-point sampling)."""
    if len(views) <= max_views:
        return list(range(len(views)))
    d = np.stack([view_descriptor(v.corners, pattern, size) for v in views])
    chosen = [int(np.argmin(np.linalg.norm(d - d.mean(axis=0), axis=1)))]
    dist = np.linalg.norm(d - d[chosen[0]], axis=1)
    while len(chosen) < max_views:
        k = int(np.argmax(dist))
        chosen.append(k)
        dist = np.minimum(dist, np.linalg.norm(d - d[k], axis=1))
    return sorted(chosen)


@dataclass
class CalibrationResult:
    """A calibrated camera, how well it fits, and which views it came from."""

    camera: CameraModel
    rms_px: float                       # RMS reprojection error over all corners of the used views
    views: list[BoardView]              # the views of the final solve
    per_view_rms_px: np.ndarray         # (len(views),)
    std: dict[str, float] = field(default_factory=dict)  # 1-sigma of fx fy cx cy and distortion (OpenCV)
    rejected_frames: list[int] = field(default_factory=list)  # views dropped as outliers


def _solve(views: list[BoardView], obj: np.ndarray, size: tuple[int, int], flags: int) -> tuple:
    crit = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    out = cv2.calibrateCameraExtended([obj] * len(views), [v.corners.reshape(-1, 1, 2) for v in views], size,
                                      None, None, flags=flags, criteria=crit)
    rms, K, dist, _, _, std_int, _, per_view = out
    return float(rms), K, dist.ravel(), std_int.ravel(), per_view.ravel()


def calibrate(views: list[BoardView], pattern: tuple[int, int], square: float, size: tuple[int, int],
              k3: bool = False, min_views: int = 5) -> CalibrationResult:
    """Pinhole + radtan calibration (k1 k2 p1 p2, and k3 when asked) from board views of one camera.

    Views whose RMS error exceeds max(3x the median, 1 px) are dropped and the camera solved again.
    """
    if len(views) < min_views:
        raise InputError(f"the board was found in {len(views)} view(s); calibration needs at least {min_views} "
                         "(check --board: inner corners, e.g. 9x6 for a board of 10x7 squares)")
    obj = board_points(pattern, square)
    flags = 0 if k3 else cv2.CALIB_FIX_K3
    rms, K, dist, std, per_view = _solve(views, obj, size, flags)
    bad = per_view > max(3.0 * float(np.median(per_view)), 1.0)
    rejected: list[int] = []
    if bad.any() and (~bad).sum() >= min_views:
        rejected = [v.frame for v, b in zip(views, bad) if b]
        views = [v for v, b in zip(views, bad) if not b]
        rms, K, dist, std, per_view = _solve(views, obj, size, flags)
    n_dist = 5 if k3 else 4
    coeffs = dist[:n_dist].astype(np.float64)
    w, h = size
    cam = CameraModel(int(w), int(h), float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                      "radtan", coeffs)
    names = ["fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3"][: 4 + n_dist]
    return CalibrationResult(cam, rms, views, per_view, {n: float(s) for n, s in zip(names, std)}, rejected)
