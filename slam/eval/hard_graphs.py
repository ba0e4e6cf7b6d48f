"""Hard pose graphs, generated: large initial error from dead reckoning, thousands of poses, known truth.

Public benchmark graphs mostly start close to their optimum (sphere2500 from a good initial guess,
parking-garage from odometry of a short drive). A solver's LM strategy and preconditioner are
tested by graphs whose start is the composition of noisy odometry over thousands of steps: the
drift makes the loop closures' errors large (tens of degrees), the Jacobians far from those at the
optimum and the cost landscape non-convex. Three families, each with a seed:

- chain_odometry(graph): any graph re-initialized by composing its measurements along a spanning
  tree that prefers odometry edges (i, i+1) (the generators below start from it).
- torus_graph: a helical drive around a torus, loop closures to the previous lap (like torus3D).
- lattice_graph: a snake through an nx x ny x nz lattice, an edge to every lattice neighbour.
- manhattan_graph: a planar drive through a grid (M3500-like), written and solved as a 2-D graph.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from slam.geometry import lie
from slam.io.g2o import PoseGraph


def chain_odometry(graph: PoseGraph) -> PoseGraph:
    """The graph with every pose re-initialized by composing measurements along a spanning tree.

    The tree is a minimum spanning tree with weight |i - j| + 1 (odometry edges between consecutive
    vertices first), rooted at the first vertex of each connected piece, whose pose is kept.
    """
    n, e = len(graph.poses), np.asarray(graph.edges)
    w = np.abs(e[:, 0] - e[:, 1]).astype(np.float64) + 1.0
    # One undirected weight per vertex pair (parallel edges: keep the first); symmetric pattern.
    key = np.minimum(e[:, 0], e[:, 1]) * n + np.maximum(e[:, 0], e[:, 1])
    _, first = np.unique(key, return_index=True)
    G = sp.csr_matrix((w[first], (e[first, 0], e[first, 1])), shape=(n, n))
    T = csgraph.minimum_spanning_tree(G + G.T)
    T = (T + T.T).tocsr()
    edge_of = {}  # (parent, child) -> (edge index, forward?) for the tree edges only
    tree = sp.triu(T, format="coo")
    tree_pairs = set(zip(tree.row.tolist(), tree.col.tolist()))
    for k in first.tolist():
        a, b = int(e[k, 0]), int(e[k, 1])
        if (min(a, b), max(a, b)) in tree_pairs:
            edge_of[(a, b)] = (k, True)
            edge_of[(b, a)] = (k, False)
    poses = np.array(graph.poses, dtype=np.float64)
    Zinv = lie.se3_inverse(graph.measurements)
    seen = np.zeros(n, bool)
    for root in range(n):  # one traversal per connected piece
        if seen[root]:
            continue
        order, pred = csgraph.breadth_first_order(T, root, directed=False, return_predecessors=True)
        seen[order] = True
        for c in order[1:].tolist():  # composing along a path is sequential by nature
            p = int(pred[c])
            k, forward = edge_of[(p, c)]
            poses[c] = poses[p] @ (graph.measurements[k] if forward else Zinv[k])
    return PoseGraph(ids=graph.ids.copy(), poses=poses, edges=e.copy(), measurements=graph.measurements.copy(),
                     information=graph.information.copy(), fixed=graph.fixed.copy(), planar=graph.planar)


def _frames(p: np.ndarray, tangent: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Poses at positions p with x along the tangent and z close to `up` (rows: one pose each)."""
    x = tangent / np.linalg.norm(tangent, axis=1, keepdims=True)
    z = up - np.sum(up * x, axis=1, keepdims=True) * x
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    y = np.cross(z, x)
    return lie.se3_from_Rt(np.stack([x, y, z], axis=2), p)


def _measure(gt: np.ndarray, edges: np.ndarray, rot_sigma: float, trans_sigma: float,
             rng: np.random.Generator) -> PoseGraph:
    """Noisy relative-pose measurements of `edges` between the true poses, initialized by dead reckoning."""
    sig = np.array([rot_sigma] * 3 + [trans_sigma] * 3)
    Z = lie.se3_inverse(gt[edges[:, 0]]) @ gt[edges[:, 1]] @ lie.se3_exp(rng.normal(size=(len(edges), 6)) * sig)
    info = np.broadcast_to(np.diag(1.0 / sig**2), (len(edges), 6, 6)).copy()
    n = len(gt)
    g = PoseGraph(ids=np.arange(n, dtype=np.int64), poses=gt.copy(), edges=edges, measurements=Z, information=info,
                  fixed=np.zeros(n, bool))
    return chain_odometry(g)


def torus_graph(laps: int = 20, per_lap: int = 100, major: float = 20.0, minor: float = 5.0,
                rot_sigma: float = 0.02, trans_sigma: float = 0.05,
                seed: int = 0) -> tuple[PoseGraph, np.ndarray]:
    """A helix around a torus (laps x per_lap poses); loop edges to the previous lap's poses.

    Returns (graph initialized by dead reckoning, ground-truth poses (N, 4, 4)).
    """
    rng = np.random.default_rng(seed)
    n = laps * per_lap
    k = np.arange(n)
    u = 2 * np.pi * k / per_lap
    v = 2 * np.pi * k / n
    ring = major + minor * np.cos(v)
    p = np.stack([ring * np.cos(u), ring * np.sin(u), minor * np.sin(v)], axis=1)
    du, dv = 2 * np.pi / per_lap, 2 * np.pi / n
    tangent = np.stack([-ring * np.sin(u) * du - minor * np.sin(v) * np.cos(u) * dv,
                        ring * np.cos(u) * du - minor * np.sin(v) * np.sin(u) * dv,
                        minor * np.cos(v) * dv], axis=1)
    normal = np.stack([np.cos(v) * np.cos(u), np.cos(v) * np.sin(u), np.sin(v)], axis=1)
    gt = _frames(p, tangent, normal)
    odo = np.stack([k[:-1], k[1:]], axis=1)
    prev = k[per_lap:]
    loops = np.concatenate([np.stack([prev - per_lap + s, prev], axis=1)[(prev - per_lap + s >= 0)
                                                                        & (prev - per_lap + s < prev)]
                            for s in (-1, 0, 1)])
    edges = np.concatenate([odo, loops]).astype(np.int64)
    return _measure(gt, edges, rot_sigma, trans_sigma, rng), gt


def lattice_graph(nx: int = 10, ny: int = 10, nz: int = 10, spacing: float = 1.0, rot_sigma: float = 0.02,
                  trans_sigma: float = 0.05, loop_fraction: float = 1.0,
                  seed: int = 0) -> tuple[PoseGraph, np.ndarray]:
    """A snake through an nx x ny x nz lattice: odometry plus edges to lattice neighbours (a
    random loop_fraction of them), random headings. Returns (graph by dead reckoning, truth)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    x = np.where((y + z * ny) % 2 == 1, nx - 1 - x, x)  # boustrophedon rows: consecutive poses are neighbours
    y = np.where(z % 2 == 1, ny - 1 - y, y)
    cells = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    n = len(cells)
    index = np.empty((nx, ny, nz), np.int64)
    index[cells[:, 0], cells[:, 1], cells[:, 2]] = np.arange(n)
    w = np.stack([rng.normal(0, 0.05, n), rng.normal(0, 0.05, n), rng.uniform(-np.pi, np.pi, n)], axis=1)
    gt = lie.se3_from_Rt(lie.so3_exp(w), cells * spacing)
    pairs = [np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)]
    for d in np.eye(3, dtype=np.int64):
        nb = cells + d
        ok = np.all(nb < [nx, ny, nz], axis=1)
        i, j = np.arange(n)[ok], index[nb[ok, 0], nb[ok, 1], nb[ok, 2]]
        far = np.abs(i - j) > 1
        take = far & (rng.random(far.size) < loop_fraction)
        pairs.append(np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1)[take])
    edges = np.concatenate(pairs).astype(np.int64)
    return _measure(gt, edges, rot_sigma, trans_sigma, rng), gt


def manhattan_graph(n: int = 3500, xy_sigma: float = 0.05, theta_sigma: float = 0.01, closures: int = 3,
                    seed: int = 0) -> tuple[PoseGraph, np.ndarray]:
    """A planar (2-D) drive through a Manhattan grid, as in the M3500 benchmark.

    n poses one cell apart on a walk that turns left or right at random (one step in four) and
    stays within a square of about sqrt(n) / 2 cells; a loop edge from each pose to up to
    `closures` earlier poses in the same cell. Noise in (x, y, theta) as a 2-D dataset has it.
    Returns (planar graph by dead reckoning, truth (N, 4, 4) in the plane z = 0).
    """
    from slam.io.g2o_planar import lift_information, lift_poses

    rng = np.random.default_rng(seed)
    half = max(2, int(np.sqrt(n) / 4))
    heading, cell = 0, np.zeros(2, np.int64)
    steps = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])
    xyt = np.zeros((n, 3))
    turns = rng.random(n) < 0.25
    sides = rng.choice([-1, 1], size=n)
    for k in range(1, n):  # a random walk: each step depends on the last
        if turns[k]:
            heading = (heading + sides[k]) % 4
        if np.any(np.abs(cell + steps[heading]) > half):  # at the border: turn back inwards
            heading = (heading + 2) % 4
        cell = cell + steps[heading]
        xyt[k] = cell[0], cell[1], heading * np.pi / 2
    gt = lift_poses(xyt)
    key = (xyt[:, 0] + half) * (2 * half + 1) + (xyt[:, 1] + half)
    pairs = [np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)]
    order = np.lexsort((np.arange(n), key))  # by cell, then time: earlier visits of a cell precede
    same = key[order]
    for lag in range(1, closures + 1):
        i, j = order[:-lag], order[lag:]
        ok = (same[:-lag] == same[lag:]) & (j - i > 1)
        pairs.append(np.stack([i[ok], j[ok]], axis=1))
    edges = np.concatenate(pairs).astype(np.int64)
    sig = np.array([xy_sigma, xy_sigma, theta_sigma])
    noise = lift_poses(rng.normal(size=(len(edges), 3)) * sig)
    Z = lie.se3_inverse(gt[edges[:, 0]]) @ gt[edges[:, 1]] @ noise
    info = lift_information(np.broadcast_to(np.diag(1.0 / sig**2), (len(edges), 3, 3)))
    g = PoseGraph(ids=np.arange(n, dtype=np.int64), poses=gt.copy(), edges=edges, measurements=Z, information=info,
                  fixed=np.zeros(n, bool), planar=True)
    return chain_odometry(g), gt


def hard_suite(scale: str = "bench") -> dict[str, PoseGraph]:
    """Named hard graphs: 'bench' (thousands of poses) or 'test' (small enough for CI).

    sphere2500 is not among them: its file's start already is its chained odometry (chain_odometry
    gives the same initial cost, 1.3057e6), so the shared file is that case.
    """
    if scale not in ("bench", "test"):
        raise ValueError(f"unknown scale '{scale}'; choose bench or test")
    big = scale == "bench"
    out: dict[str, PoseGraph] = {}
    out["torus-hard"] = torus_graph(*((25, 100) if big else (6, 30)), seed=1)[0]
    out["torus-noisy"] = torus_graph(*((20, 100) if big else (6, 30)), rot_sigma=0.05, trans_sigma=0.1, seed=4)[0]
    out["lattice-hard"] = lattice_graph(*((16, 16, 12) if big else (6, 6, 4)), loop_fraction=0.5, seed=2)[0]
    out["lattice-noisy"] = lattice_graph(*((12, 12, 12) if big else (5, 5, 4)), rot_sigma=0.05, trans_sigma=0.1,
                                         loop_fraction=0.3, seed=3)[0]
    out["manhattan-2d"] = manhattan_graph(3500 if big else 300, seed=5)[0]
    return out
