"""What a keyframe measures besides its 2-D features: depth (stereo or RGB-D) and descriptors."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from slam.frontend.config import FrontendConfig
from slam.frontend.features import Pyramid, build_pyramid, orb_descriptors, to_gray
from slam.frontend.stereo import depth_lookup, stereo_match
from slam.geometry.pinhole import Rig
from slam.sources.base import Frame


@dataclass
class Measurement:
    """Per-feature depth, right-image u and descriptors of one keyframe."""

    depth: np.ndarray
    u_right: np.ndarray
    descriptors: np.ndarray | None
    desc_ok: np.ndarray | None


def measure(frame: Frame, gray: np.ndarray, pyr: Pyramid, uv: np.ndarray, rig: Rig, cfg: FrontendConfig,
            orb: cv2.ORB | None) -> Measurement:
    """Depth and descriptors of features uv (N,2) in a keyframe (stereo search is unseeded)."""
    n = len(uv)
    depth = np.full(n, np.nan)
    u_right = np.full(n, np.nan)
    if rig.mode == "stereo" and frame.right is not None and n:
        right = build_pyramid(to_gray(frame.right), pyr.window, pyr.levels)
        u_right = stereo_match(pyr, right, uv, rig.fx_baseline, cfg.min_disparity,
                               max_disparity=min(rig.fx_baseline / cfg.min_depth, 0.25 * rig.width))
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = rig.fx_baseline / (uv[:, 0] - u_right)
        bad = ~((depth > cfg.min_depth) & (depth < cfg.max_depth))
        depth[bad] = np.nan
        u_right[bad] = np.nan
    elif rig.mode == "rgbd" and frame.depth is not None and n:
        depth = depth_lookup(frame.depth, uv, cfg.min_depth, cfg.max_depth)
        u_right = uv[:, 0] - rig.fx_baseline / depth
    desc = ok = None
    if orb is not None and n:
        desc, ok = orb_descriptors(gray, uv, orb)
    return Measurement(depth, u_right, desc, ok)
