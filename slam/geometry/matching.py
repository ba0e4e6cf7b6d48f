"""Binary descriptor matching shared by relocalization (frontend) and loop verification (loop).

Not geometry in the strict sense, but like triangulation and PnP it is used by two parts that may
not import each other, and it works on arrays only (OpenCV's brute-force Hamming matcher).
"""

from __future__ import annotations

import cv2
import numpy as np

from slam.geometry.guard import attempt


def match_descriptors(query: np.ndarray, train: np.ndarray, ratio: float = 0.8,
                      max_distance: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(query index, train index) of Hamming matches that pass Lowe's ratio test."""
    none = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(query) == 0 or len(train) < 2:
        return none
    query, train = np.asarray(query), np.asarray(train)
    if query.dtype != np.uint8 or train.dtype != np.uint8 or query.shape[1:] != train.shape[1:]:
        return none  # not two sets of binary descriptors of one length: nothing can match
    knn = attempt(cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch, query, train, k=2)
    if knn is None:
        return none
    # OpenCV hands back DMatch objects: one small list per query descriptor, not a hot path
    rows = np.array([(m[0].queryIdx, m[0].trainIdx, m[0].distance, m[1].distance) for m in knn if len(m) == 2],
                    dtype=np.float64).reshape(-1, 4)
    keep = (rows[:, 2] < ratio * rows[:, 3]) & (rows[:, 2] <= max_distance)
    q, t = rows[keep, 0].astype(np.int64), rows[keep, 1].astype(np.int64)
    # one query per landmark: keep the best distance for landmarks matched twice
    order = np.lexsort((rows[keep, 2], t))
    _, first = np.unique(t[order], return_index=True)
    sel = order[first]
    return q[sel], t[sel]
