"""Guards around the OpenCV calls of tracking: degenerate input means "no estimate", never a crash.

OpenCV's estimators assert on input they cannot handle, and which input that is changes between
versions (OpenCV 5's five-point solver raises on a pure rotation, 4.x returns a matrix). Tracking
must lose a frame, not the run: each caller checks what it can before the call (finite
coordinates, enough points, points that are not all coincident or collinear) and calls OpenCV
through `attempt`, the one place where `cv2.error` is caught.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import cv2
import numpy as np

R = TypeVar("R")


def attempt(fn: Callable[..., R], *args: object, **kwargs: object) -> R | None:
    """fn(*args, **kwargs), or None when OpenCV refuses the input (cv2.error)."""
    try:
        return fn(*args, **kwargs)
    except cv2.error:
        return None


def finite_rows(*arrays: np.ndarray) -> np.ndarray:
    """(N,) True where the row is finite in every array (each (N,...) with the same N)."""
    ok = np.ones(len(arrays[0]), bool)
    for a in arrays:
        a = np.asarray(a, np.float64)
        ok &= np.isfinite(a.reshape(len(a), int(np.prod(a.shape[1:])))).all(axis=1)
    return ok


def affine_rank(points: np.ndarray, rel_tol: float = 1e-9, abs_tol: float = 1e-9) -> int:
    """Dimension of the affine hull of finite points (N,d): 0 all coincident, 1 collinear, 2 coplanar...

    A singular value counts when it exceeds both rel_tol times the largest and abs_tol (in the
    points' own unit): only exact degeneracies (up to rounding) lower the rank, so that real
    data never takes a different path because of this test.
    """
    P = np.asarray(points, np.float64)
    if len(P) < 2:
        return 0
    C = P - P.mean(axis=0)
    s = np.linalg.svd(C, compute_uv=False)  # O(N d^2); not C^T C, whose rounding hides rank at 1e-8
    return int(np.sum(s > max(rel_tol * s[0], abs_tol)))
