"""Sim(3) pose graphs in g2o's seven-dof types (VERTEX_SIM3:EXPMAP, EDGE_SIM3:EXPMAP): the file's
convention checked by hand and against GTSAM's BetweenFactorSimilarity3, exact round trips, `slam pgo`
on a Sim(3) file, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slam.cli import main
from slam.errors import FormatError, ProblemError
from slam.geometry import lie
from slam.io.g2o import PoseGraph, read_g2o, write_g2o
from slam.solvers.lm import SolverOptions, solve
from slam.solvers.pgo import from_pose_graph

# A vertex: Log(T_world_vertex) [w v sigma], then g2o's camera values fx fy cx cy.
LOG_A = [0.1, -0.2, 0.3, 1.0, 2.0, -0.5, 0.2]
LOG_B = [-0.05, 0.4, 0.1, 0.3, -1.0, 2.0, -0.1]
LOG_Z = [0.02, 0.1, -0.3, -0.2, 0.5, 1.5, -0.25]
# 28 distinct upper-triangular entries, row by row; diagonally dominant, so positive definite.
HAND_INFO = np.zeros((7, 7))
HAND_INFO[np.triu_indices(7)] = [10 * (r + 1) if r == c else 0.01 * (10 * r + c)
                                 for r, c in zip(*np.triu_indices(7))]
HAND_INFO = HAND_INFO + np.triu(HAND_INFO, 1).T


def _line(tag: str, *values: float) -> str:
    return " ".join([tag] + [repr(float(v)) if not isinstance(v, int) else str(v) for v in values])


def _hand_file(path: Path) -> Path:
    info = HAND_INFO[np.triu_indices(7)].tolist()
    path.write_text("\n".join([
        _line("VERTEX_SIM3:EXPMAP", 3, *LOG_A, 1.0, 1.0, 0.0, 0.0),
        _line("VERTEX_SIM3:EXPMAP", 8, *LOG_B, 1.0, 1.0, 0.0, 0.0),
        "FIX 3",
        _line("EDGE_SIM3:EXPMAP", 3, 8, *LOG_Z, *info),
    ]) + "\n")
    return path


def _random_graph(n: int = 40, seed: int = 3) -> tuple[PoseGraph, np.ndarray]:
    """A Sim(3) graph (chain + 3 loops) with noisy measurements and dense information; and the truth."""
    rng = np.random.default_rng(seed)
    truth = lie.sim3_exp(np.concatenate([rng.normal(size=(n, 6)) * 0.5, rng.normal(size=(n, 1)) * 0.1], 1))
    edges = np.array([(i, i + 1) for i in range(n - 1)] + [(0, n - 1), (5, 30), (10, 20)])
    Z = lie.sim3_inverse(truth[edges[:, 0]]) @ truth[edges[:, 1]] @ lie.sim3_exp(rng.normal(size=(len(edges), 7)) * 0.02)
    A = rng.normal(size=(len(edges), 7, 7)) * 0.3
    info = A @ A.transpose(0, 2, 1) + 5.0 * np.eye(7)
    start = truth @ lie.sim3_exp(rng.normal(size=(n, 7)) * 0.05)
    fixed = np.zeros(n, bool)
    fixed[0] = True
    return PoseGraph(ids=np.arange(n) * 3 + 7, poses=start, edges=edges, measurements=Z, information=info,
                     fixed=fixed, sim3=True), truth


def test_hand_written_file_reads_as_g2o_defines_it(tmp_path: Path) -> None:
    g = read_g2o(_hand_file(tmp_path / "h.g2o"))
    assert g.sim3 and not g.planar
    np.testing.assert_array_equal(g.ids, [3, 8])
    np.testing.assert_array_equal(g.fixed, [True, False])
    np.testing.assert_allclose(g.poses, lie.sim3_exp(np.array([LOG_A, LOG_B])), atol=1e-15)
    np.testing.assert_allclose(g.measurements[0], lie.sim3_exp(np.array(LOG_Z)), atol=1e-15)
    np.testing.assert_array_equal(g.information[0], HAND_INFO)
    # g2o's EdgeSim3 error, from the file's numbers: vertex estimate S = Exp(l)^-1, measurement
    # C = Exp(v)^-1, error Log(C S_i S_j^-1), cost 1/2 e^T Omega e: what our problem computes.
    S_a, S_b = (np.linalg.inv(lie.sim3_exp(np.array(v))) for v in (LOG_A, LOG_B))
    C = np.linalg.inv(lie.sim3_exp(np.array(LOG_Z)))
    e = lie.sim3_log(C @ S_a @ np.linalg.inv(S_b))
    problem = from_pose_graph(g)
    assert problem.group == "sim3"
    assert problem.cost() == pytest.approx(0.5 * e @ HAND_INFO @ e, rel=1e-12)


def test_round_trip_is_exact_to_a_few_ulps(tmp_path: Path) -> None:
    g, _ = _random_graph()
    write_g2o(tmp_path / "g.g2o", g)
    back = read_g2o(tmp_path / "g.g2o")
    assert back.sim3
    np.testing.assert_array_equal(back.ids, g.ids)
    np.testing.assert_array_equal(back.edges, g.edges)
    np.testing.assert_array_equal(back.fixed, g.fixed)
    np.testing.assert_array_equal(back.information, g.information)
    np.testing.assert_allclose(back.poses, g.poses, atol=1e-14)
    np.testing.assert_allclose(back.measurements, g.measurements, atol=1e-14)
    assert from_pose_graph(back).cost() == pytest.approx(from_pose_graph(g).cost(), rel=1e-12)


def test_gtsam_similarity3_is_the_same_problem(tmp_path: Path) -> None:
    """GTSAM's cost of the file equals ours at the start and at our solution; GTSAM's LM from the
    file reaches our optimum."""
    pytest.importorskip("gtsam")
    from slam.eval import peers

    g, _ = _random_graph()
    path = tmp_path / "g.g2o"
    write_g2o(path, g)
    problem = from_pose_graph(read_g2o(path))
    assert peers.gtsam_cost(path, problem.poses) == pytest.approx(problem.cost(), rel=1e-12)
    s = solve(problem, SolverOptions(precision="fp64"))
    assert s.final_cost < 0.01 * s.initial_cost
    assert peers.gtsam_cost(path, problem.poses) == pytest.approx(s.final_cost, rel=1e-12)
    ref = peers.gtsam_pgo(path)
    assert ref["final_cost"] == pytest.approx(s.final_cost, rel=1e-4)
    # GTSAM's result handed back as our matrices: the same cost, the same optimum
    assert peers.gtsam_cost(path, ref["poses"]) == pytest.approx(ref["final_cost"], rel=1e-9)
    np.testing.assert_allclose(ref["poses"], problem.poses, atol=1e-3)
    write_g2o(tmp_path / "r.g2o", read_g2o(path), poses=problem.poses)  # a results file is read too
    assert peers.gtsam_cost(path, tmp_path / "r.g2o") == pytest.approx(s.final_cost, rel=1e-12)


def test_gtsam_similarity3_convention_against_ours() -> None:
    """Independent of the file: GTSAM's Similarity3(R, t/s, s) is our [[sR, t], [0, 1]] up to the
    homogeneous scale, its Logmap is our sim3_log, and BetweenFactorSimilarity3's error is our edge
    residual Log(Z^-1 X_i^-1 X_j)."""
    gtsam = pytest.importorskip("gtsam")
    rng = np.random.default_rng(5)
    S = lie.sim3_exp(np.concatenate([rng.normal(size=(3, 6)), rng.normal(size=(3, 1)) * 0.3], 1))
    g = []
    for k in range(3):
        s, R, t = lie.sRt(S[k:k + 1])
        g.append(gtsam.Similarity3(gtsam.Rot3(R[0]), t[0] / s[0], float(s[0])))
        M = g[-1].matrix()
        np.testing.assert_allclose(M / M[3, 3], S[k], atol=1e-14)
        np.testing.assert_allclose(gtsam.Similarity3.Logmap(g[-1]), lie.sim3_log(S[k:k + 1])[0], atol=1e-12)
    values = gtsam.Values()
    values.insert(0, g[0])
    values.insert(1, g[1])
    factor = gtsam.BetweenFactorSimilarity3(0, 1, g[2], gtsam.noiseModel.Unit.Create(7))
    e = lie.sim3_log(lie.sim3_inverse(S[2:3]) @ lie.sim3_inverse(S[0:1]) @ S[1:2])[0]
    np.testing.assert_allclose(factor.unwhitenedError(values), e, atol=1e-12)


def test_slam_pgo_solves_and_writes_a_sim3_file(tmp_path: Path) -> None:
    g, _ = _random_graph()
    src, out, stats = tmp_path / "g.g2o", tmp_path / "r.g2o", tmp_path / "s.json"
    write_g2o(src, g)
    assert main(["pgo", str(src), "--precision", "mixed", "--out", str(out), "--json", str(stats), "--quiet"]) == 0
    s = json.loads(stats.read_text())
    assert s["group"] == "sim3" and s["final_cost"] < 0.01 * s["initial_cost"]
    res = read_g2o(out)
    assert res.sim3
    problem = from_pose_graph(read_g2o(src))
    problem.poses[...] = res.poses
    assert problem.cost() == pytest.approx(s["final_cost"], rel=1e-9)


def test_errors_name_the_line(tmp_path: Path) -> None:
    path = _hand_file(tmp_path / "h.g2o")
    lines = path.read_text().splitlines()
    short = tmp_path / "short.g2o"
    short.write_text("\n".join([_line("VERTEX_SIM3:EXPMAP", 3, *LOG_A)] + lines[1:]) + "\n")
    expected = r"short\.g2o:1: VERTEX_SIM3:EXPMAP expects 12 values after the tag \(id w_x .* fx fy cx cy\), found 8"
    with pytest.raises(FormatError, match=expected):
        read_g2o(short)
    mixed = tmp_path / "mixed.g2o"
    mixed.write_text("\n".join(lines + ["VERTEX_SE3:QUAT 9 0 0 0 0 0 0 1"]) + "\n")
    with pytest.raises(FormatError, match="mixes Sim\\(3\\) lines"):
        read_g2o(mixed)
    bad = tmp_path / "bad.g2o"
    info = (-HAND_INFO)[np.triu_indices(7)].tolist()
    bad.write_text("\n".join(lines[:3] + [_line("EDGE_SIM3:EXPMAP", 3, 8, *LOG_Z, *info)]) + "\n")
    with pytest.raises(ProblemError, match="EDGE_SIM3:EXPMAP: 1 of the 1 information matrices are not positive"):
        read_g2o(bad)
    huge = tmp_path / "huge.g2o"  # e^900 overflows: refused with its line, not read as inf
    huge.write_text("\n".join([lines[0], _line("VERTEX_SIM3:EXPMAP", 8, *LOG_B[:6], 900.0, 1.0, 1.0, 0.0, 0.0)]
                              + lines[2:]) + "\n")
    with pytest.raises(ProblemError, match=r"huge\.g2o:2: VERTEX_SIM3:EXPMAP: the similarity .* is not finite"):
        read_g2o(huge)


def test_write_refuses_what_is_not_a_similarity(tmp_path: Path) -> None:
    g, _ = _random_graph()
    g.poses[3, 0, 1] += 0.1  # sheared: its logarithm would silently be another pose
    with pytest.raises(ValueError, match=r"vertex 16 is not a similarity .* refusing to write"):
        write_g2o(tmp_path / "g.g2o", g)
    g.poses[3] = np.diag([-1.0, 1.0, 1.0, 1.0])  # a reflection
    with pytest.raises(ValueError, match=r"vertex 16 is not a similarity"):
        write_g2o(tmp_path / "g.g2o", g)
