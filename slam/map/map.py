"""The shared map: keyframes, landmarks, observations and covisibility behind one lock.

Landmark ids are feature-track ids: the tracker allocates an id when it starts tracking a feature
(`allocate_ids`) and the odometry worker turns the track into a landmark once it has a 3-D
position. Landmark data lives in arrays indexed by id; observations in one table with a row per
(keyframe, track) pair, appended in keyframe order, so the observations of the newest keyframes
are a contiguous tail of the table. Every write bumps `version`; readers that cache (the tracker)
compare versions. Viewers and reports read `snapshot()`, a copy taken under the lock.

The storage and the lock are private: every method takes the lock itself and returns copies
(slam/map/views.py), so the three writers (odometry, loop closure, global BA) and the readers
never see a half-written state nor depend on the layout. Batched writes: `apply_window_solve`
(a window BA's result) and `apply_correction` (a loop or global correction), each one locked step
with one version bump.
"""

from __future__ import annotations

import threading

import numpy as np

from slam.map.keyframe import KeyframeData
from slam.map.views import MapSnapshot, ObservationRows, TrackingView, WindowView

NONE, ALIVE, CULLED = 0, 1, 2  # landmark states
COVIS_RECENT = 100  # covisibility is counted against this many newest keyframes


class _Grow:
    """An append-only array with amortized doubling (rows of a fixed shape and dtype)."""

    def __init__(self, shape: tuple[int, ...], dtype: type, fill: float | int = 0) -> None:
        self.a = np.full((64,) + shape, fill, dtype=dtype)
        self.n = 0
        self.fill = fill

    def reserve(self, n: int) -> None:
        if n > len(self.a):
            new = np.full((max(n, 2 * len(self.a)),) + self.a.shape[1:], self.fill, dtype=self.a.dtype)
            new[:self.n] = self.a[:self.n]
            self.a = new

    def extend(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows)
        self.reserve(self.n + len(rows))
        self.a[self.n:self.n + len(rows)] = rows
        self.n += len(rows)

    @property
    def view(self) -> np.ndarray:
        return self.a[:self.n]


class Map:
    """Keyframes, landmarks (by track id), observations and covisibility; one re-entrant lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.version = 0
        self._next_id = 0
        # landmarks, indexed by track id
        self._lm_pos = _Grow((3,), np.float64, np.nan)
        self._lm_state = _Grow((), np.int8, NONE)
        self._lm_desc = _Grow((32,), np.uint8)
        self._lm_has_desc = _Grow((), bool, False)
        self._lm_ref_kf = _Grow((), np.int64, -1)
        # keyframes, indexed by keyframe id (inserted in id order)
        self._kf_pose = _Grow((4, 4), np.float64)
        self._kf_time = _Grow((), np.float64)
        self._kf_frame = _Grow((), np.int64)
        self._kf_segment = _Grow((), np.int64)
        self._kf_obs = _Grow((2,), np.int64)  # [start, end) rows of the observation table
        # observations
        self._obs_kf = _Grow((), np.int64)
        self._obs_lm = _Grow((), np.int64)
        self._obs_uv = _Grow((2,), np.float64)
        self._obs_ur = _Grow((), np.float64, np.nan)  # right-image u (stereo / virtual RGB-D), NaN for none
        self._obs_ok = _Grow((), bool, True)
        self._covisibility: dict[int, dict[int, int]] = {}

    # ------------------------------------------------------------------ ids
    def allocate_ids(self, n: int) -> np.ndarray:
        """n new track ids (future landmark ids)."""
        with self._lock:
            ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            self._next_id += n
            for g in (self._lm_pos, self._lm_state, self._lm_desc, self._lm_has_desc, self._lm_ref_kf):
                g.reserve(self._next_id)
                g.n = self._next_id
            return ids

    @property
    def n_keyframes(self) -> int:
        """Keyframes inserted so far."""
        return self._kf_time.n

    # ------------------------------------------------------------------ writes (odometry worker)
    def insert_keyframe(self, kf: KeyframeData) -> None:
        """Add a keyframe with an observation row per tracked feature; ids must be allocated."""
        with self._lock:
            if kf.id != self._kf_time.n:
                raise ValueError(f"keyframe {kf.id} inserted out of order (expected {self._kf_time.n})")
            start = self._obs_kf.n
            k = len(kf.ids)
            self._obs_kf.extend(np.full(k, kf.id, np.int64))
            self._obs_lm.extend(kf.ids)
            self._obs_uv.extend(kf.uv)
            self._obs_ur.extend(kf.u_right)
            self._obs_ok.extend(np.ones(k, bool))
            self._kf_pose.extend(kf.pose[None])
            self._kf_time.extend([kf.timestamp])
            self._kf_frame.extend([kf.frame_index])
            self._kf_segment.extend([kf.segment])
            self._kf_obs.extend([[start, start + k]])
            if kf.descriptors is not None:
                ok = kf.desc_ok
                self._lm_desc.a[kf.ids[ok]] = kf.descriptors[ok]
                self._lm_has_desc.a[kf.ids[ok]] = True
            self._update_covisibility(kf.id, kf.ids)
            self.version += 1

    def _update_covisibility(self, kf_id: int, ids: np.ndarray) -> None:
        first = max(0, kf_id - COVIS_RECENT)
        lo, hi = self._kf_obs.a[first, 0], self._kf_obs.a[kf_id, 0]
        shared = np.isin(self._obs_lm.a[lo:hi], ids)
        counts = np.bincount(self._obs_kf.a[lo:hi][shared] - first, minlength=kf_id - first)
        mine = self._covisibility.setdefault(kf_id, {})
        for other in np.flatnonzero(counts):  # per keyframe, not per observation
            o = int(other) + first
            mine[o] = int(counts[other])
            self._covisibility.setdefault(o, {})[kf_id] = int(counts[other])

    def create_landmarks(self, ids: np.ndarray, positions: np.ndarray, ref_kf: int,
                         if_states: tuple[int, ...] | None = None) -> np.ndarray:
        """Give tracks a 3-D position (world frame): they become landmarks anchored to ref_kf.

        if_states: only the ids whose state is one of these (checked under the lock) are created.
        Returns the mask of ids that were created.
        """
        ids = np.asarray(ids, np.int64)
        positions = np.asarray(positions, np.float64).reshape(-1, 3)
        with self._lock:
            m = np.ones(len(ids), bool) if if_states is None else np.isin(self._lm_state.a[ids], if_states)
            self._lm_pos.a[ids[m]] = positions[m]
            self._lm_state.a[ids[m]] = ALIVE
            self._lm_ref_kf.a[ids[m]] = ref_kf
            self.version += 1
            return m

    def apply_window_solve(self, kf_ids: np.ndarray, poses: np.ndarray, lm_ids: np.ndarray, positions: np.ndarray,
                           reject_rows: np.ndarray | None = None, cull_ids: np.ndarray | None = None) -> int:
        """Write one window bundle adjustment back in one locked step; returns the new version.

        Sets T_world_cam of kf_ids and the positions of lm_ids that are still alive (the solve ran
        outside the lock), marks reject_rows (observation rows of a WindowView) as outliers and
        culls cull_ids. Unlike apply_correction, landmarks are not moved with their reference
        keyframe: BA estimated every position itself.
        """
        lm_ids = np.asarray(lm_ids, np.int64)
        with self._lock:
            self._kf_pose.a[kf_ids] = poses
            live = self._lm_state.a[lm_ids] == ALIVE
            self._lm_pos.a[lm_ids[live]] = np.asarray(positions)[live]
            if reject_rows is not None and len(reject_rows):
                self._obs_ok.a[reject_rows] = False
            if cull_ids is not None and len(cull_ids):
                self._lm_state.a[cull_ids] = CULLED
            self.version += 1
            return self.version

    def apply_correction(self, kf_ids: np.ndarray, poses: np.ndarray, scales: np.ndarray | None = None) -> int:
        """Set new T_world_cam for kf_ids and move every landmark anchored to them; returns the new version.

        One locked step (loop closure, global BA): each alive landmark whose reference keyframe r is
        in kf_ids keeps its coordinates in r's camera frame, scaled by s_r for Sim(3) corrections of
        monocular maps (scale drift changes depths, not bearings): p' = T_new_r (s_r T_old_r^-1 p).
        """
        kf_ids = np.asarray(kf_ids, np.int64)
        poses = np.asarray(poses, np.float64).reshape(-1, 4, 4)
        if len(kf_ids) != len(poses):
            raise ValueError(f"{len(kf_ids)} keyframe ids but {len(poses)} poses")
        s = np.ones(len(kf_ids)) if scales is None else np.asarray(scales, np.float64).reshape(-1)
        with self._lock:
            if len(kf_ids) and (kf_ids.min() < 0 or kf_ids.max() >= self._kf_time.n):
                raise ValueError("correction of a keyframe that is not in the map")
            slot = np.full(self._kf_time.n, -1, np.int64)
            slot[kf_ids] = np.arange(len(kf_ids))
            ref = self._lm_ref_kf.view
            moved = np.flatnonzero((self._lm_state.view == ALIVE) & (ref >= 0))
            moved = moved[slot[ref[moved]] >= 0]
            if moved.size:
                k = slot[ref[moved]]
                T_old = self._kf_pose.a[kf_ids[k]]
                p = self._lm_pos.a[moved] - T_old[:, :3, 3]
                p_cam = np.einsum("nji,nj->ni", T_old[:, :3, :3], p) * s[k, None]
                self._lm_pos.a[moved] = np.einsum("nij,nj->ni", poses[k, :3, :3], p_cam) + poses[k, :3, 3]
            self._kf_pose.a[kf_ids] = poses
            self.version += 1
            return self.version

    def reject_observations(self, rows: np.ndarray) -> None:
        """Mark observation rows as outliers (kept in the table, ignored from now on)."""
        with self._lock:
            self._obs_ok.a[rows] = False
            self.version += 1

    def cull_landmarks(self, ids: np.ndarray) -> None:
        """Remove landmarks: their tracks stop being used."""
        with self._lock:
            self._lm_state.a[ids] = CULLED
            self.version += 1

    # ------------------------------------------------------------------ reads
    def positions(self, ids: np.ndarray) -> np.ndarray:
        """(M,3) world positions of ids, NaN where the track is not (or no longer) a landmark."""
        with self._lock:
            pos = self._lm_pos.a[ids].copy()
            pos[self._lm_state.a[ids] != ALIVE] = np.nan
            return pos

    def states(self, ids: np.ndarray) -> np.ndarray:
        """Landmark state (NONE, ALIVE, CULLED) of ids."""
        with self._lock:
            return self._lm_state.a[ids].copy()

    def keyframe_pose(self, kf_id: int) -> np.ndarray | None:
        """T_world_cam of a keyframe, None if not inserted yet."""
        with self._lock:
            return self._kf_pose.a[kf_id].copy() if kf_id < self._kf_time.n else None

    def keyframe_poses(self) -> np.ndarray:
        """(K,4,4) T_world_cam of all keyframes, by id."""
        with self._lock:
            return self._kf_pose.view.copy()

    def _rows(self, first_kf: int, last_kf: int) -> np.ndarray:
        """Row indices of the observations of keyframes first_kf..last_kf (inclusive); caller holds the lock."""
        return np.arange(self._kf_obs.a[first_kf, 0], self._kf_obs.a[last_kf, 1])

    def local_landmarks(self, n_keyframes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, positions, descriptors) of alive landmarks with a descriptor seen by the newest keyframes."""
        with self._lock:
            k = self._kf_time.n
            if k == 0:
                return np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 32), np.uint8)
            rows = self._rows(max(0, k - n_keyframes), k - 1)
            ids = np.unique(self._obs_lm.a[rows][self._obs_ok.a[rows]])
            ids = ids[(self._lm_state.a[ids] == ALIVE) & self._lm_has_desc.a[ids]]
            return ids, self._lm_pos.a[ids].copy(), self._lm_desc.a[ids].copy()

    def keyframe_observations(self, kf_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(landmark ids, pixel uv (N,2), right u (N,)) of a keyframe's inlier observations of alive landmarks."""
        with self._lock:
            r0, r1 = self._kf_obs.a[kf_id]
            lm = self._obs_lm.a[r0:r1]
            keep = self._obs_ok.a[r0:r1] & (self._lm_state.a[lm] == ALIVE)
            return lm[keep].copy(), self._obs_uv.a[r0:r1][keep].copy(), self._obs_ur.a[r0:r1][keep].copy()

    def landmarks(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(positions (N,3), states, reference keyframes, descriptors (N,32) zero where none) of ids."""
        with self._lock:
            ids = np.asarray(ids, np.int64)
            return (self._lm_pos.a[ids].copy(), self._lm_state.a[ids].copy(), self._lm_ref_kf.a[ids].copy(),
                    np.where(self._lm_has_desc.a[ids, None], self._lm_desc.a[ids], 0).astype(np.uint8))

    def covisible(self, kf_id: int, min_shared: int = 1) -> dict[int, int]:
        """{keyframe: shared landmarks} of the keyframes covisible with kf_id (a copy)."""
        with self._lock:
            return {k: n for k, n in self._covisibility.get(kf_id, {}).items() if n >= min_shared}

    def covisibility_edges(self, min_shared: int) -> np.ndarray:
        """(E,3) int rows [i, j, shared] with i < j of every covisibility pair sharing >= min_shared landmarks."""
        with self._lock:
            rows = [(i, j, n) for i, d in self._covisibility.items() for j, n in d.items() if i < j and n >= min_shared]
        return np.array(rows, np.int64).reshape(-1, 3)

    def keyframe_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(poses (K,4,4) T_world_cam, timestamps, source frame indices, segments) of all keyframes."""
        with self._lock:
            return (self._kf_pose.view.copy(), self._kf_time.view.copy(), self._kf_frame.view.copy(),
                    self._kf_segment.view.copy())

    def window_view(self, n_window: int, n_older: int) -> WindowView | None:
        """The newest n_window keyframes with their inlier observations of alive landmarks, and the
        observations of those landmarks by up to n_older keyframes before the window; None before
        the map has a keyframe."""
        with self._lock:
            K = self._kf_time.n
            if K == 0:
                return None
            w0 = max(0, K - n_window)
            o0 = max(0, w0 - n_older)
            rows = self._rows(w0, K - 1)
            lm = self._obs_lm.a[rows]
            rows = rows[self._obs_ok.a[rows] & (self._lm_state.a[lm] == ALIVE)]
            lms = np.unique(self._obs_lm.a[rows])
            older = np.zeros(0, np.int64)
            if w0 > 0 and lms.size:
                older = self._rows(o0, w0 - 1)
                older = older[self._obs_ok.a[older] & np.isin(self._obs_lm.a[older], lms)]
            seg = self._kf_segment.a[o0:K].copy()
            return WindowView(
                version=self.version, n_keyframes=K, first_kf=w0, older_kf=o0, poses=self._kf_pose.a[o0:K].copy(),
                segments=seg, segment_first=np.searchsorted(self._kf_segment.a[:K], seg),  # segments never decrease
                window=self._observation_rows(rows), older=self._observation_rows(older),
                point_ids=lms, points=self._lm_pos.a[lms].copy())

    def _observation_rows(self, rows: np.ndarray) -> ObservationRows:
        """Copies of the table rows; caller holds the lock."""
        return ObservationRows(rows, self._obs_kf.a[rows], self._obs_lm.a[rows], self._obs_uv.a[rows],
                               self._obs_ur.a[rows])

    def oldest_observations(self, ids: np.ndarray, first_kf: int, last_kf: int,
                            state: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ids, keyframe ids, uv (N,2), T_world_cam (N,4,4)): for each of ids (only those in `state`,
        when given) its oldest inlier observation among keyframes first_kf..last_kf (the widest
        baseline for triangulation); ids come back sorted."""
        ids = np.asarray(ids, np.int64)
        with self._lock:
            if state is not None:
                ids = ids[self._lm_state.a[ids] == state]
            rows = self._rows(first_kf, last_kf)
            sel = rows[np.isin(self._obs_lm.a[rows], ids) & self._obs_ok.a[rows]]
            # rows are in keyframe order: the first row of each track is its oldest observation
            found, first = np.unique(self._obs_lm.a[sel], return_index=True)
            rows_a = sel[first]
            kf = self._obs_kf.a[rows_a]
            return found, kf, self._obs_uv.a[rows_a], self._kf_pose.a[kf]

    def tracking_view(self, ids: np.ndarray) -> TrackingView:
        """States and positions (NaN where not alive) of track ids, and all keyframe poses, of one version."""
        ids = np.asarray(ids, np.int64)
        with self._lock:
            pos = self._lm_pos.a[ids]
            st = self._lm_state.a[ids]
            pos[st != ALIVE] = np.nan
            return TrackingView(self.version, st, pos, self._kf_pose.view.copy())

    def snapshot(self) -> MapSnapshot:
        """A copy of keyframes and alive landmarks, taken under the lock."""
        with self._lock:
            alive = np.flatnonzero(self._lm_state.view == ALIVE)
            return MapSnapshot(
                version=self.version, keyframe_ids=np.arange(self._kf_time.n),
                keyframe_timestamps=self._kf_time.view.copy(), keyframe_frames=self._kf_frame.view.copy(),
                keyframe_poses=self._kf_pose.view.copy(), keyframe_segments=self._kf_segment.view.copy(),
                point_ids=alive, points=self._lm_pos.a[alive].copy(), n_observations=int(self._obs_ok.view.sum()))
