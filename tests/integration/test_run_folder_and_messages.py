"""What a user sees around a run: the output folder (no stale files, no silent mixing), warnings as
one clean line, and a monocular run that never initializes saying why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slam.cli import main
from slam.errors import InputError
from slam.run_folder import RUN_FILES, check_run_folder, clear_run_files
from slam.sources.open import open_source
from slam.synthetic import write_sequence

REPO = Path(__file__).resolve().parents[2]


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_run_folder_rules(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    for name in RUN_FILES:
        (earlier / name).write_text("old")
    (earlier / "notes.txt").write_text("mine")
    check_run_folder(earlier)  # a run folder (it has a report.json), even with a file of the user's
    clear_run_files(earlier)
    assert sorted(p.name for p in earlier.iterdir()) == ["notes.txt"]
    only_ours = tmp_path / "partial"  # an interrupted writer's leftovers: still a run folder
    only_ours.mkdir()
    (only_ours / "trajectory.tum").write_text("old")
    check_run_folder(only_ours)
    foreign = tmp_path / "dataset"
    foreign.mkdir()
    (foreign / "rgb.txt").write_text("x")
    with pytest.raises(InputError, match=r"dataset: the run folder is not empty.*rgb\.txt.*--overwrite"):
        check_run_folder(foreign)
    check_run_folder(foreign, overwrite=True)
    check_run_folder(tmp_path / "new")  # not there yet
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        check_run_folder(tmp_path / "file", overwrite=True)


def test_run_into_an_earlier_run_folder_leaves_no_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_sequence("room_loop", "tum", tmp_path / "tum", frames=8)
    out = tmp_path / "run"
    args = ["run", str(REPO / "configs" / "tum_rgbd.yaml"), "--source", str(data), "--out", str(out), "--quiet",
            "--trajectory-format", "kitti"]
    assert main(args) == 0
    first = {p.name for p in out.iterdir()}
    assert {"groundtruth.tum", "groundtruth.kitti", "trajectory.png", "error.png"} <= first and "ate" in _report(out)
    assert first <= set(RUN_FILES), first - set(RUN_FILES)  # RUN_FILES names everything a run writes
    (out / "notes.txt").write_text("mine")
    (data / "groundtruth.txt").unlink()  # the next source has no ground truth
    assert main(args) == 0
    names = {p.name for p in out.iterdir()}
    assert not names & {"groundtruth.tum", "groundtruth.kitti", "groundtruth_times.txt", "trajectory.png",
                        "error.png"}  # the earlier run's are gone
    assert {"trajectory.tum", "trajectory.kitti", "report.json", "report.html", "notes.txt"} <= names
    assert "ate" not in _report(out)


def test_run_refuses_a_folder_that_holds_no_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_sequence("room_loop", "tum", tmp_path / "tum", frames=3)
    before = sorted(p.name for p in data.iterdir())
    args = ["run", str(REPO / "configs" / "tum_rgbd.yaml"), "--source", str(data), "--out", str(data), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{data}: the run folder is not empty" in err and "--overwrite" in err
    assert sorted(p.name for p in data.iterdir()) == before  # untouched
    assert main(args + ["--overwrite"]) == 0
    assert {p.name for p in data.iterdir()} >= set(before) | {"trajectory.tum", "report.json"}


def test_simulate_refuses_a_folder_holding_another_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "seq"
    assert main(["simulate", "room_loop", "--format", "tum", "--out", str(out), "--frames", "2"]) == 0
    tum = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert main(["simulate", "room_loop", "--format", "euroc", "--out", str(out), "--frames", "2"]) == 2
    err = capsys.readouterr().err
    assert f"{out}: the output folder is not empty" in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == tum  # nothing written, nothing mixed
    (out / "README.txt").write_text("mine")
    assert main(["simulate", "room_loop", "--format", "euroc", "--out", str(out), "--frames", "2",
                 "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "mav0"]  # the TUM sequence is gone
    src = open_source(str(out))
    assert src.kind.startswith("euroc") and len(src) == 2
    assert main(["simulate", "no_such_scene", "--out", str(out), "--overwrite"]) == 2
    assert (out / "mav0").is_dir()  # a refused command deletes nothing


@pytest.mark.filterwarnings("always")
def test_run_prints_dataset_warnings_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_sequence("room_loop", "tum", tmp_path / "tum", frames=5)
    gt = (data / "groundtruth.txt").read_text().splitlines(keepends=True)
    (data / "groundtruth.txt").write_text("".join(gt[:5] + gt[6:]))  # frame 2 loses its ground truth
    assert main(["run", str(REPO / "configs" / "tum_rgbd.yaml"), "--source", str(data), "--out",
                 str(tmp_path / "run"), "--quiet"]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "warning" in ln]
    assert lines and lines[0].startswith("slam run: warning: ") and "groundtruth.txt" in lines[0]
    assert "SourceWarning" not in err and ".py:" not in err and "self." not in err  # no source path, no code line


def _still_camera(tmp_path: Path, frames: int = 8) -> Path:
    """A EuRoC folder whose camera never moves: every image is a copy of the first."""
    data = write_sequence("room_loop", "euroc", tmp_path / "still", frames=frames)
    for cam in ("cam0", "cam1"):
        imgs = sorted((data / "mav0" / cam / "data").iterdir())
        for f in imgs[1:]:
            shutil.copyfile(imgs[0], f)
    return data


def test_mono_run_that_never_initializes_says_why(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _still_camera(tmp_path)
    out = tmp_path / "run"
    assert main(["run", str(REPO / "configs" / "euroc_mono.yaml"), "--source", str(data), "--out", str(out),
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "8 frames (8 lost)" in captured.out
    assert "never initialized: too little motion (7 frames)" in captured.err
    assert "median flow 0.0 px" in captured.err and "init_min_flow" in captured.err
    init = _report(out)["initialization"]
    assert init["rejections"] == {"too little motion": 7}  # frame 0 is the reference, 1..7 are refused
    assert init["last_rejection"]["reason"] == "too little motion"


def test_real_euroc_head_mono_says_why(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The reported case: the drone stands still for the 95 frames of the excerpt."""
    out = tmp_path / "run"
    assert main(["run", str(REPO / "configs" / "euroc_mono.yaml"), "--source",
                 str(shared_data / "euroc" / "V1_01_easy_head"), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    rep = _report(out)
    assert rep["keyframes"] == 0 and "never initialized" in err and "too little motion" in err
    assert rep["initialization"]["rejections"]["too little motion"] > 50
