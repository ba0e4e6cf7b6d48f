"""Trajectory files: TUM (`t tx ty tz qx qy qz qw`), EuRoC ground-truth CSV and KITTI poses (3x4 rows).

A file's format is detected from its content (commas: EuRoC CSV; 8 values a line: TUM; 12: KITTI).
Timestamps are seconds as float64. Poses are T_world_body as (N, 4, 4) float64 matrices.
Duplicated timestamps are kept (ground-truth files in the wild have them) with a TrajectoryWarning;
decreasing timestamps are a FormatError, since every consumer (association, RPE) assumes time order.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slam.errors import FormatError, InputError
from slam.geometry.quaternion import quat_to_rot, rot_to_quat
from slam.io.text import data_lines, read_text, split_rows, to_float, write_text_atomic

FORMATS = ("tum", "euroc", "kitti")
_NS = 1_000_000_000


class TrajectoryWarning(UserWarning):
    """Suspicious but usable content of a trajectory file (for example a duplicated timestamp)."""


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Timed poses: `timestamps` (N,) seconds or None (KITTI without times), `poses` (N,4,4) T_world_body."""

    timestamps: np.ndarray | None
    poses: np.ndarray

    def __post_init__(self) -> None:
        poses = np.asarray(self.poses, dtype=np.float64)
        if poses.ndim != 3 or poses.shape[1:] != (4, 4):
            raise ValueError(f"poses must have shape (N, 4, 4), got {poses.shape}")
        object.__setattr__(self, "poses", poses)
        if self.timestamps is not None:
            t = np.asarray(self.timestamps, dtype=np.float64)
            if t.shape != (poses.shape[0],):
                raise ValueError(f"timestamps must have shape ({poses.shape[0]},), got {t.shape}")
            object.__setattr__(self, "timestamps", t)

    def __len__(self) -> int:
        return self.poses.shape[0]

    @property
    def positions(self) -> np.ndarray:
        """(N, 3) translations of the poses."""
        return self.poses[:, :3, 3]

    def subset(self, index: np.ndarray) -> Trajectory:
        """The poses (and timestamps) at the given integer indices, in that order."""
        index = np.asarray(index, dtype=np.int64)
        t = None if self.timestamps is None else self.timestamps[index]
        return Trajectory(t, self.poses[index])


def poses_from_tq(t: np.ndarray, q_xyzw: np.ndarray) -> np.ndarray:
    """(N,3) translations and (N,4) xyzw quaternions (normalized here) -> (N,4,4) poses."""
    n = t.shape[0]
    poses = np.zeros((n, 4, 4))
    poses[:, :3, :3] = quat_to_rot(q_xyzw.reshape(n, 4)) if n else np.zeros((0, 3, 3))
    poses[:, :3, 3] = t
    poses[:, 3, 3] = 1.0
    return poses


# ---------------------------------------------------------------- reading


def _data_lines(path: Path, comment: str = "#") -> tuple[list[str], list[int], list[str]]:
    """Non-empty, non-comment lines with their 1-based line numbers, and the comment lines."""
    return data_lines(read_text(path, "trajectory file"), comment)


def _split(lines: list[str], numbers: list[int], path: Path, sep: str | None,
           ncols: int, at_least: bool, what: str) -> list[list[str]]:
    """Split each line into fields; the first line with a wrong field count is a FormatError."""
    return split_rows(lines, numbers, path, (ncols, None) if at_least else ncols, what, sep)


def _to_float(rows: list[list[str]], numbers: list[int], path: Path, what: str, width: int) -> np.ndarray:
    """Rows of `width` fields -> (N, width) float64 array (N = 0 for a file with only comments); a
    non-numeric or non-finite field is a FormatError naming its line."""
    if not rows:
        return np.zeros((0, width))
    return to_float(rows, slice(None), path, numbers, what, finite=True)


def _check_times(t: np.ndarray, numbers: list[int], path: Path) -> None:
    """Decreasing timestamps: FormatError; duplicated ones: TrajectoryWarning (both name the line)."""
    d = np.diff(t)
    back = np.flatnonzero(d < 0)
    if back.size:
        k = int(back[0]) + 1
        raise FormatError(f"timestamps must not decrease: {float(t[k])!r} s follows {float(t[k - 1])!r} s "
                          f"({back.size} such place(s))", path, numbers[k])
    dup = np.flatnonzero(d == 0)
    if dup.size:
        k = int(dup[0]) + 1
        warnings.warn(TrajectoryWarning(f"{path}:{numbers[k]}: duplicated timestamp {float(t[k])!r} s "
                                        f"({dup.size} duplicate(s) in the file; kept)"), stacklevel=3)


def _sniff(lines: list[str], numbers: list[int], path: Path) -> str:
    if not lines:
        raise FormatError("no poses in the file (only comments or blank lines)", path)
    first = lines[0]
    if "," in first:
        return "euroc"
    n = len(first.split())
    if n == 8:
        return "tum"
    if n == 12:
        return "kitti"
    raise FormatError(f"cannot tell the trajectory format: {n} values on the first line; expected "
                      "8 (TUM: t tx ty tz qx qy qz qw), 12 (KITTI: 3x4 pose row-major) or a "
                      "comma-separated EuRoC CSV", path, numbers[0])


def detect_format(path: str | Path) -> str:
    """The format of a trajectory file from its first data line: 'tum', 'euroc' or 'kitti'."""
    path = Path(path)
    lines, numbers, _ = _data_lines(path)
    return _sniff(lines, numbers, path)


def read_tum(path: str | Path) -> Trajectory:
    """Read a TUM trajectory: `timestamp tx ty tz qx qy qz qw` a line, '#' comments."""
    path = Path(path)
    lines, numbers, _ = _data_lines(path)
    return _parse_tum(lines, numbers, path)


def _parse_tum(lines: list[str], numbers: list[int], path: Path) -> Trajectory:
    what = "TUM: timestamp tx ty tz qx qy qz qw"
    a = _to_float(_split(lines, numbers, path, None, 8, False, what), numbers, path, what, 8)
    _check_quaternions(a[:, 4:8], numbers, path)
    _check_times(a[:, 0], numbers, path)
    return Trajectory(a[:, 0].copy(), poses_from_tq(a[:, 1:4], a[:, 4:8]))


def _check_quaternions(q: np.ndarray, numbers: list[int], path: Path) -> None:
    bad = np.flatnonzero(np.linalg.norm(q, axis=1) < 1e-6)
    if bad.size:
        raise FormatError("quaternion of (near) zero norm", path, numbers[int(bad[0])])


_EUROC_P = re.compile(r"^p_\w*_([xyz])$")
_EUROC_Q = re.compile(r"^q_\w*_([wxyz])$")


def _check_euroc_header(comments: list[str], path: Path) -> None:
    """If the CSV has a header naming its columns, columns 1-7 must be p_x p_y p_z q_w q_x q_y q_z."""
    header = next((c for c in comments if "," in c and "timestamp" in c.lower()), None)
    if header is None:
        return
    names = [re.sub(r"\[.*?\]", "", f).strip() for f in header.lstrip("#").split(",")]
    want = ("x", "y", "z", "w", "x", "y", "z")
    got = []
    for name, axis, k in zip(names[1:8], want, range(7)):
        m = (_EUROC_P if k < 3 else _EUROC_Q).match(name)
        got.append(m is not None and m.group(1) == axis)
    if len(names) < 8 or not all(got):
        raise FormatError("EuRoC CSV header must name columns 'timestamp, p_x, p_y, p_z, q_w, q_x, "
                          "q_y, q_z, ...' (e.g. p_RS_R_x [m], ..., q_RS_w [], q_RS_x [], ...: "
                          f"quaternion w first); found {', '.join(names[:8])}", path)


def read_euroc_csv(path: str | Path) -> Trajectory:
    """Read an EuRoC/ASL CSV: `timestamp [ns], p_x, p_y, p_z, q_w, q_x, q_y, q_z[, more columns]`."""
    path = Path(path)
    lines, numbers, comments = _data_lines(path)
    return _parse_euroc(lines, numbers, comments, path)


def _parse_euroc(lines: list[str], numbers: list[int], comments: list[str], path: Path) -> Trajectory:
    what = "EuRoC CSV: timestamp [ns], p_x, p_y, p_z, q_w, q_x, q_y, q_z, ..."
    _check_euroc_header(comments, path)
    rows = _split(lines, numbers, path, ",", 8, True, what)
    rows8 = [r[:8] for r in rows]
    a = _to_float(rows8, numbers, path, what, 8)
    stamps = [r[0] for r in rows8]
    try:
        ns = np.array(stamps, dtype=np.int64)
    except (ValueError, OverflowError):
        # Also what a comma-separated TUM file (seconds, quaternion w last) runs into here.
        k = next(i for i, s in enumerate(stamps) if not s.lstrip("+-").isdigit())
        raise FormatError(f"EuRoC CSV timestamps are integer nanoseconds, found {stamps[k]!r}",
                          path, numbers[k]) from None
    # Integer nanoseconds exceed float64's 53-bit mantissa: split into whole seconds and the rest.
    t = (ns // _NS).astype(np.float64) + (ns % _NS).astype(np.float64) * 1e-9
    _check_quaternions(a[:, 4:8], numbers, path)
    _check_times(t, numbers, path)
    return Trajectory(t, poses_from_tq(a[:, 1:4], a[:, [5, 6, 7, 4]]))


def read_times(path: str | Path) -> np.ndarray:
    """Read a KITTI `times.txt`: one timestamp in seconds a line."""
    path = Path(path)
    lines, numbers, _ = _data_lines(path)
    if not lines:
        raise FormatError("no timestamps in the file", path)
    what = "times file: one timestamp in seconds a line"
    t = _to_float(_split(lines, numbers, path, None, 1, False, what), numbers, path, what, 1)[:, 0]
    _check_times(t, numbers, path)
    return t


def find_kitti_times(path: str | Path) -> Path | None:
    """The times file beside a KITTI pose file: `<stem>_times.txt`, else `times.txt`; None if neither."""
    path = Path(path)
    for cand in (path.with_name(path.stem + "_times.txt"), path.with_name("times.txt")):
        if cand.is_file() and cand.resolve() != path.resolve():
            return cand
    return None


def read_kitti(path: str | Path, times: str | Path | np.ndarray | None = None,
               find_times: bool = True) -> Trajectory:
    """Read KITTI poses (12 values a line, row-major 3x4); times given, found beside the file, or None."""
    path = Path(path)
    lines, numbers, _ = _data_lines(path)
    return _parse_kitti(lines, numbers, path, times, find_times)


def _parse_kitti(lines: list[str], numbers: list[int], path: Path,
                 times: str | Path | np.ndarray | None, find_times: bool) -> Trajectory:
    what = "KITTI: 3x4 pose matrix row-major"
    a = _to_float(_split(lines, numbers, path, None, 12, False, what), numbers, path, what, 12)
    n = a.shape[0]
    poses = np.zeros((n, 4, 4))
    poses[:, :3, :] = a.reshape(n, 3, 4)
    poses[:, 3, 3] = 1.0
    times_path = None
    if times is None and find_times:
        times_path = find_kitti_times(path)
        times = times_path
    elif isinstance(times, (str, Path)):
        times_path = Path(times)
    if times is None:
        return Trajectory(None, poses)
    t = read_times(times_path) if times_path is not None else np.asarray(times, dtype=np.float64)
    if t.shape != (n,):
        src = times_path if times_path is not None else "the given times"
        raise FormatError(f"{n} poses but {t.size} timestamps in {src}", path)
    return Trajectory(t, poses)


def read_trajectory(path: str | Path, times: str | Path | np.ndarray | None = None) -> tuple[Trajectory, str]:
    """Read a trajectory file of any supported format (detected from content); returns (trajectory, format).

    `times` applies to KITTI pose files only (it overrides a times file found beside them).
    """
    path = Path(path)
    lines, numbers, comments = _data_lines(path)
    fmt = _sniff(lines, numbers, path)
    if fmt == "tum":
        return _parse_tum(lines, numbers, path), fmt
    if fmt == "euroc":
        return _parse_euroc(lines, numbers, comments, path), fmt
    return _parse_kitti(lines, numbers, path, times, True), fmt


# ---------------------------------------------------------------- writing


def _require_times(traj: Trajectory, what: str) -> np.ndarray:
    if traj.timestamps is None:
        raise InputError(f"a {what} file needs timestamps; this trajectory has none")
    return traj.timestamps


def write_tum(path: str | Path, traj: Trajectory) -> None:
    """Write `timestamp tx ty tz qx qy qz qw` lines (time %.9f, values %.17g: lossless)."""
    t = _require_times(traj, "TUM")
    q = rot_to_quat(traj.poses[:, :3, :3]) if len(traj) else np.zeros((0, 4))
    body = np.column_stack([traj.positions, q])
    write_text_atomic(path, "# timestamp tx ty tz qx qy qz qw\n" + "".join(
        f"{ti:.9f} " + " ".join(f"{v:.17g}" for v in row) + "\n" for ti, row in zip(t, body)))


def _seconds_to_ns(t: np.ndarray) -> np.ndarray:
    """Seconds -> int64 nanoseconds, rounding only the fraction so that nothing beyond it is lost."""
    whole = np.floor(t)
    return whole.astype(np.int64) * _NS + np.rint((t - whole) * 1e9).astype(np.int64)


def write_euroc_csv(path: str | Path, traj: Trajectory) -> None:
    """Write an EuRoC ground-truth-style CSV with the 8 pose columns (timestamps in integer ns)."""
    t = _require_times(traj, "EuRoC CSV")
    q = rot_to_quat(traj.poses[:, :3, :3]) if len(traj) else np.zeros((0, 4))
    body = np.column_stack([traj.positions, q[:, [3, 0, 1, 2]]])
    write_text_atomic(path, "#timestamp [ns], p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], "
                      "q_RS_w [], q_RS_x [], q_RS_y [], q_RS_z []\n" + "".join(
                          f"{ns}," + ",".join(f"{v:.17g}" for v in row) + "\n"
                          for ns, row in zip(_seconds_to_ns(t), body)))


def write_kitti(path: str | Path, traj: Trajectory, times_path: str | Path | None = None) -> None:
    """Write KITTI poses (12 values a line); the timestamps go to `times_path` when given."""
    rows = traj.poses[:, :3, :].reshape(len(traj), 12)
    t = _require_times(traj, "KITTI times") if times_path is not None else None
    write_text_atomic(path, "".join(" ".join(f"{v:.17g}" for v in row) + "\n" for row in rows))
    if times_path is not None:
        write_text_atomic(times_path, "".join(f"{ti:.9f}\n" for ti in t))


def write_trajectory(path: str | Path, traj: Trajectory, fmt: str = "tum") -> None:
    """Write a trajectory in 'tum', 'euroc' or 'kitti' format."""
    if fmt == "tum":
        write_tum(path, traj)
    elif fmt == "euroc":
        write_euroc_csv(path, traj)
    elif fmt == "kitti":
        write_kitti(path, traj)
    else:
        raise InputError(f"unknown trajectory format {fmt!r}; expected one of {', '.join(FORMATS)}")
