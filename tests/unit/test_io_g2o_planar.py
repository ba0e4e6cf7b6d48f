"""2-D pose graphs (g2o SE2, TORO): read as planar 3-D graphs, written back in 2-D, solved at the 2-D optimum."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from slam.cli import main
from slam.errors import FormatError, ProblemError
from slam.io.g2o import read_g2o, write_g2o
from slam.io.g2o_planar import flatten_poses, lift_information, lift_poses, planar_information
from slam.solvers.lm import SolverOptions, solve
from slam.solvers.pgo import from_pose_graph

# A square drive with a loop back to the start; distinct information entries (positive definite).
POSES = [(0.0, 0.0, 0.0), (1.1, 0.1, 1.5), (1.0, 1.2, 3.0), (-0.1, 0.9, -1.6), (0.05, -0.1, 0.1)]
EDGES = [(0, 1, (1.0, 0.0, 1.5708)), (1, 2, (1.0, 0.02, 1.5708)), (2, 3, (0.98, 0.0, 1.5708)),
         (3, 4, (1.0, -0.01, 1.56)), (4, 0, (0.0, 0.0, 0.0)), (0, 2, (1.0, 1.0, 3.1416))]
INFO3 = np.array([[100.0, 2.0, 3.0], [2.0, 120.0, 5.0], [3.0, 5.0, 900.0]])


def _g2o_lines(info: np.ndarray = INFO3) -> list[str]:
    iu = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    vals = " ".join(repr(float(info[r, c])) for r, c in iu)
    return ([f"VERTEX_SE2 {i + 10} {x!r} {y!r} {t!r}" for i, (x, y, t) in enumerate(POSES)] + ["FIX 10"]
            + [f"EDGE_SE2 {a + 10} {b + 10} {x!r} {y!r} {t!r} {vals}" for a, b, (x, y, t) in EDGES])


def _toro_lines() -> list[str]:
    order = [(0, 0), (0, 1), (1, 1), (2, 2), (0, 2), (1, 2)]  # TORO: Ixx Ixy Iyy Itt Ixt Iyt
    vals = " ".join(repr(float(INFO3[r, c])) for r, c in order)
    return ([f"VERTEX2 {i + 10} {x!r} {y!r} {t!r}" for i, (x, y, t) in enumerate(POSES)] + ["FIX 10"]
            + [f"EDGE2 {a + 10} {b + 10} {x!r} {y!r} {t!r} {vals}" for a, b, (x, y, t) in EDGES])


def _write(tmp_path: Path, lines: list[str], name: str = "g.g2o") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_g2o_and_toro_read_to_the_same_lifted_graph(tmp_path: Path) -> None:
    a = read_g2o(_write(tmp_path, _g2o_lines(), "a.g2o"))
    b = read_g2o(_write(tmp_path, _toro_lines(), "b.graph"))
    assert a.planar and b.planar
    for name in ("ids", "edges", "poses", "measurements", "information", "fixed"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.ids, np.arange(10, 15))
    assert a.fixed.tolist() == [True, False, False, False, False]
    # pose (x, y, theta) -> Rz(theta), (x, y, 0)
    x, y, t = POSES[2]
    expect = np.array([[np.cos(t), -np.sin(t), 0, x], [np.sin(t), np.cos(t), 0, y], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(a.poses[2], expect, atol=1e-15)
    # information over (x, y, theta) lands on [v_x, v_y, w_z] of our [w v] order; out of plane positive
    info = a.information[0]
    idx = [3, 4, 2]
    np.testing.assert_array_equal(info[np.ix_(idx, idx)], INFO3)
    assert info[0, 0] == info[1, 1] == 900.0 and info[5, 5] == 110.0
    assert np.count_nonzero(info) == 9 + 3
    assert np.all(np.linalg.eigvalsh(a.information) > 0)


def test_write_reads_back_in_2d(tmp_path: Path) -> None:
    g = read_g2o(_write(tmp_path, _g2o_lines()))
    out = tmp_path / "out.g2o"
    write_g2o(out, g)
    text = out.read_text()
    assert "VERTEX_SE2 10 0.0 0.0 0.0" in text and "EDGE_SE2" in text and "SE3" not in text and "FIX 10" in text
    again = read_g2o(out)
    assert again.planar
    for name in ("ids", "edges", "fixed", "information"):
        np.testing.assert_array_equal(getattr(again, name), getattr(g, name), err_msg=name)
    np.testing.assert_allclose(again.poses, g.poses, atol=1e-15)  # theta through atan2: within an ulp
    np.testing.assert_allclose(again.measurements, g.measurements, atol=1e-15)
    np.testing.assert_allclose(flatten_poses(again.poses), np.array(POSES), atol=1e-15)


def test_write_refuses_poses_that_left_the_plane(tmp_path: Path) -> None:
    g = read_g2o(_write(tmp_path, _g2o_lines()))
    poses = g.poses.copy()
    poses[3, 2, 3] = 1e-3
    with pytest.raises(ValueError, match="vertex 13 left the plane"):
        write_g2o(tmp_path / "out.g2o", g, poses=poses)
    tilted = g.poses.copy()
    tilted[2] = tilted[2] @ np.array([[1, 0, 0, 0], [0, np.cos(0.01), -np.sin(0.01), 0],
                                      [0, np.sin(0.01), np.cos(0.01), 0], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match="vertex 12 left the plane"):
        write_g2o(tmp_path / "out.g2o", g, poses=tilted)
    assert not (tmp_path / "out.g2o").exists()
    with pytest.raises(ProblemError, match="group se2 needs planar poses"):
        from_pose_graph(g.__class__(**{**vars(g), "poses": tilted}), "se2")


def test_errors_name_the_line_and_the_2d_fields(tmp_path: Path) -> None:
    lines = _g2o_lines()
    lines[7] = lines[7].rsplit(" ", 1)[0]  # an EDGE_SE2 with 5 information entries
    with pytest.raises(FormatError) as e:
        read_g2o(_write(tmp_path, lines))
    assert e.value.line == 8 and "EDGE_SE2 expects 11 values" in str(e.value)
    assert "x y theta and the 6 upper-triangular information entries" in str(e.value)
    bad = INFO3.copy()
    bad[2, 2] = -1.0
    with pytest.raises(ProblemError) as e:
        read_g2o(_write(tmp_path, _g2o_lines(bad), "bad.g2o"))
    assert e.value.line == 7 and "6 of the 6 information matrices are not positive definite" in str(e.value)
    assert "3x3 matrix over (x, y, theta)" in str(e.value)
    lines = _g2o_lines()
    lines[6] = lines[6].replace("EDGE_SE2 10 11", "EDGE_SE2 10 99")
    with pytest.raises(ProblemError, match="refers to vertex 99, which no VERTEX_SE2 line defines"):
        read_g2o(_write(tmp_path, lines, "missing.g2o"))
    lines = _toro_lines()
    lines[7] = lines[7] + " 4.0"  # an EDGE2 with 7 information entries
    with pytest.raises(FormatError) as e:
        read_g2o(_write(tmp_path, lines, "long.graph"))
    assert e.value.line == 8 and "EDGE2 expects 11 values" in str(e.value)
    lines = _toro_lines()
    lines[6] = lines[6].rsplit(" ", 6)[0] + " 100.0 200.0 120.0 900.0 3.0 5.0"  # |Ixy| > sqrt(Ixx Iyy)
    with pytest.raises(ProblemError) as e:
        read_g2o(_write(tmp_path, lines, "bad.graph"))
    assert e.value.line == 7 and "1 of the 6 information matrices" in str(e.value)
    assert "TORO's Ixx Ixy Iyy Itt Ixt Iyt" in str(e.value)
    with pytest.raises(FormatError, match="mixes the 2-D dialects VERTEX_SE2/EDGE_SE2 and VERTEX2/EDGE2"):
        read_g2o(_write(tmp_path, _g2o_lines() + ["VERTEX2 99 0 0 0"], "mixed.g2o"))


def test_landmark_lines_of_a_2d_file_are_skipped_with_a_warning(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = read_g2o(_write(tmp_path, _g2o_lines() + ["VERTEX_XY 50 1 2", "EDGE_SE2_XY 10 50 1 2 1 0 1"]))
    assert g.planar and len(g.ids) == 5
    assert len(caught) == 1 and "VERTEX_XY x1" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller of read_g2o


def _se2_error(xi: np.ndarray, xj: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Log of z^-1 xi^-1 xj in SE(2) as (x, y, theta): the 2-D error GTSAM's BetweenFactor<Pose2> has."""
    def mat(p: np.ndarray) -> np.ndarray:
        c, s = np.cos(p[2]), np.sin(p[2])
        return np.array([[c, -s, p[0]], [s, c, p[1]], [0, 0, 1.0]])
    E = np.linalg.inv(mat(z)) @ np.linalg.inv(mat(xi)) @ mat(xj)
    t = np.arctan2(E[1, 0], E[0, 0])
    a = 1.0 if abs(t) < 1e-12 else np.sin(t) / t
    b = 0.0 if abs(t) < 1e-12 else (1 - np.cos(t)) / t
    V = np.array([[a, -b], [b, a]])
    return np.r_[np.linalg.solve(V, E[:2, 2]), t]


def _dense_se2_gauss_newton(x: np.ndarray, edges: list, info: np.ndarray) -> tuple[np.ndarray, float]:
    """An independent 2-D solver: Gauss-Newton on (x, y, theta) with central-difference Jacobians, pose 0 held."""
    x = x.copy()
    def residuals(v: np.ndarray) -> np.ndarray:
        L = np.linalg.cholesky(info)
        return np.concatenate([L.T @ _se2_error(v[a], v[b], np.array(z)) for a, b, z in edges])
    for _ in range(30):
        r = residuals(x)
        J = np.zeros((len(r), 3 * (len(x) - 1)))
        for k in range(J.shape[1]):
            d = np.zeros(x.size)
            d[3 + k] = 1e-6
            J[:, k] = (residuals(x + d.reshape(x.shape)) - residuals(x - d.reshape(x.shape))) / 2e-6
        x[1:] += np.linalg.lstsq(J, -r, rcond=None)[0].reshape(-1, 3)
    return x, 0.5 * float(residuals(x) @ residuals(x))


@pytest.mark.parametrize("group", [None, "se3"])  # SE(2) (the default for a planar graph) or lifted SE(3)
@pytest.mark.parametrize("preset", ["fp64", "mixed"])
def test_planar_solve_reaches_the_2d_optimum(tmp_path: Path, preset: str, group: str | None) -> None:
    g = read_g2o(_write(tmp_path, _g2o_lines()))
    x_ref, cost_ref = _dense_se2_gauss_newton(np.array(POSES), EDGES, INFO3)
    problem = from_pose_graph(g, group)
    assert problem.group == (group or "se2")
    assert problem.cost() == pytest.approx(from_pose_graph(g, "se3").cost(), rel=1e-12)
    s = solve(problem, SolverOptions(precision=preset))
    assert s.final_cost == pytest.approx(cost_ref, rel=1e-6)
    assert np.abs(problem.poses[:, 2, 3]).max() < 1e-12 and np.abs(problem.poses[:, 2, :2]).max() < 1e-12
    got = flatten_poses(problem.poses)
    np.testing.assert_allclose(got[:, :2], x_ref[:, :2], atol=1e-5)
    np.testing.assert_allclose(np.angle(np.exp(1j * (got[:, 2] - x_ref[:, 2]))), 0.0, atol=1e-5)


def test_slam_pgo_writes_a_2d_result_and_repairs_2d_information(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = INFO3.copy()
    bad[0, 1] = bad[1, 0] = 200.0  # indefinite: |I_xy| > sqrt(I_xx I_yy)
    src = _write(tmp_path, _g2o_lines(bad))
    assert main(["pgo", str(src), "--out", str(tmp_path / "o.g2o")]) != 0
    err = capsys.readouterr().err
    assert f"{src}:7: EDGE_SE2: 6 of the 6 information matrices are not positive definite" in err
    assert not (tmp_path / "o.g2o").exists()
    assert main(["pgo", str(src), "--repair-information", "--out", str(tmp_path / "o.g2o"),
                 "--json", str(tmp_path / "s.json")]) == 0
    out = read_g2o(tmp_path / "o.g2o")
    assert out.planar and np.all(np.linalg.eigvalsh(out.information) > 0)
    # The file's 3x3 matrices are what is repaired: eigenvalues floored relative to their own largest.
    w_bad = np.linalg.eigvalsh(bad)
    w = np.linalg.eigvalsh(planar_information(out.information))
    np.testing.assert_allclose(w[:, 0], 1e-6 * w_bad[-1], rtol=1e-6)
    np.testing.assert_allclose(w[:, 1:], np.broadcast_to(w_bad[1:], (6, 2)), rtol=1e-9)
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["repaired_information"] == 6 and stats["final_cost"] < stats["initial_cost"]


def test_lift_and_flatten_are_inverse() -> None:
    rng = np.random.default_rng(0)
    xyt = np.c_[rng.normal(size=(50, 2)), rng.uniform(-np.pi, np.pi, 50)]
    np.testing.assert_allclose(flatten_poses(lift_poses(xyt)), xyt, atol=1e-14)
    info = lift_information(np.broadcast_to(np.diag([0.0, -1.0, 0.0]), (1, 3, 3)))  # bad diagonals still
    assert np.all(np.diagonal(info[0])[[0, 1, 5]] > 0)
