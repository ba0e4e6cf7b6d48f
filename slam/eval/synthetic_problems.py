"""Optimization problems with known ground truth, generated on the fly (demo, tests, no download)."""

from __future__ import annotations

import numpy as np

from slam.geometry import lie
from slam.io.g2o import PoseGraph


def grid_pose_graph(n_side: int = 6, layers: int = 3, spacing: float = 1.0, rot_sigma: float = 0.01,
                    trans_sigma: float = 0.05, seed: int = 0) -> tuple[PoseGraph, np.ndarray]:
    """A robot snaking through an n_side x n_side x layers grid, odometry plus loop edges to every
    grid neighbour already visited; noisy measurements and a dead-reckoning initial guess.

    Returns (graph with initial poses, ground-truth poses (N,4,4)).
    """
    rng = np.random.default_rng(seed)
    cells = []
    for z in range(layers):
        for y in range(n_side):
            xs = range(n_side) if (y + z * n_side) % 2 == 0 else range(n_side - 1, -1, -1)
            cells += [(x, y if z % 2 == 0 else n_side - 1 - y, z) for x in xs]
    cells = np.array(cells, dtype=float)
    n = len(cells)
    yaw = rng.uniform(-np.pi, np.pi, n)
    w = np.stack([rng.normal(0, 0.05, n), rng.normal(0, 0.05, n), yaw], axis=1)
    gt = lie.se3_from_Rt(lie.so3_exp(w), cells * spacing)
    index = {tuple(c): i for i, c in enumerate(cells.astype(int))}
    edges = [(i, i + 1) for i in range(n - 1)]
    for i, c in enumerate(cells.astype(int)):
        for d in np.eye(3, dtype=int):
            j = index.get(tuple(c + d))
            if j is not None and abs(j - i) > 1:
                edges.append((min(i, j), max(i, j)))
    edges = np.array(sorted(set(edges)), dtype=np.int64)
    sig = np.array([rot_sigma] * 3 + [trans_sigma] * 3)
    noise = rng.normal(size=(len(edges), 6)) * sig
    Z = lie.se3_inverse(gt[edges[:, 0]]) @ gt[edges[:, 1]] @ lie.se3_exp(noise)
    info = np.broadcast_to(np.diag(1.0 / sig**2), (len(edges), 6, 6)).copy()
    init = np.empty_like(gt)
    init[0] = gt[0]
    odo = Z[edges[:, 1] == edges[:, 0] + 1]  # the odometry chain, in order
    for i in range(n - 1):
        init[i + 1] = init[i] @ odo[i]
    graph = PoseGraph(ids=np.arange(n, dtype=np.int64), poses=init, edges=edges, measurements=Z,
                      information=info, fixed=np.zeros(n, bool))
    return graph, gt
