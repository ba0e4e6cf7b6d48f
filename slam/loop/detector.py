"""Loop candidates from place recognition, with ORB-SLAM's rules (Mur-Artal & Tardós 2017, DetectLoop).

API (stable):

    det = LoopDetector(database=None, max_candidates=10, min_score=0.01, group_ratio=0.75,
                       min_consistency=3, noise_sigmas=3.0)
    det.detect(kf_id, descriptors, excluded, neighbours_of, add=True) -> list[tuple[int, float]]
    det.rejections: dict[str, int]     # counts by reason, keys in REJECTIONS
    det.queries: int                   # detect() calls
    det.last_scores: dict[int, float]  # the last query's score against each keyframe then in the database
    det.database: PlaceDatabase

`detect` scores the new keyframe against every keyframe in the database, then
1. never returns an id of `excluded` (the caller's recent and covisible keyframes: they look alike
   because they are the same place seen moments ago, not a revisit);
2. keeps candidates scoring at least the lowest score of the keyframe's own neighbours
   (`neighbours_of(kf_id)` present in the database: what "this place" scores against itself),
   `min_score`, and the chance level of this query: median + noise_sigmas * 1.4826 * MAD of its
   scores against the non-excluded database (most keyframes are unrelated to any one query, so
   these robust statistics measure how much an unrelated place scores; with fewer than 8 keyframes
   it is not used);                                                    -> "low_score" otherwise
3. groups each candidate with its neighbours (`neighbours_of(candidate)`), sums the group's scores,
   keeps groups within `group_ratio` of the best group, and represents each by its best member;
4. returns a candidate only once its group has been seen (overlapping a group of the previous
   query) by `min_consistency` consecutive queries;                     -> "inconsistent" otherwise
and finally adds the keyframe to the database (add=True). A query on an empty database or with no
descriptors counts as "empty_database" / "no_descriptors".
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from slam.loop.database import PlaceDatabase

REJECTIONS = ("empty_database", "no_descriptors", "low_score", "inconsistent")


class LoopDetector:
    """Place-recognition candidates that passed the exclusion, score, group and consistency rules."""

    def __init__(self, database: PlaceDatabase | None = None, max_candidates: int = 10, min_score: float = 0.01,
                 group_ratio: float = 0.75, min_consistency: int = 3, noise_sigmas: float = 3.0) -> None:
        if min_consistency < 1:
            raise ValueError(f"min_consistency must be at least 1, got {min_consistency}")
        self.database = database if database is not None else PlaceDatabase()
        self.max_candidates = int(max_candidates)
        self.min_score = float(min_score)
        self.group_ratio = float(group_ratio)
        self.min_consistency = int(min_consistency)
        self.noise_sigmas = float(noise_sigmas)
        self.rejections: dict[str, int] = {r: 0 for r in REJECTIONS}
        self.queries = 0
        self.last_scores: dict[int, float] = {}
        # Groups of the previous query: (keyframe ids, number of consecutive queries that saw them).
        self._groups: list[tuple[frozenset[int], int]] = []

    def _reject(self, reason: str) -> list[tuple[int, float]]:
        self.rejections[reason] += 1
        return []

    def detect(self, kf_id: int, descriptors: np.ndarray, excluded: np.ndarray,
               neighbours_of: Callable[[int], set[int]], add: bool = True) -> list[tuple[int, float]]:
        """Consistent loop candidates (kf_id, score), best first, for keyframe kf_id; then index it."""
        self.queries += 1
        self.last_scores = {}
        words = self.database.words(descriptors)  # once for the query and the add
        try:
            return self._detect(int(kf_id), descriptors, excluded, neighbours_of, words)
        finally:
            if add:
                self.database.add(int(kf_id), descriptors, words)

    def _detect(self, kf_id: int, descriptors: np.ndarray, excluded: np.ndarray,
                neighbours_of: Callable[[int], set[int]], words: np.ndarray) -> list[tuple[int, float]]:
        db = self.database
        if len(db) == 0:
            self._groups = []
            return self._reject("empty_database")
        if len(descriptors) == 0:
            self._groups = []
            return self._reject("no_descriptors")
        ids, scores = db.score_all(descriptors, words)
        score_of = dict(zip(ids.tolist(), scores.tolist()))
        self.last_scores = score_of
        own = [score_of[k] for k in neighbours_of(kf_id) if k in score_of and k != kf_id]
        floor = max(self.min_score, min(own) if own else 0.0)
        allowed = ~np.isin(ids, np.asarray(excluded, np.int64).ravel()) & (ids != kf_id)
        if allowed.sum() >= 8:
            med = float(np.median(scores[allowed]))
            mad = float(np.median(np.abs(scores[allowed] - med)))
            floor = max(floor, med + self.noise_sigmas * 1.4826 * mad)
        allowed &= (scores > 0) & (scores >= floor)
        if not allowed.any():
            self._groups = []
            return self._reject("low_score")
        cand = np.flatnonzero(allowed)
        cand = cand[np.argsort(-scores[cand], kind="stable")[: self.max_candidates]]
        excluded_set = set(np.asarray(excluded, np.int64).ravel().tolist())
        groups = []
        for i in cand:  # at most max_candidates groups
            c = int(ids[i])
            members = ({c} | set(neighbours_of(c))) - excluded_set - {kf_id}
            member_scores = {m: score_of.get(m, 0.0) for m in members}
            best = max(member_scores, key=lambda m: (member_scores[m], -m))
            groups.append((frozenset(members), sum(member_scores.values()), best, member_scores[best]))
        top = max(g[1] for g in groups)
        groups = [g for g in groups if g[1] >= self.group_ratio * top]
        accepted: dict[int, float] = {}
        new_groups: list[tuple[frozenset[int], int]] = []
        for members, _, best, best_score in groups:
            count = 1 + max((n for prev, n in self._groups if prev & members), default=0)
            new_groups.append((members, count))
            if count >= self.min_consistency:
                accepted[best] = max(best_score, accepted.get(best, 0.0))
        self._groups = new_groups
        if not accepted:
            return self._reject("inconsistent")
        return sorted(accepted.items(), key=lambda kv: (-kv[1], kv[0]))
