"""--trajectory-format / --frame: the converted files read back with slam/io/trajectory.py, and the body
frame checked against body poses built independently of the conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slam.errors import InputError
from slam.io.trajectory import Trajectory, read_trajectory, write_tum
from slam.report.export import check_body_frame, export_trajectories


def _random_poses(n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    P = np.tile(np.eye(4), (n, 1, 1))
    P[:, :3, :3] = Rotation.from_rotvec(rng.normal(0, 0.6, (n, 3))).as_matrix()
    P[:, :3, 3] = rng.normal(0, 2.0, (n, 3))
    return P


@pytest.fixture()
def run_folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A run folder as `slam run` writes it, from body poses B_i of a rig with camera offset T_bc."""
    rng = np.random.default_rng(3)
    B = _random_poses(30, rng)                      # T_world_body, the dataset's ground truth
    T_bc = _random_poses(1, rng)[0]
    T_bc[:3, 3] *= 0.05                             # a few centimetres of lever arm
    C = B @ T_bc                                    # T_world_cam (groundtruth.tum)
    E = np.linalg.inv(C[0]) @ C                     # estimate: first camera is the world
    t = 1403636579.0 + np.arange(30) * 0.05
    write_tum(tmp_path / "trajectory.tum", Trajectory(t, E))
    write_tum(tmp_path / "keyframes.tum", Trajectory(t[::5], E[::5]))
    write_tum(tmp_path / "groundtruth.tum", Trajectory(t, C))
    return tmp_path, {"B": B, "T_bc": T_bc, "E": E, "C": C, "t": t}


@pytest.mark.parametrize("fmt, ext", [("tum", ".tum"), ("kitti", ".kitti"), ("euroc", ".csv")])
def test_formats_read_back(run_folder, fmt: str, ext: str) -> None:
    folder, truth = run_folder
    written = export_trajectories(folder, fmt, "camera")
    if fmt == "tum":
        assert written == []  # trajectory.tum is already the camera-frame TUM file
        return
    assert {p.name for p in written} >= {f"trajectory{ext}", f"keyframes{ext}", f"groundtruth{ext}"}
    traj, got_fmt = read_trajectory(folder / f"trajectory{ext}")
    assert got_fmt == fmt and len(traj) == 30
    np.testing.assert_allclose(traj.poses, truth["E"], atol=1e-12)
    # KITTI keeps the times beside the poses; EuRoC rounds them to integer nanoseconds.
    np.testing.assert_allclose(traj.timestamps, truth["t"], atol=1e-9 if fmt == "kitti" else 5e-10, rtol=0)
    kf, _ = read_trajectory(folder / f"keyframes{ext}")
    np.testing.assert_allclose(kf.poses, truth["E"][::5], atol=1e-12)


@pytest.mark.parametrize("fmt, ext", [("tum", ".tum"), ("kitti", ".kitti"), ("euroc", ".csv")])
def test_body_frame_is_the_body_the_poses_were_built_from(run_folder, fmt: str, ext: str) -> None:
    folder, truth = run_folder
    export_trajectories(folder, fmt, "body", truth["T_bc"])
    est, _ = read_trajectory(folder / f"trajectory_body{ext}")
    gt, _ = read_trajectory(folder / f"groundtruth_body{ext}")
    B = truth["B"]
    np.testing.assert_allclose(gt.poses, B, atol=1e-12)                        # the dataset's body poses
    np.testing.assert_allclose(est.poses, np.linalg.inv(B[0]) @ B, atol=1e-12)  # first body is the world
    assert (folder / "trajectory.tum").read_text().count("\n") == 31          # camera-frame file untouched


def test_body_frame_is_refused_where_it_has_no_meaning() -> None:
    with pytest.raises(InputError, match="defines no body-to-camera transform"):
        check_body_frame(None, "stereo", "kitti")
    with pytest.raises(InputError, match="no metric scale"):
        check_body_frame(np.eye(4), "mono", "euroc")
    check_body_frame(np.eye(4), "stereo", "euroc")


def test_run_refuses_body_frame_before_running(tmp_path: Path, capsys) -> None:
    from slam.cli import main

    rc = main(["run", "--source", "synthetic:room_loop", "--frame", "body", "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 2 and "a synthetic source defines no body-to-camera transform" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.json").exists()
