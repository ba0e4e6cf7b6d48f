"""Bad input to the file sources: each a clear error (or warning) naming the file and line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.errors import FormatError, InputError
from slam.sources.common import SourceWarning
from slam.sources.euroc import EurocSource
from slam.sources.kitti import KittiSource
from slam.sources.tum import TumSource
from slam.sources.video import ImageFolderSource

STAMPS = [1403715273262142976, 1403715273312143104, 1403715273362142976]


@pytest.fixture
def euroc(tmp_path, shared_data) -> Path:
    """A mono ASL folder in tmp_path: the real cam0 sensor.yaml and 3 real images (copied, small)."""
    src = shared_data / "euroc" / "V1_01_easy_head" / "mav0" / "cam0"
    cam = tmp_path / "mav0" / "cam0"
    (cam / "data").mkdir(parents=True)
    shutil.copy(src / "sensor.yaml", cam / "sensor.yaml")
    for s in STAMPS:
        os.symlink(src / "data" / f"{s}.png", cam / "data" / f"{s}.png")
    write_csv(cam / "data.csv", [f"{s},{s}.png" for s in STAMPS])
    return tmp_path


def write_csv(path: Path, rows: list[str]) -> None:
    path.write_text("#timestamp [ns],filename\n" + "\n".join(rows) + "\n")


def test_missing_folders_are_named(tmp_path):
    for cls in (EurocSource, TumSource, KittiSource):
        with pytest.raises(InputError, match=r"absent: no such folder"):
            cls(tmp_path / "absent")
    with pytest.raises(InputError, match=r"not an EuRoC/ASL dataset"):
        EurocSource(tmp_path)


def test_csv_with_wrong_columns(euroc):
    csv = euroc / "mav0" / "cam0" / "data.csv"
    write_csv(csv, [f"{STAMPS[0]},{STAMPS[0]}.png", f"{STAMPS[1]},{STAMPS[1]}.png,extra"])
    with pytest.raises(FormatError, match=r"cam0/data\.csv:3: expected 2 columns \(timestamp \[ns\], filename\), found 3"):
        EurocSource(euroc)
    write_csv(csv, [f"{STAMPS[0]},{STAMPS[0]}.png", f"1.4e18,{STAMPS[1]}.png"])
    with pytest.raises(FormatError, match=r"data\.csv:3: expected an integer \(timestamp \[ns\]\), found '1\.4e18'"):
        EurocSource(euroc)
    write_csv(csv, [f"{s},{s}.png" for s in STAMPS])
    imu = euroc / "mav0" / "imu0"
    imu.mkdir()
    (imu / "data.csv").write_text("#t,w,a\n1,0,0,0,0,0,9.81\n2,0,0,0,0,9.81\n")
    with pytest.raises(FormatError, match=r"imu0/data\.csv:3: expected 7 columns"):
        EurocSource(euroc).imu


def test_timestamps_out_of_order_or_duplicated(euroc):
    csv = euroc / "mav0" / "cam0" / "data.csv"
    a, b, c = STAMPS
    write_csv(csv, [f"{a},{a}.png", f"{c},{c}.png", f"{b},{b}.png"])
    with pytest.raises(FormatError, match=rf"data\.csv:4: timestamp {b} is out of order"):
        EurocSource(euroc)
    with pytest.warns(SourceWarning, match="out of order"):
        src = EurocSource(euroc, strict=False)   # what `slam info` does: report, sort, go on
    assert np.all(np.diff(src.timestamps) > 0) and len(src) == 3 and len(src.info()["problems"]) == 1
    write_csv(csv, [f"{a},{a}.png", f"{a},{b}.png", f"{c},{c}.png"])
    with pytest.raises(FormatError, match=rf"data\.csv:3: timestamp {a} is duplicated"):
        EurocSource(euroc)
    times = euroc / "kitti"
    (times / "image_0").mkdir(parents=True)
    (times / "times.txt").write_text("0.0\n0.1\n0.1\n")
    with pytest.raises(FormatError, match=r"times\.txt:3: timestamp 0\.1 is duplicated"):
        KittiSource(times)


def test_unreadable_and_truncated_images_name_the_file(euroc):
    data = euroc / "mav0" / "cam0" / "data"
    good = (data / f"{STAMPS[0]}.png").read_bytes()
    for f in data.iterdir():
        f.unlink()
    (data / f"{STAMPS[0]}.png").write_bytes(good)
    (data / f"{STAMPS[1]}.png").write_bytes(good[: len(good) // 2])
    (data / f"{STAMPS[2]}.png").write_bytes(b"not an image at all")
    src = EurocSource(euroc)
    assert src.frame(0).left.shape == (480, 752)
    with pytest.raises(FormatError, match=rf"{STAMPS[1]}\.png: truncated PNG"):
        src.frame(1)
    with pytest.raises(FormatError, match=rf"{STAMPS[2]}\.png: "):
        src.frame(2)
    folder = euroc / "jpgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((480, 752), 128, np.uint8))
    full = (folder / "a.jpg").read_bytes()
    (folder / "b.jpg").write_bytes(full[: len(full) // 2])
    src = ImageFolderSource(folder, euroc / "mav0" / "cam0" / "sensor.yaml", rate_hz=20)
    it = iter(src)
    next(it)
    with pytest.raises(FormatError, match=r"b\.jpg: truncated JPEG"):
        next(it)


def test_image_of_the_wrong_size(euroc):
    data = euroc / "mav0" / "cam0" / "data"
    (data / f"{STAMPS[0]}.png").unlink()
    cv2.imwrite(str(data / f"{STAMPS[0]}.png"), np.zeros((240, 376), np.uint8))
    with pytest.raises(FormatError, match=r"\.png: image is 376x240, expected 752x480"):
        next(iter(EurocSource(euroc)))


def test_missing_images_are_skipped_and_listed(euroc):
    (euroc / "mav0" / "cam0" / "data" / f"{STAMPS[1]}.png").unlink()
    with pytest.warns(SourceWarning, match=r"cam0/data\.csv: 1 listed file"):
        src = EurocSource(euroc)
    assert len(src) == 2 and src.info()["missing_files"] == [str(euroc / "mav0/cam0/data" / f"{STAMPS[1]}.png")]
    assert [f.timestamp for f in src] == [STAMPS[0] * 1e-9, STAMPS[2] * 1e-9]


def test_ground_truth_csv_with_wrong_columns(euroc):
    gt = euroc / "mav0" / "state_groundtruth_estimate0"
    gt.mkdir()
    (gt / "data.csv").write_text(f"#t,p,q\n{STAMPS[0]},1,2,3,1,0,0\n")
    with pytest.raises(FormatError, match=r"state_groundtruth_estimate0/data\.csv:2: expected 8 to 64 columns"):
        EurocSource(euroc)
    (gt / "data.csv").write_text(f"#t,p,q\n{STAMPS[0]},1,2,x,1,0,0,0\n")
    with pytest.raises(FormatError, match=r"data\.csv:2: expected numbers"):
        EurocSource(euroc)
