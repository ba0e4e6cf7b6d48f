"""BAL problems: parsing against np.loadtxt, exact round trips, projection against scipy, error reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slam.errors import FormatError, InputError, ProblemError
from slam.io.bal import BALProblem, bal_cost, bal_project, bal_residuals, read_bal, write_bal

FIELDS = ("cameras", "points", "cam_idx", "pt_idx", "observations")


def _reference_pixel(camera: np.ndarray, point: np.ndarray) -> np.ndarray:
    """One observation the slow, obvious way: scipy's rotation, then the BAL camera model."""
    P = Rotation.from_rotvec(camera[:3]).apply(point) + camera[3:6]
    p = -P[:2] / P[2]
    r2 = p @ p
    return camera[6] * (1 + camera[7] * r2 + camera[8] * r2 * r2) * p


def _assert_same_problem(a: BALProblem, b: BALProblem) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_reads_problem_49_like_loadtxt(shared_data: Path) -> None:
    path = shared_data / "ba" / "problem-49-7776-pre.txt"
    b = read_bal(path)
    assert (b.cameras.shape, b.points.shape, b.observations.shape) == ((49, 9), (7776, 3), (31843, 2))
    assert b.cam_idx.dtype == np.int64 and b.pt_idx.dtype == np.int64
    obs = np.loadtxt(path, skiprows=1, max_rows=31843)
    rest = np.loadtxt(path, skiprows=1 + 31843)
    np.testing.assert_array_equal(b.cam_idx, obs[:, 0])
    np.testing.assert_array_equal(b.pt_idx, obs[:, 1])
    np.testing.assert_array_equal(b.observations, obs[:, 2:])
    np.testing.assert_array_equal(b.cameras.ravel(), rest[:49 * 9])
    np.testing.assert_array_equal(b.points.ravel(), rest[49 * 9:])


def test_cost_of_problem_49_matches_published_value(shared_data: Path) -> None:
    # Initial cost of ladybug problem-49-7776-pre as reported by Ceres: 8.509e5.
    assert bal_cost(read_bal(shared_data / "ba" / "problem-49-7776-pre.txt")) == pytest.approx(8.509e5, rel=1e-4)


def test_cost_of_dubrovnik_matches_per_point_reference(shared_data: Path) -> None:
    b = read_bal(shared_data / "ba" / "dubrovnik-3-7-pre.txt")  # has a blank line after the observations
    assert (len(b.cameras), len(b.points), len(b.cam_idx)) == (3, 7, 19)
    expected = 0.5 * sum(np.sum((_reference_pixel(b.cameras[c], b.points[p]) - uv) ** 2)
                         for c, p, uv in zip(b.cam_idx, b.pt_idx, b.observations))
    assert bal_cost(b) == pytest.approx(expected, rel=1e-12)
    assert bal_cost(b) == pytest.approx(2764.22, rel=1e-5)


def test_project_matches_scipy_on_real_observations(shared_data: Path) -> None:
    b = read_bal(shared_data / "ba" / "problem-49-7776-pre.txt")
    pick = np.array([0, 1, 977, 15000, 31842])
    uv = bal_project(b.cameras, b.points, b.cam_idx[pick], b.pt_idx[pick])
    for k, o in enumerate(pick):
        np.testing.assert_allclose(uv[k], _reference_pixel(b.cameras[b.cam_idx[o]], b.points[b.pt_idx[o]]),
                                   rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(bal_residuals(b)[pick], uv - b.observations[pick], rtol=0, atol=0)


def test_project_small_large_angles_and_points_behind() -> None:
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(6, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.array([0.0, 1e-12, 1e-6, 0.3, 2.0, np.pi - 1e-9])
    cameras = np.zeros((6, 9))
    cameras[:, :3] = axes * angles[:, None]
    cameras[:, 3:6] = rng.normal(size=(6, 3))
    cameras[:, 6:] = [500.0, -0.1, 0.02]
    points = rng.normal(size=(6, 3)) + [0, 0, -8]
    points[5] = -points[5]  # far behind its camera: projected all the same, never dropped
    idx = np.arange(6)
    uv = bal_project(cameras, points, idx, idx)
    assert np.all(np.isfinite(uv))
    for k in idx:
        np.testing.assert_allclose(uv[k], _reference_pixel(cameras[k], points[k]), rtol=1e-12, atol=1e-10)


def _random_problem(rng: np.random.Generator) -> BALProblem:
    C, P, O = 4, 9, 25
    cameras = rng.normal(size=(C, 9)) * 10.0 ** rng.integers(-12, 6, size=(C, 9))
    cameras[0, 0] = -0.0
    points = rng.normal(size=(P, 3)) * 1e3
    points[1, 2] = 1e-300
    return BALProblem(cameras=cameras, points=points, cam_idx=rng.integers(0, C, O),
                      pt_idx=rng.integers(0, P, O), observations=rng.normal(size=(O, 2)) * 300)


def test_generated_problem_round_trip_is_exact(tmp_path: Path) -> None:
    b = _random_problem(np.random.default_rng(1))
    path = tmp_path / "gen.txt"
    write_bal(path, b)
    back = read_bal(path)
    _assert_same_problem(b, back)
    assert np.signbit(back.cameras[0, 0]) and back.path == str(path)


@pytest.mark.parametrize("name", ["problem-49-7776-pre", "dubrovnik-3-7-pre"])
def test_real_problem_round_trip_is_exact(shared_data: Path, tmp_path: Path, name: str) -> None:
    b = read_bal(shared_data / "ba" / f"{name}.txt")
    path = tmp_path / "rt.txt"
    write_bal(path, b)
    _assert_same_problem(b, read_bal(path))


def test_write_refuses_non_finite(tmp_path: Path) -> None:
    b = _random_problem(np.random.default_rng(2))
    b.points[3, 1] = np.nan
    with pytest.raises(ValueError, match="points"):
        write_bal(tmp_path / "x.txt", b)
    assert not (tmp_path / "x.txt").exists()


# A small valid file with known line numbers: 1 header, 2-5 observations, 6-23 cameras, 24-32 points.
def _lines() -> list[str]:
    cams = [0.01, -0.02, 0.03, 0.1, 0.2, -5.0, 500.0, -0.1, 0.01,
            0.02, 0.01, -0.03, -0.1, 0.1, -6.0, 510.0, 0.1, 0.0]
    pts = [0.1, 0.2, 0.3, -0.4, 0.5, 0.6, 0.7, -0.8, 0.9]
    return ["2 3 4", "0 0 1.5 -2.5", "1 0 3.0 4.0", "0 1 -1e2 2e1", "1 2 7 8"] + [repr(v) for v in cams + pts]


def _error(tmp_path: Path, lines: list[str], kind: type[Exception], line: int | None, *words: str) -> None:
    path = tmp_path / "p.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(kind) as info:
        read_bal(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:" if line else f"{path}:"), message
    assert info.value.line == line
    for word in words:
        assert word in message, (word, message)


def test_small_file_reads(tmp_path: Path) -> None:
    path = tmp_path / "ok.txt"
    path.write_text("\n".join(_lines()) + "\n")
    b = read_bal(path)
    np.testing.assert_array_equal(b.cam_idx, [0, 1, 0, 1])
    np.testing.assert_array_equal(b.pt_idx, [0, 0, 1, 2])
    np.testing.assert_array_equal(b.observations, [[1.5, -2.5], [3, 4], [-100, 20], [7, 8]])
    np.testing.assert_array_equal(b.cameras[1, 6], 510.0)
    np.testing.assert_array_equal(b.points[2], [0.7, -0.8, 0.9])


@pytest.mark.parametrize("header,kind,words", [
    ("2 3", FormatError, ("header", "found 2 values")),
    ("2 3 4 5", FormatError, ("header", "found 4 values")),
    ("2 three 4", FormatError, ("header", "'2 three 4'")),
    ("2 -3 4", FormatError, ("negative",)),
    ("0 3 4", ProblemError, ("empty problem",)),
])
def test_error_bad_header(tmp_path: Path, header: str, kind: type[Exception], words: tuple[str, ...]) -> None:
    _error(tmp_path, [header] + _lines()[1:], kind, 1, *words)


def test_error_truncated_in_points(tmp_path: Path) -> None:
    _error(tmp_path, _lines()[:-2], FormatError, 30, "ends early, at line 30", "point 2 of 3", "promises 43",
           "found 41")


def test_error_truncated_in_observations(tmp_path: Path) -> None:
    _error(tmp_path, _lines()[:4], FormatError, 4, "ends early", "observation 3 of 4")


def test_error_trailing_values(tmp_path: Path) -> None:
    _error(tmp_path, _lines() + ["", "1.0"], FormatError, 34, "after the last point", "found 44")


def test_error_not_a_number(tmp_path: Path) -> None:
    lines = _lines()
    lines[11] = "1e5x"  # line 12: camera 0, f
    _error(tmp_path, lines, FormatError, 12, "camera 0 f is '1e5x'", "expected a number")


def test_error_observation_line_with_missing_value(tmp_path: Path) -> None:
    lines = _lines()
    lines[2] = "1 0 3.0"  # every later value shifts: the root cause is this line
    lines.append("0.0")
    _error(tmp_path, lines, FormatError, 3, "observation 1", "expected 4 values", "found 3")


@pytest.mark.parametrize("row,text,kind,words", [
    (3, "2 0 3.0 4.0", ProblemError, ("observation 1", "camera index 2 is out of range", "0 to 1")),
    (4, "0 3 -1e2 2e1", ProblemError, ("observation 2", "point index 3 is out of range", "0 to 2")),
    (5, "1 -1 7 8", ProblemError, ("point index -1",)),
    (2, "0.5 0 1.5 -2.5", FormatError, ("camera index is 0.5", "expected an integer")),
    (5, "1 2 nan 8", ProblemError, ("observation 3 u is nan", "finite")),
])
def test_error_bad_observation(tmp_path: Path, row: int, text: str, kind: type[Exception],
                               words: tuple[str, ...]) -> None:
    lines = _lines()
    lines[row - 1] = text
    _error(tmp_path, lines, kind, row, *words)


def test_error_infinite_point(tmp_path: Path) -> None:
    lines = _lines()
    lines[31] = "-inf"  # line 32: point 2, Z
    _error(tmp_path, lines, ProblemError, 32, "point 2 Z is -inf")


def test_error_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_bal(tmp_path / "absent.txt")
