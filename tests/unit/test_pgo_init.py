"""Chordal initialization of pose graphs (pgo_init.py) against exact graphs and against LM from dead reckoning."""

from __future__ import annotations

import numpy as np
import pytest

from slam.eval.hard_graphs import manhattan_graph
from slam.geometry import lie
from slam.geometry.lie_se2 import se2_exp
from slam.solvers.lm import SolverOptions, solve
from slam.solvers.pgo import PoseGraphProblem, from_pose_graph
from slam.solvers.pgo_init import chordal_initialization


def _exact_graph(group: str, seed: int = 0, n: int = 30) -> tuple[PoseGraphProblem, np.ndarray]:
    """A chain with loop edges whose measurements are the truth's relative poses, started far from it
    (vertex 0, the held one, at its truth)."""
    rng = np.random.default_rng(seed)
    exp = se2_exp if group == "se2" else lie.se3_exp
    d = 3 if group == "se2" else 6
    truth = exp(rng.normal(size=(n, d)) * 2.0)
    loops = [tuple(rng.choice(n, 2, replace=False)) for _ in range(n // 2)]
    edges = np.array([(k, k + 1) for k in range(n - 1)] + loops)
    Z = lie.se3_inverse(truth[edges[:, 0]]) @ truth[edges[:, 1]]
    B = rng.normal(size=(len(edges), d, d))
    info = B @ B.transpose(0, 2, 1) + 0.5 * np.eye(d)
    start = truth @ exp(rng.normal(size=(n, d)) * 1.0)  # rotations off by ~1 rad
    start[0] = truth[0]
    return PoseGraphProblem(start, edges, Z, info, group=group), truth


@pytest.mark.parametrize("group", ["se3", "se2"])
def test_exact_measurements_give_the_truth(group: str) -> None:
    problem, truth = _exact_graph(group)
    assert problem.cost(np.float64) > 100.0
    poses = chordal_initialization(problem)
    np.testing.assert_allclose(poses, truth, atol=1e-8)
    problem.poses[...] = poses
    assert problem.cost(np.float64) < 1e-14


def test_a_graph_with_every_pose_held_is_left_alone() -> None:
    problem, _ = _exact_graph("se3", seed=5, n=6)
    held = PoseGraphProblem(problem.poses, problem.edges, np.linalg.inv(problem.Zinv),
                            problem.W.transpose(0, 2, 1) @ problem.W, fixed=np.ones(6, bool))
    assert chordal_initialization(held) is None and held.initialize("chordal") is None
    s = solve(held, SolverOptions(precision="fp64"))
    assert s.iterations == 0 and s.final_cost == s.initial_cost


def test_sim3_graphs_are_left_alone() -> None:
    from pgo_graphs import random_graph

    problem = random_graph("sim3", np.random.default_rng(0))
    start = problem.get_state()
    assert chordal_initialization(problem) is None
    assert problem.initialize("chordal") is None
    np.testing.assert_array_equal(problem.get_state(), start)


def test_auto_takes_the_chordal_start_only_from_a_poor_one() -> None:
    problem, truth = _exact_graph("se3", seed=1)
    start = problem.cost(np.float64)
    cost = problem.initialize("auto")
    assert cost is not None and cost < 1e-10 * start
    # Near the optimum (a loop-closure graph started from odometry) the start is kept.
    problem.poses[...] = truth @ lie.se3_exp(np.random.default_rng(2).normal(size=(len(truth), 6)) * 1e-4)
    problem.poses[0] = truth[0]
    kept = problem.get_state()
    assert problem.initialize("auto") is None
    np.testing.assert_array_equal(problem.get_state(), kept)
    with pytest.raises(ValueError, match="initialization"):
        problem.initialize("lago")


def test_chordal_start_reaches_the_optimum_where_dead_reckoning_stops_in_a_local_minimum() -> None:
    """A 2-D walk with 0.2 rad heading noise per edge: LM from dead reckoning stops at twice the cost."""
    graph, _ = manhattan_graph(300, theta_sigma=0.2, seed=1)
    runs = {}
    for init in ("none", "auto"):
        runs[init] = solve(from_pose_graph(graph), SolverOptions(precision="fp64", initialization=init))
    assert runs["none"].initialization == "none" and runs["auto"].initialization == "chordal"
    assert runs["auto"].termination == runs["none"].termination == "relative cost decrease"
    assert runs["auto"].final_cost < 0.5 * runs["none"].final_cost
    assert runs["auto"].iterations < runs["none"].iterations
    assert runs["auto"].cost_history[0] == runs["auto"].initial_cost == runs["none"].initial_cost
    assert runs["auto"].cost_history[1] < 1e-2 * runs["auto"].initial_cost  # the chordal start


def test_a_failed_relaxation_keeps_the_start(monkeypatch) -> None:
    import slam.solvers.pgo as pgo

    problem, _ = _exact_graph("se3", seed=4)
    start = problem.get_state()

    def singular(_problem):
        raise RuntimeError("Factor is exactly singular")

    monkeypatch.setattr(pgo, "chordal_initialization", singular)
    assert problem.initialize("chordal") is None
    np.testing.assert_array_equal(problem.get_state(), start)
    s = solve(problem, SolverOptions(precision="fp64", initialization="chordal", max_iterations=3))
    assert s.initialization == "none" and s.cost_history[0] == s.initial_cost
