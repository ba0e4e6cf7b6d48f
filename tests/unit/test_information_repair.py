"""Information matrices that are not positive definite: refused by default with the count and the
first file:line, projected onto the nearest PD matrix on request (`slam pgo --repair-information`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slam.cli import main
from slam.errors import ProblemError
from slam.eval.synthetic_problems import grid_pose_graph
from slam.io.g2o import read_g2o, write_g2o
from slam.solvers.information import not_positive_definite, repair_information
from slam.solvers.lm import SolverOptions, solve
from slam.solvers.pgo import from_pose_graph

RNG = np.random.default_rng(3)


def _spd(n: int) -> np.ndarray:
    B = RNG.normal(size=(n, 6, 6))
    return B @ B.transpose(0, 2, 1) + 0.1 * np.eye(6)


def test_repair_clamps_eigenvalues_and_keeps_pd_matrices_bit_for_bit() -> None:
    good = _spd(4)
    w = np.array([-3.0, -1e-3, 0.0, 0.5, 2.0, 10.0])
    Q, _ = np.linalg.qr(RNG.normal(size=(6, 6)))
    bad = Q @ np.diag(w) @ Q.T
    info = np.concatenate([good[:2], bad[None], good[2:], np.zeros((1, 6, 6))])
    fixed, idx = repair_information(info, floor=1e-3)
    np.testing.assert_array_equal(idx, [2, 5])
    np.testing.assert_array_equal(fixed[[0, 1, 3, 4]], info[[0, 1, 3, 4]])
    # Nearest PD matrix with eigenvalues >= 1e-3 * 10: same eigenvectors, eigenvalues clamped.
    expect = Q @ np.diag(np.maximum(w, 1e-2)) @ Q.T
    np.testing.assert_allclose(fixed[2], expect, atol=1e-12)
    assert np.linalg.eigvalsh(fixed[5]).min() > 0  # an all-zero matrix gets the absolute floor
    assert not_positive_definite(fixed).size == 0
    # Nearest in the Frobenius norm: no random PD matrix with the same floor is closer.
    for _ in range(200):
        C = fixed[2] + 0.05 * RNG.normal(size=(6, 6))
        C = 0.5 * (C + C.T)
        if np.linalg.eigvalsh(C).min() >= 1e-2:
            assert np.linalg.norm(C - bad) >= np.linalg.norm(fixed[2] - bad) - 1e-12


def _corrupted_graph(tmp_path: Path) -> tuple[Path, list[int]]:
    graph, _ = grid_pose_graph(4, 2, seed=5)
    bad = [3, 7, 20]
    flip = np.diag([1.0, 1.0, 1.0, -1.0, 1.0, 1.0])
    for k in bad:
        graph.information[k] = flip @ graph.information[k] @ flip - 2 * graph.information[k, 3, 3] * np.outer(
            np.eye(6)[3], np.eye(6)[3])  # one negative eigenvalue on the x translation
    src = tmp_path / "bad_info.g2o"
    write_g2o(src, graph)
    return src, bad


def test_non_pd_information_is_refused_with_count_and_first_line(tmp_path: Path) -> None:
    src, bad = _corrupted_graph(tmp_path)
    with pytest.raises(ProblemError) as err:
        read_g2o(src)
    n_vertices = len(read_g2o(src, check_information=False).poses)
    assert f"{src}:{n_vertices + bad[0] + 1}:" in str(err.value)  # edges follow the vertex lines
    assert f"{len(bad)} of " in str(err.value)
    assert main(["pgo", str(src), "--quiet"]) == 2


def test_repair_information_solves_the_repaired_graph(tmp_path: Path) -> None:
    src, bad = _corrupted_graph(tmp_path)
    out, stats = tmp_path / "r.g2o", tmp_path / "s.json"
    assert main(["pgo", str(src), "--repair-information", "--precision", "mixed", "--out", str(out),
                 "--json", str(stats), "--quiet"]) == 0
    s = json.loads(stats.read_text())
    assert s["repaired_information"] == len(bad)
    assert s["information_floor"] == pytest.approx(1e-6)
    # Independent reference: the repaired graph solved in fp64 from the same start.
    g = read_g2o(src, check_information=False)
    g.information, idx = repair_information(g.information)
    np.testing.assert_array_equal(idx, bad)
    ref = from_pose_graph(g)
    r = solve(ref, SolverOptions(precision="fp64"))
    assert s["final_cost"] == pytest.approx(r.final_cost, rel=1e-5)
    written = read_g2o(out)  # the written graph holds the repaired (positive definite) information
    g.poses = written.poses
    assert from_pose_graph(g).cost() == pytest.approx(s["final_cost"], rel=1e-9)
