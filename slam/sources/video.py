"""Video file and image folder sources, and the YAML camera calibration file they need."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from slam.errors import FormatError, InputError
from slam.geometry.camera import MODELS, new_camera_matrix, undistort_rectify_maps
from slam.sources.base import Calibration, CameraModel, Frame, Source
from slam.io.yamlfile import read_yaml
from slam.sources.common import (IMAGE_EXTENSIONS, TIMESTAMP_NAME, ProblemLog, Remap, base_info, image_files,
                                 image_size, rate_from, read_image, require_dir, require_file)
from slam.sources.euroc import camera_from_sensor_yaml

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".ts", ".mts", ".mjpeg", ".mjpg", ".h264", ".gif")
CALIBRATION_KEYS = {"width": int, "height": int, "fx": float, "fy": float, "cx": float, "cy": float,
                    "distortion_model": str, "distortion": list, "rate_hz": float, "depth_scale": float,
                    "calibration_info": dict}  # calibration_info: how it was made (slam calibrate); not read
REQUIRED_KEYS = ("width", "height", "fx", "fy", "cx", "cy")


def load_calibration(path: str | Path) -> tuple[CameraModel, dict[str, float]]:
    """Camera model and extras (rate_hz, depth_scale) from a calibration YAML file.

    Accepted layouts: the project's flat one (width height fx fy cx cy [distortion_model
    none|radtan|equidistant] [distortion [..]] [rate_hz] [depth_scale] [calibration_info {..}]), as
    `slam calibrate` writes it, or an ASL/EuRoC camera sensor.yaml (intrinsics, resolution,
    distortion_coefficients, rate_hz). Format: datasets/README.md.
    """
    path = require_file(path, "a camera calibration YAML file")
    data = read_yaml(path)
    extras: dict[str, float] = {}
    if "intrinsics" in data:
        cam = camera_from_sensor_yaml(data, path)
        if data.get("rate_hz") is not None:
            extras["rate_hz"] = float(data["rate_hz"])
        return cam, extras
    unknown = sorted(set(data) - set(CALIBRATION_KEYS))
    if unknown:
        raise FormatError(f"unknown key '{unknown[0]}'; allowed keys: {', '.join(CALIBRATION_KEYS)}", path)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise FormatError(f"missing key '{missing[0]}' (a calibration needs {', '.join(REQUIRED_KEYS)})", path)
    values: dict[str, Any] = {}
    for key, typ in CALIBRATION_KEYS.items():
        if key not in data:
            continue
        v = data[key]
        ok = isinstance(v, list) if typ is list else isinstance(v, (int, float)) and not isinstance(v, bool)
        if typ in (str, dict):
            ok = isinstance(v, typ)
        if not ok:
            what = {list: "a list of numbers", dict: "a mapping"}.get(typ, typ.__name__)
            raise FormatError(f"key '{key}' must be {what}, got {v!r}", path)
        values[key] = v
    model = values.get("distortion_model", "none" if not values.get("distortion") else "radtan")
    if model not in MODELS:
        raise FormatError(f"distortion_model '{model}' is not one of {', '.join(MODELS)}", path)
    try:
        dist = np.asarray(values.get("distortion", []), dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise FormatError("key 'distortion' must be a list of numbers", path) from None
    need = {"none": (0,), "radtan": (4, 5, 8), "equidistant": (4,)}[model]
    if model != "none" and dist.size not in need or model == "none" and np.any(dist):
        raise FormatError(f"distortion_model {model} takes {' or '.join(map(str, need))} coefficients, "
                          f"got {dist.size}", path)
    cam = CameraModel(int(values["width"]), int(values["height"]), float(values["fx"]), float(values["fy"]),
                      float(values["cx"]), float(values["cy"]), model, dist if model != "none" else np.zeros(0))
    if cam.width <= 0 or cam.height <= 0 or cam.fx <= 0 or cam.fy <= 0:
        raise FormatError("width, height, fx and fy must be positive", path)
    extras.update({k: float(values[k]) for k in ("rate_hz", "depth_scale") if k in values})
    return cam, extras


def resolve_calibration(calibration: str | Path | CameraModel | None, source: str | Path,
                        ) -> tuple[CameraModel, dict[str, float]]:
    """A camera model given a model or a YAML path; a missing calibration is an InputError naming the source."""
    if calibration is None:
        raise InputError("this source has no calibration of its own: give a camera calibration YAML "
                         "(config key 'calibration', or --calibration FILE on the command line)", source)
    if isinstance(calibration, CameraModel):
        return calibration, {}
    return load_calibration(calibration)


def undistorter(cam: CameraModel, alpha: float) -> tuple[CameraModel, Remap]:
    """The delivered pinhole model and the remap that produces it (identity without distortion)."""
    if cam.distortion_model == "none" or not np.any(cam.distortion):
        return CameraModel(cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy), Remap(None)
    size = (cam.width, cam.height)
    K = new_camera_matrix(cam.K, cam.distortion, cam.distortion_model, size, alpha)
    maps = undistort_rectify_maps(cam.K, cam.distortion, cam.distortion_model, size, np.eye(3), K)
    return CameraModel(cam.width, cam.height, K[0, 0], K[1, 1], K[0, 2], K[1, 2]), Remap(maps)


class VideoSource(Source):
    """Frames of a video file, undistorted; timestamps from the container or from a given rate."""

    kind = "video"

    def __init__(self, path: str | Path, calibration: str | Path | CameraModel | None,
                 rate_hz: float | None = None, alpha: float = 0.0) -> None:
        self.path = require_file(path, "a video file")
        raw, extras = resolve_calibration(calibration, self.path)
        cap = self._open()
        try:
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self._count = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        finally:
            cap.release()
        if (w, h) != (raw.width, raw.height):
            raise InputError(f"video frames are {w}x{h} but the calibration is for {raw.width}x{raw.height}",
                             self.path)
        self.fixed_rate = rate_hz
        rate = rate_hz or (fps if fps > 0 else None) or extras.get("rate_hz")
        if not rate:
            raise InputError("the container gives no frame rate; set a rate (config key 'rate_hz')", self.path)
        cam, self._remap = undistorter(raw, alpha)
        self.calibration = Calibration(camera=cam, rate_hz=float(rate), raw_cameras=[raw])
        self.log = ProblemLog(strict=False)

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise FormatError("cannot open as a video (unknown container or codec)", self.path)
        return cap

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Frame]:
        cap = self._open()
        period = 1.0 / self.calibration.rate_hz
        last = -np.inf
        try:
            i = 0
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                t = cap.get(cv2.CAP_PROP_POS_MSEC) * 1e-3 if self.fixed_rate is None else i * period
                if not t > last:  # streams without timestamps report 0: fall back to the rate
                    t = last + period if np.isfinite(last) else i * period
                last = t
                yield Frame(index=i, timestamp=float(t), left=self._remap(img))
                i += 1
        finally:
            cap.release()

    def info(self) -> dict[str, Any]:
        """Description for `slam info` (frames as the container reports them)."""
        return base_info(self.kind, self.calibration, len(self), 0, self.log, sensors=["video"],
                         path=str(self.path))


class ImageFolderSource(Source):
    """Images of a folder in natural name order; timestamps from a rate or from numeric file names."""

    kind = "images"

    def __init__(self, path: str | Path, calibration: str | Path | CameraModel | None,
                 rate_hz: float | None = None, alpha: float = 0.0) -> None:
        self.path = require_dir(path, "a folder of images")
        self.files = image_files(self.path)
        if not self.files:
            raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder", self.path)
        raw, extras = resolve_calibration(calibration, self.path)
        w, h = image_size(self.files[0])
        if (w, h) != (raw.width, raw.height):
            raise InputError(f"images are {w}x{h} but the calibration is for {raw.width}x{raw.height}",
                             self.files[0])
        rate = rate_hz or extras.get("rate_hz")
        self.log = ProblemLog(strict=False)
        self.timestamps = self._timestamps(rate)
        cam, self._remap = undistorter(raw, alpha)
        self.calibration = Calibration(camera=cam, rate_hz=float(rate or rate_from(self.timestamps, 1.0)), raw_cameras=[raw])

    def _timestamps(self, rate: float | None) -> np.ndarray:
        if rate:
            return np.arange(len(self.files)) / float(rate)
        stems = [p.stem for p in self.files]
        if not all(TIMESTAMP_NAME.fullmatch(s) for s in stems):
            raise InputError("file names are not timestamps: give a frame rate (config key 'rate_hz')", self.path)
        t = np.array([float(s) for s in stems])
        if all("." not in s for s in stems) and t.max() > 1e15:
            t = np.array([int(s) for s in stems], dtype=np.int64) * 1e-9  # nanoseconds (ASL style)
        if np.any(np.diff(t) <= 0):
            raise InputError("numeric file names are not strictly increasing timestamps; give a rate", self.path)
        return t

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        size = (self.calibration.camera.width, self.calibration.camera.height)
        for i, f in enumerate(self.files):
            img = read_image(f, cv2.IMREAD_ANYCOLOR, size)
            yield Frame(index=i, timestamp=float(self.timestamps[i]), left=self._remap(img))

    def info(self) -> dict[str, Any]:
        """Description for `slam info`."""
        return base_info(self.kind, self.calibration, len(self), 0, self.log, sensors=["images"],
                         path=str(self.path))
