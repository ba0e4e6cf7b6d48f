"""TUM RGB-D folder source: rgb.txt, depth.txt and groundtruth.txt associated by timestamp."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from slam.errors import FormatError, InputError
from slam.sources.base import Calibration, CameraModel, DatasetSource, Frame
from slam.io.trajectory import poses_from_tq
from slam.io.text import read_table, to_float
from slam.sources.common import (ProblemLog, base_info, existing, nearest, ordered,
                                 rate_from, read_image, require_dir)
from slam.sources.video import load_calibration, undistorter

# Published on the TUM RGB-D benchmark site ("File Formats" > intrinsic camera calibration);
# distortion in OpenCV order k1 k2 p1 p2 k3. The depth images are registered to the raw RGB images.
TUM_CAMERAS: dict[str, CameraModel] = {
    "freiburg1": CameraModel(640, 480, 517.3, 516.5, 318.6, 255.3, "radtan",
                             np.array([0.2624, -0.9531, -0.0054, 0.0026, 1.1633])),
    "freiburg2": CameraModel(640, 480, 520.9, 521.0, 325.1, 249.7, "radtan",
                             np.array([0.2312, -0.7849, -0.0033, -0.0001, 0.9172])),
    "freiburg3": CameraModel(640, 480, 535.4, 539.2, 320.1, 247.6),
    "ros_default": CameraModel(640, 480, 525.0, 525.0, 319.5, 239.5),
}
DEPTH_SCALE = 5000.0  # TUM depth PNGs: 16-bit, 5000 units per metre
FOLDER_CALIBRATION = "calibration.yaml"  # optional calibration file inside a TUM-format folder


def camera_from_name(name: str) -> str | None:
    """'freiburgN' when a folder name says which Freiburg camera recorded it (fr1/freiburg1...)."""
    m = re.search(r"(?:freiburg|fr)([123])(?![0-9])", name.lower())
    return None if m is None else f"freiburg{m.group(1)}"


def associate(t_a: np.ndarray, t_b: np.ndarray, max_dt: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (ia, ib) matched one-to-one as TUM's associate.py does.

    Every pair closer than max_dt is a candidate; candidates are taken in order of increasing time
    difference, each timestamp used at most once; pairs are returned sorted by t_a.
    """
    t_a, t_b = np.asarray(t_a, np.float64), np.asarray(t_b, np.float64)
    order_b = np.argsort(t_b, kind="stable")
    tb = t_b[order_b]
    lo = np.searchsorted(tb, t_a - max_dt, "left")
    hi = np.searchsorted(tb, t_a + max_dt, "right")
    counts = hi - lo
    ia = np.repeat(np.arange(t_a.size), counts)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    ib = order_b[np.repeat(lo, counts) + offs]
    diff = np.abs(t_a[ia] - t_b[ib])
    cand = diff < max_dt
    ia, ib, diff = ia[cand], ib[cand], diff[cand]
    # associate.py sorts (diff, a, b) tuples: smallest difference first, ties by a then b.
    order = np.lexsort((t_b[ib], t_a[ia], diff))
    used_a = np.zeros(t_a.size, bool)
    used_b = np.zeros(t_b.size, bool)
    out_a, out_b = [], []
    for a, b in zip(ia[order], ib[order]):  # greedy by nature; runs once at load time
        if not used_a[a] and not used_b[b]:
            used_a[a] = used_b[b] = True
            out_a.append(a)
            out_b.append(b)
    out_a_arr, out_b_arr = np.asarray(out_a, np.int64), np.asarray(out_b, np.int64)
    s = np.argsort(t_a[out_a_arr], kind="stable")
    return out_a_arr[s], out_b_arr[s]


class TumSource(DatasetSource):
    """Frames of a TUM RGB-D folder: BGR image, depth in metres (when depth.txt exists), ground truth."""

    kind = "tum"

    def __init__(self, path: str | Path, camera: str | None = None,
                 calibration: str | Path | None = None, depth: bool | None = None, strict: bool = True,
                 alpha: float = 0.0, max_dt: float = 0.02) -> None:
        self.root = require_dir(path, "a TUM RGB-D folder with rgb.txt")
        self.log = ProblemLog(strict)
        rgb_txt = self.root / "rgb.txt"
        if not rgb_txt.is_file():
            raise InputError("not a TUM RGB-D folder (no rgb.txt)", self.root)
        t_rgb, f_rgb = self._read_list(rgb_txt)
        depth_txt = self.root / "depth.txt"
        if depth and not depth_txt.is_file():
            raise InputError("depth requested but there is no depth.txt", depth_txt)
        self.has_depth = depth_txt.is_file() if depth is None else bool(depth)
        if self.has_depth:
            t_d, f_d = self._read_list(depth_txt)
            ia, ib = associate(t_rgb, t_d, max_dt)
            unmatched = t_rgb.size - ia.size
            if unmatched:
                self.log.warn(f"{rgb_txt}: {unmatched} rgb image(s) have no depth image closer than "
                              f"{max_dt} s and are skipped")
            self.timestamps = t_rgb[ia]
            self._files = [(f_rgb[a], f_d[b]) for a, b in zip(ia, ib)]
        else:
            self.timestamps = t_rgb
            self._files = [(f, None) for f in f_rgb]
        if not self._files:
            raise InputError("no usable frames (every listed image is missing or unmatched)", self.root)

        raw, extras = self._camera(camera, calibration)
        cam, self._remap = undistorter(raw, alpha)
        self.depth_scale = float(extras.get("depth_scale", DEPTH_SCALE))
        self.calibration = Calibration(camera=cam, rate_hz=rate_from(self.timestamps, 30.0),
                                       depth_scale=self.depth_scale if self.has_depth else None,
                                       raw_cameras=[raw])
        self.gt_poses = self._read_ground_truth(max_dt)

    def _read_list(self, path: Path) -> tuple[np.ndarray, list[Path]]:
        """Sorted timestamps and existing files of an rgb.txt / depth.txt list."""
        table = read_table(path, 2, "timestamp filename")
        lines, rows = table.lines, table.rows
        t = to_float(rows, [0], path, lines, "timestamp [s]")[:, 0]
        names = [r[1] for r in rows]
        order = ordered(t, path, lines, self.log)
        t, names = t[order], [names[i] for i in order]
        present = existing(self.root, names)
        self.log.missing([str(self.root / n) for n, ok in zip(names, present) if not ok], path)
        return t[present], [self.root / n for n, ok in zip(names, present) if ok]

    def _camera(self, camera: str | None, calibration: str | Path | None) -> tuple[CameraModel, dict]:
        """Explicit calibration file, else named camera, else the folder's calibration.yaml or name."""
        if calibration is not None:
            return load_calibration(calibration)
        if camera is None and (self.root / FOLDER_CALIBRATION).is_file():
            return load_calibration(self.root / FOLDER_CALIBRATION)
        name = camera or camera_from_name(self.root.resolve().name)
        if name is None:
            raise InputError("cannot tell which camera recorded this TUM folder: its name has no "
                             "freiburg1/2/3 (fr1/fr2/fr3); set config key 'tum_camera' to one of "
                             f"{', '.join(TUM_CAMERAS)} or give a calibration file", self.root)
        if name not in TUM_CAMERAS:
            raise InputError(f"unknown TUM camera '{name}'; expected one of {', '.join(TUM_CAMERAS)}")
        return TUM_CAMERAS[name], {}

    def _read_ground_truth(self, max_dt: float) -> np.ndarray | None:
        """(N, 4, 4) T_world_cam per frame from the nearest pose closer than max_dt (NaN where none)."""
        path = self.root / "groundtruth.txt"
        if not path.is_file():
            return None
        what = "timestamp tx ty tz qx qy qz qw"
        table = read_table(path, 8, what)
        lines, rows = table.lines, table.rows
        vals = to_float(rows, slice(0, 8), path, lines, what)
        order = ordered(vals[:, 0], path, lines, self.log)
        vals = vals[order]
        gt_index = nearest(self.timestamps, vals[:, 0], max_dt)
        T = poses_from_tq(vals[:, 1:4], vals[:, 4:8])
        poses = np.full((len(self.timestamps), 4, 4), np.nan)
        ok = gt_index >= 0
        poses[ok] = T[gt_index[ok]]
        if not ok.all():
            self.log.warn(f"{path}: {int((~ok).sum())} frame(s) have no ground-truth pose closer than {max_dt} s")
        return poses

    def __len__(self) -> int:
        return len(self._files)

    def frame(self, i: int) -> Frame:
        """Frame i (random access; iteration reads them in order)."""
        cam = self.calibration.camera
        size = (cam.width, cam.height)
        f_rgb, f_d = self._files[i]
        img = self._remap(read_image(f_rgb, cv2.IMREAD_COLOR, size))
        depth = None
        if f_d is not None:
            raw = read_image(f_d, cv2.IMREAD_UNCHANGED, size)
            if raw.ndim != 2 or raw.dtype != np.uint16:
                raise FormatError(f"depth image must be 16-bit single-channel, got {raw.dtype} "
                                  f"with {1 if raw.ndim == 2 else raw.shape[2]} channel(s)", f_d)
            depth = self._remap(raw, nearest_neighbour=True).astype(np.float32) / np.float32(self.depth_scale)
        return Frame(index=i, timestamp=float(self.timestamps[i]), left=img, depth=depth, gt_pose=self.gt_pose(i))

    def info(self) -> dict[str, Any]:
        """Description for `slam info`."""
        sensors = ["rgb"] + (["depth"] if self.has_depth else [])
        return base_info(self.kind, self.calibration, len(self), self.n_ground_truth, self.log, depth=self.has_depth,
                         sensors=sensors, path=str(self.root))
