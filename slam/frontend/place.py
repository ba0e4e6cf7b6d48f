"""Place features of a keyframe for loop closure: ORB descriptors over the whole image, with depth.

The tracked features cover the image only as densely as tracking needs (~250); place recognition
and loop verification want more. A keyframe therefore adds corners in the gaps between its tracked
features (gridded Shi-Tomasi, as tracking detects them) and describes every point the same way
landmark descriptors are made (`orb_descriptors`: ORB at a fixed 31 px patch), so that a
keyframe's place features match the map's landmarks directly. Each point carries its track id
when it is a tracked feature (-1 for the extra corners), which is how verified loop matches name
the landmarks to fuse, and its camera-frame 3-D point where depth is known: the tracked features'
stereo / RGB-D depth, and for RGB-D the depth image at the extra corners. The extra corners of a
stereo pair are not matched in the right image: verification of stereo and RGB-D loops is 2-D
(query) to 3-D (landmarks), so that cost would buy nothing (monocular verification takes its
3-D points from the query's landmarks).

Tracking only keeps the inputs (`place_input`: the image and the tracked features' measurements,
references, no work); the loop worker computes the features (`place_features`) on its own,
lower-priority thread, so that tracking does not pay for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from slam.frontend.config import FrontendConfig
from slam.frontend.features import ORB_BORDER, detect, orb_descriptors
from slam.frontend.measure import Measurement
from slam.geometry.pinhole import Rig
from slam.frontend.stereo import depth_lookup
from slam.sources.base import Frame


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



@dataclass
class PlaceInput:
    """What a keyframe's place features are computed from, off the tracking thread (loop worker)."""

    gray: np.ndarray               # the keyframe's image
    depth_image: np.ndarray | None  # RGB-D depth (metres), None otherwise
    uv: np.ndarray                 # tracked features (K,2)
    depth: np.ndarray              # their depth (K,), NaN where none
    descriptors: np.ndarray        # their ORB descriptors (K,32)
    desc_ok: np.ndarray            # (K,)
    ids: np.ndarray                # their track ids (K,)


def place_input(frame: Frame, gray: np.ndarray, uv: np.ndarray, m: Measurement, ids: np.ndarray) -> PlaceInput | None:
    """Keep what place_features needs (references, no copies: a keyframe's arrays are not modified later)."""
    if m.descriptors is None or m.desc_ok is None:
        return None
    return PlaceInput(gray, frame.depth, uv, m.depth, m.descriptors, m.desc_ok, ids)


def place_features(inp: PlaceInput, n_total: int, rig: Rig, cfg: FrontendConfig, orb: Any) -> PlaceFeatures | None:
    """A keyframe's place features: its tracked features and extra corners up to n_total points."""
    extra = extra_corners(inp.gray, inp.uv, n_total).astype(np.float64)
    if len(extra):
        desc_x, ok_x = orb_descriptors(inp.gray, extra, orb)
    else:
        desc_x, ok_x = np.zeros((0, 32), np.uint8), np.zeros(0, bool)
    depth_x = np.full(len(extra), np.nan)
    if rig.mode == "rgbd" and inp.depth_image is not None and len(extra):
        depth_x = depth_lookup(inp.depth_image, extra, cfg.min_depth, cfg.max_depth)
    return assemble(np.concatenate([inp.uv, extra]), np.concatenate([inp.depth, depth_x]),
                    np.concatenate([inp.descriptors, desc_x]), np.concatenate([inp.desc_ok, ok_x]),
                    np.concatenate([inp.ids, np.full(len(extra), -1, np.int64)]), rig.K)
