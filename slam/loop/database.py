"""Place recognition that needs nothing downloaded: an inverted index over the run's own ORB descriptors.

API (stable):

    db = PlaceDatabase(n_tables=8, bits=18, seed=0)
    db.add(kf_id: int, descriptors: np.ndarray, words=None)    # (N,32) uint8 ORB
    db.query(descriptors, max_results=5, exclude=None) -> list[tuple[int, float]]   # best first
    db.scores(descriptors, kf_ids) -> np.ndarray               # the same score for chosen keyframes
    db.score_all(descriptors, words=None) -> (kf_ids (n,), scores (n,))   # every keyframe, insertion order
    db.words(descriptors) -> np.ndarray                         # the words add/score_all take precomputed
    len(db)                                                     # keyframes added

How it works. The "words" are buckets of bit-sampling locality-sensitive hashing (Indyk & Motwani
1998), the textbook index for Hamming space: table j reads `bits` fixed bit positions of the 256-bit
ORB descriptor (disjoint positions for different tables), so two descriptors of the same corner seen
again (Hamming distance ~20-50) share a bucket in some table with high probability and two unrelated
ones (distance ~128) almost never do. Unlike a DBoW2 vocabulary this needs no training: the set of
words is fixed by the bit choice and the database grows from the keyframes alone, in the spirit of
iBoW-LCD. Each keyframe is a set of words (binary term frequency, so a repeated texture does not
outvote the rest); a query scores every keyframe by the idf-weighted words they share
(idf = log(keyframes / keyframes holding the word)), normalized as DBoW2's L1 score with binary
weights: shared weight / max(query weight, keyframe weight), in [0, 1]. Words held by a large part
of the database (`stop_fraction`, but never fewer than STOP_MIN_KEYFRAMES keyframes) are skipped,
which also bounds the cost of a query. The floor matters for small databases (a folder of a few
photos): with 0.2 alone, a word two of nine images share would be a stop word, and a place seen
twice in a small set would score 0.

Storage is two sorted arrays of (word, keyframe) pairs, a large one (with CSR offsets per word, so
a lookup is two array reads) merged rarely and a small one merged at every add, so that adding is
amortized O(entries) and a query is a gather, two `searchsorted` on the small array and one
`bincount`: no Python loop over descriptors or keyframes. A merge adds the small array's per-word
counts to the offsets (int32) in place instead of recounting the large array into new arrays: a
merge in the first 200 keyframes took 61-90 ms in one burst on the loop thread, now 12-18 ms (the
first one up to 42 ms). Not thread-safe: one owner
(the loop worker, or `slam places`).
"""

from __future__ import annotations

import numpy as np

DESCRIPTOR_BYTES = 32
STOP_MIN_KEYFRAMES = 8  # a word is a stop word only when held by more keyframes than this (and stop_fraction)


class PlaceDatabase:
    """Inverted index of keyframes by LSH words of their ORB descriptors (see the module docstring)."""

    def __init__(self, n_tables: int = 8, bits: int = 18, seed: int = 0, stop_fraction: float = 0.2,
                 merge_entries: int = 200_000) -> None:
        if not 1 <= bits <= 24 or not 1 <= n_tables or n_tables * bits > 8 * DESCRIPTOR_BYTES:
            raise ValueError(f"need 1 <= bits <= 24 and n_tables * bits <= 256, got {n_tables} x {bits}")
        if (n_tables << bits) >= 2 ** 31:
            raise ValueError(f"{n_tables} tables of {bits} bits do not fit 31-bit word ids")
        self.n_tables, self.bits = int(n_tables), int(bits)
        self._seed = int(seed)
        self.stop_fraction = float(stop_fraction)
        self.merge_entries = int(merge_entries)
        rng = np.random.default_rng(seed)
        self._positions = rng.permutation(8 * DESCRIPTOR_BYTES)[: n_tables * bits].reshape(n_tables, bits)
        self._ids = np.zeros(0, np.int64)          # external keyframe id by internal index
        self._n_words = np.zeros(0, np.int64)      # distinct words per keyframe
        self._index: dict[int, int] = {}
        self._main_w = np.zeros(0, np.int32)
        self._main_k = np.zeros(0, np.int32)
        # CSR offsets of the main array: word w's entries are _main_k[_start[w]:_start[w + 1]]
        self._start = np.zeros((n_tables << bits) + 1, np.int32)
        self._tail_w = np.zeros(0, np.int32)
        self._tail_k = np.zeros(0, np.int32)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def n_entries(self) -> int:
        """Stored (word, keyframe) pairs: the memory is 8 bytes each."""
        return len(self._main_w) + len(self._tail_w)

    def words(self, descriptors: np.ndarray) -> np.ndarray:
        """Distinct word ids (table * 2^bits + bucket) of a set of ORB descriptors, sorted."""
        d = _check(descriptors)
        if len(d) == 0:
            return np.zeros(0, np.int32)
        bitsarr = np.unpackbits(d, axis=1)                          # (N, 256)
        sel = bitsarr[:, self._positions]                           # (N, L, bits)
        weights = (1 << np.arange(self.bits, dtype=np.int64))
        buckets = sel.astype(np.int64) @ weights                    # (N, L)
        w = buckets + (np.arange(self.n_tables, dtype=np.int64) << self.bits)[None, :]
        return np.unique(w.ravel()).astype(np.int32)

    def add(self, kf_id: int, descriptors: np.ndarray, words: np.ndarray | None = None) -> None:
        """Index the descriptors of keyframe kf_id (ids must be new); words: their words() when known."""
        kf_id = int(kf_id)
        if kf_id in self._index:
            raise ValueError(f"keyframe {kf_id} is already in the place database")
        w = self.words(descriptors) if words is None else np.asarray(words, np.int32)
        k = len(self._ids)
        self._index[kf_id] = k
        self._ids = np.append(self._ids, kf_id)
        self._n_words = np.append(self._n_words, len(w))
        if len(w) == 0:
            return
        pos = np.searchsorted(self._tail_w, w)
        self._tail_w = np.insert(self._tail_w, pos, w)
        self._tail_k = np.insert(self._tail_k, pos, np.full(len(w), k, np.int32))
        if len(self._tail_w) >= max(self.merge_entries, len(self._main_w) // 8):
            pos = np.searchsorted(self._main_w, self._tail_w, side="right")
            self._main_w = np.insert(self._main_w, pos, self._tail_w)
            self._main_k = np.insert(self._main_k, pos, self._tail_k)
            added = np.bincount(self._tail_w, minlength=len(self._start) - 1)
            self._start[1:] += np.cumsum(added, dtype=np.int32)  # in place: no new 2^21-entry offsets
            self._tail_w = np.zeros(0, np.int32)
            self._tail_k = np.zeros(0, np.int32)

    def state(self) -> dict[str, np.ndarray]:
        """The database as arrays (a saved map's places.npz, docs/maps.md): params [n_tables, bits, seed,
        stop_fraction], bit positions, keyframe ids and word counts, and the (word, keyframe) pairs sorted."""
        w = np.concatenate([self._main_w, self._tail_w])
        k = np.concatenate([self._main_k, self._tail_k])
        order = np.argsort(w, kind="stable")
        return {"params": np.array([self.n_tables, self.bits, self._seed, self.stop_fraction], np.float64),
                "positions": self._positions.astype(np.int64), "kf_ids": self._ids.copy(),
                "n_words": self._n_words.copy(), "words": w[order].astype(np.int64), "keyframes": k[order].astype(np.int64)}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "PlaceDatabase":
        """A database holding the arrays of `state()`; ValueError when they do not fit together."""
        n_tables, bits, seed, stop = (float(x) for x in np.asarray(state["params"]).ravel()[:4])
        db = cls(int(n_tables), int(bits), int(seed), stop)
        if not np.array_equal(db._positions, np.asarray(state["positions"])):
            raise ValueError("the bit positions do not follow from the saved seed")
        w, k = np.asarray(state["words"], np.int64), np.asarray(state["keyframes"], np.int64)
        ids = np.asarray(state["kf_ids"], np.int64)
        if len(w) != len(k) or (len(w) and (w.min() < 0 or w.max() >= len(db._start) - 1 or k.min() < 0
                                            or k.max() >= len(ids) or np.any(np.diff(w) < 0))):
            raise ValueError("words and keyframes are not sorted (word, keyframe index) pairs within range")
        db._ids, db._n_words = ids.copy(), np.asarray(state["n_words"], np.int64).copy()
        db._index = {int(x): i for i, x in enumerate(ids.tolist())}
        db._main_w, db._main_k = w.astype(np.int32), k.astype(np.int32)
        db._start[1:] = np.cumsum(np.bincount(db._main_w, minlength=len(db._start) - 1), dtype=np.int32)
        return db

    def _all_scores(self, descriptors: np.ndarray, words: np.ndarray | None = None) -> np.ndarray:
        """Score of the query against every keyframe, by internal index (n,)."""
        n = len(self._ids)
        out = np.zeros(n)
        q = self.words(descriptors) if words is None else np.asarray(words, np.int32)
        if n == 0 or len(q) == 0:
            return out
        lo1, hi1 = self._start[q], self._start[q + 1]
        lo2, hi2 = np.searchsorted(self._tail_w, q, "left"), np.searchsorted(self._tail_w, q, "right")
        c1, c2 = hi1 - lo1, hi2 - lo2
        df = c1 + c2  # keyframes holding the word (one entry per keyframe and word)
        idf = np.log((n + 1.0) / np.maximum(df, 1))
        # A word of no keyframe still weighs in the query's norm: the query has it, nobody else does.
        w_query = float(idf.sum())
        use = (df > 0) & (df <= max(STOP_MIN_KEYFRAMES, self.stop_fraction * n))
        if w_query <= 0 or not use.any():
            return out
        votes = _gather_votes(self._main_k, lo1[use], c1[use], idf[use], n)
        votes += _gather_votes(self._tail_k, lo2[use], c2[use], idf[use], n)
        # The keyframe's own weight is estimated from its word count at the query's mean idf (its exact
        # weight would change with every add, as idf does).
        w_kf = self._n_words * (w_query / len(q))
        return votes / np.maximum(np.maximum(w_query, w_kf), 1e-12)

    def score_all(self, descriptors: np.ndarray, words: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(keyframe ids, scores) of every keyframe in the database, in insertion order (copies);
        words: the descriptors' words() when known (a query followed by its add computes them once)."""
        return self._ids.copy(), self._all_scores(descriptors, words)

    def scores(self, descriptors: np.ndarray, kf_ids: np.ndarray) -> np.ndarray:
        """The query's score against the given keyframes (0 for ids not in the database)."""
        s = self._all_scores(descriptors)
        kf_ids = np.asarray(kf_ids, np.int64).ravel()
        out = np.zeros(len(kf_ids))
        for j, k in enumerate(kf_ids):  # a handful of neighbours per query
            i = self._index.get(int(k))
            if i is not None:
                out[j] = s[i]
        return out

    def query(self, descriptors: np.ndarray, max_results: int = 5,
              exclude: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The best max_results (kf_id, score) pairs with a positive score, best first, none of `exclude`."""
        s = self._all_scores(descriptors)
        if len(s) == 0 or max_results <= 0:
            return []
        if exclude is not None and len(exclude):
            s[np.isin(self._ids, np.asarray(exclude, np.int64).ravel())] = 0.0
        k = min(int(max_results), len(s))
        top = np.argpartition(-s, k - 1)[:k]
        top = top[np.lexsort((self._ids[top], -s[top]))]
        return [(int(self._ids[i]), float(s[i])) for i in top if s[i] > 0]


def _gather_votes(kf: np.ndarray, lo: np.ndarray, count: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """Sum of `weight` over the entries kf[lo_i : lo_i + count_i] for every i, per keyframe (n,)."""
    total = int(count.sum())
    if total == 0:
        return np.zeros(n)
    # Flat indices of all the ranges at once: start of each range repeated, plus a running offset.
    starts = np.repeat(lo - (np.cumsum(count) - count), count)
    idx = starts + np.arange(total)
    return np.bincount(kf[idx], weights=np.repeat(weight, count), minlength=n)


def _check(descriptors: np.ndarray) -> np.ndarray:
    d = np.asarray(descriptors)
    if d.ndim != 2 or (len(d) and d.shape[1] != DESCRIPTOR_BYTES) or (len(d) and d.dtype != np.uint8):
        raise ValueError(f"ORB descriptors must be (N, {DESCRIPTOR_BYTES}) uint8, got {d.shape} {d.dtype}")
    return d.reshape(-1, DESCRIPTOR_BYTES)
