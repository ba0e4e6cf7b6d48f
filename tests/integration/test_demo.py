"""`slam demo`: the whole pipeline on the built-in loop, with and without loop closure, and its folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from slam.cli import main
from slam.commands.demo import prepare_out

REPO = Path(__file__).resolve().parents[2]
RUN_OUTPUTS = ("trajectory.tum", "keyframes.tum", "groundtruth.tum", "map.ply", "loops.json", "report.json",
               "trajectory.png", "top_view.png", "error.png", "report.html")


def _demo(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slam", "demo", "--out", str(out), "--quiet", *extra],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def _row(stdout: str, name: str) -> list[str]:
    m = re.search(rf"^{re.escape(name)}\s+(\S+)\s+(\S+)\s*$", stdout, re.M)
    assert m, f"no '{name}' row in:\n{stdout}"
    return [m[1], m[2]]


def test_demo_closes_the_loop_and_writes_its_folder(tmp_path: Path) -> None:
    """All frames of room_loop (one lap back to the start; ~35 s on two loaded cores): a loop is accepted and
    lowers the ATE; both run folders, the summary and (when Open3D renders here) the screenshot are written."""
    out = tmp_path / "demo"
    r = _demo(out)
    assert r.returncode == 0, r.stdout + r.stderr
    ate_loop, ate_none = (float(x) for x in _row(r.stdout, "ATE RMSE [m]"))
    pct_loop, pct_none = (float(x) for x in _row(r.stdout, "ATE RMSE [% of path]"))
    loops, off = _row(r.stdout, "loops accepted")
    assert off == "off" and int(loops) >= 1
    assert 0 < ate_loop <= ate_none < 0.05  # metres, on a 14.6 m lap
    assert 0 < pct_loop <= pct_none
    assert re.search(r"^  loop 1: keyframe \d+ -> \d+ \(\d+ inliers\): .* cost \S+ -> \S+, \d+ LM iterations .* "
                     r"precision mixed$", r.stdout, re.M), r.stdout
    assert re.search(r"^  mixed\s+\S+\s+[+-]\d\.\de-?\d+", r.stdout, re.M), r.stdout  # gap to fp64 re-solve
    for name in RUN_OUTPUTS:
        assert (out / name).is_file(), name
        assert (out / "no_loop" / name).is_file(), f"no_loop/{name}"
    assert list((out / "pose_graphs").glob("*.g2o"))
    summary = json.loads((out / "demo.json").read_text())
    assert summary["with_loop_closure"]["ate_rmse_m"] == pytest.approx(ate_loop, abs=6e-5)
    assert summary["without_loop_closure"]["ate_rmse_m"] == pytest.approx(ate_none, abs=6e-5)
    assert summary["with_loop_closure"]["loops_accepted"] == int(loops)
    assert json.loads((out / "no_loop" / "loops.json").read_text()) == []
    rep, rep0 = (json.loads((d / "report.json").read_text()) for d in (out, out / "no_loop"))
    assert rep["config"]["odometry"]["blocking"] and rep0["config"]["odometry"]["blocking"]
    assert rep0["loop_closure"] == "disabled (--no-loop)"
    if summary["screenshot"]["written"]:
        assert (out / "viewer.png").stat().st_size > 10_000
    else:  # no Open3D or no rendering here: the demo goes on without the viewer, and says so
        assert "note: no viewer screenshot" in r.stdout and not (out / "viewer.png").exists()


def test_a_short_demo_replaces_an_earlier_one(tmp_path: Path) -> None:
    """--frames ends before the loop: no loop, the same ATE both ways; a second demo into the same folder
    replaces the first (none of its files is left behind)."""
    out = tmp_path / "demo"
    out.mkdir()
    (out / "viewer.png").write_bytes(b"an earlier demo's screenshot")
    (out / "pose_graphs").mkdir()
    (out / "pose_graphs" / "007.g2o").write_text("an earlier graph\n")
    r = _demo(out, "--frames", "30", "--no-screenshot")
    assert r.returncode == 0, r.stdout + r.stderr
    ate_loop, ate_none = (float(x) for x in _row(r.stdout, "ATE RMSE [m]"))
    assert _row(r.stdout, "loops accepted") == ["0", "off"]
    assert ate_loop == ate_none  # blocking odometry: the same frames give the same run ...
    for name in ("trajectory.tum", "keyframes.tum", "map.ply"):  # ... until a loop closes
        assert (out / name).read_bytes() == (out / "no_loop" / name).read_bytes(), name
    assert "no loop closed" in r.stdout
    assert not (out / "viewer.png").exists() and not (out / "pose_graphs" / "007.g2o").exists()
    for name in RUN_OUTPUTS:
        assert (out / name).is_file() and (out / "no_loop" / name).is_file(), name
    assert json.loads((out / "demo.json").read_text())["frames"] == 30


def test_demo_folder_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder holding something else than a demo or a run is refused (exit 2, before any work) unless
    --overwrite; a file is refused; an earlier demo's own files are removed."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    assert main(["demo", "--out", str(other), "--frames", "2"]) == 2
    assert "holds no earlier demo" in capsys.readouterr().err
    prepare_out(other, overwrite=True)  # allowed: the demo's files are added, notes.txt stays
    assert (other / "notes.txt").is_file()
    afile = tmp_path / "file"
    afile.write_text("x")
    assert main(["demo", "--out", str(afile)]) == 2
    earlier = tmp_path / "earlier"
    (earlier / "no_loop").mkdir(parents=True)
    for name in ("viewer.png", "demo.json", "trajectory.tum"):
        (earlier / name).write_text("x")
    prepare_out(earlier, overwrite=False)
    assert not (earlier / "viewer.png").exists() and not (earlier / "demo.json").exists()
    assert main(["demo", "--out", str(tmp_path / "x"), "--frames", "1"]) == 2


def test_demo_goes_on_without_the_viewer(tmp_path: Path) -> None:
    """An Open3D that cannot be imported: a note, no viewer.png, the rest of the demo and exit status 0."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "open3d.py").write_text('raise ImportError("no Open3D in this test")\n')
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "slam", "demo", "--out", str(out), "--quiet", "--frames", "10"],
                       capture_output=True, text=True, cwd=REPO, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(fake)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "note: no viewer screenshot" in r.stdout and "no Open3D in this test" in r.stdout
    assert not (out / "viewer.png").exists() and (out / "report.html").is_file()
    assert json.loads((out / "demo.json").read_text())["screenshot"]["written"] is False
