"""Live input: tracking slower than the camera takes the newest frame and drops the rest (no queue grows),
the rate and drops are reported, progress is shown on a terminal, and the run folder is complete."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from slam.config import load_config
from slam.progress import ProgressLine
from slam.sources.base import Calibration, CameraModel, Frame, Source
from slam.sources.open import open_source
from slam.system import System

REPO = Path(__file__).resolve().parents[2]
W, H = 320, 240


class FakeCamera(Source):
    """A live source whose generator produces frames at `rate_hz` whatever the consumer does."""

    kind, live = "fake-camera", True

    def __init__(self, n: int, rate_hz: float) -> None:
        self.n, self.period = n, 1.0 / rate_hz
        self.calibration = Calibration(CameraModel(W, H, 250.0, 250.0, W / 2, H / 2), rate_hz)
        self.produced = -1  # index of the newest frame produced so far
        rng = np.random.default_rng(0)
        tex = cv2.GaussianBlur(rng.uniform(0, 255, (H + 60, W + 200)), (0, 0), 2.0)
        self.texture = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)

    def __iter__(self) -> Iterator[Frame]:
        t0 = time.monotonic()
        for i in range(self.n):
            time.sleep(max(0.0, t0 + i * self.period - time.monotonic()))
            self.produced = i
            x = int(i * 200 / self.n)  # the camera pans across the texture
            yield Frame(index=i, timestamp=time.monotonic(), left=self.texture[30:30 + H, x:x + W].copy())


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_slow_tracking_drops_frames_instead_of_queueing(tmp_path: Path) -> None:
    cam = FakeCamera(n=150, rate_hz=150.0)  # one second of frames, faster than tracking below
    cfg = load_config(REPO / "configs" / "webcam.yaml")
    tty = FakeTTY()
    system = System(cfg, cam, "fake", tmp_path, progress=ProgressLine(tty, tty_interval_s=0.0))
    lags, handed = [], []
    process = system.tracker.process

    def slow_process(frame: Frame):
        assert threading.current_thread() is threading.main_thread()
        lags.append(cam.produced - frame.index)  # frames produced after this one before tracking took it
        handed.append(frame.index)
        time.sleep(0.03)  # tracking at most ~33 frames/s
        return process(frame)

    system.tracker.process = slow_process
    rep = system.run().report
    live = rep["live"]
    print(f"handed over {len(handed)} of 150, dropped {live['frames_dropped']}, camera {live['input_fps']:.0f} "
          f"frames/s, lag max {max(lags)}")
    assert live["frames_received"] == 150 and rep["frames"] == len(handed)
    assert live["frames_dropped"] == 150 - len(handed) > 75    # most frames had to be skipped
    assert 100 < live["input_fps"] < 200
    assert np.all(np.diff(handed) > 0) and handed[-1] == 149    # in order, and the last one is not lost
    # Newest frame only: tracking never sees a frame older than the one the reader held when it
    # asked (a queue of depth d would give lags of about d, rising to d as it fills).
    assert max(lags) <= 1
    for name in ("trajectory.tum", "keyframes.tum", "map.ply", "loops.json", "report.json"):
        assert (tmp_path / name).is_file()
    shown = tty.getvalue()
    assert "camera" in shown and "dropped" in shown and "\n" not in shown and shown.endswith("\r\x1b[K")


def test_interrupting_a_live_run_writes_the_run_folder(tmp_path: Path) -> None:
    """Ctrl-C during an endless live source: the run ends at once and the folder is complete."""
    cam = FakeCamera(n=10**9, rate_hz=100.0)
    system = System(load_config(REPO / "configs" / "webcam.yaml"), cam, "endless", tmp_path, progress=False)
    process, calls = system.tracker.process, []

    def interrupted_after_20(frame: Frame):
        calls.append(frame.index)
        if len(calls) == 20:
            raise KeyboardInterrupt  # what Ctrl-C (or SIGTERM, turned into it by slam run) raises
        return process(frame)

    system.tracker.process = interrupted_after_20
    t0 = time.monotonic()
    res = system.run()
    assert res.interrupted and time.monotonic() - t0 < 30
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["interrupted"] and rep["frames"] == 19 and rep["live"]["frames_received"] >= 20
    for name in ("trajectory.tum", "keyframes.tum", "map.ply", "loops.json"):
        assert (tmp_path / name).is_file()


def test_recorded_source_is_never_dropped(tmp_path: Path) -> None:
    """A recorded source (live False) is read ahead through the bounded queue and nothing is skipped."""
    cam = FakeCamera(n=60, rate_hz=600.0)
    cam.live = False
    system = System(load_config(REPO / "configs" / "webcam.yaml"), cam, "recorded", tmp_path, progress=False)
    process = system.tracker.process
    system.tracker.process = lambda f: (time.sleep(0.01), process(f))[1]
    rep = system.run().report
    assert rep["frames"] == 60 and "live" not in rep


def test_webcam_config_runs_a_stream(tmp_path: Path) -> None:
    """configs/webcam.yaml on a video played as a live camera (the LiveSource a camera:N opens)."""
    video = tmp_path / "cam.avi"
    cam = FakeCamera(n=40, rate_hz=1000.0)
    wr = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 40.0, (W, H))
    for f in cam:
        wr.write(cv2.cvtColor(f.left, cv2.COLOR_GRAY2BGR))
    wr.release()
    cal = tmp_path / "cam.yaml"
    cal.write_text(f"width: {W}\nheight: {H}\nfx: 250.0\nfy: 250.0\ncx: {W / 2}\ncy: {H / 2}\n")
    cfg = load_config(REPO / "configs" / "webcam.yaml")
    src = open_source(str(video), {"calibration": str(cal), "realtime": True})
    assert src.live
    try:
        rep = System(cfg, src, str(video), tmp_path / "run", progress=False).run().report
    finally:
        src.close()
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["live"] == rep["live"] and rep["live"]["frames_received"] == 40
    assert rep["frames"] + rep["live"]["frames_dropped"] == 40 and rep["sensor"] == "mono"
