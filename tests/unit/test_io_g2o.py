"""g2o 3-D pose graphs: reading against hand-written values and GTSAM, exact round trips, error reports."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slam.errors import FormatError, InputError, ProblemError
from slam.io.g2o import PoseGraph, connected_components, read_g2o, write_g2o

PGO_FILES = ["tinyGrid3D", "smallGrid3D", "sphere2500", "parking-garage"]
SIZES = {"tinyGrid3D": (9, 11), "smallGrid3D": (125, 297), "sphere2500": (2500, 4949), "parking-garage": (1661, 6275)}

IDENTITY_INFO = "1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 1 0 0 1 0 1"
V0 = "VERTEX_SE3:QUAT 0 0 0 0 0 0 0 1"
V1 = "VERTEX_SE3:QUAT 1 1 0 0 0 0 0 1"
E01 = f"EDGE_SE3:QUAT 0 1 1 0 0 0 0 0 1 {IDENTITY_INFO}"

# One edge with a distinct number in every information entry (g2o order [x y z qx qy qz], upper
# triangle row by row); diagonally dominant so that it is positive definite.
HAND_INFO_G2O = [11, 0.12, 0.13, 0.14, 0.15, 0.16,
                 22, 0.23, 0.24, 0.25, 0.26,
                 33, 0.34, 0.35, 0.36,
                 44, 0.45, 0.46,
                 55, 0.56,
                 66]
# The same matrix written out by hand in our order [wx wy wz vx vy vz].
HAND_INFO_OURS = np.array([
    [44.0, 0.45, 0.46, 0.14, 0.24, 0.34],
    [0.45, 55.0, 0.56, 0.15, 0.25, 0.35],
    [0.46, 0.56, 66.0, 0.16, 0.26, 0.36],
    [0.14, 0.15, 0.16, 11.0, 0.12, 0.13],
    [0.24, 0.25, 0.26, 0.12, 22.0, 0.23],
    [0.34, 0.35, 0.36, 0.13, 0.23, 33.0],
])
HAND_EDGE_POSE = [0.5, -1.25, 2.0, 0.1, -0.2, 0.3, 0.9]  # x y z qx qy qz qw, quaternion not unit


def _write(tmp_path: Path, lines: list[str], name: str = "g.g2o") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _hand_file(tmp_path: Path) -> Path:
    edge = " ".join(map(str, HAND_EDGE_POSE + HAND_INFO_G2O))
    return _write(tmp_path, [V0, V1, f"EDGE_SE3:QUAT 0 1 {edge}"])


def _assert_same_graph(a: PoseGraph, b: PoseGraph) -> None:
    """Ids, edges, information, fixed flags and translations exactly; rotations to a few ulp."""
    for name in ("ids", "edges", "information", "fixed"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("poses", "measurements"):
        x, y = getattr(a, name), getattr(b, name)
        np.testing.assert_array_equal(x[:, :3, 3], y[:, :3, 3], err_msg=f"{name} translation")
        # quaternion -> matrix -> quaternion -> matrix: entries of size <= 1 agree to ~10 ulp
        assert np.abs(x[:, :3, :3] - y[:, :3, :3]).max() <= 2e-15, name


def test_information_converted_to_rotation_first_order(tmp_path: Path) -> None:
    g = read_g2o(_hand_file(tmp_path))
    np.testing.assert_array_equal(g.information[0], HAND_INFO_OURS)
    np.testing.assert_array_equal(g.edges, [[0, 1]])
    assert g.edge_lines.tolist() == [3]


def test_information_written_back_in_g2o_order(tmp_path: Path) -> None:
    g = read_g2o(_hand_file(tmp_path))
    out = tmp_path / "out.g2o"
    write_g2o(out, g)
    edge_lines = [ln.split() for ln in out.read_text().splitlines() if ln.startswith("EDGE_SE3:QUAT")]
    assert len(edge_lines) == 1 and len(edge_lines[0]) == 31
    assert [float(t) for t in edge_lines[0][10:]] == HAND_INFO_G2O


def test_measurement_matches_scipy_rotation(tmp_path: Path) -> None:
    g = read_g2o(_hand_file(tmp_path))
    Z = g.measurements[0]
    expected_R = Rotation.from_quat(HAND_EDGE_POSE[3:]).as_matrix()  # scipy: xyzw, normalizes
    np.testing.assert_allclose(Z[:3, :3], expected_R, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(Z[:3, 3], HAND_EDGE_POSE[:3])
    np.testing.assert_array_equal(Z[3], [0, 0, 0, 1])
    np.testing.assert_array_equal(g.poses[1][:3, 3], [1, 0, 0])


def test_measurement_is_relative_pose(shared_data: Path) -> None:
    # tinyGrid3D: vertex 0 is the identity and edge 0->1 carries exactly vertex 1's pose numbers,
    # so Z_01 = T_0^-1 T_1 must hold to rounding.
    g = read_g2o(shared_data / "pgo" / "tinyGrid3D.g2o")
    k = np.flatnonzero((g.edges[:, 0] == 0) & (g.edges[:, 1] == 1))[0]
    np.testing.assert_allclose(g.measurements[k], np.linalg.inv(g.poses[0]) @ g.poses[1], rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", PGO_FILES)
def test_real_files_read_and_round_trip(shared_data: Path, tmp_path: Path, name: str) -> None:
    g = read_g2o(shared_data / "pgo" / f"{name}.g2o")
    assert (len(g.ids), len(g.edges)) == SIZES[name]
    assert g.ids.dtype == np.int64 and g.edges.dtype == np.int64
    np.testing.assert_array_equal(g.ids, np.arange(len(g.ids)))  # these files number vertices 0..N-1 in order
    R = g.poses[:, :3, :3]
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-14)
    assert np.all(np.linalg.eigvalsh(g.information) > 0)
    np.testing.assert_array_equal(connected_components(g), 0)
    out = tmp_path / "rt.g2o"
    write_g2o(out, g)
    _assert_same_graph(g, read_g2o(out))


@pytest.mark.parametrize("name", ["tinyGrid3D", "parking-garage"])
def test_agrees_with_gtsam_read_g2o(shared_data: Path, name: str) -> None:
    gtsam = pytest.importorskip("gtsam")
    path = shared_data / "pgo" / f"{name}.g2o"
    g = read_g2o(path)
    factors, values = gtsam.readG2o(str(path), True)
    assert factors.size() == len(g.edges)
    info = np.array([factors.at(k).noiseModel().information() for k in range(factors.size())])
    Z = np.array([factors.at(k).measured().matrix() for k in range(factors.size())])
    keys = np.array([factors.at(k).keys() for k in range(factors.size())])
    T = np.array([values.atPose3(int(i)).matrix() for i in g.ids])
    np.testing.assert_array_equal(g.ids[g.edges], keys)
    # parking-garage spans 1e-10..1e4 in its entries: compare each against its own size. GTSAM
    # rebuilds the information from its noise model's square root, which costs it a few ulp.
    np.testing.assert_allclose(g.information, info, rtol=1e-14, atol=0)
    np.testing.assert_allclose(g.measurements, Z, rtol=0, atol=2e-15)
    np.testing.assert_allclose(g.poses, T, rtol=0, atol=2e-15)


def _random_graph(rng: np.random.Generator) -> PoseGraph:
    n, m = 7, 12
    ids = np.array([10, 3, 7, 100, 0, 42, 5], dtype=np.int64)
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = Rotation.random(n, random_state=rng).as_matrix()
    poses[:, :3, 3] = rng.normal(scale=50, size=(n, 3))
    edges = np.stack([rng.integers(0, n, m), rng.integers(0, n, m)], axis=1)
    edges[edges[:, 0] == edges[:, 1], 1] = (edges[edges[:, 0] == edges[:, 1], 0] + 1) % n
    Z = np.tile(np.eye(4), (m, 1, 1))
    Z[:, :3, :3] = Rotation.random(m, random_state=rng).as_matrix()
    Z[:, :3, 3] = rng.normal(size=(m, 3)) * 10.0 ** rng.integers(-6, 4, size=(m, 1))
    A = rng.normal(size=(m, 6, 6))
    info = A @ A.transpose(0, 2, 1) * 10.0 ** rng.integers(-5, 5, size=(m, 1, 1)) + 1e-6 * np.eye(6)
    fixed = np.zeros(n, dtype=bool)
    fixed[[1, 4]] = True
    return PoseGraph(ids, poses, edges, Z, info, fixed)


def test_generated_graph_round_trip(tmp_path: Path) -> None:
    g = _random_graph(np.random.default_rng(3))
    out = tmp_path / "gen.g2o"
    write_g2o(out, g)
    back = read_g2o(out)
    _assert_same_graph(g, back)
    assert back.path == str(out)


def test_write_with_overriding_poses(tmp_path: Path) -> None:
    g = _random_graph(np.random.default_rng(4))
    other = _random_graph(np.random.default_rng(5)).poses
    out = tmp_path / "over.g2o"
    write_g2o(out, g, poses=other)
    back = read_g2o(out)
    np.testing.assert_array_equal(back.poses[:, :3, 3], other[:, :3, 3])
    assert np.abs(back.poses - other).max() <= 2e-15
    with pytest.raises(ValueError, match=r"\(7, 4, 4\)"):
        write_g2o(out, g, poses=other[:3])


def test_comments_blank_lines_interleaving_and_fix(tmp_path: Path) -> None:
    lines = ["# a comment", "", V0 + "   ", E01 + " \t", "   ", "VERTEX_SE3:QUAT 2 2 0 0 0 0 0 1  # inline",
             f"EDGE_SE3:QUAT 1 2 1 0 0 0 0 0 1 {IDENTITY_INFO}", "FIX 0", V1]
    g = read_g2o(_write(tmp_path, lines))
    np.testing.assert_array_equal(g.ids, [0, 2, 1])
    np.testing.assert_array_equal(g.edges, [[0, 2], [2, 1]])
    np.testing.assert_array_equal(g.fixed, [True, False, False])
    np.testing.assert_array_equal(g.poses[1:, :3, 3], [[2, 0, 0], [1, 0, 0]])
    assert g.edge_lines.tolist() == [4, 7]


def test_connected_components_labels_pieces(tmp_path: Path) -> None:
    v = [f"VERTEX_SE3:QUAT {i} {i} 0 0 0 0 0 1" for i in (5, 1, 9, 2, 7, 3)]
    e = [f"EDGE_SE3:QUAT {a} {b} 1 0 0 0 0 0 1 {IDENTITY_INFO}" for a, b in ((5, 9), (9, 1), (2, 7))]
    labels = connected_components(read_g2o(_write(tmp_path, v + e)))
    # pieces: {5, 1, 9}, {2, 7}, {3}
    assert labels[0] == labels[1] == labels[2]
    assert labels[3] == labels[4]
    assert len({labels[0], labels[3], labels[5]}) == 3 and len(np.unique(labels)) == 3


def test_unknown_tags_one_warning_with_counts(tmp_path: Path) -> None:
    lines = ["PARAMS_SE3OFFSET 0 0 0 0 0 0 0 1", V0, "VERTEX_SE2 5 0 0 0", V1, "VERTEX_SE2 6 1 0 0", E01,
             "EDGE_SE2 5 6 1 0 0 1 0 0 1 0 1"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = read_g2o(_write(tmp_path, lines))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "PARAMS_SE3OFFSET x1" in message and "VERTEX_SE2 x2" in message and "EDGE_SE2 x1" in message
    assert "2-D" in message and str(tmp_path) in message
    assert len(g.ids) == 2 and len(g.edges) == 1


def _error(tmp_path: Path, lines: list[str], kind: type[Exception], line: int | None, *words: str) -> str:
    path = _write(tmp_path, lines)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(kind) as info:
            read_g2o(path)
    message = str(info.value)
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert message.startswith(where), message
    assert info.value.path == str(path) and info.value.line == line
    for word in words:
        assert word in message, (word, message)
    return message


def test_error_vertex_wrong_token_count(tmp_path: Path) -> None:
    _error(tmp_path, [V0, "VERTEX_SE3:QUAT 1 1 0 0 0 0 1", E01], FormatError, 2,
           "VERTEX_SE3:QUAT", "expects 8 values", "found 7")


def test_error_edge_wrong_token_count(tmp_path: Path) -> None:
    _error(tmp_path, [V0, V1, E01.rsplit(" ", 1)[0]], FormatError, 3, "EDGE_SE3:QUAT", "expects 30 values",
           "found 29")


def test_error_not_a_number(tmp_path: Path) -> None:
    bad = E01.replace(" 1 0 0 0 0 0 1 ", " 1 0 abc 0 0 0 1 ", 1)
    _error(tmp_path, [V0, V1, bad], FormatError, 3, "EDGE_SE3:QUAT", "z is 'abc'", "expected a number")


def test_error_vertex_id_not_integer(tmp_path: Path) -> None:
    _error(tmp_path, ["VERTEX_SE3:QUAT 1.5 0 0 0 0 0 0 1", V1, E01], FormatError, 1, "id is '1.5'",
           "expected an integer")


def test_error_edge_to_missing_vertex(tmp_path: Path) -> None:
    bad = E01.replace("EDGE_SE3:QUAT 0 1", "EDGE_SE3:QUAT 0 17")
    _error(tmp_path, ["# header", V0, V1, E01, bad], ProblemError, 5, "vertex 17", "no VERTEX_SE3:QUAT")


def test_error_edge_to_2d_vertex_says_so(tmp_path: Path) -> None:
    bad = E01.replace("EDGE_SE3:QUAT 0 1", "EDGE_SE3:QUAT 0 4")
    _error(tmp_path, [V0, V1, "VERTEX_SE2 4 0 0 0", bad], ProblemError, 4, "vertex 4", "VERTEX_SE2 at line 3")


@pytest.mark.parametrize("token", ["nan", "inf", "-Infinity"])
def test_error_non_finite_vertex(tmp_path: Path, token: str) -> None:
    _error(tmp_path, [V0, f"VERTEX_SE3:QUAT 1 1 {token} 0 0 0 0 1", E01], ProblemError, 2, "y is", "finite")


def test_error_non_finite_information(tmp_path: Path) -> None:
    bad = E01[: -len(IDENTITY_INFO)] + IDENTITY_INFO.replace("1 0 0 0 0 0 1", "1 0 0 0 0 nan 1", 1)
    _error(tmp_path, [V0, V1, bad], ProblemError, 3, "information[0,5] is nan")


def test_error_duplicate_vertex(tmp_path: Path) -> None:
    _error(tmp_path, [V0, V1, E01, "VERTEX_SE3:QUAT 1 2 0 0 0 0 0 1"], ProblemError, 4, "vertex id 1",
           "first at line 2")


@pytest.mark.parametrize("info", [
    "1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 -1 0 0 1 0 1",    # negative diagonal
    "1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 0 0 0 1 0 1",     # singular
    "1 0 0 2 0 0 1 0 0 0 0 1 0 0 0 1 0 0 1 0 1",     # positive diagonal, indefinite
])
def test_error_information_not_positive_definite(tmp_path: Path, info: str) -> None:
    bad = E01[: -len(IDENTITY_INFO)] + info
    _error(tmp_path, [V0, V1, E01, bad], ProblemError, 4, "not positive definite")


def test_error_self_loop(tmp_path: Path) -> None:
    _error(tmp_path, [V0, V1, E01, E01.replace("QUAT 0 1", "QUAT 1 1")], ProblemError, 4, "to itself")


def test_error_zero_quaternion(tmp_path: Path) -> None:
    _error(tmp_path, [V0, "VERTEX_SE3:QUAT 1 1 0 0 0 0 0 0", E01], ProblemError, 2, "quaternion", "zero")


def test_error_fix_unknown_vertex(tmp_path: Path) -> None:
    _error(tmp_path, [V0, V1, E01, "FIX 0 3"], ProblemError, 4, "FIX", "vertex 3")
    _error(tmp_path, [V0, V1, E01, "FIX"], FormatError, 4, "FIX expects")


def test_error_empty_graphs(tmp_path: Path) -> None:
    _error(tmp_path, ["# nothing here", ""], ProblemError, None, "empty pose graph")
    _error(tmp_path, [V0, V1], ProblemError, None, "no EDGE_SE3:QUAT")
    _error(tmp_path, [E01], ProblemError, None, "no VERTEX_SE3:QUAT")


def test_error_2d_file_without_poses_said_plainly(tmp_path: Path) -> None:
    lines = ["VERTEX_XY 0 0 0", "VERTEX_XY 1 1 0", "EDGE_XY 0 1 1 0 1 0 1"]
    _error(tmp_path, lines, FormatError, None, "2-D g2o files without poses are not supported", "VERTEX_XY x2",
           "EDGE_XY x1", "VERTEX_SE2")


def test_error_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_g2o(tmp_path / "absent.g2o")
