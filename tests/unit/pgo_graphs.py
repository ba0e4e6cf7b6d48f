"""Random pose graphs for the PGO tests: a chain with extra loop edges, residuals well away from zero."""

from __future__ import annotations

import numpy as np

from slam.geometry import lie
from slam.geometry.lie_se2 import se2_exp
from slam.solvers.pgo import PoseGraphProblem


def random_graph(group: str, rng: np.random.Generator, n: int = 7, extra: int = 5,
                 fixed: np.ndarray | None = None) -> PoseGraphProblem:
    """n poses of `group` in a chain plus `extra` random loop edges, random information, noisy measurements."""
    d = {"se3": 6, "sim3": 7, "se2": 3}[group]
    exp = {"se3": lie.se3_exp, "sim3": lie.sim3_exp, "se2": se2_exp}[group]
    scale = np.r_[np.full(3, 0.8), np.full(3, 2.0), np.full(d - 6, 0.3)] if d >= 6 else np.array([2.0, 2.0, 0.8])
    X = exp(rng.normal(size=(n, d)) * scale)
    loops = [tuple(rng.choice(n, 2, replace=False)) for _ in range(extra)]
    edges = np.array([(k, k + 1) for k in range(n - 1)] + loops)
    inv = lie.sim3_inverse if group == "sim3" else lie.se3_inverse
    noise = exp(rng.normal(size=(len(edges), d)) * 0.2)  # residuals well away from zero
    Z = inv(X[edges[:, 0]]) @ X[edges[:, 1]] @ noise
    B = rng.normal(size=(len(edges), d, d))
    info = B @ B.transpose(0, 2, 1) + 0.5 * np.eye(d)
    return PoseGraphProblem(X, edges, Z, info, fixed, group=group)
