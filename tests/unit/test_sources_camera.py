"""Live camera source, tested without a camera: a 20 Hz video paced in real time by the grabber."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from slam.errors import InputError
from slam.sources.camera import LiveSource
from slam.sources.open import open_source

W, H = 160, 120


def write_video(path, n: int, fps: float = 20.0):
    """An MJPG/avi clip whose frame i shows i in binary as 8 bright or dark 20x20 blocks."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    for i in range(n):
        img = np.full((H, W, 3), 40, np.uint8)
        for b in range(8):
            if i >> b & 1:
                img[40:60, b * 20:(b + 1) * 20] = 230
        w.write(img)
    w.release()
    return path


def decode(img: np.ndarray) -> int:
    gray = img.mean(axis=2)
    return sum(1 << b for b in range(8) if gray[40:60, b * 20 + 5:(b + 1) * 20 - 5].mean() > 128)


def write_calibration(path):
    path.write_text(f"width: {W}\nheight: {H}\nfx: 100.0\nfy: 100.0\ncx: 80.0\ncy: 60.0\n")
    return path


def test_slow_consumer_gets_the_newest_frame_and_drops_are_counted(tmp_path):
    video = write_video(tmp_path / "cam.avi", 24, fps=20.0)   # 1.2 s of "camera"
    src = LiveSource(str(video), write_calibration(tmp_path / "cam.yaml"), realtime=True)
    delivered = []
    it = iter(src)
    while True:
        newest_before = src.latest_index     # what the grabber had when we asked
        frame = next(it, None)
        if frame is None:
            break
        # Never stale: the frame handed over is at least as new as the newest one grabbed at request time.
        assert frame.index >= newest_before
        assert decode(frame.left) == frame.index  # the image really is frame `index` of the stream
        delivered.append(frame)
        time.sleep(0.12)                      # a consumer slower than 20 Hz
    indices = [f.index for f in delivered]
    assert np.all(np.diff(indices) > 0)
    assert np.all(np.diff([f.timestamp for f in delivered]) > 0)
    assert src.frames_grabbed == 24 and indices[-1] == 23   # the last frame is handed over, not lost
    assert src.dropped_frames == 24 - len(delivered) > 0
    assert src.stop() and not src.running
    print(f"delivered {len(delivered)}, dropped {src.dropped_frames} of {src.frames_grabbed}")


def test_stop_ends_grabber_and_iteration(tmp_path):
    video = write_video(tmp_path / "long.avi", 200, fps=20.0)   # 10 s, far longer than the test
    src = open_source(str(video), {"calibration": str(write_calibration(tmp_path / "cam.yaml")), "realtime": True})
    it = iter(src)
    next(it)
    next(it)
    assert src.running
    t0 = time.monotonic()
    assert src.stop() is True                 # the thread ended within stop()'s 0.9 s join
    elapsed = time.monotonic() - t0
    assert not src.running and next(it, None) is None
    print(f"stop() returned after {elapsed * 1e3:.1f} ms")


def test_live_source_needs_calibration_and_a_device(tmp_path):
    video = write_video(tmp_path / "cam.avi", 2)
    with pytest.raises(InputError, match="no calibration"):
        LiveSource(str(video), None)
    with pytest.raises(InputError, match=r"camera:abc"):
        open_source("camera:abc", {"calibration": str(write_calibration(tmp_path / "cam.yaml"))})
    with pytest.raises(InputError, match=r"cannot open the camera"):
        LiveSource(str(tmp_path / "absent.avi"), write_calibration(tmp_path / "cam.yaml"))
