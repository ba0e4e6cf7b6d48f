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
from typing import Any

import numpy as np

from slam.geometry import lie
from slam.map.correction import propagate, rebase_keyframe
from slam.map.covisibility import Covisibility
from slam.map.fusion import ALIVE, CULLED, NONE, LandmarkFusion
from slam.map.growable import Growable
from slam.map.keyframe import KeyframeData
from slam.map.views import MapSnapshot, ObservationRows, TrackingView, WindowView

__all__ = ["Map", "NONE", "ALIVE", "CULLED"]  # the landmark states live in fusion.py
COVIS_RECENT = 100  # covisibility is counted against this many newest keyframes
# a saved map's map.npz arrays (docs/maps.md) and the Map attributes holding them
_STATE_ARRAYS = (("lm_position", "_lm_pos"), ("lm_state", "_lm_state"), ("lm_descriptor", "_lm_desc"),
                 ("lm_has_descriptor", "_lm_has_desc"), ("lm_ref_kf", "_lm_ref_kf"), ("lm_merged", "_lm_merged"),
                 ("kf_pose", "_kf_pose"), ("kf_timestamp", "_kf_time"), ("kf_frame", "_kf_frame"),
                 ("kf_segment", "_kf_segment"), ("kf_obs_range", "_kf_obs"), ("obs_kf", "_obs_kf"),
                 ("obs_lm", "_obs_lm"), ("obs_uv", "_obs_uv"), ("obs_u_right", "_obs_ur"), ("obs_inlier", "_obs_ok"))


class Map(LandmarkFusion):
    """Keyframes, landmarks (by track id), observations and covisibility; one re-entrant lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.version = 0
        self._next_id = 0
        # landmarks, indexed by track id
        self._lm_pos = Growable((3,), np.float64, np.nan)
        self._lm_state = Growable((), np.int8, NONE)
        self._lm_desc = Growable((32,), np.uint8)
        self._lm_has_desc = Growable((), bool, False)
        self._lm_ref_kf = Growable((), np.int64, -1)
        self._lm_merged = Growable((), np.int64, -1)  # fused into this landmark (loop closure), -1: not fused
        # keyframes, indexed by keyframe id (inserted in id order)
        self._kf_pose = Growable((4, 4), np.float64)
        self._kf_time = Growable((), np.float64)
        self._kf_frame = Growable((), np.int64)
        self._kf_segment = Growable((), np.int64)
        self._kf_obs = Growable((2,), np.int64)  # [start, end) rows of the observation table
        # The units of each keyframe's camera frame: multiplied by the scale of every Sim(3)
        # correction applied to it (monocular loop closure, apply_correction); a new keyframe
        # inherits its reference's at insert. Only the ratio of one keyframe's values over time
        # means anything: tracking, the worker and the trajectory export rescale by it what they
        # measured in that frame before. Saved maps drop it (a loaded map's frames are its units).
        self._kf_scale = Growable((), np.float64, 1.0)
        # observations
        self._obs_kf = Growable((), np.int64)
        self._obs_lm = Growable((), np.int64)
        self._obs_uv = Growable((2,), np.float64)
        self._obs_ur = Growable((), np.float64, np.nan)  # right-image u (stereo / virtual RGB-D), NaN for none
        self._obs_ok = Growable((), bool, True)
        self._covisibility = Covisibility()
        # Loop closure and global BA corrections so far: a window solve gathered before a correction
        # must not write its (pre-correction) poses back after it (apply_window_solve checks).
        self._corrections = 0

    # ------------------------------------------------------------------ ids
    def allocate_ids(self, n: int) -> np.ndarray:
        """n new track ids (future landmark ids)."""
        with self._lock:
            ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            self._next_id += n
            for g in (self._lm_pos, self._lm_state, self._lm_desc, self._lm_has_desc, self._lm_ref_kf, self._lm_merged):
                g.reserve(self._next_id)
                g.n = self._next_id
            return ids

    @property
    def corrections(self) -> int:
        """Loop or global corrections applied so far."""
        return self._corrections

    @property
    def n_keyframes(self) -> int:
        """Keyframes inserted so far."""
        return self._kf_time.n

    # ------------------------------------------------------------------ writes (odometry worker)
    def insert_keyframe(self, kf: KeyframeData, follow_reference: bool = False) -> None:
        """Add a keyframe with an observation row per tracked feature; ids must be allocated.

        follow_reference: first move it (and its new points) onto its reference keyframe's pose and
        units as they are now (correction.rebase_keyframe), in the same locked step, so that a loop
        correction cannot land between reading the reference and inserting.
        """
        with self._lock:
            if kf.id != self._kf_time.n:
                raise ValueError(f"keyframe {kf.id} inserted out of order (expected {self._kf_time.n})")
            if follow_reference and 0 <= kf.ref_kf < self._kf_time.n and kf.T_ref_kf is not None:
                rebase_keyframe(kf, self._kf_pose.a[kf.ref_kf], float(self._kf_scale.a[kf.ref_kf]))
            start = self._obs_kf.n
            k = len(kf.ids)
            self._obs_kf.extend(np.full(k, kf.id, np.int64))
            ids = self.resolve(kf.ids)  # a queued keyframe may still name a fused landmark
            self._obs_lm.extend(ids)
            self._obs_uv.extend(kf.uv)
            self._obs_ur.extend(kf.u_right)
            self._obs_ok.extend(np.ones(k, bool))
            self._kf_pose.extend(kf.pose[None])
            self._kf_time.extend([kf.timestamp])
            self._kf_frame.extend([kf.frame_index])
            self._kf_segment.extend([kf.segment])
            self._kf_obs.extend([[start, start + k]])
            self._kf_scale.extend([kf.scale])
            if kf.descriptors is not None:
                ok = kf.desc_ok
                self._lm_desc.a[kf.ids[ok]] = kf.descriptors[ok]
                self._lm_has_desc.a[kf.ids[ok]] = True
            self._update_covisibility(kf.id, ids)
            self.version += 1

    def _update_covisibility(self, kf_id: int, ids: np.ndarray) -> None:
        first = max(0, kf_id - COVIS_RECENT)
        lo, hi = self._kf_obs.a[first, 0], self._kf_obs.a[kf_id, 0]
        shared = np.isin(self._obs_lm.a[lo:hi], ids)
        counts = np.bincount(self._obs_kf.a[lo:hi][shared] - first, minlength=kf_id - first)
        others = np.flatnonzero(counts)
        self._covisibility.add(kf_id, others + first, counts[others])

    def create_landmarks(self, ids: np.ndarray, positions: np.ndarray, ref_kf: int,
                         if_states: tuple[int, ...] | None = None,
                         measured_at: tuple[np.ndarray, float] | None = None) -> np.ndarray:
        """Give tracks a 3-D position (world frame): they become landmarks anchored to ref_kf.

        if_states: only the ids whose state is one of these (checked under the lock) are created.
        measured_at: (pose, units) of ref_kf the positions were computed with; if a correction has
        moved or rescaled ref_kf since, the positions follow it as its landmarks did
        (p' = T_now (r T_then^-1 p)). Returns the mask of ids that were created.
        """
        ids = np.asarray(ids, np.int64)
        positions = np.asarray(positions, np.float64).reshape(-1, 3)
        with self._lock:
            if measured_at is not None and 0 <= ref_kf < self._kf_time.n:
                T_then, s_then = measured_at
                T_now, s_now = self._kf_pose.a[ref_kf], float(self._kf_scale.a[ref_kf])
                if s_now != s_then or not np.array_equal(T_now, T_then):
                    D = lie.frame_motion(T_now, np.linalg.inv(T_then), s_now / s_then)
                    positions = positions @ D[:3, :3].T + D[:3, 3]
            m = np.ones(len(ids), bool) if if_states is None else np.isin(self._lm_state.a[ids], if_states)
            self._lm_pos.a[ids[m]] = positions[m]
            self._lm_state.a[ids[m]] = ALIVE
            self._lm_ref_kf.a[ids[m]] = ref_kf
            self.version += 1
            return m

    def apply_window_solve(self, kf_ids: np.ndarray, poses: np.ndarray, lm_ids: np.ndarray, positions: np.ndarray,
                           reject_rows: np.ndarray | None = None, cull_ids: np.ndarray | None = None,
                           corrections: int | None = None) -> int | None:
        """Write one window bundle adjustment back in one locked step; returns the new version, or
        None (nothing written) when `corrections` (WindowView.corrections of the view the window
        was solved from) is no longer current: a loop correction moved the map meanwhile.

        Sets T_world_cam of kf_ids and the positions of lm_ids that are still alive (the solve ran
        outside the lock), marks reject_rows (observation rows of a WindowView) as outliers and
        culls cull_ids. Unlike apply_correction, landmarks are not moved with their reference
        keyframe: BA estimated every position itself.
        """
        lm_ids = np.asarray(lm_ids, np.int64)
        with self._lock:
            if corrections is not None and corrections != self._corrections:
                return None
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
            if scales is not None:
                self._kf_scale.a[kf_ids] *= s
            self._corrections += 1
            self.version += 1
            return self.version

    def correct_keyframes(self, C: np.ndarray, sim3: bool = False, abort: Any = None) -> tuple[int, int] | None:
        """Apply world-frame corrections C (N,4,4) to keyframes 0..N-1 as they are now, in one locked
        step (loop closure); keyframes inserted since (N..) get C[N-1], the correction of the one
        they were tracked from. Sim(3) corrections (sim3) scale landmark depths (map/correction.py).

        Returns (keyframes corrected, of which inserted after the graph was copied), or None when
        `abort` (a threading.Event) is set: a run being stopped keeps its last completed correction.
        """
        with self._lock:
            if abort is not None and abort.is_set():
                return None
            T, s = propagate(np.asarray(C, np.float64), self._kf_pose.view)
            self.apply_correction(np.arange(len(T)), T, s if sim3 else None)
            return len(T), len(T) - len(C)

    def apply_global_solve(self, T_copied: np.ndarray, T_solved: np.ndarray, lm_ids: np.ndarray,
                           positions: np.ndarray, abort: Any = None) -> bool:
        """Write a global BA back in one locked step: keyframe i (0..N-1, T_world_cam as copied and
        as solved) gets the correction T_solved T_copied^-1 applied to its pose now (later keyframes
        the last one's), and each alive landmark of lm_ids is set to its solved position carried by
        whatever its reference keyframe moved since the copy. False (nothing written) when aborted."""
        lm_ids = np.asarray(lm_ids, np.int64)
        T_solved = np.asarray(T_solved, np.float64)
        with self._lock:
            if abort is not None and abort.is_set():
                return False
            T_new, _ = propagate(T_solved @ lie.se3_inverse(np.asarray(T_copied, np.float64)), self._kf_pose.view)
            self.apply_correction(np.arange(len(T_new)), T_new)
            refs = self._lm_ref_kf.a[lm_ids]
            X = np.asarray(positions, np.float64)
            ok = ((self._lm_state.a[lm_ids] == ALIVE) & (refs >= 0) & (refs < len(T_solved))
                  & np.isfinite(X).all(axis=1))
            D = T_new[refs[ok]] @ lie.se3_inverse(T_solved[refs[ok]])  # what the reference moved since the copy
            self._lm_pos.a[lm_ids[ok]] = np.einsum("nij,nj->ni", D[:, :3, :3], X[ok]) + D[:, :3, 3]
            self.version += 1
            return True

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

    def keyframe_scale(self, kf_id: int) -> float:
        """The units of keyframe kf_id's camera frame (see _kf_scale); 1.0 before any Sim(3) correction."""
        with self._lock:
            return float(self._kf_scale.a[kf_id]) if kf_id < self._kf_time.n else 1.0

    def keyframe_scales(self) -> np.ndarray:
        """(K,) the units of every keyframe's camera frame (keyframe_scale of each), a copy."""
        with self._lock:
            return self._kf_scale.view.copy()

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
            return self._covisibility.neighbours(kf_id, min_shared)

    def covisibility_edges(self, min_shared: int) -> np.ndarray:
        """(E,3) int rows [i, j, shared] with i < j of every covisibility pair sharing >= min_shared landmarks."""
        with self._lock:
            return self._covisibility.edges(min_shared)

    def keyframe_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(poses (K,4,4) T_world_cam, timestamps, source frame indices, segments) of all keyframes."""
        with self._lock:
            return (self._kf_pose.view.copy(), self._kf_time.view.copy(), self._kf_frame.view.copy(),
                    self._kf_segment.view.copy())

    def pose_graph_view(self, min_shared: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """(T_world_cam (K,4,4), segment (K,), covisibility edges (E,3) [i, j, shared] with i < j and
        shared >= min_shared, landmarks shared by keyframes k and k+1 (K-1,), corrections so far) of one
        version: what a global pose graph is built from."""
        with self._lock:
            poses, _, _, segments = self.keyframe_table()
            return (poses, segments, self._covisibility.edges(min_shared), self._covisibility.consecutive(len(poses)),
                    self._corrections)

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
                point_ids=lms, points=self._lm_pos.a[lms].copy(), corrections=self._corrections)

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
        with self._lock:
            ids = self.resolve(ids)
            pos = self._lm_pos.a[ids]
            st = self._lm_state.a[ids]
            pos[st != ALIVE] = np.nan
            return TrackingView(self.version, ids, st, pos, self._kf_pose.view.copy(), self._kf_scale.view.copy())

    def snapshot(self) -> MapSnapshot:
        """A copy of keyframes and alive landmarks, taken under the lock."""
        with self._lock:
            alive = np.flatnonzero(self._lm_state.view == ALIVE)
            return MapSnapshot(
                version=self.version, keyframe_ids=np.arange(self._kf_time.n),
                keyframe_timestamps=self._kf_time.view.copy(), keyframe_frames=self._kf_frame.view.copy(),
                keyframe_poses=self._kf_pose.view.copy(), keyframe_segments=self._kf_segment.view.copy(),
                point_ids=alive, points=self._lm_pos.a[alive].copy(), n_observations=int(self._obs_ok.view.sum()),
                keyframe_scales=self._kf_scale.view.copy())

    # ------------------------------------------------------------------ saved maps (slam/map/store.py)
    def export_state(self) -> dict[str, np.ndarray]:
        """Copies of every stored array, named as in a saved map's map.npz (docs/maps.md), in one locked step."""
        with self._lock:
            out = {name: getattr(self, attr).view.copy() for name, attr in _STATE_ARRAYS}
            out.update(next_id=np.array(self._next_id, np.int64), corrections=np.array(self._corrections, np.int64),
                       covisibility=self.covisibility_edges(1))
            return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "Map":
        """A map holding the arrays of `export_state` (checked by slam/map/store.py before)."""
        m = cls()
        for name, attr in _STATE_ARRAYS:
            grow = getattr(m, attr)
            grow.extend(np.asarray(state[name], grow.a.dtype))
        m._kf_scale.extend(np.ones(m._kf_pose.n))  # a loaded map's frames are its units
        m._next_id = int(state["next_id"])
        m._corrections = int(state["corrections"])
        cov = np.asarray(state["covisibility"], np.int64).reshape(-1, 3)
        m._covisibility.add_pairs(cov[:, :2], cov[:, 2])
        m.version = 1
        return m

    def keyframes_landmarks(self, kf_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, positions, descriptors) of the alive landmarks with a descriptor that keyframes kf_ids observe."""
        with self._lock:
            kf_ids = np.asarray(kf_ids, np.int64)
            kf_ids = kf_ids[(kf_ids >= 0) & (kf_ids < self._kf_time.n)]
            if kf_ids.size == 0:
                return np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 32), np.uint8)
            r = self._kf_obs.a[kf_ids]
            cnt = r[:, 1] - r[:, 0]
            rows = np.repeat(r[:, 0] - (np.cumsum(cnt) - cnt), cnt) + np.arange(int(cnt.sum()))
            ids = np.unique(self._obs_lm.a[rows][self._obs_ok.a[rows]])
            ids = ids[(self._lm_state.a[ids] == ALIVE) & self._lm_has_desc.a[ids]]
            return ids, self._lm_pos.a[ids].copy(), self._lm_desc.a[ids].copy()
