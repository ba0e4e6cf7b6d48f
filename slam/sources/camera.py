"""Live camera or stream source: a grabber thread keeps only the newest frame, counting drops."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from slam.errors import InputError
from slam.sources.base import Calibration, CameraModel, Frame, Source
from slam.sources.common import ProblemLog, base_info
from slam.sources.video import resolve_calibration, undistorter

STOP_TIMEOUT_S = 0.9  # stop() must return within 1 s even when a read blocks


class LiveSource(Source):
    """Frames of `cv2.VideoCapture(device)` (camera index, stream URL, or a file for testing).

    A grabber thread reads continuously and keeps only the newest frame, so a slow consumer always
    gets the latest image; frames overwritten before being handed over are counted in
    `dropped_frames`. Timestamps come from time.monotonic() when the frame was read. With
    `realtime=True` the grabber paces reads at the capture's own fps (a file then behaves like a camera).
    """

    kind = "camera"
    live = True

    def __init__(self, device: int | str, calibration: str | Path | CameraModel | None,
                 realtime: bool = False, rate_hz: float | None = None, alpha: float = 0.0) -> None:
        self.device = device
        name = f"camera:{device}" if isinstance(device, int) else str(device)
        raw, extras = resolve_calibration(calibration, name)
        self._cap = cv2.VideoCapture(device)
        if not self._cap.isOpened():
            raise InputError("cannot open the camera or stream (is it connected, is the URL right?)", name)
        w = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w and h and (w, h) != (raw.width, raw.height):  # some devices report 0 until the first read
            self._cap.release()
            raise InputError(f"the device delivers {w}x{h} but the calibration is for "
                             f"{raw.width}x{raw.height}", name)
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.realtime = realtime
        self._period = 1.0 / fps if realtime and fps > 0 else 0.0
        cam, self._remap = undistorter(raw, alpha)
        self.calibration = Calibration(camera=cam, rate_hz=float(rate_hz or extras.get("rate_hz") or fps or 30.0),
                                       raw_cameras=[raw])
        self.log = ProblemLog(strict=False)
        self.frames_grabbed = 0
        self.frames_delivered = 0
        self.dropped_frames = 0
        self._slot: tuple[int, float, np.ndarray] | None = None  # newest (seq, t, image) not yet taken
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._error: Exception | None = None
        self._name = name
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the grabber thread (iteration starts it too)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._grab_loop, name="slam-grabber", daemon=True)
            self._thread.start()

    def _grab_loop(self) -> None:
        cap = self._cap
        t0 = time.monotonic()
        try:
            seq = 0
            while not self._stop.is_set():
                if self._period:
                    # Stop interrupts the pacing wait at once.
                    if self._stop.wait(max(0.0, t0 + seq * self._period - time.monotonic())):
                        break
                ok, img = cap.read()
                t = time.monotonic()
                if not ok:
                    break
                with self._cond:
                    if self._slot is not None:
                        self.dropped_frames += 1
                    self._slot = (seq, t, img)
                    self.frames_grabbed = seq + 1
                    self._cond.notify_all()
                seq += 1
        except Exception as exc:  # handed to the consumer, which raises it
            self._error = exc
        finally:
            cap.release()  # released here, by the only thread that reads it
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        while True:
            with self._cond:
                while self._slot is None and not self._ended and not self._stop.is_set():
                    self._cond.wait()
                if self._error is not None and self._slot is None:
                    raise InputError(f"reading failed: {self._error}", self._name)
                if self._stop.is_set() or self._slot is None:
                    return
                seq, t, img = self._slot
                self._slot = None
                self.frames_delivered += 1
            yield Frame(index=seq, timestamp=t, left=self._remap(img))

    @property
    def latest_index(self) -> int:
        """Sequence number of the newest frame read so far (-1 before the first)."""
        return self.frames_grabbed - 1

    @property
    def running(self) -> bool:
        """True while the grabber thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> bool:
        """Stop grabbing and wake the consumer; returns within 1 s, True when the thread has ended."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is None:
            self._cap.release()
            return True
        self._thread.join(STOP_TIMEOUT_S)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Same as stop()."""
        self.stop()

    def info(self) -> dict[str, Any]:
        """Description for `slam info` (a live source has no frame count)."""
        return base_info(self.kind, self.calibration, None, 0, self.log, sensors=["camera"],
                         device=str(self.device))
