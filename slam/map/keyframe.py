"""What the tracker hands to the odometry worker for each new keyframe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class KeyframeData:
    """A keyframe as measured by the frontend.

    pose: T_world_cam from tracking; ids: track ids of its features (K,); uv: their pinhole pixel
    coordinates (K, 2); u_right: matched right-image u (stereo) or the virtual one of RGB-D depth
    (u - fx b / z), NaN where none; depth: metres from stereo or the depth image, NaN where none;
    descriptors: ORB descriptors (K, 32) with desc_ok marking the valid rows, or None;
    new_ids/new_points: landmarks the frontend triangulated itself (in the frame of `pose`);
    ref_kf/T_ref_kf: the keyframe tracking was relative to and the pose relative to it, so that
    the worker can move a keyframe that waited in its queue with the corrections BA made to its
    reference meanwhile (-1: none, e.g. the first keyframe of a map segment);
    scale: the reference's units (Map.keyframe_scale) when tracking measured T_ref_kf and
    new_points: a monocular Sim(3) correction of the reference since then also rescales them (the
    worker sets it to the reference's units at insert, which the keyframe inherits);
    place: what the loop worker computes the keyframe's place features from (frontend/place.py
    PlaceInput), None when loop closure is off.
    """

    id: int
    frame_index: int
    timestamp: float
    pose: np.ndarray
    segment: int
    ids: np.ndarray
    uv: np.ndarray
    u_right: np.ndarray
    depth: np.ndarray
    descriptors: np.ndarray | None = None
    desc_ok: np.ndarray | None = None
    new_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    new_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    ref_kf: int = -1
    T_ref_kf: np.ndarray | None = None
    scale: float = 1.0
    place: Any = None  # slam.frontend.place.PlaceInput (typed loosely: map/ does not import frontend/)
