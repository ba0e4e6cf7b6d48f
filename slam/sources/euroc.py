"""EuRoC MAV / ASL folder source: cam0 (mono) or rectified cam0+cam1 (stereo), IMU, ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from slam.errors import FormatError, InputError
from slam.geometry.camera import new_camera_matrix, stereo_rectify, undistort_rectify_maps
from slam.sources.base import Calibration, CameraModel, DatasetSource, Frame
from slam.io.trajectory import poses_from_tq
from slam.io.text import read_table, to_float, to_int64
from slam.io.yamlfile import read_yaml
from slam.sources.common import (EncodedImage, ProblemLog, Remap, base_info, existing, nearest, ordered, rate_from, read_image,
                                 require_dir, require_file)

DISTORTION_NAMES = {"radial-tangential": "radtan", "radtan": "radtan", "plumb_bob": "radtan",
                    "equidistant": "equidistant", "fisheye": "equidistant", "none": "none"}


def find_mav0(path: str | Path) -> Path | None:
    """The `mav0` folder of an ASL dataset given it or its parent, or None if it is not one."""
    p = Path(path)
    for cand in (p / "mav0", p):
        if (cand / "cam0" / "data.csv").is_file():
            return cand
    return None


def camera_from_sensor_yaml(data: dict[str, Any], path: Path) -> CameraModel:
    """CameraModel from an ASL camera sensor.yaml mapping (intrinsics, resolution, distortion)."""
    def get(key: str) -> Any:
        if key not in data:
            raise FormatError(f"missing key '{key}' (ASL camera sensor.yaml)", path)
        return data[key]

    try:
        fu, fv, cu, cv = (float(x) for x in get("intrinsics"))
        w, h = (int(x) for x in get("resolution"))
        coeffs = np.asarray(data.get("distortion_coefficients", []), dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise FormatError("'intrinsics' must be [fu, fv, cu, cv], 'resolution' [width, height] and "
                          "'distortion_coefficients' a list of numbers", path) from None
    name = str(data.get("distortion_model", "none")).lower()
    if name not in DISTORTION_NAMES:
        raise FormatError(f"distortion_model '{name}' is not supported; expected one of "
                          f"{', '.join(sorted(DISTORTION_NAMES))}", path)
    model = DISTORTION_NAMES[name] if coeffs.size else "none"
    if str(data.get("camera_model", "pinhole")).lower() != "pinhole":
        raise FormatError(f"camera_model '{data.get('camera_model')}' is not supported; expected pinhole", path)
    return CameraModel(w, h, fu, fv, cu, cv, model, coeffs)


def matrix_from_yaml(data: dict[str, Any], key: str, path: Path) -> np.ndarray:
    """A 4x4 matrix stored as {rows, cols, data} (ASL/OpenCV style) under `key`."""
    m = data.get(key)
    try:
        arr = np.asarray(m["data"], dtype=np.float64).reshape(int(m["rows"]), int(m["cols"]))
    except (TypeError, KeyError, ValueError):
        raise FormatError(f"'{key}' must be a mapping with rows: 4, cols: 4 and 16 numbers in data", path) from None
    if arr.shape != (4, 4) or not np.allclose(arr[3], [0, 0, 0, 1]):
        raise FormatError(f"'{key}' must be a 4x4 homogeneous transform", path)
    return arr


@dataclass
class ImuData:
    """IMU samples of imu0: time (s), angular rate (rad/s) and acceleration (m/s^2), in the IMU frame."""

    timestamps: np.ndarray
    gyro: np.ndarray
    accel: np.ndarray
    T_body_imu: np.ndarray
    rate_hz: float

    def between(self, t0: float, t1: float) -> slice:
        """Slice of the samples with t0 < t <= t1 (what a preintegrator between two frames needs)."""
        return slice(int(np.searchsorted(self.timestamps, t0, "right")),
                     int(np.searchsorted(self.timestamps, t1, "right")))


class EurocSource(DatasetSource):
    """Frames of an ASL `mav0/` folder; stereo pairs are matched by timestamp and rectified once."""

    kind = "euroc"

    def __init__(self, path: str | Path, stereo: bool | None = None, strict: bool = True,
                 alpha: float = 0.0, gt_max_dt: float = 0.02, pair_max_dt: float = 1e-3) -> None:
        root = find_mav0(path)
        if root is None:
            require_dir(path, "an EuRoC/ASL dataset: mav0/ or its parent")
            raise InputError("not an EuRoC/ASL dataset (no mav0/cam0/data.csv or cam0/data.csv)", path)
        self.root = root
        self.log = ProblemLog(strict)
        has_cam1 = (root / "cam1" / "data.csv").is_file()
        if stereo and not has_cam1:
            raise InputError("stereo requested but there is no cam1/data.csv", root / "cam1")
        self.is_stereo = has_cam1 if stereo is None else bool(stereo)

        cams = [self._read_camera(root / "cam0")]
        if self.is_stereo:
            cams.append(self._read_camera(root / "cam1"))
        raw = [c[0] for c in cams]
        T_bs = [c[1] for c in cams]
        rate = cams[0][2]
        t0, files0 = cams[0][3], cams[0][4]
        if self.is_stereo:
            t1, files1 = cams[1][3], cams[1][4]
            # Pair by timestamp, never by position: a file missing on one side must not shift the other.
            j = nearest(t0 * 1e-9, t1 * 1e-9, pair_max_dt)
            lonely = np.flatnonzero(j < 0)
            if lonely.size:
                self.log.warn(f"{root / 'cam0' / 'data.csv'}: {lonely.size} cam0 image(s) have no cam1 image "
                              f"within {pair_max_dt * 1e3:g} ms and are skipped (first at t={t0[lonely[0]]} ns)")
            keep = j >= 0
            self._t_ns = t0[keep]
            self._files = [(files0[i], files1[k]) for i, k in zip(np.flatnonzero(keep), j[keep])]
        else:
            self._t_ns = t0
            self._files = [(f, None) for f in files0]
        if len(self._t_ns) == 0:
            raise InputError("no usable frames (every listed image is missing or unpaired)", root)
        self.timestamps = self._t_ns * 1e-9

        self._setup_calibration(raw, T_bs, rate, alpha)
        self.T_body_cam0_raw = T_bs[0]
        self.gt_poses = self._read_ground_truth(gt_max_dt)

    def _read_camera(self, folder: Path) -> tuple[CameraModel, np.ndarray, float, np.ndarray, list[Path]]:
        """Model, T_BS, rate and the existing (timestamp ns, image path) entries of one camera."""
        yaml_path = require_file(folder / "sensor.yaml", "the ASL camera calibration")
        data = read_yaml(yaml_path)
        cam = camera_from_sensor_yaml(data, yaml_path)
        T_bs = matrix_from_yaml(data, "T_BS", yaml_path)
        csv = folder / "data.csv"
        table = read_table(csv, 2, "timestamp [ns], filename", delimiter=",")
        lines, rows = table.lines, table.rows
        t = to_int64(rows, 0, csv, lines, "timestamp [ns]")
        names = [r[1] for r in rows]
        order = ordered(t, csv, lines, self.log)
        t, names = t[order], [names[i] for i in order]
        present = existing(folder / "data", names)
        self.log.missing([str(folder / "data" / n) for n, ok in zip(names, present) if not ok], csv)
        try:
            rate = float(data.get("rate_hz") or rate_from(t * 1e-9, 20.0))
        except (TypeError, ValueError):
            raise FormatError(f"'rate_hz' must be a number, got {data.get('rate_hz')!r}", yaml_path) from None
        return cam, T_bs, rate, t[present], [folder / "data" / n for n, ok in zip(names, present) if ok]

    def _setup_calibration(self, raw: list[CameraModel], T_bs: list[np.ndarray], rate: float,
                           alpha: float) -> None:
        c0 = raw[0]
        size = (c0.width, c0.height)
        cam0_yaml = self.root / "cam0" / "sensor.yaml"
        try:
            if self.is_stereo:
                c1 = raw[1]
                if (c1.width, c1.height) != size or c1.distortion_model != c0.distortion_model:
                    raise FormatError("cam1 must have the resolution and distortion model of cam0",
                                      self.root / "cam1" / "sensor.yaml")
                T01 = np.linalg.inv(T_bs[0]) @ T_bs[1]
                rect = stereo_rectify(c0.K, c0.distortion, c1.K, c1.distortion, c0.distortion_model,
                                      size, T01, alpha)
                K, R0, baseline = rect.K, rect.R0, rect.baseline
                self._remaps = [Remap(undistort_rectify_maps(c0.K, c0.distortion, c0.distortion_model, size, rect.R0, rect.P0)),
                                Remap(undistort_rectify_maps(c1.K, c1.distortion, c1.distortion_model, size, rect.R1, rect.P1))]
                T_cam0_cam1 = np.eye(4)
                T_cam0_cam1[0, 3] = baseline
            else:
                K = new_camera_matrix(c0.K, c0.distortion, c0.distortion_model, size, alpha)
                R0, baseline, T_cam0_cam1 = np.eye(3), None, None
                maps = None if c0.distortion_model == "none" else undistort_rectify_maps(
                    c0.K, c0.distortion, c0.distortion_model, size, np.eye(3), K)
                self._remaps = [Remap(maps)]
        except ValueError as exc:
            raise FormatError(f"cannot rectify: {exc}", cam0_yaml) from None
        # Delivered images live in the rectified cam0 frame: x_raw = R0^T x_rect.
        T_raw_rect = np.eye(4)
        T_raw_rect[:3, :3] = R0.T
        cam = CameraModel(c0.width, c0.height, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
        self.calibration = Calibration(camera=cam, rate_hz=rate, baseline=baseline,
                                       T_body_cam=T_bs[0] @ T_raw_rect, raw_cameras=raw,
                                       T_cam0_cam1=T_cam0_cam1)

    def _read_ground_truth(self, max_dt: float) -> np.ndarray | None:
        """(N, 4, 4) T_world_cam per frame (NaN where none within max_dt), or None without a file."""
        csv = self.root / "state_groundtruth_estimate0" / "data.csv"
        if not csv.is_file():
            return None
        what = "timestamp [ns], p_RS_R x y z [m], q_RS w x y z, ..."
        table = read_table(csv, (8, 64), what, delimiter=",")
        lines, rows = table.lines, table.rows
        t = to_int64(rows, 0, csv, lines, "timestamp [ns]")
        vals = to_float(rows, slice(1, 8), csv, lines, what)
        order = ordered(t, csv, lines, self.log)
        t, vals = t[order], vals[order]
        q_xyzw = vals[:, [4, 5, 6, 3]]  # ASL stores w first
        T_world_body = poses_from_tq(vals[:, :3], q_xyzw)
        idx = nearest(self.timestamps, t * 1e-9, max_dt)
        poses = np.full((len(idx), 4, 4), np.nan)
        ok = idx >= 0
        poses[ok] = T_world_body[idx[ok]] @ self.calibration.T_body_cam
        return poses

    @cached_property
    def imu(self) -> ImuData | None:
        """All samples of imu0/data.csv (read on first use), or None when the dataset has no IMU."""
        folder = self.root / "imu0"
        csv = folder / "data.csv"
        if not csv.is_file():
            return None
        what = "timestamp [ns], w_RS_S x y z [rad/s], a_RS_S x y z [m/s^2]"
        table = read_table(csv, 7, what, delimiter=",")
        lines, rows = table.lines, table.rows
        t = to_int64(rows, 0, csv, lines, "timestamp [ns]")
        vals = to_float(rows, slice(1, 7), csv, lines, what)
        order = ordered(t, csv, lines, self.log)
        T = np.eye(4)
        if (folder / "sensor.yaml").is_file():
            T = matrix_from_yaml(read_yaml(folder / "sensor.yaml"), "T_BS", folder / "sensor.yaml")
        ts = t[order] * 1e-9
        return ImuData(ts, vals[order, :3], vals[order, 3:], T, rate_from(ts, 200.0))

    def __len__(self) -> int:
        return len(self._t_ns)

    def frame(self, i: int) -> Frame:
        """Frame i (random access; iteration reads them in order)."""
        size = (self.calibration.camera.width, self.calibration.camera.height)
        f0, f1 = self._files[i]
        left = self._remaps[0](read_image(f0, cv2.IMREAD_GRAYSCALE, size))
        loader = None
        if f1 is not None:  # read and checked now, decoded when tracking asks (keyframes)
            encoded, remap = EncodedImage(f1), self._remaps[1]
            loader = lambda: remap(encoded.decode(cv2.IMREAD_GRAYSCALE, size))  # noqa: E731
        return Frame(index=i, timestamp=float(self.timestamps[i]), left=left, right_loader=loader,
                     gt_pose=self.gt_pose(i))

    def info(self) -> dict[str, Any]:
        """Description for `slam info`."""
        sensors = ["cam0"] + (["cam1"] if self.is_stereo else [])
        if (self.root / "imu0" / "data.csv").is_file():
            sensors.append("imu0")
        return base_info(self.kind, self.calibration, len(self), self.n_ground_truth, self.log, sensors=sensors,
                         path=str(self.root))
