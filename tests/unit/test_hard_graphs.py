"""Generated hard pose graphs (dead-reckoning starts): the generator is right, and every preset
reaches GTSAM LM's optimum from the same start without hitting the iteration cap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slam.eval.hard_graphs import chain_odometry, hard_suite, lattice_graph, torus_graph
from slam.io.g2o import write_g2o
from slam.solvers.lm import SolverOptions, solve
from slam.solvers.pgo import from_pose_graph

SUITE = hard_suite("test")


def test_chained_start_satisfies_the_tree_edges_exactly() -> None:
    graph, gt = torus_graph(laps=4, per_lap=20, seed=3)
    odo = graph.edges[:, 1] == graph.edges[:, 0] + 1
    e = from_pose_graph(graph)._errors(np.float64)[0]
    # Dead reckoning composes the odometry edges, so their residuals vanish and the loops carry the drift.
    assert np.abs(e[odo]).max() < 1e-9
    assert np.abs(e[~odo]).max() > 0.05
    # Re-chaining a chained graph is the identity; the truth is not a chained start.
    again = chain_odometry(graph)
    np.testing.assert_allclose(again.poses, graph.poses, atol=1e-9)
    assert np.abs(graph.poses[-1, :3, 3] - gt[-1, :3, 3]).max() > 0.1


def test_lattice_edges_join_lattice_neighbours() -> None:
    graph, gt = lattice_graph(4, 3, 2, loop_fraction=1.0, seed=1)
    d = np.linalg.norm(gt[graph.edges[:, 0], :3, 3] - gt[graph.edges[:, 1], :3, 3], axis=1)
    np.testing.assert_allclose(d, 1.0, atol=1e-12)
    n = 4 * 3 * 2
    assert len(graph.edges) == (3 * 3 * 2 + 4 * 2 * 2 + 4 * 3 * 1)  # every neighbour pair once
    assert len(graph.poses) == n


@pytest.mark.parametrize("name", sorted(SUITE))
@pytest.mark.parametrize("preset", ["fp64", "mixed"])
def test_hard_graph_reaches_gtsam_optimum(tmp_path: Path, name: str, preset: str) -> None:
    pytest.importorskip("gtsam")
    from slam.eval.peers import gtsam_pgo

    graph = SUITE[name]
    path = tmp_path / f"{name}.g2o"
    write_g2o(path, graph)
    ref = gtsam_pgo(path)
    problem = from_pose_graph(graph)
    s = solve(problem, SolverOptions(precision=preset))
    assert s.initial_cost == pytest.approx(ref["initial_cost"], rel=1e-9)
    assert s.initial_cost > 20 * ref["final_cost"]  # a hard start: far from the optimum
    assert s.termination != "max iterations"
    assert s.final_cost == pytest.approx(ref["final_cost"], rel=1e-4)
    assert s.final_cost <= ref["final_cost"] * (1 + 1e-5)
