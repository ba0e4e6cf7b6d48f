"""Tracking: one call per frame, on the main thread; hands keyframes to the odometry worker.

States: INIT (no map segment yet), TRACKING, LOST. While tracking, features are followed by KLT
seeded with the constant-velocity prediction (landmarks are projected, other tracks moved by the
predicted rotation), the pose is refined against the landmarks' map positions (robust pose-only
Gauss-Newton from the prediction, RANSAC P3P when that fails), outlier tracks are dropped, and a
keyframe is made when KeyframePolicy says so. A frame without enough inliers is LOST: it gets no
pose. Lost frames try relocalization against the newest keyframes' landmarks; after
`new_map_after` seconds a new map segment starts, chained at the last known pose (the jump
across the gap is not estimated). Monocular initialization lives in mono_init.py.

A run that starts in a loaded map (`start_in_map`) starts LOST in it: frames relocalize by place
recognition (the map's database names candidate keyframes) then PnP, and tracking goes on in the
map's frame. In localization mode the map is never written: no keyframes are made; where one would
be, landmarks of the map keyframes near the camera are found in the frame and join the tracks.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from slam.frontend.config import FrontendConfig, KeyframeConfig
from slam.frontend.anchored import AnchorAligner
from slam.frontend.features import Pyramid, build_pyramid, detect, klt, make_orb, orb_descriptors, to_gray
from slam.frontend.keyframes import KeyframePolicy, median_parallax
from slam.frontend.map_sync import refresh_from_map
from slam.frontend.measure import measure
from slam.frontend.mono_init import MonoInitializer, TwoViewStart, pose_from_points
from slam.frontend.place import place_input
from slam.geometry.pose import pnp_ransac, project, refine_pose
from slam.frontend.relocalizer import (local_map_matches, multiscale_features, relocalize,
                                       relocalize_by_place)
from slam.frontend.state import FrameResult, Tracks, inv
from slam.geometry.lie import orthonormalize
from slam.geometry.pinhole import Rig, backproject
from slam.geometry.triangulation import checked_triangulation
from slam.map.keyframe import KeyframeData
from slam.map.map import Map
from slam.sources.base import Frame

INIT, TRACKING, LOST = "init", "tracking", "lost"


class Tracker:
    """Per-frame tracking for stereo, RGB-D and monocular input."""

    def __init__(self, frontend: FrontendConfig, keyframes: KeyframeConfig, rig: Rig, the_map: Map,
                 emit: Callable[[KeyframeData], None], pending: Callable[[], int] = lambda: 0,
                 max_reprojection_error: float = 3.0, min_parallax: float = 1.0, place: bool = False) -> None:
        """emit hands a keyframe on (to the odometry worker); pending counts those not yet in the map;
        max_reprojection_error (px) and min_parallax (deg) check the points tracking triangulates
        (the odometry worker's landmark checks, one setting for both); place: keyframes carry the
        image and features loop closure describes (slam/frontend/place.py)."""
        self.f = frontend
        self.max_reprojection_error, self.min_parallax = max_reprojection_error, min_parallax
        self.rig, self.K = rig, rig.K
        self.map = the_map
        self.emit = emit
        self.pending = pending  # keyframes handed on but not yet in the map
        self.place = place
        self.policy = KeyframePolicy(keyframes)
        self.orb = make_orb() if self.f.descriptors else None
        self.state = INIT
        self.tracks = Tracks()
        self.pyr: Pyramid | None = None
        self.T_cw = np.eye(4)
        self.V = np.eye(4)              # constant-velocity model: T_cw(k+1) ~ V T_cw(k)
        self.origin = np.eye(4)         # T_wc where the next map segment starts
        self.segment = -1
        self.next_kf = 0
        self.kf_id, self.kf_time = -1, -np.inf
        self.kf_T_wc = np.eye(4)
        self.kf_ids = np.zeros(0, np.int64)
        self.kf_uv = np.zeros((0, 2))
        self.kf_landmarks = np.zeros(0, np.int64)
        self.map_version = -1
        self.kf_poses: dict[int, np.ndarray] = {}  # T_wc of keyframes (map values once written)
        # keyframe -> (reference keyframe, T_ref_kf, the reference's scale then)
        self.kf_rel: dict[int, tuple[int, np.ndarray, float]] = {}
        self.kf_scale: dict[int, float] = {}  # each keyframe's depth scale as last seen (Map.keyframe_scale)
        self.lost_since: float | None = None
        self.place_query: Callable[[np.ndarray], list[int]] | None = None  # loaded map: place recognition
        self.localize = False  # localization mode: the loaded map stays fixed, no keyframes are made
        self.relocalized_frames: list[int] = []
        self.mono = MonoInitializer(frontend, rig.K, the_map.allocate_ids) if rig.mode == "mono" else None
        self.times: dict[str, list[float]] = {}
        self.check_levels = self.f.klt_check_levels if self.f.klt_check_levels >= 0 else self.f.klt_levels
        self.anchors = AnchorAligner(self.f.anchor_alignment and (rig.mode != "mono" or self.f.anchor_alignment_mono),
                                     self.f.anchor_alignment_max_pending)
        self.keyframe_reasons: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers
    def _timed(self, stage: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.times.setdefault(stage, []).append(t1 - t0)
        return t1

    def _result(self, frame: Frame, status: str, inliers: int = 0) -> FrameResult:
        T_wc = inv(self.T_cw)
        return FrameResult(frame.index, frame.timestamp, status, T_wc, self.kf_id, inv(self.kf_T_wc) @ T_wc,
                           self.kf_scale.get(self.kf_id, 1.0), self.segment, len(self.tracks), inliers, frame.gt_pose)

    def _lost(self, frame: Frame, status: str = "lost") -> FrameResult:
        return FrameResult(frame.index, frame.timestamp, status, segment=self.segment, gt_pose=frame.gt_pose)

    def _refresh_from_map(self) -> None:
        """Pick up what the map's writers did since the last frame (map_sync.py)."""
        refresh_from_map(self)

    def start_in_map(self, place_query: Callable[[np.ndarray], list[int]] | None, localize: bool = False) -> None:
        """Begin in a loaded map: the first frames relocalize against it (place recognition `place_query`:
        descriptors -> keyframe ids best first, then PnP) instead of starting a new map; tracking goes on in
        its world frame. localize: ORB-SLAM3's localization mode, the map is never written."""
        poses, _, _, segments = self.map.keyframe_table()
        self.place_query, self.localize = place_query, localize
        self.kf_poses.update(enumerate(poses))
        self.kf_scale.update(enumerate(self.map.keyframe_scales().tolist()))
        self.next_kf = len(poses)
        self.segment = int(segments.max()) if len(segments) else -1
        self.map_version = self.map.version
        self.state = LOST
        self.lost_since = None

    # ------------------------------------------------------------------ per frame
    def process(self, frame: Frame) -> list[FrameResult]:
        """Track one frame; returns its result (monocular initialization may add earlier frames)."""
        t0 = time.perf_counter()
        gray = to_gray(frame.left)
        pyr = build_pyramid(gray, self.f.klt_window, self.f.klt_levels)
        t0 = self._timed("pyramid", t0)
        if self.state == TRACKING:
            out = [self._track(frame, gray, pyr)]
        elif self.state == LOST:
            out = [self._recover(frame, gray, pyr)]
        elif self.mono is not None:
            out = self._init_mono(frame, gray, pyr)
            self._timed("init", t0)
        else:
            out = [self._init_depth(frame, gray, pyr)]
            self._timed("init", t0)
        self.pyr = pyr
        return out

    def _track(self, frame: Frame, gray: np.ndarray, pyr: Pyramid) -> FrameResult:
        t0 = time.perf_counter()
        self._refresh_from_map()
        tr = self.tracks
        T_pred = self.V @ self.T_cw
        guess = self._predict_pixels(T_pred)
        uv, ok = klt(self.pyr, pyr, tr.uv, guess, self.f.fb_threshold, self.check_levels)
        tr.flow = uv - tr.uv
        tr.uv = uv
        tr.keep(ok)
        t0 = self._timed("klt", t0)
        pose = self._estimate_pose(T_pred)
        t0 = self._timed("pose", t0)
        if pose is None:
            return self._enter_lost(frame)
        T, n_inl = pose
        self.V = orthonormalize(T @ inv(self.T_cw))
        self.T_cw = T
        self._triangulate_tracks(self.kf_id)
        status = "tracking"
        if self._want_keyframe(frame):
            if self.localize:  # no keyframe: more of the map's landmarks are found in this frame instead
                self._track_local_map(frame, gray)
                self._timed("local_map", t0)
            else:
                self._make_keyframe(frame, gray, pyr)
                status = "keyframe"
                self._timed("keyframe", t0)
        return self._result(frame, status, n_inl)

    def _predict_pixels(self, T_pred: np.ndarray) -> np.ndarray:
        """KLT seeds: landmarks projected with the predicted pose; other tracks moved as they moved
        last frame, or (new tracks) as a point at the landmarks' median depth would move."""
        tr = self.tracks
        guess = tr.uv.astype(np.float64).copy()
        if not len(tr):
            return guess
        lm = np.isfinite(tr.xyz[:, 0])
        proj, z = project(T_pred, np.where(lm[:, None], tr.xyz, 0.0), self.K)
        depth = float(np.median(z[lm & (z > 0)])) if (lm & (z > 0)).any() else 1e6
        T_rel = T_pred @ inv(self.T_cw)  # previous camera -> predicted camera
        ray = np.column_stack([guess, np.ones(len(guess))]) @ np.linalg.inv(self.K).T
        moved, zm = project(T_rel, ray * depth, self.K)
        seeded = np.where((zm > 0)[:, None], moved, guess)
        known = np.isfinite(tr.flow[:, 0])
        seeded[known] = guess[known] + tr.flow[known]
        use = lm & (z > 0)
        guess = np.where(use[:, None], proj, seeded)
        h, w = self.rig.height, self.rig.width
        # Whole pixels: KLT converges from anywhere in its basin, and where it stops within its
        # tolerance depends on the seed. A seed that moved with the last micrometre of a BA
        # correction would make the tracks, and through them the whole run, depend on the
        # rounding of every solve; a rounded one changes only when it crosses a pixel boundary.
        return np.clip(np.round(np.nan_to_num(guess)), [0, 0], [w - 1, h - 1])

    def _estimate_pose(self, T_pred: np.ndarray) -> tuple[np.ndarray, int] | None:
        """Pose from tracked landmarks: refinement from the prediction, RANSAC PnP as fallback.

        Drops outlier landmark tracks; None when fewer than min_inliers remain.
        """
        tr, f = self.tracks, self.f
        lm = np.flatnonzero(np.isfinite(tr.xyz[:, 0]))
        if len(lm) < f.min_inliers:
            return None
        X, uv = tr.xyz[lm], tr.uv[lm].astype(np.float64)
        T, inl = refine_pose(T_pred, X, uv, self.K, f.reprojection_threshold)
        if inl.sum() < max(f.min_inliers, 0.5 * len(lm)):
            res = pnp_ransac(X, uv, self.K, f.reprojection_threshold)
            if res is None:
                return None
            T, inl = refine_pose(res[0], X, uv, self.K, f.reprojection_threshold)
        if inl.sum() < f.min_inliers:
            return None
        drop = np.zeros(len(tr), bool)
        drop[lm[~inl]] = True
        tr.keep(~drop)
        return T, int(inl.sum())

    # ------------------------------------------------------------------ keyframes
    def _want_keyframe(self, frame: Frame) -> bool:
        tr = self.tracks
        parallax, _ = median_parallax(tr.ids, tr.uv, self.kf_ids, self.kf_uv)
        lm = np.isfinite(tr.xyz[:, 0])
        n_lm = int(lm.sum())
        ratio = (np.isin(self.kf_landmarks, tr.ids[lm]).sum() / len(self.kf_landmarks)
                 if len(self.kf_landmarks) else 0.0)
        d = self.policy.decide(frame.timestamp, self.kf_time, parallax, n_lm, float(ratio), pending=self.pending())
        if d.make:
            self.keyframe_reasons[d.reason] = self.keyframe_reasons.get(d.reason, 0) + 1
        return d.make

    def _make_keyframe(self, frame: Frame, gray: np.ndarray, pyr: Pyramid, detect_new: bool = True,
                       chain: bool = True) -> KeyframeData:
        """Detect features in empty cells, measure depth and descriptors, hand the keyframe on."""
        f, tr = self.f, self.tracks
        if f.max_track_keyframes > 0:
            tr.renew(f.max_track_keyframes, self.next_kf, self.map.allocate_ids)
        if self.anchors.due(self.pending()) and self.anchors.images and len(tr):
            t0 = time.perf_counter()
            tr.uv = self.anchors.align(gray, tr.uv, tr.anchor_kf, tr.anchor_uv, self.kf_poses, self.T_cw, tr.xyz,
                                       self.K).astype(np.float32)
            self._timed("anchor_alignment", t0)
        if detect_new:
            fresh = detect(gray, tr.uv, f.max_features, f.grid_cols, f.grid_rows, f.min_distance,
                           f.quality_level, f.border)
            if len(fresh):
                tr.add(self.map.allocate_ids(len(fresh)), fresh)
        uv = tr.uv.astype(np.float64)
        T_wc = inv(self.T_cw)
        lm = np.isfinite(tr.xyz[:, 0])
        m = measure(frame, gray, pyr, uv, self.rig, f, self.orb)
        place = place_input(frame, gray, uv, m, tr.ids.copy()) if self.place else None  # loop worker's input
        fill = ~lm & np.isfinite(m.depth)  # provisional positions until the worker's landmarks arrive
        if fill.any():
            tr.xyz[fill] = backproject(uv[fill], m.depth[fill], self.K, T_wc)
            tr.xyz_kf[fill] = self.next_kf
        prov = tr.xyz_kf >= 0  # everything not yet in the map goes to the worker, in this keyframe's frame
        tr.xyz_kf[prov] = self.next_kf
        new_ids, new_points = tr.ids[prov], tr.xyz[prov]
        ref = self.kf_id if chain and self.kf_id in self.kf_poses else -1
        T_ref_kf = inv(self.kf_poses[ref]) @ T_wc if ref >= 0 else None
        scale = self.kf_scale.get(ref, 1.0) if ref >= 0 else 1.0
        kf = KeyframeData(
            id=self.next_kf, frame_index=frame.index, timestamp=frame.timestamp, pose=T_wc, segment=self.segment,
            ids=tr.ids.copy(), uv=uv, u_right=m.u_right, depth=m.depth, descriptors=m.descriptors,
            desc_ok=m.desc_ok, new_ids=new_ids, new_points=new_points, ref_kf=ref, T_ref_kf=T_ref_kf, scale=scale,
            place=place)
        if T_ref_kf is not None:
            self.kf_rel[kf.id] = (ref, T_ref_kf, scale)
        self.kf_scale[kf.id] = scale
        fresh_anchor = tr.anchor_kf < 0
        tr.anchor_kf[fresh_anchor] = kf.id
        tr.anchor_uv[fresh_anchor] = uv[fresh_anchor]
        self.kf_poses[kf.id] = T_wc
        self.anchors.keep(kf.id, gray, tr.anchor_kf)
        self.next_kf += 1
        self.kf_id, self.kf_time, self.kf_T_wc = kf.id, frame.timestamp, T_wc
        self.kf_ids, self.kf_uv = kf.ids, uv
        self.kf_landmarks = tr.ids[np.isfinite(tr.xyz[:, 0])]
        self.emit(kf)
        return kf

    def _triangulate_tracks(self, tag: int) -> None:
        """Positions from a track's anchor keyframe and this frame, every frame: for tracks without
        one, and (monocular) for provisional ones once the parallax has grown by half.

        Done here rather than only in the worker so that tracking never waits for the worker's
        queue: points are used from the next frame on and handed to the worker with the next
        keyframe; their depth improves as the baseline grows until bundle adjustment takes over.
        """
        tr = self.tracks
        none = ~np.isfinite(tr.xyz[:, 0])
        redo = (tr.xyz_kf >= 0) & (tr.xyz_par > 0) if self.rig.mode == "mono" else np.zeros(len(tr), bool)
        cand = np.flatnonzero((none | redo) & (tr.anchor_kf >= 0))
        if len(cand) == 0:
            return
        kfs = np.unique(tr.anchor_kf[cand])
        T_cw_a = inv(np.stack([self.kf_poses[int(k)] for k in kfs]))[np.searchsorted(kfs, tr.anchor_kf[cand])]
        X, good, par = checked_triangulation(T_cw_a, self.T_cw, tr.anchor_uv[cand], tr.uv[cand].astype(np.float64),
                                             self.K, self.max_reprojection_error, self.min_parallax)
        good &= none[cand] | (par >= 1.5 * tr.xyz_par[cand])
        idx = cand[good]
        tr.xyz[idx] = X[good]
        tr.xyz_kf[idx] = tag
        tr.xyz_par[idx] = par[good]

    # ------------------------------------------------------------------ initialization and loss
    def _start_segment(self) -> None:
        self.segment += 1
        self.T_cw = inv(self.origin)
        self.V = np.eye(4)

    def _init_depth(self, frame: Frame, gray: np.ndarray, pyr: Pyramid) -> FrameResult:
        """Stereo / RGB-D: a map segment starts at the first frame with enough features with depth."""
        f = self.f
        pts = detect(gray, np.zeros((0, 2)), f.max_features, f.grid_cols, f.grid_rows, f.min_distance,
                     f.quality_level, f.border)
        if len(pts) < 2 * f.min_inliers:
            return self._lost(frame, "init")
        m = measure(frame, gray, pyr, pts.astype(np.float64), self.rig, f, None)
        if np.isfinite(m.depth).sum() < 2 * f.min_inliers:
            return self._lost(frame, "init")
        self._start_segment()
        self.tracks = Tracks()
        self.tracks.add(self.map.allocate_ids(len(pts)), pts)
        self._make_keyframe(frame, gray, pyr, detect_new=False, chain=False)
        self.state = TRACKING
        self.lost_since = None
        return self._result(frame, "keyframe", int(np.isfinite(m.depth).sum()))

    def _enter_lost(self, frame: Frame) -> FrameResult:
        self.state = LOST
        self.lost_since = frame.timestamp
        self.origin = inv(self.T_cw)
        self.tracks = Tracks()
        return self._lost(frame)

    def _recover(self, frame: Frame, gray: np.ndarray, pyr: Pyramid) -> FrameResult:
        """Relocalize against the map (a loaded one: place recognition first); after new_map_after
        seconds start a new map segment (never in localization mode)."""
        t0 = time.perf_counter()
        f = self.f
        if self.lost_since is None:  # a loaded map: the run starts lost in it
            self.lost_since = frame.timestamp
        orb = self.orb or make_orb()
        rel = None
        if self.place_query is not None:
            rel = relocalize_by_place(gray, self.map, self.K, orb, self.place_query, f.relocalize_min_inliers,
                                      f.reprojection_threshold, f.relocalize_features)
        if rel is None and self.map.n_keyframes:
            rel = relocalize(gray, self.map, self.K, orb, f.relocalize_keyframes, f.relocalize_min_inliers,
                             f.reprojection_threshold, f.relocalize_features)
        self._timed("relocalize", t0)
        if rel is not None:
            self.tracks = Tracks()
            self.tracks.add(rel.ids, rel.uv, self.map.positions(rel.ids))
            self.T_cw = rel.T_cw
            self.V = np.eye(4)
            self.state = TRACKING
            self.lost_since = None
            self.relocalized_frames.append(frame.index)
            if self.localize:
                self._anchor_to_map(frame)
            else:
                self._make_keyframe(frame, gray, pyr, chain=False)  # its pose comes from the map itself
            return self._result(frame, "relocalized", rel.inliers)
        if frame.timestamp - self.lost_since >= f.new_map_after and not self.localize:
            self.state = INIT
            if self.mono is not None:
                self.mono.reset()
                return self._init_mono(frame, gray, pyr)[-1]
            return self._init_depth(frame, gray, pyr)
        return self._lost(frame)

    def _anchor_to_map(self, frame: Frame) -> None:
        """Localization mode: poses are stored relative to the map keyframe nearest the camera, and the
        keyframe policy measures from this frame's tracks (a fixed map gets no keyframes)."""
        T_wc = inv(self.T_cw)
        ks = np.array(sorted(self.kf_poses))
        centers = np.stack([self.kf_poses[int(k)][:3, 3] for k in ks])
        k = int(ks[np.argmin(np.linalg.norm(centers - T_wc[:3, 3], axis=1))])
        self.kf_id, self.kf_T_wc, self.kf_time = k, self.kf_poses[k], frame.timestamp
        tr = self.tracks
        self.kf_ids, self.kf_uv = tr.ids.copy(), tr.uv.astype(np.float64)
        self.kf_landmarks = tr.ids[np.isfinite(tr.xyz[:, 0])]

    def _track_local_map(self, frame: Frame, gray: np.ndarray) -> None:
        """Localization mode: landmarks of the map keyframes near the camera found in this frame by
        projection and descriptor (ORB-SLAM's track-local-map) join the tracks."""
        f, tr = self.f, self.tracks
        T_wc = inv(self.T_cw)
        ks = np.array(sorted(self.kf_poses))
        centers = np.stack([self.kf_poses[int(k)][:3, 3] for k in ks])
        near = ks[np.argsort(np.linalg.norm(centers - T_wc[:3, 3], axis=1))[:5]]
        covis = [k for n in near for k, _ in sorted(self.map.covisible(int(n)).items(), key=lambda kv: -kv[1])[:5]]
        ids, X, desc = self.map.keyframes_landmarks(np.union1d(near, np.array(covis, np.int64)))
        uv, d = multiscale_features(gray, self.orb or make_orb(), f.relocalize_features)
        q, lm = local_map_matches(uv, d, self.T_cw, ids, X, desc, gray.shape[:2], self.K, f.reprojection_threshold)
        new = ~np.isin(ids[lm], tr.ids)
        if new.any():
            tr.add(ids[lm[new]], uv[q[new]], X[lm[new]])
        self._anchor_to_map(frame)

    def _init_mono(self, frame: Frame, gray: np.ndarray, pyr: Pyramid) -> list[FrameResult]:
        """One frame of monocular initialization; the results end with this frame's."""
        assert self.mono is not None
        step = self.mono.process(frame, gray, self.pyr, pyr)
        if step.start is None:
            return [self._lost(fr, status) for fr, status in step.unposed]
        return self._start_mono(step.start, frame, gray, pyr)

    def _start_mono(self, st: TwoViewStart, frame: Frame, gray: np.ndarray, pyr: Pyramid) -> list[FrameResult]:
        """A map segment from a two-view initialization: the reference keyframe with the triangulated
        points, poses of the frames in between from those points, and this frame as second keyframe."""
        self._start_segment()
        origin = self.origin
        self.tracks = tr = st.tracks
        good = st.good
        pts_w = st.points @ origin[:3, :3].T + origin[:3, 3]
        desc = ok = None
        if self.orb is not None:
            desc, ok = orb_descriptors(st.ref_gray, st.ref_uv, self.orb)
        n = len(tr)
        ref = st.ref_frame
        kf0 = KeyframeData(id=self.next_kf, frame_index=ref.index, timestamp=ref.timestamp, pose=origin.copy(),
                           segment=self.segment, ids=tr.ids.copy(), uv=st.ref_uv, u_right=np.full(n, np.nan),
                           depth=np.full(n, np.nan), descriptors=desc, desc_ok=ok,
                           new_ids=tr.ids[good].copy(), new_points=pts_w)
        self.next_kf += 1
        self.emit(kf0)
        tr.xyz[good] = pts_w
        tr.xyz_kf[good] = kf0.id
        tr.anchor_kf[:] = kf0.id  # later triangulations of these tracks use the widest baseline
        tr.anchor_uv = st.ref_uv.copy()
        self.kf_poses[kf0.id] = origin.copy()
        self.kf_scale[kf0.id] = kf0.scale  # a new segment's own units
        self.anchors.keep(kf0.id, st.ref_gray, tr.anchor_kf)
        self.T_cw = st.T_cur_ref @ np.linalg.inv(origin)
        self.kf_id, self.kf_time, self.kf_T_wc = kf0.id, ref.timestamp, origin.copy()
        self.kf_ids, self.kf_uv = kf0.ids, st.ref_uv
        out = [self._pose_result(ref, origin, len(tr), len(tr))]
        good_ids = tr.ids[good]  # increasing: ids are allocated in order and tracks keep it
        for fr, ids, uv in st.pending:
            pose = pose_from_points(pts_w, good_ids, ids, uv, self.K, self.f)
            out.append(self._lost(fr) if pose is None else self._pose_result(fr, inv(pose[0]), pose[1], pose[1]))
        self.V = np.eye(4)
        self.state = TRACKING
        self.lost_since = None
        self._make_keyframe(frame, gray, pyr)
        out.append(self._result(frame, "keyframe", int(good.sum())))
        return out

    def _pose_result(self, fr: Frame, T_wc: np.ndarray, tracked: int, inliers: int) -> FrameResult:
        """A frame posed during initialization, relative to the segment's first keyframe."""
        return FrameResult(fr.index, fr.timestamp, "tracking", T_wc, self.kf_id, inv(self.kf_T_wc) @ T_wc,
                           self.kf_scale.get(self.kf_id, 1.0), self.segment, tracked, inliers, fr.gt_pose)
