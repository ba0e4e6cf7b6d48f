"""Bundle Adjustment in the Large (BAL) problems: read, write, project and cost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slam.errors import FormatError, ProblemError
from slam.io.text import read_text, write_text_atomic

_HEADER = "'num_cameras num_points num_observations'"
_CAMERA_FIELDS = ("angle-axis x", "angle-axis y", "angle-axis z", "tx", "ty", "tz", "f", "k1", "k2")
_OBSERVATION_FIELDS = ("camera index", "point index", "u", "v")
_POINT_FIELDS = ("X", "Y", "Z")


@dataclass
class BALProblem:
    """A BAL bundle-adjustment problem: cameras, points and the pixel observations joining them."""

    cameras: np.ndarray       # (C,9) float64: angle-axis R (3), t (3), f, k1, k2
    points: np.ndarray        # (P,3) float64
    cam_idx: np.ndarray       # (O,) int64
    pt_idx: np.ndarray        # (O,) int64
    observations: np.ndarray  # (O,2) float64 pixels, BAL convention (image centre at 0, see bal_project)
    path: str | None = None


def read_bal(path: str | Path) -> BALProblem:
    """Read a BAL problem file; every defect is reported with the file and the line it is on."""
    path = Path(path)
    text = read_text(path)
    first_line = text.split("\n", 1)[0]
    head = first_line.split()
    if len(head) != 3:
        raise FormatError(f"expected the header {_HEADER} (3 integers), found {len(head)} values", path, 1)
    try:
        n_cam, n_pt, n_obs = (int(t) for t in head)
    except ValueError:
        raise FormatError(f"expected the header {_HEADER} (3 integers), found '{first_line.strip()}'",
                          path, 1) from None
    if min(n_cam, n_pt, n_obs) < 0:
        raise FormatError(f"header counts must not be negative, found '{first_line.strip()}'", path, 1)
    if min(n_cam, n_pt, n_obs) == 0:
        raise ProblemError(f"empty problem: the header declares {n_cam} cameras, {n_pt} points and "
                           f"{n_obs} observations", path, 1)

    tokens = text.split()[3:]
    sizes = (4 * n_obs, 9 * n_cam, 3 * n_pt)
    need = sum(sizes)
    if len(tokens) != need:
        _check_observation_lines(text, n_obs, path)
        header = (f"the header '{n_cam} {n_pt} {n_obs}' promises {need} values "
                  "(4 per observation, 9 per camera, 3 per point)")
        if len(tokens) > need:
            raise FormatError(f"unexpected values after the last point: {header}, found {len(tokens)}",
                              path, _line_of_token(text, 3 + need))
        end = _line_of_token(text, 3 + len(tokens) - 1)
        raise FormatError(f"file ends early, at line {end} in {_section_of(len(tokens), sizes)}: {header}, "
                          f"found {len(tokens)}", path, end)
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        _check_observation_lines(text, n_obs, path)
        for k, token in enumerate(tokens):  # only on failure: find which token it was
            try:
                float(token)
            except ValueError:
                raise FormatError(f"{_field_of(k, sizes)} is '{token}', expected a number",
                                  path, _line_of_token(text, 3 + k)) from None
        raise FormatError("a value is not a number", path) from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        k = bad[0]
        raise ProblemError(f"{_field_of(k, sizes)} is {values[k]}, expected a finite number",
                           path, _line_of_token(text, 3 + k))

    obs = values[:sizes[0]].reshape(n_obs, 4)
    cameras = values[sizes[0]:sizes[0] + sizes[1]].reshape(n_cam, 9)
    points = values[sizes[0] + sizes[1]:].reshape(n_pt, 3)
    index = obs[:, :2]
    not_int = np.flatnonzero((index != np.rint(index)).any(axis=1))
    if not_int.size:
        _check_observation_lines(text, n_obs, path)
        k = not_int[0]
        col = 0 if index[k, 0] != np.rint(index[k, 0]) else 1
        raise FormatError(f"observation {k}: {('camera', 'point')[col]} index is {float(index[k, col])!r}, "
                          "expected an integer", path, _line_of_token(text, 3 + 4 * k))
    cam_idx = obs[:, 0].astype(np.int64)
    pt_idx = obs[:, 1].astype(np.int64)
    for name, idx, count in (("camera", cam_idx, n_cam), ("point", pt_idx, n_pt)):
        out = np.flatnonzero((idx < 0) | (idx >= count))
        if out.size:
            _check_observation_lines(text, n_obs, path)
            k = out[0]
            raise ProblemError(f"observation {k}: {name} index {idx[k]} is out of range, expected 0 to "
                               f"{count - 1} ({count} {name}s in the header)", path, _line_of_token(text, 3 + 4 * k))
    return BALProblem(cameras=cameras, points=points, cam_idx=cam_idx, pt_idx=pt_idx,
                      observations=np.ascontiguousarray(obs[:, 2:]), path=str(path))


def write_bal(path: str | Path, problem: BALProblem) -> None:
    """Write `problem` in BAL format at full precision (the file reads back to the same doubles)."""
    C, P, O = len(problem.cameras), len(problem.points), len(problem.cam_idx)
    for name, arr, shape in (("cameras", problem.cameras, (C, 9)), ("points", problem.points, (P, 3)),
                             ("pt_idx", problem.pt_idx, (O,)), ("observations", problem.observations, (O, 2))):
        if np.shape(arr) != shape:
            raise ValueError(f"problem.{name} has shape {np.shape(arr)}, expected {shape}")
    for name, arr in (("cameras", problem.cameras), ("points", problem.points),
                      ("observations", problem.observations)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"problem.{name} contain NaN or Inf; refusing to write them to {path}")
    # repr is the shortest text that reads back to the same double.
    out = [f"{C} {P} {O}"]
    out += [f"{c} {p} {u!r} {v!r}" for c, p, (u, v) in
            zip(np.asarray(problem.cam_idx).tolist(), np.asarray(problem.pt_idx).tolist(),
                np.asarray(problem.observations, dtype=np.float64).tolist())]
    out += map(repr, np.asarray(problem.cameras, dtype=np.float64).ravel().tolist())
    out += map(repr, np.asarray(problem.points, dtype=np.float64).ravel().tolist())
    write_text_atomic(path, "\n".join(out) + "\n")


def bal_project(cameras: np.ndarray, points: np.ndarray, cam_idx: np.ndarray, pt_idx: np.ndarray) -> np.ndarray:
    """(O,2) predicted BAL pixels: P = R X + t, p = -P.xy / P.z, u = f (1 + k1 |p|^2 + k2 |p|^4) p."""
    cam = cameras[cam_idx]
    X = points[pt_idx]
    w = cam[:, :3]
    theta = np.sqrt(np.sum(w * w, axis=1, keepdims=True))
    # Rodrigues with sin(t)/t and (1 - cos t)/t^2 = 2 sin^2(t/2)/t^2 written through sinc: exact at t = 0
    # and free of the cancellation in 1 - cos t for small angles.
    a = np.sinc(theta / np.pi)
    b = 0.5 * np.sinc(theta / (2 * np.pi)) ** 2
    rotated = (np.cos(theta) * X + a * np.cross(w, X)
               + b * w * np.sum(w * X, axis=1, keepdims=True))
    Pc = rotated + cam[:, 3:6]
    p = -Pc[:, :2] / Pc[:, 2:3]
    r2 = np.sum(p * p, axis=1, keepdims=True)
    distortion = 1 + cam[:, 7:8] * r2 + cam[:, 8:9] * r2 * r2
    return cam[:, 6:7] * distortion * p


def bal_residuals(problem: BALProblem) -> np.ndarray:
    """(O,2) reprojection errors: predicted minus observed pixels."""
    return bal_project(problem.cameras, problem.points, problem.cam_idx, problem.pt_idx) - problem.observations


def bal_cost(problem: BALProblem) -> float:
    """0.5 * sum of squared reprojection errors (the Ceres convention), in pixels^2."""
    r = bal_residuals(problem)
    return 0.5 * float(np.sum(r * r))


def _line_of_token(text: str, k: int) -> int:
    """1-based line holding the k-th whitespace-separated token of `text` (the last line if past the end)."""
    seen = 0
    number = 1
    for number, line in enumerate(text.splitlines(), 1):  # error path only
        seen += len(line.split())
        if seen > k:
            return number
    return number


def _section_of(k: int, sizes: tuple[int, int, int]) -> str:
    """Where the k-th value after the header falls: 'observation 12 of 40' and the like."""
    n_obs, n_cam, n_pt = sizes[0] // 4, sizes[1] // 9, sizes[2] // 3
    if k < sizes[0]:
        return f"observation {k // 4} of {n_obs} (0-based)"
    k -= sizes[0]
    if k < sizes[1]:
        return f"camera {k // 9} of {n_cam} (0-based)"
    return f"point {(k - sizes[1]) // 3} of {n_pt} (0-based)"


def _field_of(k: int, sizes: tuple[int, int, int]) -> str:
    """Name of the k-th value after the header: 'camera 3 f', 'observation 10 u', 'point 7 Z'."""
    if k < sizes[0]:
        return f"observation {k // 4} {_OBSERVATION_FIELDS[k % 4]}"
    k -= sizes[0]
    if k < sizes[1]:
        return f"camera {k // 9} {_CAMERA_FIELDS[k % 9]}"
    k -= sizes[1]
    return f"point {k // 3} {_POINT_FIELDS[k % 3]}"


def _check_observation_lines(text: str, n_obs: int, path: Path) -> None:
    """Each of the first n_obs non-blank lines after the header reads 'camera point u v' (error path only).

    A line with a missing or extra value shifts every later value, so this is the root cause to
    report before any symptom further down the file.
    """
    seen = 0
    for number, line in enumerate(text.splitlines()[1:], 2):
        count = len(line.split())
        if count == 0:
            continue
        if count != 4:
            raise FormatError(f"observation {seen}: expected 4 values 'camera point u v', found {count}", path, number)
        seen += 1
        if seen == n_obs:
            return
