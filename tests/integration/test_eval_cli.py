"""`slam eval` end to end: JSON and table output, plots, KITTI pairing and errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slam.cli import main
from slam.io.trajectory import Trajectory, write_kitti, write_tum

# evo 1.38.1 on fr2/desk ORB vs ground truth, max_diff 0.02, SE(3): see tests/unit/test_eval.py.
FR2_ATE_RMSE = 0.00814595663336437
FR2_RPE_RMSE = 0.0035975930748651107
FR2_ROT_RMSE = 0.28661808755211854
V102_SIM3_ATE_RMSE = 0.08384138804295284
V102_SIM3_SCALE = 0.9796982521745784


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["eval", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_fr2_desk(shared_data: Path, capsys: pytest.CaptureFixture) -> None:
    d = shared_data / "trajectories"
    code, out, err = _run(capsys, d / "fr2_desk_groundtruth.txt", d / "fr2_desk_ORB.txt", "--json")
    assert code == 0
    rep = json.loads(out)  # stdout holds exactly one JSON object; the duplicate warning went to stderr
    assert "fr2_desk_groundtruth.txt:10863: duplicated timestamp" in err
    assert rep["matched"] == 2225 and rep["align"] == "se3" and rep["pairing"] == "time"
    assert rep["scale"] == 1.0
    assert rep["ate"]["rmse"] == pytest.approx(FR2_ATE_RMSE, rel=1e-6)
    assert rep["rpe"]["rmse"] == pytest.approx(FR2_RPE_RMSE, rel=1e-6)
    assert rep["rpe"]["rot"]["rmse"] == pytest.approx(FR2_ROT_RMSE, rel=1e-6)
    assert set(rep["ate"]) == {"rmse", "mean", "median", "std", "min", "max"}


def test_table_and_plot_v102_sim3(shared_data: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    d = shared_data / "trajectories"
    png = tmp_path / "eval.png"
    code, out, _ = _run(capsys, d / "V102_groundtruth.csv", d / "V102.txt", "--align", "sim3", "--plot", png)
    assert code == 0
    assert "matched 798 pairs by time" in out and f"scale {V102_SIM3_SCALE:.6f}" in out
    ate_row = next(line for line in out.splitlines() if line.startswith("ATE [m]"))
    assert float(ate_row.split()[2]) == pytest.approx(V102_SIM3_ATE_RMSE, rel=1e-5)  # 6 digits printed
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    img = imread(png)
    assert img.shape[0] > 400 and img.shape[1] > 600 and img[..., :3].std() > 0.05  # not a blank page


def test_kitti_pairs_by_index(shared_data: Path, capsys: pytest.CaptureFixture) -> None:
    d = shared_data / "trajectories"
    code, out, _ = _run(capsys, d / "KITTI_00_gt.txt", d / "KITTI_00_ORB.txt")
    assert code == 0
    assert "matched 4541 pairs by index" in out


def _line_traj(n: int, t0: float, step: float = 0.1) -> Trajectory:
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, 0, 3] = np.arange(n) * 0.5
    poses[:, 1, 3] = np.sin(np.arange(n))
    poses[:, 2, 3] = np.cos(np.arange(n) * 0.7)
    return Trajectory(t0 + np.arange(n) * step, poses)


def test_no_matched_pairs_names_time_ranges(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_tum(tmp_path / "gt.txt", _line_traj(20, 100.0))
    write_tum(tmp_path / "est.txt", _line_traj(20, 1e9))
    code, _, err = _run(capsys, tmp_path / "gt.txt", tmp_path / "est.txt")
    assert code == 2
    assert "no pose of" in err and "100.000000 .. 101.900000 s" in err and "1000000000.000000" in err
    assert "do not overlap" in err


def test_kitti_with_times_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt = _line_traj(20, 0.0)
    write_tum(tmp_path / "gt.txt", gt)
    write_kitti(tmp_path / "est.kitti", gt)
    code, _, err = _run(capsys, tmp_path / "gt.txt", tmp_path / "est.kitti")
    assert code == 2 and "KITTI poses without timestamps" in err and "est.kitti" in err
    np.savetxt(tmp_path / "t.txt", gt.timestamps, fmt="%.9f")
    code, out, _ = _run(capsys, tmp_path / "gt.txt", tmp_path / "est.kitti", "--times", tmp_path / "t.txt",
                        "--json")
    rep = json.loads(out)
    assert code == 0 and rep["matched"] == 20 and rep["pairing"] == "time"
    assert rep["ate"]["max"] < 1e-12 and rep["rpe"]["rot"]["max"] < 1e-9


@pytest.mark.parametrize("argv,message", [
    (["missing.txt", "gt.txt"], "missing.txt: trajectory file not found"),
    (["gt.txt", "gt.txt", "--max-diff", "-1"], "--max-diff must be >= 0"),
    (["gt.txt", "gt.txt", "--delta", "1.5"], "--delta must be a positive integer"),
    (["gt.txt", "gt.txt", "--times", "gt.txt"], "--times is for KITTI pose files"),
    (["gt.txt", "bad.txt"], "bad.txt:2: expected 8 columns"),
])
def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                    argv: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    write_tum(tmp_path / "gt.txt", _line_traj(20, 0.0))
    (tmp_path / "bad.txt").write_text("0 0 0 0 0 0 0 1\n0.1 0 0 0 0 0 1\n")
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("slam eval: error:") and message in err
