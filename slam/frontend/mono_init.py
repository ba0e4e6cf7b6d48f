"""Monocular start of a map segment: track from a reference frame until two views initialize.

The initializer owns its own tracks while it searches; the Tracker owns everything else. Each
frame it returns a MonoInitStep: frames to report without a pose ('pending' while they wait for
the two-view map, 'lost' when the reference is given up, 'init' when a frame has too few corners)
and, once two views initialize, a TwoViewStart that the Tracker applies (new map segment, first
two keyframes, poses of the pending frames by `pose_from_points`). When the reference is too old
or too few of its features survive, it is replaced by the current frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from slam.frontend.config import FrontendConfig
from slam.frontend.features import Pyramid, detect, klt
from slam.frontend.initializer import Rejection, TwoView, try_two_view
from slam.geometry.pose import pnp_ransac, refine_pose
from slam.frontend.state import Tracks
from slam.sources.base import Frame


@dataclass
class TwoViewStart:
    """A two-view initialization: reference and current frame with the points triangulated between them."""

    ref_frame: Frame           # without images
    ref_gray: np.ndarray       # reference image (descriptors of the first keyframe)
    ref_uv: np.ndarray         # (N,2) pixels of the tracks in the reference frame
    tracks: Tracks             # the N tracks, at their pixels in the current frame
    good: np.ndarray           # (N,) tracks with a triangulated point
    points: np.ndarray         # (G,3) those points in the reference camera frame, median depth 1
    T_cur_ref: np.ndarray      # (4,4) current camera from reference camera
    pending: list[tuple[Frame, np.ndarray, np.ndarray]]  # frames in between: (frame, track ids, pixels)


@dataclass
class MonoInitStep:
    """The outcome of one frame of initialization."""

    unposed: list[tuple[Frame, str]] = field(default_factory=list)  # (frame, status) reported without a pose
    start: TwoViewStart | None = None


def _light(frame: Frame) -> Frame:
    """The frame without its images (kept while pending)."""
    return Frame(frame.index, frame.timestamp, np.zeros((0, 0), np.uint8), gt_pose=frame.gt_pose)


class MonoInitializer:
    """The INIT state of monocular tracking: a reference frame, its tracks, and the frames since."""

    def __init__(self, cfg: FrontendConfig, K: np.ndarray, allocate_ids: Callable[[int], np.ndarray]) -> None:
        self.f, self.K = cfg, K
        self.allocate_ids = allocate_ids
        self.rejections: dict[str, int] = {}        # why frames did not initialize: reason -> frames
        self.last_rejection: Rejection | None = None
        self.reset()

    def _reject(self, reason: str, detail: str) -> None:
        """Count a frame that did not initialize, for the run's report."""
        self.rejections[reason] = self.rejections.get(reason, 0) + 1
        self.last_rejection = Rejection(reason, detail)

    def reset(self) -> None:
        """Forget the reference frame and its tracks."""
        self.ref: tuple[Frame, np.ndarray, np.ndarray, np.ndarray] | None = None  # frame, gray, ids, uv
        self.history: list[tuple[Frame, np.ndarray, np.ndarray]] = []  # frame (no images), ids, uv
        self.tracks = Tracks()

    def _new_ref(self, frame: Frame, gray: np.ndarray) -> tuple[Frame, str]:
        f = self.f
        self.reset()
        pts = detect(gray, np.zeros((0, 2)), f.max_features, f.grid_cols, f.grid_rows, f.min_distance,
                     f.quality_level, f.border)
        if len(pts) < f.init_min_points:
            self._reject("too few features", f"{len(pts)} corners detected, {f.init_min_points} needed")
            return frame, "init"
        ids = self.allocate_ids(len(pts))
        self.tracks.add(ids, pts)
        self.ref = (_light(frame), gray, ids, pts.astype(np.float64))
        return frame, "pending"

    def _given_up(self) -> list[tuple[Frame, str]]:
        """Pending frames become lost."""
        frames = ([self.ref[0]] if self.ref is not None else []) + [h[0] for h in self.history]
        return [(fr, "lost") for fr in frames]

    def process(self, frame: Frame, gray: np.ndarray, prev_pyr: Pyramid | None, pyr: Pyramid) -> MonoInitStep:
        """One frame of initialization; prev_pyr is the previous frame's pyramid (None: none)."""
        f = self.f
        if self.ref is None or prev_pyr is None:
            return MonoInitStep([self._new_ref(frame, gray)])
        tr = self.tracks
        uv, ok = klt(prev_pyr, pyr, tr.uv, None, f.fb_threshold)
        tr.uv = uv
        tr.keep(ok)
        ref_frame, ref_gray, ref_ids, ref_uv_all = self.ref
        if len(tr) < f.init_min_points or len(self.history) >= f.init_max_frames:
            if len(tr) < f.init_min_points:
                self._reject("too few tracks", f"{len(tr)} features tracked from the reference frame, "
                                               f"{f.init_min_points} needed")
            else:
                self._reject("no initialization in time", f"{len(self.history)} frames since the reference "
                                                          f"(frontend.init_max_frames)")
            lost = self._given_up()
            return MonoInitStep(lost + [self._new_ref(frame, gray)])
        self.history.append((_light(frame), tr.ids.copy(), tr.uv.astype(np.float64)))
        ref_uv = ref_uv_all[np.searchsorted(ref_ids, tr.ids)]  # ids were allocated increasing
        flow = float(np.median(np.linalg.norm(tr.uv - ref_uv, axis=1)))
        if flow >= f.init_min_flow:
            tv = try_two_view(ref_uv, tr.uv.astype(np.float64), self.K, f.init_min_points, f.init_min_parallax)
            if isinstance(tv, TwoView):
                start = TwoViewStart(ref_frame, ref_gray, ref_uv, tr, tv.good, tv.points[tv.good], tv.T_cur_ref,
                                     self.history[:-1])
                self.reset()
                return MonoInitStep(start=start)
            self._reject(tv.reason, tv.detail)
        else:
            self._reject("too little motion", f"median flow {flow:.1f} px since the reference frame, "
                                              f"{f.init_min_flow:g} px needed (frontend.init_min_flow)")
        return MonoInitStep([(frame, "pending")])


def pose_from_points(points: np.ndarray, point_ids: np.ndarray, ids: np.ndarray, uv: np.ndarray, K: np.ndarray,
                     cfg: FrontendConfig) -> tuple[np.ndarray, int] | None:
    """(T_cam_world, inliers) of a frame whose tracks (ids, uv) see some of the points (point_ids
    increasing), by RANSAC PnP and refinement; None with fewer than min_inliers."""
    idx = np.clip(np.searchsorted(point_ids, ids), 0, max(len(point_ids) - 1, 0))
    m = point_ids[idx] == ids if len(point_ids) else np.zeros(len(ids), bool)
    if m.sum() >= cfg.min_inliers:
        res = pnp_ransac(points[idx[m]], uv[m], K, cfg.reprojection_threshold)
        if res is not None:
            T, inl = refine_pose(res[0], points[idx[m]], uv[m], K, cfg.reprojection_threshold)
            if inl.sum() >= cfg.min_inliers:
                return T, int(inl.sum())
    return None
