"""Trajectory files: TUM, EuRoC CSV and KITTI reading/writing, format detection and bad input."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slam.errors import FormatError, InputError
from slam.io.trajectory import (Trajectory, TrajectoryWarning, detect_format, find_kitti_times,
                                read_euroc_csv, read_kitti, read_times, read_trajectory, read_tum,
                                write_euroc_csv, write_kitti, write_trajectory, write_tum)


def _random_trajectory(n: int = 50, seed: int = 0) -> Trajectory:
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = Rotation.random(n, random_state=seed).as_matrix()
    poses[:, :3, 3] = rng.normal(scale=20.0, size=(n, 3))
    t = 1403715524.0 + np.cumsum(rng.uniform(0.001, 0.1, size=n))
    return Trajectory(t, poses)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- round trips and detection


@pytest.mark.parametrize("fmt", ["tum", "euroc", "kitti"])
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    traj = _random_trajectory()
    path = tmp_path / f"traj.{fmt}"
    if fmt == "kitti":
        write_kitti(path, traj, times_path=tmp_path / "traj_times.txt")
    else:
        write_trajectory(path, traj, fmt)
    assert detect_format(path) == fmt
    back, got_fmt = read_trajectory(path)
    assert got_fmt == fmt
    assert back.poses.shape == traj.poses.shape
    assert np.max(np.abs(back.poses - traj.poses)) < 1e-9
    assert np.max(np.abs(back.timestamps - traj.timestamps)) < 1e-9


def test_kitti_without_times_has_none(tmp_path: Path) -> None:
    traj = _random_trajectory(5)
    path = tmp_path / "poses.txt"
    write_kitti(path, traj)
    assert find_kitti_times(path) is None
    assert read_kitti(path).timestamps is None
    # times.txt beside the poses (KITTI's own layout) is found too; explicit times win over it.
    np.savetxt(tmp_path / "times.txt", np.arange(5) * 0.1)
    assert find_kitti_times(path) == tmp_path / "times.txt"
    np.testing.assert_allclose(read_kitti(path).timestamps, np.arange(5) * 0.1)
    np.testing.assert_allclose(read_kitti(path, times=np.arange(5) * 2.0).timestamps, np.arange(5) * 2.0)


def test_kitti_times_count_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "poses.txt"
    write_kitti(path, _random_trajectory(5))
    np.savetxt(tmp_path / "poses_times.txt", np.arange(4) * 0.1)
    with pytest.raises(FormatError, match=r"5 poses but 4 timestamps in .*poses_times\.txt"):
        read_kitti(path)


def test_tum_quaternion_order_and_normalization(tmp_path: Path) -> None:
    q = np.array([0.6453, -0.5498, 0.3363, -0.4101]) * 3.0  # xyzw, not unit on purpose
    path = _write(tmp_path / "a.txt", "# t x y z qx qy qz qw\n1.5 1 2 3 " + " ".join(map(str, q)) + "\n")
    traj = read_tum(path)
    np.testing.assert_allclose(traj.poses[0, :3, :3], Rotation.from_quat(q).as_matrix(), atol=1e-15)
    np.testing.assert_array_equal(traj.positions[0], [1, 2, 3])
    assert traj.timestamps[0] == 1.5


def test_euroc_quaternion_is_w_first_and_ns(tmp_path: Path) -> None:
    header = ("#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], q_RS_y [], "
              "q_RS_z [], v_RS_R_x [m s^-1]\n")
    row = "1403715524907143168,0.515356,1.996773,0.971104,0.161996,0.789985,-0.205376,0.554528,0.1\n"
    path = _write(tmp_path / "gt.csv", header + row)
    traj = read_euroc_csv(path)
    want = Rotation.from_quat([0.789985, -0.205376, 0.554528, 0.161996]).as_matrix()
    np.testing.assert_allclose(traj.poses[0, :3, :3], want, atol=1e-15)
    # 1403715524.907143168 s is not a float64; the nearest one is what we want.
    assert traj.timestamps[0] == 1403715524.907143168


# ---------------------------------------------------------------- real files


def test_reads_reference_files(shared_data: Path) -> None:
    d = shared_data / "trajectories"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrajectoryWarning)
        gt, fmt = read_trajectory(d / "fr2_desk_groundtruth.txt")
    assert fmt == "tum" and len(gt) == 20957
    assert gt.timestamps[0] == 1311868163.8697
    np.testing.assert_array_equal(gt.positions[0], [-0.1357, -1.4217, 1.4764])
    csv, fmt = read_trajectory(d / "V102_groundtruth.csv")
    assert fmt == "euroc" and len(csv) == 16702
    kitti, fmt = read_trajectory(d / "KITTI_00_gt.txt")
    assert fmt == "kitti" and len(kitti) == 4541
    assert kitti.timestamps[1] == 1.037359e-01  # from KITTI_00_gt_times.txt beside it
    np.testing.assert_array_equal(kitti.poses[1, 2, :], [2.066324e-03, 1.155958e-03, 9.999971e-01, 8.586941e-01])
    assert read_trajectory(d / "KITTI_00_ORB.txt")[0].timestamps is None
    times = read_times(shared_data / "kitti" / "07_head" / "times.txt")
    assert read_kitti(shared_data / "kitti" / "07_head" / "poses.txt").timestamps.tolist() == times.tolist()


def test_reading_agrees_with_evo(shared_data: Path) -> None:
    fi = pytest.importorskip("evo.tools.file_interface")
    d = shared_data / "trajectories"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrajectoryWarning)
        ours = read_euroc_csv(d / "V102_groundtruth.csv")
        tum = read_tum(d / "V102.txt")
    evo = fi.read_euroc_csv_trajectory(str(d / "V102_groundtruth.csv"))
    np.testing.assert_allclose(ours.poses, np.array(evo.poses_se3), rtol=0, atol=1e-14)
    # evo rounds the nanoseconds to float64 before dividing; we split them: at most an ulp apart.
    assert np.max(np.abs(ours.timestamps - evo.timestamps)) <= 2.5e-7
    evo_tum = fi.read_tum_trajectory_file(str(d / "V102.txt"))
    np.testing.assert_array_equal(tum.timestamps, evo_tum.timestamps)
    np.testing.assert_allclose(tum.poses, np.array(evo_tum.poses_se3), rtol=0, atol=1e-14)


# ---------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.txt: trajectory file not found"):
        read_trajectory(tmp_path / "nope.txt")


@pytest.mark.parametrize("reader, text, message", [
    (read_trajectory, "# header\n1 0 0 0 0 0 0 1\n\n2 0 0 0 0 0 1\n", r"a\.txt:4: expected 8 columns \(TUM.*found 7"),
    (read_trajectory, "1 2 3 4 5\n", r"a\.txt:1: cannot tell the trajectory format: 5 values"),
    (read_tum, "1 0 0 0 0 0 0 1\n2 0 0 zero 0 0 0 1\n", r"a\.txt:2: expected numbers .*found 'zero'"),
    (read_tum, "1 0 0 0 0 0 0 1\n2 0 nan 0 0 0 0 1\n", r"a\.txt:2: value is NaN"),
    (read_tum, "1 0 0 0 0 0 0 0\n", r"a\.txt:1: quaternion of \(near\) zero norm"),
    (read_tum, "1 0 0 0 0 0 0 1\n3 0 0 0 0 0 0 1\n2 0 0 0 0 0 0 1\n",
     r"a\.txt:3: timestamps must not decrease: 2\.0 s follows 3\.0 s"),
], ids=["column-count", "unknown-format", "non-numeric", "nan", "zero-quaternion", "decreasing-time"])
def test_malformed_line_names_file_and_line(tmp_path: Path, reader: Callable, text: str, message: str) -> None:
    path = _write(tmp_path / "a.txt", text)
    with pytest.raises(FormatError, match=message):
        reader(path)


def test_duplicated_timestamps_warn(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", "1 0 0 0 0 0 0 1\n2 0 0 0 0 0 0 1\n2 1 0 0 0 0 0 1\n")
    with pytest.warns(TrajectoryWarning, match=r"a\.txt:3: duplicated timestamp 2\.0 s"):
        traj = read_tum(path)
    assert len(traj) == 3


def test_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", "# nothing\n\n")
    with pytest.raises(FormatError, match="no poses"):
        read_trajectory(path)


def test_csv_with_too_few_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "leica.csv", "#timestamp [ns],p_RS_R_x [m],p_RS_R_y [m],p_RS_R_z [m]\n"
                                          "1403715524907143168,0.1,0.2,0.3\n")
    with pytest.raises(FormatError, match=r"leica\.csv.*p_x, p_y, p_z, q_w"):
        read_trajectory(path)
    path = _write(tmp_path / "noheader.csv", "1,0,0,0,1,0,0,0\n2,0,0,0,1,0\n")
    with pytest.raises(FormatError, match=r"noheader\.csv:2: expected at least 8 columns \(EuRoC"):
        read_trajectory(path)


def test_csv_with_xyzw_quaternion_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "gt.csv", "#timestamp,p_x,p_y,p_z,q_x,q_y,q_z,q_w\n1,0,0,0,0,0,0,1\n")
    with pytest.raises(FormatError, match=r"gt\.csv: EuRoC CSV header .*quaternion w first"):
        read_euroc_csv(path)


def test_times_file_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / "times.txt", "0.0\n0.1 0.2\n")
    with pytest.raises(FormatError, match=r"times\.txt:2: expected 1 column "):
        read_times(path)


def test_writing_tum_needs_timestamps(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="needs timestamps"):
        write_tum(tmp_path / "a.txt", Trajectory(None, np.eye(4)[None]))
    with pytest.raises(InputError, match="needs timestamps"):
        write_euroc_csv(tmp_path / "a.csv", Trajectory(None, np.eye(4)[None]))


def test_csv_timestamps_must_be_nanoseconds(tmp_path: Path) -> None:
    # A comma-separated TUM file would otherwise be read with the quaternion in the wrong order.
    path = _write(tmp_path / "tum.csv", "1403715524,0,0,0,0,0,0,1\n1403715524.5,0,0,0,0,0,0,1\n")
    with pytest.raises(FormatError, match=r"tum\.csv:2: EuRoC CSV timestamps are integer nanoseconds, "
                                          r"found '1403715524\.5'"):
        read_trajectory(path)


def test_a_trajectory_file_with_only_its_header_is_an_empty_trajectory(tmp_path):
    """A run that never tracked (a monocular map that never initialized) writes the header alone;
    reading it gives an empty trajectory, not an IndexError."""
    from slam.io.trajectory import read_tum

    p = tmp_path / "trajectory.tum"
    p.write_text("# timestamp tx ty tz qx qy qz qw\n")
    t = read_tum(p)
    assert len(t) == 0 and t.poses.shape == (0, 4, 4)
