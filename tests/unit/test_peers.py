"""Peer adapters: GTSAM pose-graph LM and Ceres BA via pycolmap, checked against references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slam.errors import InputError, ProblemError
from slam.eval import peers
from slam.io.bal import BALProblem, bal_cost, bal_project, bal_residuals, read_bal
from slam.io.g2o import read_g2o, write_g2o


@pytest.fixture
def gtsam():
    return pytest.importorskip("gtsam")


@pytest.fixture
def pycolmap():
    return pytest.importorskip("pycolmap")


# ---------------------------------------------------------------- GTSAM


@pytest.mark.parametrize("name", ["tinyGrid3D", "smallGrid3D", "parking-garage"])
def test_gtsam_cost_of_initial_poses_equals_pgo_initial_cost(gtsam, shared_data: Path, name: str) -> None:
    path = shared_data / "pgo" / f"{name}.g2o"
    result = peers.gtsam_pgo(path)
    initial = peers.gtsam_cost(path, read_g2o(path).poses)
    assert initial == pytest.approx(result["initial_cost"], rel=1e-12)
    assert peers.gtsam_cost(path, result["poses"]) == pytest.approx(result["final_cost"], rel=1e-12)


def test_gtsam_pgo_small_grid_reaches_reference(gtsam, shared_data: Path) -> None:
    path = shared_data / "pgo" / "smallGrid3D.g2o"
    graph = read_g2o(path)
    result = peers.gtsam_pgo(path)
    assert result["initial_cost"] == pytest.approx(83894.333, rel=1e-6)
    assert result["final_cost"] == pytest.approx(517.93, rel=1e-4)
    assert abs(result["prior_final_cost"]) < 1e-9 * result["final_cost"]
    assert result["poses"].shape == (len(graph.ids), 4, 4)
    np.testing.assert_array_equal(result["ids"], graph.ids)
    np.testing.assert_array_equal(result["fixed_ids"], [graph.ids[0]])
    np.testing.assert_allclose(result["poses"][0], graph.poses[0], atol=1e-8)
    assert np.abs(result["poses"][1:] - graph.poses[1:]).max() > 0.1  # the others did move


def test_gtsam_pgo_from_its_own_chordal_start(gtsam, tmp_path: Path) -> None:
    """initialize=True: LM starts from InitializePose3 (LAGO in 2-D); the file's cost stays initial_cost."""
    from slam.eval.hard_graphs import manhattan_graph, torus_graph

    for name, graph in (("torus", torus_graph(4, 30, seed=2)[0]), ("walk", manhattan_graph(200, seed=3)[0])):
        path = tmp_path / f"{name}.g2o"
        write_g2o(path, graph)
        plain, chordal = peers.gtsam_pgo(path), peers.gtsam_pgo(path, initialize=True)
        assert chordal["initial_cost"] == pytest.approx(plain["initial_cost"], rel=1e-12)
        assert plain["start_cost"] == plain["initial_cost"] and plain["init_s"] < 1e-3
        assert chordal["start_cost"] < plain["initial_cost"] and 0.0 < chordal["init_s"] <= chordal["time_s"]
        assert chordal["final_cost"] == pytest.approx(plain["final_cost"], rel=1e-6)


def test_gtsam_cost_reads_a_results_file(gtsam, shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "pgo" / "smallGrid3D.g2o"
    result = peers.gtsam_pgo(path)
    out = tmp_path / "result.g2o"
    write_g2o(out, read_g2o(path), poses=result["poses"])
    assert peers.gtsam_cost(path, out) == pytest.approx(result["final_cost"], rel=1e-9)


def _exp_se3(delta: np.ndarray) -> np.ndarray:
    """Exp of a twist [w, v] that is a pure rotation or a pure translation (V = I on either)."""
    assert np.count_nonzero(delta[:3]) == 0 or np.count_nonzero(delta[3:]) == 0
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(delta[:3]).as_matrix()
    T[:3, 3] = delta[3:]
    return T


@pytest.mark.parametrize("delta", [np.array([0.3, -0.2, 0.1, 0, 0, 0]), np.array([0, 0, 0, 0.5, -1.0, 2.0])])
def test_gtsam_cost_is_half_log_error_weighted(gtsam, tmp_path: Path, delta: np.ndarray) -> None:
    # X_j = X_i Z Exp(d) makes Log(Z^-1 X_i^-1 X_j) = d exactly: the cost is 1/2 d^T Omega d, with the
    # g2o information (order t, q) permuted to GTSAM's tangent order (rotation first).
    info_g2o = np.diag([1.0, 2.0, 3.0, 40.0, 50.0, 60.0])
    info_g2o[0, 4] = info_g2o[4, 0] = 0.5
    upper = " ".join(repr(info_g2o[r, c].item()) for r in range(6) for c in range(r, 6))
    Z = np.eye(4)
    Z[:3, :3] = Rotation.from_rotvec([0.1, 0.7, -0.3]).as_matrix()
    Z[:3, 3] = [1.0, 2.0, -0.5]
    qz = Rotation.from_matrix(Z[:3, :3]).as_quat()
    graph = tmp_path / "two.g2o"
    pose = " ".join(map(repr, Z[:3, 3].tolist() + qz.tolist()))
    graph.write_text("VERTEX_SE3:QUAT 3 0 0 0 0 0 0 1\nVERTEX_SE3:QUAT 8 0 0 0 0 0 0 1\n"
                     f"EDGE_SE3:QUAT 3 8 {pose} {upper}\n")
    Xi = np.eye(4)
    Xi[:3, :3] = Rotation.from_rotvec([-0.4, 0.2, 0.9]).as_matrix()
    Xi[:3, 3] = [5.0, -3.0, 1.0]
    Xj = Xi @ Z @ _exp_se3(delta)
    swap = [3, 4, 5, 0, 1, 2]
    omega = info_g2o[swap][:, swap]
    assert peers.gtsam_cost(graph, np.stack([Xi, Xj])) == pytest.approx(0.5 * delta @ omega @ delta, rel=1e-12)


def test_gtsam_cost_rejects_bad_poses(gtsam, shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "pgo" / "tinyGrid3D.g2o"
    poses = read_g2o(path).poses
    with pytest.raises(ProblemError, match=r"expected \(9, 4, 4\)"):
        peers.gtsam_cost(path, poses[:-1])
    skewed = poses.copy()
    skewed[4, :3, :3] *= 1.01
    with pytest.raises(ProblemError, match="vertex 4 is not a rigid transform"):
        peers.gtsam_cost(path, skewed)
    with pytest.raises(InputError, match="not found"):
        peers.gtsam_cost(path, tmp_path / "absent.g2o")
    partial = tmp_path / "partial.g2o"
    lines = path.read_text().splitlines()
    partial.write_text("\n".join(line for line in lines if not line.startswith("VERTEX_SE3:QUAT 8 ")))
    with pytest.raises(ProblemError, match="no pose for vertex 8"):
        peers.gtsam_cost(path, partial)


# ---------------------------------------------------------------- Ceres via pycolmap


def _bal_depth(problem: BALProblem) -> np.ndarray:
    """(O,) P.z of each observation in BAL's camera frame (negative in front of the camera)."""
    P = Rotation.from_rotvec(problem.cameras[problem.cam_idx, :3]).apply(problem.points[problem.pt_idx])
    return P[:, 2] + problem.cameras[problem.cam_idx, 5]


def test_colmap_reconstruction_projects_as_bal(pycolmap, shared_data: Path) -> None:
    # The mapping onto COLMAP, checked by COLMAP's own projection: (u, -v) for every observation;
    # with its cheirality check on, exactly the points behind BAL's camera (P.z > 0) are refused.
    problem = read_bal(shared_data / "ba" / "problem-49-7776-pre.txt")
    rec = peers._reconstruction(pycolmap, problem)
    expected = bal_project(problem.cameras, problem.points, problem.cam_idx, problem.pt_idx) * [1.0, -1.0]
    behind = _bal_depth(problem) > 0
    assert np.count_nonzero(behind) == 31
    for j in range(len(problem.cameras)):
        sel = np.flatnonzero(problem.cam_idx == j)
        image, camera = rec.image(j + 1), rec.camera(j + 1)
        in_cam = problem.points[problem.pt_idx[sel]] @ image.cam_from_world().rotation.matrix().T \
            + image.cam_from_world().translation
        np.testing.assert_allclose(camera.img_from_cam(in_cam, check_cheirality=False), expected[sel],
                                   rtol=1e-9, atol=1e-9)
        refused = np.isnan(camera.img_from_cam(in_cam)).any(axis=1)
        np.testing.assert_array_equal(refused, behind[sel])
        keypoints = np.array([p.xy for p in image.points2D])
        np.testing.assert_array_equal(keypoints, problem.observations[sel] * [1.0, -1.0])
        np.testing.assert_array_equal([p.point3D_id - 1 for p in image.points2D], problem.pt_idx[sel])


@pytest.mark.parametrize("iterations", [3, 100])
def test_pycolmap_ba_cost_matches_our_bal_cost(pycolmap, shared_data: Path, iterations: int) -> None:
    path = shared_data / "ba" / "dubrovnik-3-7-pre.txt"
    problem = read_bal(path)
    result = peers.pycolmap_ba(path, max_iterations=iterations)
    initial = bal_cost(problem)
    assert result["initial_cost"] == pytest.approx(initial, rel=1e-12)
    assert result["num_zeroed_initial"] == result["num_zeroed_final"] == 0
    assert result["final_cost"] < 0.5 * initial
    assert result["iterations"] <= iterations
    solved = BALProblem(result["cameras"], result["points"], problem.cam_idx, problem.pt_idx, problem.observations)
    # 38 residuals, 48 unknowns: the full solve reaches ~0, so compare on the scale of the initial cost.
    assert abs(bal_cost(solved) - result["final_cost"]) <= 1e-12 * initial + 1e-9 * result["final_cost"]
    assert result["bal_final_cost"] == pytest.approx(bal_cost(solved), rel=1e-12, abs=1e-300)


def test_pycolmap_ba_drops_points_behind_cameras(pycolmap, shared_data: Path) -> None:
    # COLMAP zeroes the residual of an observation behind its camera: Ceres's cost is our BAL cost
    # over the other observations, and differs from the full BAL cost.
    path = shared_data / "ba" / "problem-49-7776-pre.txt"
    problem = read_bal(path)
    result = peers.pycolmap_ba(path, max_iterations=1)
    front = _bal_depth(problem) < 0
    r = bal_residuals(problem)
    half_sq = 0.5 * np.sum(r * r, axis=1)
    assert result["num_zeroed_initial"] == 31
    assert result["initial_cost"] == pytest.approx(half_sq[front].sum(), rel=1e-12)
    assert result["bal_initial_cost"] == pytest.approx(bal_cost(problem), rel=1e-12)
    assert bal_cost(problem) - result["initial_cost"] == pytest.approx(110.37, abs=0.01)
    solved = BALProblem(result["cameras"], result["points"], problem.cam_idx, problem.pt_idx, problem.observations)
    r = bal_residuals(solved)
    half_sq = 0.5 * np.sum(r * r, axis=1)
    assert result["final_cost"] < 0.5 * result["initial_cost"]
    assert result["final_cost"] == pytest.approx(half_sq[result["evaluated"]].sum(), rel=1e-10)
    assert result["bal_final_cost"] == pytest.approx(bal_cost(solved), rel=1e-12)


def test_gtsam_reads_a_planar_graph_as_pose2_with_our_costs(gtsam, tmp_path: Path) -> None:
    from slam.eval.hard_graphs import manhattan_graph
    from slam.solvers.pgo import from_pose_graph

    graph = manhattan_graph(200, seed=3)[0]
    path = tmp_path / "m.g2o"
    write_g2o(path, graph)
    result = peers.gtsam_pgo(path)  # GTSAM's Pose2 graph from the 2-D file
    assert result["initial_cost"] == pytest.approx(from_pose_graph(read_g2o(path)).cost(), rel=1e-12)
    assert peers.gtsam_cost(path, result["poses"]) == pytest.approx(result["final_cost"], rel=1e-12)
    out = tmp_path / "result.g2o"
    write_g2o(out, read_g2o(path), poses=result["poses"])
    assert "VERTEX_SE2" in out.read_text()
    assert peers.gtsam_cost(path, out) == pytest.approx(result["final_cost"], rel=1e-9)
    tilted = result["poses"].copy()
    tilted[5, 2, 3] = 0.1
    with pytest.raises(ProblemError, match="not planar"):
        peers.gtsam_cost(path, tilted)


def test_gtsam_sees_a_toro_file_as_we_read_it(gtsam, tmp_path: Path) -> None:
    """GTSAM reads 2-D information in g2o's order whatever the tag; TORO's EDGE2 lists it as Ixx Ixy
    Iyy Itt Ixt Iyt, so the peer is handed the same graph in g2o's dialect."""
    from slam.solvers.pgo import from_pose_graph

    info = "100.0 7.0 120.0 900.0 3.0 5.0"  # Ixx Ixy Iyy Itt Ixt Iyt, all distinct and coupled
    lines = ["VERTEX2 0 0 0 0", "VERTEX2 1 1.1 0.1 1.5", "VERTEX2 2 1.0 1.2 3.0", "VERTEX2 3 -0.1 0.9 -1.6",
             f"EDGE2 0 1 1 0 1.5708 {info}", f"EDGE2 1 2 1 0.02 1.5708 {info}", f"EDGE2 2 3 0.98 0 1.5708 {info}",
             f"EDGE2 3 0 1 -0.01 1.56 {info}"]
    path = tmp_path / "toro.graph"
    path.write_text("\n".join(lines) + "\n")
    ours = from_pose_graph(read_g2o(path))
    result = peers.gtsam_pgo(path)
    assert result["initial_cost"] == pytest.approx(ours.cost(), rel=1e-12)
    assert peers.gtsam_cost(path, read_g2o(path).poses) == pytest.approx(ours.cost(), rel=1e-12)
