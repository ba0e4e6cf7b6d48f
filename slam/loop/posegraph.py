"""The global pose graph of the map: built from its keyframes, solved by the project's PGO, exported.

Vertices: every keyframe, T_world_cam (SE(3) for stereo / RGB-D; Sim(3) with unit scale for
monocular maps, whose scale drifts). Edges, e = Log(Z_ij^-1 X_i^-1 X_j):

- odometry: consecutive keyframes of a map segment;
- covisibility: non-consecutive keyframes sharing >= `covisibility_min_shared` landmarks;
  both measured by the keyframes' current relative pose (what window BA made of them), so they
  hold the map's local shape while the loop edges bend it;
- loop: every accepted loop, measured by its verification (relative pose, and scale for Sim(3)).

Information model (documented in LoopConfig): Omega = w diag(1/sigma_rot^2 I3, 1/sigma_trans^2 I3
[, 1/sigma_scale^2]) with w = min(shared landmarks, 200) / 100 for odometry edges (more shared
landmarks, a better-determined relative pose; floored at 0.1), that times `covisibility_weight` for
covisibility edges (they overlap, so each may count the map's shape only partly) and
w = loop_weight * min(inliers, 200) / 100 for loop edges. The first keyframe is held fixed
(and, by PoseGraphProblem's gauge rule, the first of every piece no loop joins to it yet).

Keyframes of map segments that a loop joins for the first time are moved rigidly onto the loop
before the solve (the segments' frames are unrelated until then, ORB-SLAM3's map merge).

Bounded time in long runs: once the map holds more than `pgo_max_keyframes` keyframes, the
keyframes up to the previous loop's query keyframe (which that loop's solve already made
consistent) are held at their values, and only they that share an edge with a newer keyframe
enter the problem, as fixed vertices: a loop then moves what drifted since the last loop, and the
solve grows with the distance between loops instead of with the run. That holds only when the
older keyframes carry none of the new loop's error: the graph's shortest path from the query back
to the match (without the new loop edge) is the chain the error accumulated along, and when more
than `pgo_local_path_keyframes` of its keyframes are older ones (a large loop around an earlier,
smaller one), the graph is solved whole. Smaller maps, and every loop that merges map segments,
are solved whole.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components
from scipy.special import chdtri

from slam.loop.config import LoopConfig
from slam.geometry import lie
from slam.io.g2o import PoseGraph, write_g2o
from slam.solvers.lm import SolverOptions, Summary, solve
from slam.solvers.pgo import PoseGraphProblem

ODOMETRY, COVISIBILITY, LOOP = 0, 1, 2
EDGE_KINDS = ("odometry", "covisibility", "loop")


@dataclass
class LoopEdge:
    """An accepted loop as a pose-graph edge: Z = X_match^-1 X_query (Sim(3) for monocular)."""

    match: int
    query: int
    Z: np.ndarray     # (4,4) [[s R, t], [0, 1]]
    inliers: int


@dataclass
class GraphData:
    """A pose graph copied out of the map: vertex k is keyframe ids[k] (every keyframe, by id, unless
    the graph was bounded: then the keyframes since the previous loop and their fixed neighbours)."""

    group: str               # se3 or sim3
    poses: np.ndarray        # (N,4,4) initial vertex values (after segment alignment)
    poses_map: np.ndarray    # (N,4,4) the map's keyframe poses when the graph was built
    segments: np.ndarray     # (N,)
    edges: np.ndarray        # (M,2)
    kinds: np.ndarray        # (M,) ODOMETRY, COVISIBILITY, LOOP
    Z: np.ndarray            # (M,4,4)
    information: np.ndarray  # (M,d,d)
    fixed: np.ndarray        # (N,) bool
    corrections: int         # the map's correction count when copied
    merged_segments: int     # pieces a loop joined for the first time in this graph
    ids: np.ndarray | None = None  # (N,) keyframe id of each vertex; None: vertex k is keyframe k
    n_keyframes: int = 0     # keyframes in the map when copied (0: N)

    def __post_init__(self) -> None:
        if self.ids is None:
            self.ids = np.arange(len(self.poses), dtype=np.int64)
        if not self.n_keyframes:
            self.n_keyframes = len(self.poses)

    @property
    def bounded(self) -> bool:
        """True when only part of the map's keyframes are vertices (the rest held where they are)."""
        return len(self.ids) < self.n_keyframes

    @property
    def n(self) -> int:
        """Number of vertices."""
        return len(self.poses)

    def counts(self) -> dict[str, int]:
        """Edges by kind."""
        return {k: int((self.kinds == i).sum()) for i, k in enumerate(EDGE_KINDS)}


def _information(weights: np.ndarray, cfg: LoopConfig, group: str) -> np.ndarray:
    diag = [cfg.sigma_rotation ** -2] * 3 + [cfg.sigma_translation ** -2] * 3
    if group == "sim3":
        diag.append(cfg.sigma_scale ** -2)
    return weights[:, None, None] * np.diag(diag)[None]


def _support_weight(shared: np.ndarray) -> np.ndarray:
    return np.clip(np.minimum(shared, 200) / 100.0, 0.1, None)


def build_graph(the_map: Any, loops: list[LoopEdge], cfg: LoopConfig, group: str) -> GraphData:
    """The pose graph of every keyframe now in the map, with `loops` as loop edges (the last one the
    loop being closed; a map over `cfg.pgo_max_keyframes` keyframes gives a bounded graph)."""
    # one consistent copy; only the strong covisibility pairs (a long run has ~100 weak ones per keyframe)
    poses, segments, covis, consecutive, corrections = the_map.pose_graph_view(cfg.covisibility_min_shared)
    n = len(poses)
    if n < 2:
        raise ValueError(f"a pose graph needs two keyframes, the map has {n}")
    # odometry: consecutive keyframes of one segment
    i = np.arange(n - 1)
    same = segments[i] == segments[i + 1]
    odo = np.stack([i[same], i[same] + 1], 1)
    odo_w = _support_weight(consecutive[same].astype(float))
    # covisibility: strong, non-consecutive
    strong = covis[covis[:, 1] - covis[:, 0] > 1]
    cov = strong[:, :2]
    cov_w = cfg.covisibility_weight * _support_weight(strong[:, 2].astype(float))
    # loop edges
    lp = np.array([[e.match, e.query] for e in loops if max(e.match, e.query) < n], np.int64).reshape(-1, 2)
    lp_Z = np.array([e.Z for e in loops if max(e.match, e.query) < n]).reshape(-1, 4, 4)
    lp_w = cfg.loop_weight * _support_weight(np.array([e.inliers for e in loops if max(e.match, e.query) < n], float))

    X = poses.copy()
    rel = np.concatenate([odo, cov])
    Z_rel = lie.se3_inverse(X[rel[:, 0]]) @ X[rel[:, 1]] if len(rel) else np.zeros((0, 4, 4))
    X, merged = _align_pieces(X, rel, lp, lp_Z, group)
    edges = np.concatenate([rel, lp]).astype(np.int64)
    Z = np.concatenate([Z_rel, lp_Z])
    kinds = np.concatenate([np.full(len(odo), ODOMETRY), np.full(len(cov), COVISIBILITY), np.full(len(lp), LOOP)])
    info = _information(np.concatenate([odo_w, cov_w, lp_w]), cfg, group)
    fixed = np.zeros(n, bool)
    fixed[0] = True
    graph = GraphData(group, X, poses, segments, edges, kinds, Z, info, fixed, corrections, merged)
    previous = [max(e.match, e.query) for e in loops[:-1] if max(e.match, e.query) < n]
    if 0 < cfg.pgo_max_keyframes < n and previous and merged == 0 and len(lp):
        first_free = max(previous) + 1
        if old_keyframes_on_loop_path(n, edges[:-1], int(lp[-1, 1]), int(lp[-1, 0]), first_free) \
                <= cfg.pgo_local_path_keyframes:
            graph = bounded_graph(graph, first_free)
    return graph


def old_keyframes_on_loop_path(n: int, edges: np.ndarray, query: int, match: int, first_free: int) -> int:
    """Keyframes older than first_free on the fewest-edges path from query to match (the new loop's
    edge left out of `edges`): how much of the loop's error the older keyframes would have to take."""
    G = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    _, pred = breadth_first_order(G, query, directed=False, return_predecessors=True)
    if match != query and pred[match] < 0:
        return n  # not connected without the new edge: a merge, solved whole
    path, k = [match], match
    while k != query:
        k = int(pred[k])
        path.append(k)
    return int((np.array(path) < first_free).sum())


def bounded_graph(g: GraphData, first_free: int) -> GraphData:
    """The part of graph g that keyframes >= first_free touch: their edges, with the older keyframes
    those edges reach as fixed vertices (older keyframes keep their values; see the module notes)."""
    free = g.ids >= first_free
    keep = free[g.edges].any(axis=1)
    used = np.zeros(g.n, bool)
    used[g.edges[keep].ravel()] = True
    used |= free
    index = np.cumsum(used) - 1  # old vertex -> new vertex
    fixed = g.fixed[used] | ~free[used]
    return GraphData(g.group, g.poses[used], g.poses_map[used], g.segments[used], index[g.edges[keep]],
                     g.kinds[keep], g.Z[keep], g.information[keep], fixed, g.corrections, g.merged_segments,
                     ids=g.ids[used], n_keyframes=g.n_keyframes)


def _align_pieces(X: np.ndarray, rel: np.ndarray, lp: np.ndarray, lp_Z: np.ndarray, group: str) -> tuple[np.ndarray, int]:
    """Move pieces of the graph that only loop edges connect rigidly (Sim(3): with scale) onto the
    oldest piece they join, so that the solve starts near its solution; returns (poses, pieces moved)."""
    n = len(X)
    G = sp.coo_matrix((np.ones(len(rel)), (rel[:, 0], rel[:, 1])), shape=(n, n)) if len(rel) else sp.coo_matrix((n, n))
    _, label = connected_components(G, directed=False)
    X = X.copy()
    moved = 0
    for (m, q), Z in zip(lp.tolist(), lp_Z):  # per loop: a handful
        if label[m] == label[q]:
            continue
        # the piece holding the newer keyframe follows the older one
        old, new = (m, q) if min(np.flatnonzero(label == label[m])) < min(np.flatnonzero(label == label[q])) else (q, m)
        want = X[m] @ Z if new == q else X[q] @ lie.sim3_inverse(Z[None])[0]  # where `new` should be
        G_move = want @ lie.sim3_inverse(X[new][None])[0]
        piece = label == label[new]
        X[piece] = G_move[None] @ X[piece]
        label[piece] = label[old]
        moved += 1
    if group == "se3":
        X = lie.orthonormalize(X)
    return X, moved


@dataclass
class GraphSolution:
    """A solved pose graph: vertex values and the solver's summary."""

    graph: GraphData
    poses: np.ndarray   # (N,4,4) solved vertex values (Sim(3) for monocular)
    summary: Summary
    build_s: float
    solve_s: float
    edge_chi2: np.ndarray | None = None  # (M,) e^T Omega e of every edge at the solution

    def corrections(self) -> np.ndarray:
        """(K,4,4) C_k = X_k^new X_k^map^-1 for the map's K keyframes when the graph was copied: the
        world-frame similarity each keyframe moved by (identity for those not in a bounded graph)."""
        g = self.graph
        C = np.broadcast_to(np.eye(4), (g.n_keyframes, 4, 4)).copy()
        C[g.ids] = self.poses @ lie.se3_inverse(g.poses_map)
        return C

    def stats(self) -> dict[str, Any]:
        """What loops.json records about the solve."""
        s = self.summary
        return {"group": self.graph.group, "vertices": self.graph.n, "edges": int(len(self.graph.edges)),
                "fixed_vertices": int(self.graph.fixed.sum()), "keyframes": self.graph.n_keyframes,
                "edges_by_kind": self.graph.counts(), "merged_segments": self.graph.merged_segments,
                "initial_cost": s.initial_cost, "final_cost": s.final_cost, "iterations": s.iterations,
                "cg_iterations": s.total_linear_iterations, "termination": s.termination,
                "time_s": {"build": self.build_s, "solve": self.solve_s, **dict(s.stage_times)},
                "precision": s.precision}


def solve_graph(graph: GraphData, precision: str, max_iterations: int, build_s: float = 0.0) -> GraphSolution:
    """Solve the graph with the project's LM / PCG in `precision` (static IC preconditioner)."""
    t0 = time.perf_counter()
    problem = PoseGraphProblem(graph.poses, graph.edges, graph.Z, graph.information, graph.fixed, group=graph.group)
    summary = solve(problem, SolverOptions(precision=precision, max_iterations=max_iterations))
    return GraphSolution(graph, problem.poses.copy(), summary, build_s, time.perf_counter() - t0, problem.edge_chi2())


def loop_chi2_bound(group: str, p: float) -> float:
    """The chi-square quantile p for one edge's dof (6 for SE(3), 7 for Sim(3)); inf for p <= 0."""
    if p <= 0.0:
        return float("inf")
    # scipy.special's inverse survival function, equal to scipy.stats.chi2.ppf: importing
    # scipy.stats took ~0.5 s of Python on the loop thread at the first loop of a run, holding the
    # GIL while tracking waited (the largest frame times of a live run).
    return float(chdtri(7 if group == "sim3" else 6, 1.0 - p))


def export_g2o(path: str | Path, sol: GraphSolution | GraphData, at_solution: bool = True) -> bool:
    """Write a pose graph (measurements, information, FIX; vertices at the solution, or with
    at_solution False at the initial estimate the solver started from) as g2o: SE(3) as
    VERTEX_SE3:QUAT / EDGE_SE3:QUAT, Sim(3) (monocular) as g2o's VERTEX_SIM3:EXPMAP / EDGE_SIM3:EXPMAP.

    Returns whether the file was written (always, for the groups loop closure builds). `slam pgo`
    (or GTSAM: slam.eval.peers) re-solving the file reaches the same cost.
    """
    g = sol.graph if isinstance(sol, GraphSolution) else sol
    if g.group not in ("se3", "sim3"):
        return False
    pg = PoseGraph(ids=g.ids, poses=g.poses, edges=g.edges, measurements=g.Z, information=g.information,
                   fixed=g.fixed, sim3=g.group == "sim3")
    write_g2o(path, pg, poses=sol.poses if at_solution and isinstance(sol, GraphSolution) else g.poses)
    return True
