"""Loop closing for one keyframe at a time: candidates, verification, pose graph, write-back, fusion.

LoopCloser holds no thread (worker.py runs it): `process` takes a keyframe once the odometry worker
has inserted it, asks place recognition for candidates, verifies them geometrically, and for an
accepted loop builds the global pose graph of the map (posegraph.py), solves it in the run's
precision, writes the correction back in one locked step (correction.py) and fuses the landmarks
the verification matched on both sides of the loop (Map.fuse_landmarks, the older one is kept).
Candidate search and verification come in as a PlaceRecognition (two callables and their
bookkeeping) so that the pipeline is independent of how places are recognised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from slam.geometry import lie
from slam.loop.config import LoopConfig
from slam.loop.posegraph import LOOP, GraphSolution, LoopEdge, build_graph, export_g2o, loop_chi2_bound, solve_graph


@dataclass
class Verified:
    """A verified loop: Z = X_match^-1 X_query (Sim(3) with `scale` for monocular maps)."""

    Z: np.ndarray
    inliers: int
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # (K,2) [query feature, landmark id]
    scale: float = 1.0
    match: int | None = None  # the keyframe Z is relative to, when not the candidate (a nearer neighbour of it)


# candidates(kf_id, place features) -> [(keyframe, score)], best first
Candidates = Callable[[int, Any], list[tuple[int, float]]]
# verify(query kf, place features, match kf) -> Verified, or the reason it was rejected
Verify = Callable[[int, Any, int], "Verified | str"]


@dataclass
class PlaceRecognition:
    """What the closer asks about places (factory.place_recognition builds it for a run)."""

    candidates: Candidates
    verify: Verify
    rejections: dict[str, int] = field(default_factory=dict)  # place recognition's own reasons (report.json)
    database: Any = None  # the PlaceDatabase behind `candidates`, saved with the map; None for a stand-in


def odometry_discrepancy(table: tuple[np.ndarray, ...], match: int, query: int, Z: np.ndarray) -> dict | None:
    """How far a loop's Z = X_match^-1 X_query (SE(3) or Sim(3)) is from what the map's keyframe poses
    say of the same pair, with the keyframe path travelled between them; None across map segments.

    `table` is Map.keyframe_table(). Returned (map units): translation = |t(Z) - t(Z_odo)| in the
    match's frame, rotation_deg between the two, path = length of the keyframe chain match..query,
    spacing = path per keyframe step. Keyframes recorded in different map segments give None, also
    after a loop has joined their segments (their labels stay). A real loop's discrepancy is what
    the odometry drifted over that path; a look-alike place's is the distance between the two places.
    """
    poses, _, _, segments = table
    lo, hi = min(match, query), max(match, query)
    if lo < 0 or hi >= len(poses) or segments[match] != segments[query] or hi == lo:
        return None
    Z_odo = lie.se3_inverse(poses[match]) @ poses[query]
    Z = np.asarray(Z, np.float64)
    R = Z[:3, :3] / np.cbrt(np.linalg.det(Z[:3, :3]))  # the rotation of a similarity
    angle = float(np.linalg.norm(lie.so3_log(Z_odo[:3, :3].T @ R)))
    path = float(np.linalg.norm(np.diff(poses[lo:hi + 1, :3, 3], axis=0), axis=1).sum())
    return {"translation": float(np.linalg.norm(Z[:3, 3] - Z_odo[:3, 3])), "rotation_deg": float(np.degrees(angle)),
            "path": path, "spacing": path / (hi - lo)}


def rescale_loop_edges(edges: list[LoopEdge], C: np.ndarray) -> None:
    """After a Sim(3) correction C (K,4,4) was written back, re-express every loop edge between the
    rescaled keyframes: Z <- U(s_match) Z U(s_query)^-1 with U(s) = diag(s, s, s, 1).

    The map keeps SE(3) keyframe poses: keyframe k's scale s_k goes into its landmarks' depths
    (map/correction.py), so the next pose graph starts every vertex at unit scale again. A loop's Z
    was measured between the keyframes' old units; left as it was, each later graph (a monocular
    street_loop closes a loop every 10 keyframes along the revisit) pulls the scale back by the
    first correction's ratio (chi2 of the first loop's edge at the second graph's start 43.7
    instead of 0.25) and the map's error grows with every loop. Keyframes newer than C get its last
    correction, as correct_keyframes gives them.
    """
    if not edges or not len(C):
        return
    s = np.cbrt(np.linalg.det(np.asarray(C, np.float64)[:, :3, :3]))
    for e in edges:
        a, b = s[min(e.match, len(s) - 1)], s[min(e.query, len(s) - 1)]
        Z = np.array(e.Z, np.float64)
        Z[:3, :3] *= a / b
        Z[:3, 3] *= a
        e.Z = Z


def remeasure_loop_edges(edges: list[LoopEdge], poses: np.ndarray) -> None:
    """After a global BA of a monocular map, set every loop edge to its keyframes' relative pose in
    the map (unit scale): BA rescales the map locally through its points, with no per-keyframe scale
    to re-express the edges by (rescale_loop_edges), and its solution already holds each loop
    through the landmarks fused across it (and started from the pose graph that closed it). The
    caller only asks after a BA that ended at a finite cost."""
    for e in edges:
        if max(e.match, e.query) < len(poses):
            e.Z = lie.se3_inverse(poses[e.match]) @ poses[e.query]


class LoopCloser:
    """Detect, verify and close loops against a shared map (one keyframe per `process` call)."""

    def __init__(self, the_map: Any, mode: str, cfg: LoopConfig, precision: str, places: PlaceRecognition,
                 notify: Callable[[dict], None] | None = None, abort: Any = None,
                 features: Callable[[Any], Any] | None = None,
                 global_ba: Callable[[Any], dict | None] | None = None, export_dir: Path | None = None) -> None:
        self.map, self.cfg, self.precision = the_map, cfg, precision
        self.export_dir = export_dir  # every pose graph solved, at its initial estimate (NNN.g2o; the study re-solves them)
        self.group = "sim3" if mode == "mono" else "se3"
        self.places = places
        self.candidates, self.verify = places.candidates, places.verify
        self.features = features  # what the keyframe hands over -> its place features (None: as given)
        self.feature_times: list[float] = []
        self.global_ba = global_ba  # global_ba(abort) -> statistics, run after each loop when given
        self.notify = notify
        self.abort = abort  # threading.Event: set when the run stops (a correction in flight is dropped)
        self.edges: list[LoopEdge] = []
        self.loops: list[dict] = []
        self.rejections: dict[str, int] = {}
        self.pgo_intervals: list[tuple[float, float]] = []
        self.last_solution: GraphSolution | None = None
        self.process_times: list[float] = []  # of the keyframes queried (with place input)
        self.checked = 0  # keyframes processed, with or without place input
        self.fused = 0
        self._last_loop_kf = -(10 ** 9)
        self._place_slot: float | None = None  # sequence-time slot of the last keyframe queried
        self.rate_skipped = 0  # keyframes left out of place recognition by cfg.place_rate_hz

    def place_due(self, timestamp: float) -> bool:
        """Whether a keyframe at this time goes through place recognition: the first one in each
        1/place_rate_hz s slot of sequence time (keyframes come in time order; the worker asks at
        submission, so a keyframe left out does not hold its image in the queue)."""
        rate = self.cfg.place_rate_hz
        if rate <= 0 or not np.isfinite(timestamp):
            return True
        slot = float(np.floor(timestamp * rate))
        if slot == self._place_slot:
            self.rate_skipped += 1
            return False
        self._place_slot = slot
        return True

    def _reject(self, reason: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def process(self, kf_id: int, timestamp: float, place: Any) -> dict | None:
        """Look for a loop at a newly inserted keyframe; returns the loop's record when one was closed."""
        t0 = time.perf_counter()
        self.checked += 1
        if place is None:
            return None
        try:
            if self.features is not None:
                t_f = time.perf_counter()
                place = self.features(place)
                self.feature_times.append(time.perf_counter() - t_f)
                if place is None:
                    return None
            cands = self.candidates(kf_id, place)
            if kf_id - self._last_loop_kf < self.cfg.min_keyframes_between:
                if cands:
                    self._reject("just_closed")
                return None
            for match, score in cands:
                res = self.verify(kf_id, place, int(match))
                if isinstance(res, str):
                    self._reject(res)
                    continue
                if res.inliers < self.cfg.min_inliers:
                    self._reject("too_few_inliers")
                    continue
                target = int(match) if res.match is None else int(res.match)
                drift = odometry_discrepancy(self.map.keyframe_table(), target, kf_id, res.Z)
                if drift is not None and self.cfg.max_correction_ratio > 0 and \
                        drift["translation"] > self.cfg.max_correction_ratio * drift["path"] + 2.0 * drift["spacing"]:
                    # the loop would move the query farther than the odometry can have drifted since
                    # the match: a look-alike place (repeated modules, identical doors), not a revisit
                    self._reject("implausible_correction")
                    continue
                return self._close(kf_id, timestamp, target, float(score), res, place, drift)
            return None
        finally:
            self.process_times.append(time.perf_counter() - t0)

    def _close(self, query: int, timestamp: float, match: int, score: float, res: Verified,
               place: Any, drift: dict | None = None) -> dict | None:
        """Pose graph, solve, write back, fuse; one record for loops.json."""
        t0 = time.perf_counter()
        edge = LoopEdge(match, query, np.asarray(res.Z, np.float64), int(res.inliers))
        graph = build_graph(self.map, self.edges + [edge], self.cfg, self.group)
        t1 = time.perf_counter()
        if self.export_dir is not None:
            self.export_dir.mkdir(parents=True, exist_ok=True)
            export_g2o(self.export_dir / f"{len(self.pgo_intervals):03d}.g2o", graph, at_solution=False)
        sol = solve_graph(graph, self.precision, self.cfg.max_iterations, build_s=t1 - t0)
        t2 = time.perf_counter()
        ref = solve_graph(graph, "fp64", self.cfg.max_iterations) if self.cfg.check_fp64 else None
        t2 += 0.0 if ref is None else ref.solve_s  # the check is not part of the write-back time
        new_edge = np.flatnonzero(graph.kinds == LOOP)[-1]  # the loops' edges come in acceptance order
        if sol.edge_chi2 is not None and sol.edge_chi2[new_edge] > loop_chi2_bound(self.group, self.cfg.consistency_p):
            # the new loop fights the map instead of closing it: nothing is written back
            self.pgo_intervals.append((t0, time.perf_counter()))
            self._reject("inconsistent_graph")
            return None
        done = self.map.correct_keyframes(sol.corrections(), self.group == "sim3", self.abort)
        t3 = time.perf_counter()
        self.pgo_intervals.append((t0, t3))
        if done is None:
            self._reject("run_stopped")
            return None
        if self.group == "sim3":
            rescale_loop_edges(self.edges + [edge], sol.corrections())
        fused = self._fuse(res, place) if self.cfg.fuse_landmarks else 0
        gba = self.global_ba(self.abort) if self.global_ba is not None else None
        if gba is not None and self.group == "sim3" and np.isfinite(gba.get("final_cost", np.nan)):
            remeasure_loop_edges(self.edges + [edge], self.map.keyframe_table()[0])
        t4 = time.perf_counter()
        self.pgo_intervals[-1] = (t0, t4)
        self.edges.append(edge)
        self.last_solution = sol
        self._last_loop_kf = query
        times = self.map.keyframe_table()[1]
        stats = sol.stats()
        stats["time_s"].update({"write_back": t3 - t2, "fuse_and_global_ba": t4 - t3, "total": t4 - t0})
        if sol.edge_chi2 is not None:  # the consistency test's statistic and its bound
            stats["loop_chi2"] = float(sol.edge_chi2[new_edge])
            bound = loop_chi2_bound(self.group, self.cfg.consistency_p)
            stats["loop_chi2_bound"] = bound if np.isfinite(bound) else None  # None: test off
        rec = {"query": {"keyframe": query, "timestamp": float(timestamp)},
               "match": {"keyframe": match, "timestamp": float(times[match])},
               "score": score, "inliers": int(res.inliers), "transform": np.asarray(res.Z).tolist(),
               "keyframes_corrected": done[0], "keyframes_inserted_during_pgo": done[1],
               "landmarks_fused": fused, "pgo": stats, "global_ba": gba, "odometry_discrepancy": drift}
        if ref is not None:
            stats["fp64_final_cost"] = ref.summary.final_cost
            stats["fp64_relative_cost_difference"] = (abs(sol.summary.final_cost - ref.summary.final_cost)
                                                     / max(ref.summary.final_cost, 1e-300))
        if self.group == "sim3":
            rec["scale"] = float(res.scale)
        self.loops.append(rec)
        if self.notify is not None:
            self.notify(rec)
        return rec

    def _fuse(self, res: Verified, place: Any) -> int:
        """Fuse the query side's landmarks into the matched (older) ones."""
        pairs = np.asarray(res.pairs, np.int64).reshape(-1, 2)
        if not len(pairs):
            return 0
        q_ids = np.asarray(place.ids, np.int64)[pairs[:, 0]]  # track id of each matched query feature (-1: none)
        ok = q_ids >= 0
        if not ok.any():
            return 0
        a, b = self.map.resolve(q_ids[ok]), self.map.resolve(pairs[ok, 1])
        n = self.map.fuse_landmarks(np.minimum(a, b), np.maximum(a, b))
        self.fused += n
        return n

    def summary(self) -> dict:
        """report.json: loops accepted, rejections by reason, PGO times."""
        pgo = [r["pgo"] for r in self.loops]
        rejected = {k: v for k, v in self.places.rejections.items() if v}
        rejected.update(self.rejections)  # verification's reasons next to place recognition's
        return {"accepted": len(self.loops), "rejected": rejected,
                "group": self.group, "precision": self.precision, "landmarks_fused": self.fused,
                "pgo_solve_s": [p["time_s"]["solve"] for p in pgo],
                "pgo_total_s": [p["time_s"]["total"] for p in pgo],
                "pgo_vertices": [p["vertices"] for p in pgo],
                "global_ba_s": [r["global_ba"]["time_s"]["total"] for r in self.loops if r.get("global_ba")],
                "place_features_ms_mean": 1e3 * float(np.mean(self.feature_times)) if self.feature_times else None,
                "keyframe_ms_mean": 1e3 * float(np.mean(self.process_times)) if self.process_times else None,
                "keyframes_checked": self.checked, "keyframes_queried": len(self.process_times),
                "keyframes_skipped_rate": self.rate_skipped}
