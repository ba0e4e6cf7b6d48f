"""open_source: detection by content, settings, synthetic delegation; and `slam info`."""

from __future__ import annotations

import json
import sys
import types

import cv2
import numpy as np
import pytest

from slam.cli import main
from slam.errors import InputError
from slam.sources.open import detect_kind, open_source


def test_detects_each_kind_by_content(tmp_path, shared_data):
    euroc = shared_data / "euroc" / "V1_01_easy_head"
    assert detect_kind(str(euroc)) == detect_kind(str(euroc / "mav0")) == "euroc"
    assert detect_kind(str(shared_data / "tum" / "fr3_long_office_household_1hz")) == "tum"
    assert detect_kind(str(shared_data / "kitti" / "07_head")) == "kitti"
    # Image folders: KITTI's image_0 alone is just images.
    assert detect_kind(str(shared_data / "kitti" / "07_head" / "image_0")) == "images"
    (tmp_path / "clip.MP4").write_bytes(b"")
    assert detect_kind(str(tmp_path / "clip.MP4")) == "video"
    assert detect_kind("camera:0") == "camera" and detect_kind("rtsp://10.0.0.2/live") == "stream"
    assert detect_kind("synthetic:corridor") == "synthetic"


def test_bad_specs_and_settings_are_clear_errors(tmp_path, shared_data):
    with pytest.raises(InputError, match=r"nowhere: no such file or folder"):
        open_source(str(tmp_path / "nowhere"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"notes\.txt: not a video file"):
        open_source(str(tmp_path / "notes.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: folder is not a dataset"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(InputError, match=r"unknown source setting 'calib'"):
        open_source(str(shared_data / "kitti" / "07_head"), {"calib": "x.yaml"})


def test_stereo_argument(shared_data):
    euroc = str(shared_data / "euroc" / "V1_01_easy_head")
    with pytest.warns(UserWarning):
        assert open_source(euroc).calibration.stereo
    mono = open_source(euroc, stereo=False)
    assert not mono.calibration.stereo and next(iter(mono)).right is None
    # Mono keeps cam0's frame: the delivered camera is only undistorted, not rotated.
    np.testing.assert_array_equal(mono.calibration.T_body_cam[:3, :3], mono.T_body_cam0_raw[:3, :3])
    with pytest.raises(InputError, match="stereo requested"):
        open_source(str(shared_data / "tum" / "fr3_long_office_household_1hz"), stereo=True)


def test_synthetic_is_delegated_lazily(monkeypatch):
    calls = []
    fake = types.ModuleType("slam.synthetic.source")
    fake.SyntheticSource = lambda scene, **kw: calls.append((scene, kw)) or "source"
    monkeypatch.setitem(sys.modules, "slam.synthetic.source", fake)
    assert open_source("synthetic:corridor", {"sensor": "rgbd", "seed": 7}) == "source"
    assert open_source("synthetic:loop", stereo=True) == "source"
    assert calls == [("corridor", {"sensor": "rgbd", "seed": 7}), ("loop", {"sensor": "stereo"})]


def run_info(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["info", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_info_json_on_the_real_datasets(capsys, shared_data):
    rc, out, _ = run_info(capsys, str(shared_data / "euroc" / "V1_01_easy_head"), "--json")
    info = json.loads(out)
    assert rc == 0 and info["kind"] == "euroc" and info["frames"] == 95 and info["stereo"] is True
    assert info["rate_hz"] == 20.0 and info["resolution"] == [752, 480] and info["ground_truth"] == 0
    assert len(info["missing_files"]) == 4 and all("/cam1/data/" in m for m in info["missing_files"])
    assert {"fx", "fy", "cx", "cy"} <= set(info["calibration"]) and info["depth"] is False
    assert info["calibration"]["raw_cameras"][0]["fx"] == 458.654
    rc, out, _ = run_info(capsys, str(shared_data / "kitti" / "07_head"), "--json")
    info = json.loads(out)
    assert (info["kind"], info["frames"], info["ground_truth"], info["calibration"]["fx"]) == ("kitti", 160, 160, 707.0912)
    rc, out, _ = run_info(capsys, str(shared_data / "tum" / "fr3_long_office_household_1hz"), "--json")
    info = json.loads(out)
    assert (info["kind"], info["frames"], info["ground_truth"], info["depth"]) == ("tum", 17, 16, False)
    rc, out, _ = run_info(capsys, str(shared_data / "euroc" / "V1_01_easy_head"))
    assert rc == 0 and "missing files 4" in out and "baseline 0.1101 m" in out


def test_info_reports_problems_instead_of_failing(capsys, tmp_path):
    folder = tmp_path / "scene_fr3"
    (folder / "rgb").mkdir(parents=True)
    for t in (1.0, 2.0):
        cv2.imwrite(str(folder / "rgb" / f"{t}.png"), np.zeros((480, 640, 3), np.uint8))
    (folder / "rgb.txt").write_text("2.0 rgb/2.0.png\n1.0 rgb/1.0.png\n1.5 rgb/1.5.png\n")
    rc, out, _ = run_info(capsys, str(folder), "--json")
    info = json.loads(out)
    assert rc == 0 and info["frames"] == 2
    assert any("rgb.txt:2: timestamp 1.0 is out of order" in p for p in info["problems"])
    assert info["missing_files"] == [str(folder / "rgb" / "1.5.png")]
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20, (64, 48))
    w.write(np.zeros((48, 64, 3), np.uint8))
    w.release()
    rc, out, err = run_info(capsys, str(video))
    assert rc == 2 and "clip.avi: this source has no calibration" in err
