"""Raw (uncalibrated, distorted) frames of a video, an image folder, a camera or a stream.

What `slam calibrate` reads: the sources of slam/sources/video.py and camera.py need the very
calibration that is being made, so this reader delivers the images as recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from slam.errors import InputError
from slam.sources.common import image_files
from slam.sources.open import detect_kind


@dataclass
class RawFrames:
    """Frames of one device or file: kind, image size, frame rate and count where known."""

    spec: str
    kind: str                      # video, images, camera or stream
    size: tuple[int, int]          # (width, height)
    rate_hz: float | None
    count: int | None              # None for live input
    _files: list[Path] | None = None

    @property
    def live(self) -> bool:
        """True for a camera or a stream (no count; read for a duration instead)."""
        return self.kind in ("camera", "stream")

    def frames(self, step: int = 1, duration_s: float | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(index, image) of every step-th frame; live input stops after duration_s seconds."""
        if self._files is not None:
            for i in range(0, len(self._files), step):
                img = cv2.imread(str(self._files[i]), cv2.IMREAD_UNCHANGED)
                if img is None:
                    raise InputError("cannot read the image", self._files[i])
                if (img.shape[1], img.shape[0]) != self.size:
                    raise InputError(f"image is {img.shape[1]}x{img.shape[0]}, the first was "
                                     f"{self.size[0]}x{self.size[1]}", self._files[i])
                yield i, img
            return
        cap = _capture(self.spec, self.kind)
        t_end = None if duration_s is None else time.monotonic() + duration_s
        try:
            i = 0
            while t_end is None or time.monotonic() < t_end:
                if i % step == 0 or self.live:  # a live device is read in full: grab() would queue up
                    ok, img = cap.read()
                else:
                    ok, img = cap.grab(), None
                if not ok:
                    break
                if img is not None:
                    yield i, img
                i += 1
        finally:
            cap.release()


def _capture(spec: str, kind: str) -> cv2.VideoCapture:
    device: int | str = int(spec.split(":", 1)[1]) if kind == "camera" else spec
    cap = cv2.VideoCapture(device)
    if not cap.isOpened():
        what = "the video (unknown container or codec)" if kind == "video" else "the camera or stream"
        raise InputError(f"cannot open {what}", spec)
    return cap


def open_raw(spec: str) -> RawFrames:
    """Open a video file, an image folder, camera:N or a stream URL for raw reading."""
    kind = detect_kind(spec)
    if kind not in ("video", "images", "camera", "stream"):
        raise InputError(f"a {kind} dataset brings its own calibration; calibrate from a video, an image folder, "
                         "camera:N or a stream URL", spec)
    if kind == "camera" and not spec.split(":", 1)[1].isdigit():
        raise InputError(f"'{spec}': expected camera:N with N a device number (camera:0)")
    if kind == "images":
        folder = Path(spec)
        files = image_files(folder)
        first = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
        if first is None:
            raise InputError("cannot read the image", files[0])
        return RawFrames(spec, kind, (first.shape[1], first.shape[0]), None, len(files), files)
    cap = _capture(spec, kind)
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "video" else None
        if not (w and h):  # some devices report the size only after a read
            ok, img = cap.read()
            if not ok:
                raise InputError("no frame could be read", spec)
            h, w = img.shape[:2]
    finally:
        cap.release()
    return RawFrames(spec, kind, (w, h), fps if fps > 0 else None, count if count and count > 0 else None)
