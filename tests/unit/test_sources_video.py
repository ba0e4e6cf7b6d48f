"""Video file and image folder sources, and the calibration YAML they require."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.errors import FormatError, InputError
from slam.sources.open import open_source
from slam.sources.video import ImageFolderSource, VideoSource, load_calibration

W, H = 160, 120


def encode(i: int) -> np.ndarray:
    """A BGR frame whose 8 blocks of 20x20 pixels spell i in binary (robust to MJPG)."""
    img = np.full((H, W, 3), 40, np.uint8)
    for b in range(8):
        if i >> b & 1:
            img[40:60, b * 20:(b + 1) * 20] = 230
    return img


def decode(img: np.ndarray) -> int:
    gray = img if img.ndim == 2 else img.mean(axis=2)
    return sum(1 << b for b in range(8) if gray[40:60, b * 20 + 5:(b + 1) * 20 - 5].mean() > 128)


def write_video(path: Path, n: int, fps: float = 20.0) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert w.isOpened()
    for i in range(n):
        w.write(encode(i))
    w.release()
    return path


def write_calibration(path: Path, extra: str = "") -> Path:
    path.write_text(f"width: {W}\nheight: {H}\nfx: 100.0\nfy: 101.0\ncx: 80.0\ncy: 60.0\n{extra}")
    return path


def test_video_frames_timestamps_from_the_container(tmp_path):
    video = write_video(tmp_path / "clip.avi", 12)
    src = open_source(str(video), {"calibration": str(write_calibration(tmp_path / "cam.yaml"))})
    assert isinstance(src, VideoSource) and len(src) == 12 and src.calibration.rate_hz == 20.0
    frames = list(src)
    assert [decode(f.left) for f in frames] == list(range(12))
    np.testing.assert_allclose([f.timestamp for f in frames], np.arange(12) * 0.05, atol=1e-6)
    assert frames[0].left.shape == (H, W, 3) and frames[0].left.dtype == np.uint8
    src2 = VideoSource(video, write_calibration(tmp_path / "cam.yaml"), rate_hz=10.0)
    np.testing.assert_allclose([f.timestamp for f in src2], np.arange(12) * 0.1, atol=1e-12)


def test_video_without_calibration_is_an_error_naming_the_file(tmp_path):
    video = write_video(tmp_path / "clip.avi", 2)
    with pytest.raises(InputError, match=r"clip\.avi: this source has no calibration"):
        open_source(str(video))
    bad = write_calibration(tmp_path / "small.yaml").read_text().replace(f"width: {W}", "width: 640")
    (tmp_path / "small.yaml").write_text(bad)
    with pytest.raises(InputError, match=r"clip\.avi: video frames are 160x120 but the calibration is for 640x120"):
        VideoSource(video, tmp_path / "small.yaml")


def test_calibration_file_formats_and_errors(tmp_path, shared_data):
    cam, extras = load_calibration(write_calibration(tmp_path / "a.yaml", "distortion: [0.1, -0.2, 0.001, 0.002]\nrate_hz: 15\n"))
    assert cam.distortion_model == "radtan" and extras == {"rate_hz": 15.0}
    np.testing.assert_array_equal(cam.distortion, [0.1, -0.2, 0.001, 0.002])
    asl, _ = load_calibration(shared_data / "euroc" / "V1_01_easy_head" / "mav0" / "cam0" / "sensor.yaml")
    assert (asl.fx, asl.fy, asl.cx, asl.cy, asl.width) == (458.654, 457.296, 367.215, 248.375, 752)
    with pytest.raises(FormatError, match=r"b\.yaml: unknown key 'focal'"):
        load_calibration(write_calibration(tmp_path / "b.yaml", "focal: 3\n"))
    (tmp_path / "c.yaml").write_text("width: 10\nheight: 10\nfy: 1\ncx: 1\ncy: 1\n")
    with pytest.raises(FormatError, match=r"c\.yaml: missing key 'fx'"):
        load_calibration(tmp_path / "c.yaml")
    with pytest.raises(FormatError, match=r"d\.yaml: distortion_model equidistant takes 4"):
        load_calibration(write_calibration(tmp_path / "d.yaml", "distortion_model: equidistant\ndistortion: [1, 2]\n"))
    (tmp_path / "e.yaml").write_text("width: [1\n")
    with pytest.raises(FormatError, match=r"e\.yaml:\d: invalid YAML"):
        load_calibration(tmp_path / "e.yaml")


def test_image_folder_order_rate_and_numeric_names(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in (1, 2, 10):  # natural order, not 1, 10, 2
        cv2.imwrite(str(folder / f"frame{i}.png"), encode(i)[:, :, 0])
    calib = write_calibration(tmp_path / "cam.yaml")
    src = open_source(str(folder), {"calibration": str(calib), "rate_hz": 4.0})
    assert isinstance(src, ImageFolderSource)
    frames = list(src)
    assert [decode(f.left) for f in frames] == [1, 2, 10] and frames[0].left.ndim == 2
    assert [f.timestamp for f in frames] == [0.0, 0.25, 0.5]
    with pytest.raises(InputError, match="rate_hz"):
        ImageFolderSource(folder, calib)
    stamped = tmp_path / "stamped"
    stamped.mkdir()
    for ns in (1403715273262142976, 1403715273312143104):
        cv2.imwrite(str(stamped / f"{ns}.png"), encode(0))
    src = ImageFolderSource(stamped, calib)
    np.testing.assert_allclose(src.timestamps, [1403715273.262142976, 1403715273.312143104], rtol=0, atol=1e-6)
    assert src.calibration.rate_hz == pytest.approx(1 / 0.050000128, rel=1e-5)  # float64 s: 0.24 us steps
