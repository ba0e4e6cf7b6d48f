"""Features: Shi-Tomasi corners spread over a grid, pyramidal KLT tracking, ORB descriptors.

Every function works on whole arrays of points; OpenCV does the per-pixel work.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from slam.geometry.guard import attempt, finite_rows

_KLT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)
ORB_BORDER = 16  # ORB needs a 31x31 patch around a keypoint


@dataclass
class Pyramid:
    """A grayscale image with its KLT settings (OpenCV's Python binding takes images, not
    prebuilt pyramids, so calcOpticalFlowPyrLK builds the levels itself)."""

    image: np.ndarray
    window: int
    levels: int

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return self.image.shape[:2]


def to_gray(img: np.ndarray) -> np.ndarray:
    """uint8 grayscale of a gray or BGR image."""
    if img.ndim == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return img


def build_pyramid(gray: np.ndarray, window: int, levels: int) -> Pyramid:
    """KLT input of a grayscale image."""
    return Pyramid(np.ascontiguousarray(gray), window, levels)


def klt(src: Pyramid, dst: Pyramid, pts: np.ndarray, guess: np.ndarray | None = None,
        fb_threshold: float = 1.0, check_levels: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Track pts (N,2) from src to dst; (new points (N,2) float32, ok (N,) bool).

    `guess` seeds the search (motion prediction); ok needs KLT success both ways, a
    forward-backward error below fb_threshold pixels and a point inside the image. The backward
    pass runs on check_levels pyramid levels (-1: all of them).
    """
    n = len(pts)
    if n == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    if src.image.size == 0 or src.image.shape != dst.image.shape:
        # not a pair of frames: nothing to track (OpenCV 4.14 never returns on an empty image)
        return np.asarray(pts, np.float32).copy(), np.zeros(n, bool)
    fin = finite_rows(pts) if guess is None else finite_rows(pts, guess)
    if not fin.all():  # NaN makes OpenCV assert or return garbage: track the finite points only
        out, ok = np.asarray(pts, np.float32).copy(), np.zeros(n, bool)
        if fin.any():
            out[fin], ok[fin] = klt(src, dst, pts[fin], None if guess is None else guess[fin], fb_threshold,
                                    check_levels)
        return out, ok
    p0 = np.ascontiguousarray(pts, dtype=np.float32).reshape(-1, 1, 2)
    win = (src.window, src.window)
    levels = src.levels
    if guess is not None:
        p1 = np.ascontiguousarray(guess, dtype=np.float32).reshape(-1, 1, 2).copy()
        fwd = attempt(cv2.calcOpticalFlowPyrLK, src.image, dst.image, p0, p1, winSize=win, maxLevel=levels,
                      criteria=_KLT_CRITERIA, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    else:
        fwd = attempt(cv2.calcOpticalFlowPyrLK, src.image, dst.image, p0, None, winSize=win, maxLevel=levels,
                      criteria=_KLT_CRITERIA)
    bwd = None if fwd is None else attempt(
        cv2.calcOpticalFlowPyrLK, dst.image, src.image, fwd[0], p0.copy(), winSize=win,
        maxLevel=levels if check_levels < 0 else min(check_levels, levels),
        criteria=_KLT_CRITERIA, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    if bwd is None:  # images OpenCV cannot track on: every track is lost
        return p0.reshape(-1, 2).copy(), np.zeros(n, bool)
    (p1, st, _), (pb, st_b, _) = fwd, bwd
    p1 = p1.reshape(-1, 2)
    fb = np.linalg.norm(pb.reshape(-1, 2) - p0.reshape(-1, 2), axis=1)
    h, w = dst.shape
    inside = (p1[:, 0] >= 0) & (p1[:, 1] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] <= h - 1)
    ok = (st.ravel() == 1) & (st_b.ravel() == 1) & (fb < fb_threshold) & inside & np.isfinite(p1).all(axis=1)
    return p1, ok


def cell_index(pts: np.ndarray, shape: tuple[int, int], cols: int, rows: int) -> np.ndarray:
    """Grid cell (row-major) of each point."""
    h, w = shape
    cx = np.clip((pts[:, 0] * cols / w).astype(np.int64), 0, cols - 1)
    cy = np.clip((pts[:, 1] * rows / h).astype(np.int64), 0, rows - 1)
    return cy * cols + cx


def detect(gray: np.ndarray, existing: np.ndarray, n_target: int, cols: int, rows: int,
           min_distance: int, quality: float, border: int) -> np.ndarray:
    """New corners (M,2) float32 that bring each grid cell up to its share of n_target features.

    Corners closer than min_distance to an existing feature are masked out; within a cell the
    strongest corners (goodFeaturesToTrack order) are kept.
    """
    h, w = gray.shape[:2]
    if min(h, w) <= 2 * border:
        return np.zeros((0, 2), np.float32)  # no pixel inside the border
    existing = np.asarray(existing)[finite_rows(existing)] if len(existing) else existing
    n_cells = cols * rows
    quota = np.full(n_cells, int(np.ceil(n_target / n_cells)), np.int64)
    if len(existing):
        quota -= np.bincount(cell_index(existing, (h, w), cols, rows), minlength=n_cells)
    need = int(np.clip(quota, 0, None).sum())
    if need == 0 or n_target - len(existing) <= 0:
        return np.zeros((0, 2), np.float32)
    mask = np.zeros((h, w), np.uint8)
    mask[border:h - border, border:w - border] = 255
    if len(existing):
        occupied = np.zeros((h, w), np.uint8)
        xy = np.rint(existing).astype(np.int64)
        xy[:, 0] = np.clip(xy[:, 0], 0, w - 1)
        xy[:, 1] = np.clip(xy[:, 1], 0, h - 1)
        occupied[xy[:, 1], xy[:, 0]] = 255
        # a square keep-out zone: rectangular dilation is separable, a disk costs 10x more
        square = np.ones((2 * min_distance + 1, 2 * min_distance + 1), np.uint8)
        mask[cv2.dilate(occupied, square) > 0] = 0
    corners = attempt(cv2.goodFeaturesToTrack, gray, maxCorners=4 * n_target, qualityLevel=quality,
                      minDistance=min_distance, mask=mask, blockSize=3)
    if corners is None:  # no corner, or an image OpenCV refuses (empty, wrong type)
        return np.zeros((0, 2), np.float32)
    c = corners.reshape(-1, 2).astype(np.float32)
    cell = cell_index(c, (h, w), cols, rows)
    order = np.argsort(cell, kind="stable")  # stable: strongest first within each cell
    sorted_cell = cell[order]
    first = np.searchsorted(sorted_cell, sorted_cell, side="left")
    rank = np.arange(len(order)) - first
    keep = order[rank < quota[sorted_cell]]
    return c[np.sort(keep)]


def orb_descriptors(gray: np.ndarray, pts: np.ndarray, orb: cv2.ORB) -> tuple[np.ndarray, np.ndarray]:
    """ORB descriptors (N,32) at the given points and which of them are valid (N,)."""
    n = len(pts)
    desc = np.zeros((n, 32), np.uint8)
    ok = np.zeros(n, bool)
    h, w = gray.shape[:2]
    b = ORB_BORDER + 2
    inside = (pts[:, 0] >= b) & (pts[:, 0] < w - b) & (pts[:, 1] >= b) & (pts[:, 1] < h - b)
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return desc, ok
    src = np.ascontiguousarray(pts[idx], dtype=np.float32)
    got = attempt(orb.compute, gray, cv2.KeyPoint_convert(src, 31.0))
    kps, d = got if got is not None else ((), None)
    if d is None or not kps:
        return desc, ok
    # compute() may drop keypoints (it keeps the order of the rest): find each survivor by position
    out = cv2.KeyPoint_convert(kps).astype(np.float64)
    key_in = src[:, 0].astype(np.float64) * 65536.0 + src[:, 1]
    order = np.argsort(key_in, kind="stable")
    pos = np.clip(np.searchsorted(key_in[order], out[:, 0] * 65536.0 + out[:, 1]), 0, len(order) - 1)
    back = idx[order[pos]]
    desc[back] = d
    ok[back] = True
    return desc, ok


def make_orb(n_features: int = 1000) -> cv2.ORB:
    """The ORB extractor used for keyframe descriptors and relocalization."""
    return cv2.ORB_create(nfeatures=n_features, edgeThreshold=ORB_BORDER, patchSize=31, fastThreshold=10)
