"""Monocular start of a map segment: track from a reference frame until two views initialize.

Frames between the reference and the initializing frame are reported 'pending'; once the two-view
map exists each of them gets its pose from its own tracked features by RANSAC PnP against the
initial points (or is reported lost when that fails). When the reference is too old or too few of
its features survive, it is replaced by the current frame and the pending frames become lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from slam.frontend.features import Pyramid, detect, klt, orb_descriptors
from slam.frontend.initializer import Rejection, TwoView, try_two_view
from slam.frontend.pose import pnp_ransac, refine_pose
from slam.map.keyframe import KeyframeData
from slam.sources.base import Frame

from slam.frontend.state import FrameResult, inv

if TYPE_CHECKING:
    from slam.frontend.tracker import Tracker


class MonoInitializer:
    """The INIT state of a monocular Tracker."""

    def __init__(self, tracker: "Tracker") -> None:
        self.t = tracker
        self.rejections: dict[str, int] = {}        # why frames did not initialize: reason -> frames
        self.last_rejection: Rejection | None = None
        self.reset()

    def _reject(self, reason: str, detail: str) -> None:
        """Count a frame that did not initialize, for the run's report."""
        self.rejections[reason] = self.rejections.get(reason, 0) + 1
        self.last_rejection = Rejection(reason, detail)

    def reset(self) -> None:
        """Forget the reference frame."""
        self.ref: tuple[Frame, np.ndarray, np.ndarray, np.ndarray] | None = None  # frame, gray, ids, uv
        self.history: list[tuple[Frame, np.ndarray, np.ndarray]] = []  # frame (no images), ids, uv

    def _light(self, frame: Frame) -> Frame:
        return Frame(frame.index, frame.timestamp, np.zeros((0, 0), np.uint8), gt_pose=frame.gt_pose)

    def _new_ref(self, frame: Frame, gray: np.ndarray) -> FrameResult:
        t, f = self.t, self.t.f
        self.reset()
        pts = detect(gray, np.zeros((0, 2)), f.max_features, f.grid_cols, f.grid_rows, f.min_distance,
                     f.quality_level, f.border)
        if len(pts) < f.init_min_points:
            self._reject("too few features", f"{len(pts)} corners detected, {f.init_min_points} needed")
            t.tracks.keep(np.zeros(len(t.tracks), bool))
            return t._lost(frame, "init")
        ids = t.map.allocate_ids(len(pts))
        t.tracks.keep(np.zeros(len(t.tracks), bool))
        t.tracks.add(ids, pts)
        self.ref = (self._light(frame), gray, ids, pts.astype(np.float64))
        return t._lost(frame, "pending")

    def _give_up(self) -> list[FrameResult]:
        """Pending frames become lost."""
        frames = ([self.ref[0]] if self.ref is not None else []) + [h[0] for h in self.history]
        return [self.t._lost(fr) for fr in frames]

    def process(self, frame: Frame, gray: np.ndarray, pyr: Pyramid) -> list[FrameResult]:
        """One frame of initialization; results for this frame and any pending ones it settles."""
        t, f = self.t, self.t.f
        if self.ref is None or t.pyr is None:
            return [self._new_ref(frame, gray)]
        tr = t.tracks
        uv, ok = klt(t.pyr, pyr, tr.uv, None, f.fb_threshold)
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
            return self._give_up() + [self._new_ref(frame, gray)]
        self.history.append((self._light(frame), tr.ids.copy(), tr.uv.astype(np.float64)))
        ref_uv = ref_uv_all[np.searchsorted(ref_ids, tr.ids)]  # ids were allocated increasing
        flow = float(np.median(np.linalg.norm(tr.uv - ref_uv, axis=1)))
        if flow >= f.init_min_flow:
            tv = try_two_view(ref_uv, tr.uv.astype(np.float64), t.K, f.init_min_points, f.init_min_parallax)
            if isinstance(tv, TwoView):
                return self._accept(tv, frame, gray, pyr, ref_uv)
            self._reject(tv.reason, tv.detail)
        else:
            self._reject("too little motion", f"median flow {flow:.1f} px since the reference frame, "
                                              f"{f.init_min_flow:g} px needed (frontend.init_min_flow)")
        return [t._lost(frame, "pending")]

    def _accept(self, tv, frame: Frame, gray: np.ndarray, pyr: Pyramid, ref_uv: np.ndarray) -> list[FrameResult]:
        """Two keyframes (reference and current) with the triangulated points; settle pending frames."""
        t = self.t
        ref_frame, ref_gray, _, _ = self.ref
        t._start_segment()
        origin = t.origin
        tr = t.tracks
        good = tv.good
        pts_w = tv.points[good] @ origin[:3, :3].T + origin[:3, 3]
        desc = ok = None
        if t.orb is not None:
            desc, ok = orb_descriptors(ref_gray, ref_uv, t.orb)
        n = len(tr)
        kf0 = KeyframeData(id=t.next_kf, frame_index=ref_frame.index, timestamp=ref_frame.timestamp, pose=origin.copy(),
                           segment=t.segment, ids=tr.ids.copy(), uv=ref_uv, u_right=np.full(n, np.nan),
                           depth=np.full(n, np.nan), descriptors=desc, desc_ok=ok,
                           new_ids=tr.ids[good].copy(), new_points=pts_w)
        t.next_kf += 1
        t.emit(kf0)
        kf0_id, kf0_T_wc = kf0.id, kf0.pose
        tr.xyz[good] = pts_w
        tr.xyz_kf[good] = kf0.id
        tr.anchor_kf[:] = kf0.id  # later triangulations of these tracks use the widest baseline
        tr.anchor_uv = ref_uv.copy()
        t.kf_poses[kf0.id] = origin.copy()
        t.T_cw = tv.T_cur_ref @ np.linalg.inv(origin)
        t.kf_id, t.kf_time, t.kf_T_wc = kf0.id, ref_frame.timestamp, origin.copy()
        t.kf_ids, t.kf_uv = kf0.ids, ref_uv
        out = [self._pose_result(ref_frame, origin, kf0_id, kf0_T_wc, len(tr))]
        good_ids = tr.ids[good]  # increasing: ids are allocated in order and tracks keep it
        for fr, ids, uv in self.history[:-1]:
            out.append(self._backfill(fr, ids, uv, pts_w, good_ids, kf0_id, kf0_T_wc))
        t.V = np.eye(4)
        t.state = "tracking"
        t.lost_since = None
        t._make_keyframe(frame, gray, pyr)
        out.append(t._result(frame, "keyframe", int(good.sum())))
        self.reset()
        return out

    def _pose_result(self, fr: Frame, T_wc: np.ndarray, kf_id: int, kf_T_wc: np.ndarray, n: int) -> FrameResult:
        return FrameResult(fr.index, fr.timestamp, "tracking", T_wc, kf_id, inv(kf_T_wc) @ T_wc, self.t.segment,
                           n, n, fr.gt_pose)

    def _backfill(self, fr: Frame, ids: np.ndarray, uv: np.ndarray, pts_w: np.ndarray, good_ids: np.ndarray,
                  kf_id: int, kf_T_wc: np.ndarray) -> FrameResult:
        """Pose of a pending frame from its tracked initial points, or lost."""
        t = self.t
        idx = np.clip(np.searchsorted(good_ids, ids), 0, max(len(good_ids) - 1, 0))
        m = good_ids[idx] == ids if len(good_ids) else np.zeros(len(ids), bool)
        if m.sum() >= t.f.min_inliers:
            res = pnp_ransac(pts_w[idx[m]], uv[m], t.K, t.f.reprojection_threshold)
            if res is not None:
                T, inl = refine_pose(res[0], pts_w[idx[m]], uv[m], t.K, t.f.reprojection_threshold)
                if inl.sum() >= t.f.min_inliers:
                    return self._pose_result(fr, inv(T), kf_id, kf_T_wc, int(inl.sum()))
        return t._lost(fr)
