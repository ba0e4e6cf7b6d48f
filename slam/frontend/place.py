"""Place features of a keyframe for loop closure: ORB descriptors over the whole image, with depth.

The tracked features cover the image only as densely as tracking needs (~250); place recognition
and loop verification want more. A keyframe therefore adds corners in the gaps between its tracked
features (gridded Shi-Tomasi, as tracking detects them) and describes every point the same way
landmark descriptors are made (`orb_descriptors`: ORB at a fixed 31 px patch), so that a
keyframe's place features match the map's landmarks directly. Each point carries its track id
when it is a tracked feature (-1 for the extra corners), which is how verified loop matches name
the landmarks to fuse, and its camera-frame 3-D point where stereo or depth measured one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slam.frontend.features import ORB_BORDER, detect


@dataclass
class PlaceFeatures:
    """Place-recognition features of one keyframe (only rows with a valid descriptor)."""

    uv: np.ndarray           # (N,2) pixels
    descriptors: np.ndarray  # (N,32) uint8 ORB
    xyz: np.ndarray          # (N,3) camera-frame points, NaN where depth is unknown
    ids: np.ndarray          # (N,) track id of a tracked feature, -1 for an extra corner


def extra_corners(gray: np.ndarray, tracked_uv: np.ndarray, n_total: int, min_distance: int = 8) -> np.ndarray:
    """Corners (M,2) between the tracked features, spread over a grid, up to n_total points in all."""
    if n_total <= len(tracked_uv):
        return np.zeros((0, 2), np.float32)
    return detect(gray, tracked_uv, n_total, 8, 6, min_distance, 0.005, ORB_BORDER + 2)


def camera_points(uv: np.ndarray, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (N,3) of pixels with depth z; NaN rows where the depth is NaN."""
    x = (uv[:, 0] - K[0, 2]) / K[0, 0]
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    return np.stack([x * depth, y * depth, depth], axis=1)


def assemble(uv: np.ndarray, depth: np.ndarray, desc: np.ndarray | None, ok: np.ndarray | None, ids: np.ndarray,
             K: np.ndarray) -> PlaceFeatures | None:
    """PlaceFeatures from measured points (tracked first, then extra corners with id -1)."""
    if desc is None or ok is None or not ok.any():
        return None
    return PlaceFeatures(uv[ok].astype(np.float64), desc[ok].copy(), camera_points(uv[ok], depth[ok], K),
                         ids[ok].astype(np.int64))
