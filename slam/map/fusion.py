"""Loop closure's landmark fusion on the shared map: duplicates on both sides of a loop become one.

A mixin of `Map` (slam/map/map.py): the same storage and lock, kept in a file of its own because
fusion (redirecting observations, following fused ids, covisibility across the loop) is one idea
apart from the map's storage and its other writers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NONE, ALIVE, CULLED = 0, 1, 2  # landmark states


class LandmarkFusion:
    """resolve / fuse_landmarks over Map's arrays (`_lm_*`, `_obs_*`, `_covisibility`, `_lock`)."""

    _lock: Any
    _lm_state: Any
    _lm_merged: Any
    _obs_lm: Any
    _obs_kf: Any
    _obs_ok: Any
    _covisibility: Any
    version: int

    def resolve(self, ids: np.ndarray) -> np.ndarray:
        """The landmark each id now stands for: itself, or the one it was fused into (followed to the end)."""
        with self._lock:
            out = np.asarray(ids, np.int64).copy()
            merged = self._lm_merged.a
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
        with self._lock:
            ok = (keep != drop) & (self._lm_state.a[keep] == ALIVE) & (self._lm_state.a[drop] == ALIVE)
            keep, drop = keep[ok], drop[ok]
            _, first = np.unique(drop, return_index=True)  # one target per dropped landmark
            keep, drop = keep[first], drop[first]
            drop_set = np.setdiff1d(drop, keep)  # a landmark both kept and dropped stays (no chains)
            sel = np.isin(drop, drop_set)
            keep, drop = keep[sel], drop[sel]
            if drop.size == 0:
                return 0
            target = np.full(self._lm_state.n, -1, np.int64)
            target[drop] = keep
            obs_lm = self._obs_lm.view
            rows = np.flatnonzero(target[obs_lm] >= 0)
            new_lm = target[obs_lm[rows]]
            kf_of = self._obs_kf.view[rows]
            # keyframes already observing the kept landmark (alive rows): a second row is an outlier
            keep_rows = np.flatnonzero(np.isin(obs_lm, keep) & self._obs_ok.view)
            n_lm = np.int64(self._lm_state.n)
            twice = np.isin(kf_of * n_lm + new_lm, self._obs_kf.view[keep_rows] * n_lm + obs_lm[keep_rows])
            good = self._obs_ok.view[rows] & ~twice
            # covisibility: every observer of drop[k] now shares keep[k] with every observer of keep[k]
            a_kf, a_lm = kf_of[good], new_lm[good]
            b_kf, b_lm = self._obs_kf.view[keep_rows], obs_lm[keep_rows]
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
                self._covisibility.add_pairs(pairs, n)
            self._obs_lm.a[rows] = new_lm
            self._obs_ok.a[rows[twice]] = False
            self._lm_state.a[drop] = CULLED
            self._lm_merged.a[drop] = keep
            self.version += 1
            return int(drop.size)
