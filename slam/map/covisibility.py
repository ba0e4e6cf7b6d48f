"""Keyframe covisibility: how many landmarks each pair of keyframes shares (slam/map/map.py's part).

One row per pair (i < j) in append-only arrays, so that whole-graph reads (the loop closer's pose
graph, saved maps) are array operations instead of a walk over ~100 pairs per keyframe under the
map's lock (4,000 keyframes: ~1 s in Python, ~2 ms here); a per-keyframe dict {other: row} answers
neighbour queries and finds a pair's row when its count grows. Not thread-safe: Map calls it under
its lock.
"""

from __future__ import annotations

import numpy as np

from slam.map.growable import Growable


class Covisibility:
    """Symmetric shared-landmark counts of keyframe pairs."""

    def __init__(self) -> None:
        self._i = Growable((), np.int64)
        self._j = Growable((), np.int64)
        self._n = Growable((), np.int64)
        self._rows: dict[int, dict[int, int]] = {}  # keyframe -> {other keyframe: row}

    def add(self, i: int, others: np.ndarray, shared: np.ndarray) -> None:
        """Keyframe i shares shared[k] more landmarks with keyframe others[k] (others[k] != i)."""
        i = int(i)
        d = self._rows.setdefault(i, {})
        start = self._n.n
        new_other: list[int] = []
        new_count: list[int] = []
        for o, c in zip(np.asarray(others, np.int64).tolist(), np.asarray(shared, np.int64).tolist()):  # per pair
            r = d.get(o)
            if r is None:
                r = start + len(new_other)
                d[o] = r
                self._rows.setdefault(o, {})[i] = r
                new_other.append(o)
                new_count.append(c)
            elif r >= start:
                new_count[r - start] += c
            else:
                self._n.a[r] += c
        if new_other:
            o = np.array(new_other, np.int64)
            self._i.extend(np.minimum(o, i))
            self._j.extend(np.maximum(o, i))
            self._n.extend(np.array(new_count, np.int64))

    def add_pairs(self, pairs: np.ndarray, shared: np.ndarray) -> None:
        """add() for (E,2) keyframe pairs [i, j] with shared[e] more landmarks each, grouped by i."""
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        shared = np.asarray(shared, np.int64)
        for i in np.unique(pairs[:, 0]).tolist():  # per keyframe
            sel = pairs[:, 0] == i
            self.add(i, pairs[sel, 1], shared[sel])

    def neighbours(self, i: int, min_shared: int = 1) -> dict[int, int]:
        """{keyframe: shared landmarks} of the keyframes sharing at least min_shared landmarks with i."""
        d = self._rows.get(int(i))
        if not d:
            return {}
        others = np.fromiter(d.keys(), np.int64, len(d))
        counts = self._n.a[np.fromiter(d.values(), np.int64, len(d))]
        keep = counts >= min_shared
        return dict(zip(others[keep].tolist(), counts[keep].tolist()))

    def edges(self, min_shared: int = 1) -> np.ndarray:
        """(E,3) int rows [i, j, shared] with i < j of every pair sharing at least min_shared landmarks."""
        n = self._n.view
        keep = n >= min_shared
        return np.stack([self._i.view[keep], self._j.view[keep], n[keep]], 1).astype(np.int64).reshape(-1, 3)

    def consecutive(self, n_keyframes: int) -> np.ndarray:
        """(n_keyframes - 1,) landmarks shared by keyframes k and k + 1 (0 where none)."""
        out = np.zeros(max(n_keyframes - 1, 0), np.int64)
        i, j, n = self._i.view, self._j.view, self._n.view
        sel = (j == i + 1) & (i < n_keyframes - 1)
        out[i[sel]] = n[sel]
        return out
