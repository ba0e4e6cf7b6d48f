"""The shared map: keyframes, landmarks, observations and covisibility behind one lock.

Landmark ids are feature-track ids: the tracker allocates an id when it starts tracking a feature
(`allocate_ids`) and the odometry worker turns the track into a landmark once it has a 3-D
position. Landmark data lives in arrays indexed by id; observations in one table with a row per
(keyframe, track) pair, appended in keyframe order, so the observations of the newest keyframes
are a contiguous tail of the table. Every write bumps `version`; readers that cache (the tracker)
compare versions. Viewers and reports read `snapshot()`, a copy taken under the lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from slam.map.keyframe import KeyframeData

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


@dataclass
class MapSnapshot:
    """A consistent copy of the map for viewers and reports."""

    version: int
    keyframe_ids: np.ndarray        # (K,)
    keyframe_timestamps: np.ndarray  # (K,)
    keyframe_frames: np.ndarray     # (K,) source frame index of each keyframe
    keyframe_poses: np.ndarray      # (K, 4, 4) T_world_cam
    keyframe_segments: np.ndarray   # (K,)
    point_ids: np.ndarray           # (P,) alive landmarks
    points: np.ndarray              # (P, 3)
    n_observations: int


class Map:
    """Keyframes, landmarks (by track id), observations and covisibility; one re-entrant lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.version = 0
        self._next_id = 0
        # landmarks, indexed by track id
        self.lm_pos = _Grow((3,), np.float64, np.nan)
        self.lm_state = _Grow((), np.int8, NONE)
        self.lm_desc = _Grow((32,), np.uint8)
        self.lm_has_desc = _Grow((), bool, False)
        self.lm_ref_kf = _Grow((), np.int64, -1)
        self.lm_merged = _Grow((), np.int64, -1)  # fused into this landmark (loop closure), -1: not fused
        # keyframes, indexed by keyframe id (inserted in id order)
        self.kf_pose = _Grow((4, 4), np.float64)
        self.kf_time = _Grow((), np.float64)
        self.kf_frame = _Grow((), np.int64)
        self.kf_segment = _Grow((), np.int64)
        self.kf_obs = _Grow((2,), np.int64)  # [start, end) rows of the observation table
        # observations
        self.obs_kf = _Grow((), np.int64)
        self.obs_lm = _Grow((), np.int64)
        self.obs_uv = _Grow((2,), np.float64)
        self.obs_ur = _Grow((), np.float64, np.nan)  # right-image u (stereo / virtual RGB-D), NaN for none
        self.obs_ok = _Grow((), bool, True)
        self.covisibility: dict[int, dict[int, int]] = {}
        # Loop closure and global BA corrections so far: a window solve gathered before a correction
        # must not write its (pre-correction) poses back after it (odometry/window.py checks).
        self.corrections = 0

    # ------------------------------------------------------------------ ids
    def allocate_ids(self, n: int) -> np.ndarray:
        """n new track ids (future landmark ids)."""
        with self.lock:
            ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            self._next_id += n
            for g in (self.lm_pos, self.lm_state, self.lm_desc, self.lm_has_desc, self.lm_ref_kf, self.lm_merged):
                g.reserve(self._next_id)
                g.n = self._next_id
            return ids

    @property
    def n_keyframes(self) -> int:
        """Keyframes inserted so far."""
        return self.kf_time.n

    # ------------------------------------------------------------------ writes (odometry worker)
    def insert_keyframe(self, kf: KeyframeData) -> None:
        """Add a keyframe with an observation row per tracked feature; ids must be allocated."""
        with self.lock:
            if kf.id != self.kf_time.n:
                raise ValueError(f"keyframe {kf.id} inserted out of order (expected {self.kf_time.n})")
            start = self.obs_kf.n
            k = len(kf.ids)
            self.obs_kf.extend(np.full(k, kf.id, np.int64))
            ids = self.resolve(kf.ids)  # a queued keyframe may still name a fused landmark
            self.obs_lm.extend(ids)
            self.obs_uv.extend(kf.uv)
            self.obs_ur.extend(kf.u_right)
            self.obs_ok.extend(np.ones(k, bool))
            self.kf_pose.extend(kf.pose[None])
            self.kf_time.extend([kf.timestamp])
            self.kf_frame.extend([kf.frame_index])
            self.kf_segment.extend([kf.segment])
            self.kf_obs.extend([[start, start + k]])
            if kf.descriptors is not None:
                ok = kf.desc_ok
                self.lm_desc.a[kf.ids[ok]] = kf.descriptors[ok]
                self.lm_has_desc.a[kf.ids[ok]] = True
            self._update_covisibility(kf.id, ids)
            self.version += 1

    def _update_covisibility(self, kf_id: int, ids: np.ndarray) -> None:
        first = max(0, kf_id - COVIS_RECENT)
        lo, hi = self.kf_obs.a[first, 0], self.kf_obs.a[kf_id, 0]
        shared = np.isin(self.obs_lm.a[lo:hi], ids)
        counts = np.bincount(self.obs_kf.a[lo:hi][shared] - first, minlength=kf_id - first)
        mine = self.covisibility.setdefault(kf_id, {})
        for other in np.flatnonzero(counts):  # per keyframe, not per observation
            o = int(other) + first
            mine[o] = int(counts[other])
            self.covisibility.setdefault(o, {})[kf_id] = int(counts[other])

    def create_landmarks(self, ids: np.ndarray, positions: np.ndarray, ref_kf: int) -> None:
        """Give tracks a 3-D position (world frame): they become landmarks."""
        with self.lock:
            self.lm_pos.a[ids] = positions
            self.lm_state.a[ids] = ALIVE
            self.lm_ref_kf.a[ids] = ref_kf
            self.version += 1

    def update(self, kf_ids: np.ndarray, poses: np.ndarray, lm_ids: np.ndarray, positions: np.ndarray) -> None:
        """Write optimized keyframe poses (T_world_cam) and landmark positions."""
        with self.lock:
            self.kf_pose.a[kf_ids] = poses
            live = self.lm_state.a[lm_ids] == ALIVE
            self.lm_pos.a[lm_ids[live]] = positions[live]
            self.version += 1

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
        with self.lock:
            if len(kf_ids) and (kf_ids.min() < 0 or kf_ids.max() >= self.kf_time.n):
                raise ValueError("correction of a keyframe that is not in the map")
            slot = np.full(self.kf_time.n, -1, np.int64)
            slot[kf_ids] = np.arange(len(kf_ids))
            ref = self.lm_ref_kf.view
            moved = np.flatnonzero((self.lm_state.view == ALIVE) & (ref >= 0))
            moved = moved[slot[ref[moved]] >= 0]
            if moved.size:
                k = slot[ref[moved]]
                T_old = self.kf_pose.a[kf_ids[k]]
                p = self.lm_pos.a[moved] - T_old[:, :3, 3]
                p_cam = np.einsum("nji,nj->ni", T_old[:, :3, :3], p) * s[k, None]
                self.lm_pos.a[moved] = np.einsum("nij,nj->ni", poses[k, :3, :3], p_cam) + poses[k, :3, 3]
            self.kf_pose.a[kf_ids] = poses
            self.corrections += 1
            self.version += 1
            return self.version

    def reject_observations(self, rows: np.ndarray) -> None:
        """Mark observation rows as outliers (kept in the table, ignored from now on)."""
        with self.lock:
            self.obs_ok.a[rows] = False
            self.version += 1

    def cull_landmarks(self, ids: np.ndarray) -> None:
        """Remove landmarks: their tracks stop being used."""
        with self.lock:
            self.lm_state.a[ids] = CULLED
            self.version += 1

    # ------------------------------------------------------------------ reads
    def positions(self, ids: np.ndarray) -> np.ndarray:
        """(M,3) world positions of ids, NaN where the track is not (or no longer) a landmark."""
        with self.lock:
            pos = self.lm_pos.a[ids].copy()
            pos[self.lm_state.a[ids] != ALIVE] = np.nan
            return pos

    def states(self, ids: np.ndarray) -> np.ndarray:
        """Landmark state (NONE, ALIVE, CULLED) of ids."""
        with self.lock:
            return self.lm_state.a[ids].copy()

    def keyframe_pose(self, kf_id: int) -> np.ndarray | None:
        """T_world_cam of a keyframe, None if not inserted yet."""
        with self.lock:
            return self.kf_pose.a[kf_id].copy() if kf_id < self.kf_time.n else None

    def keyframe_poses(self) -> np.ndarray:
        """(K,4,4) T_world_cam of all keyframes, by id."""
        with self.lock:
            return self.kf_pose.view.copy()

    def observation_rows(self, first_kf: int, last_kf: int) -> np.ndarray:
        """Row indices of the observations of keyframes first_kf..last_kf (inclusive)."""
        with self.lock:
            return np.arange(self.kf_obs.a[first_kf, 0], self.kf_obs.a[last_kf, 1])

    def local_landmarks(self, n_keyframes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, positions, descriptors) of alive landmarks with a descriptor seen by the newest keyframes."""
        with self.lock:
            k = self.kf_time.n
            if k == 0:
                return np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 32), np.uint8)
            rows = self.observation_rows(max(0, k - n_keyframes), k - 1)
            ids = np.unique(self.obs_lm.a[rows][self.obs_ok.a[rows]])
            ids = ids[(self.lm_state.a[ids] == ALIVE) & self.lm_has_desc.a[ids]]
            return ids, self.lm_pos.a[ids].copy(), self.lm_desc.a[ids].copy()

    def keyframe_observations(self, kf_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(landmark ids, pixel uv (N,2), right u (N,)) of a keyframe's inlier observations of alive landmarks."""
        with self.lock:
            r0, r1 = self.kf_obs.a[kf_id]
            lm = self.obs_lm.a[r0:r1]
            keep = self.obs_ok.a[r0:r1] & (self.lm_state.a[lm] == ALIVE)
            return lm[keep].copy(), self.obs_uv.a[r0:r1][keep].copy(), self.obs_ur.a[r0:r1][keep].copy()

    def landmarks(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(positions (N,3), states, reference keyframes, descriptors (N,32) zero where none) of ids."""
        with self.lock:
            ids = np.asarray(ids, np.int64)
            return (self.lm_pos.a[ids].copy(), self.lm_state.a[ids].copy(), self.lm_ref_kf.a[ids].copy(),
                    np.where(self.lm_has_desc.a[ids, None], self.lm_desc.a[ids], 0).astype(np.uint8))

    def covisible(self, kf_id: int, min_shared: int = 1) -> dict[int, int]:
        """{keyframe: shared landmarks} of the keyframes covisible with kf_id (a copy)."""
        with self.lock:
            return {k: n for k, n in self.covisibility.get(kf_id, {}).items() if n >= min_shared}

    def covisibility_edges(self, min_shared: int) -> np.ndarray:
        """(E,3) int rows [i, j, shared] with i < j of every covisibility pair sharing >= min_shared landmarks."""
        with self.lock:
            rows = [(i, j, n) for i, d in self.covisibility.items() for j, n in d.items() if i < j and n >= min_shared]
        return np.array(rows, np.int64).reshape(-1, 3)

    def keyframe_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(poses (K,4,4) T_world_cam, timestamps, source frame indices, segments) of all keyframes."""
        with self.lock:
            return (self.kf_pose.view.copy(), self.kf_time.view.copy(), self.kf_frame.view.copy(),
                    self.kf_segment.view.copy())

    def snapshot(self) -> MapSnapshot:
        """A copy of keyframes and alive landmarks, taken under the lock."""
        with self.lock:
            alive = np.flatnonzero(self.lm_state.view == ALIVE)
            return MapSnapshot(
                version=self.version, keyframe_ids=np.arange(self.kf_time.n),
                keyframe_timestamps=self.kf_time.view.copy(), keyframe_frames=self.kf_frame.view.copy(),
                keyframe_poses=self.kf_pose.view.copy(), keyframe_segments=self.kf_segment.view.copy(),
                point_ids=alive, points=self.lm_pos.a[alive].copy(), n_observations=int(self.obs_ok.view.sum()))

    # ------------------------------------------------------------------ loop closure: landmark fusion
    def resolve(self, ids: np.ndarray) -> np.ndarray:
        """The landmark each id now stands for: itself, or the one it was fused into (followed to the end)."""
        with self.lock:
            out = np.asarray(ids, np.int64).copy()
            merged = self.lm_merged.a
            for _ in range(64):  # chains are short: a landmark is fused at most once per loop
                nxt = merged[out] if out.size else out
                step = nxt >= 0
                if not step.any():
                    break
                out[step] = nxt[step]
            return out

    def fuse_landmarks(self, keep: np.ndarray, drop: np.ndarray) -> int:
        """Fuse duplicate landmarks (loop closure): drop[k]'s observations are redirected to keep[k]
        and drop[k] is culled; returns the number fused.

        Pairs where either side is not alive, or keep == drop, are skipped. An observation that
        would make a keyframe see `keep` twice is marked an outlier instead. Covisibility gains the
        pairs of keyframes that now share the fused landmarks (the two sides of the loop).
        """
        keep = np.asarray(keep, np.int64).reshape(-1)
        drop = np.asarray(drop, np.int64).reshape(-1)
        if len(keep) != len(drop):
            raise ValueError(f"{len(keep)} landmarks to keep but {len(drop)} to drop")
        with self.lock:
            ok = (keep != drop) & (self.lm_state.a[keep] == ALIVE) & (self.lm_state.a[drop] == ALIVE)
            keep, drop = keep[ok], drop[ok]
            _, first = np.unique(drop, return_index=True)  # one target per dropped landmark
            keep, drop = keep[first], drop[first]
            drop_set = np.setdiff1d(drop, keep)  # a landmark both kept and dropped stays (no chains)
            sel = np.isin(drop, drop_set)
            keep, drop = keep[sel], drop[sel]
            if drop.size == 0:
                return 0
            target = np.full(self.lm_state.n, -1, np.int64)
            target[drop] = keep
            obs_lm = self.obs_lm.view
            rows = np.flatnonzero(target[obs_lm] >= 0)
            new_lm = target[obs_lm[rows]]
            kf_of = self.obs_kf.view[rows]
            # keyframes already observing the kept landmark (alive rows): a second row is an outlier
            keep_rows = np.flatnonzero(np.isin(obs_lm, keep) & self.obs_ok.view)
            n_lm = np.int64(self.lm_state.n)
            twice = np.isin(kf_of * n_lm + new_lm, self.obs_kf.view[keep_rows] * n_lm + obs_lm[keep_rows])
            good = self.obs_ok.view[rows] & ~twice
            # covisibility: every observer of drop[k] now shares keep[k] with every observer of keep[k]
            a_kf, a_lm = kf_of[good], new_lm[good]
            b_kf, b_lm = self.obs_kf.view[keep_rows], obs_lm[keep_rows]
            order = np.argsort(b_lm, kind="stable")
            b_kf, b_lm = b_kf[order], b_lm[order]
            lo, hi = np.searchsorted(b_lm, a_lm, "left"), np.searchsorted(b_lm, a_lm, "right")
            cnt = hi - lo
            ia = np.repeat(np.arange(len(a_kf)), cnt)
            ib = np.repeat(lo, cnt) + np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            pa, pb = a_kf[ia], b_kf[ib]
            diff = pa != pb
            if diff.any():
                pairs, n = np.unique(np.stack([pa[diff], pb[diff]], 1), axis=0, return_counts=True)
                for (i, j), c in zip(pairs.tolist(), n.tolist()):  # per keyframe pair, a few hundred
                    self.covisibility.setdefault(i, {})[j] = self.covisibility.get(i, {}).get(j, 0) + c
                    self.covisibility.setdefault(j, {})[i] = self.covisibility.get(j, {}).get(i, 0) + c
            self.obs_lm.a[rows] = new_lm
            self.obs_ok.a[rows[twice]] = False
            self.lm_state.a[drop] = CULLED
            self.lm_merged.a[drop] = keep
            self.version += 1
            return int(drop.size)
