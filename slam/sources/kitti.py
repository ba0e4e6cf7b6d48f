"""KITTI odometry sequence source: image_0 (+ image_1), calib.txt, times.txt, poses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from slam.errors import FormatError, InputError
from slam.sources.base import Calibration, CameraModel, DatasetSource, Frame
from slam.io.text import read_table, to_float
from slam.sources.common import (EncodedImage, ProblemLog, base_info, existing, image_size, ordered, rate_from,
                                 read_image, require_dir, require_file)


def is_kitti(path: str | Path) -> bool:
    """True for a KITTI odometry sequence folder (image_0/ and times.txt)."""
    p = Path(path)
    return (p / "image_0").is_dir() and (p / "times.txt").is_file()


def read_calib(path: Path) -> dict[str, np.ndarray]:
    """The 3x4 matrices of a KITTI calib.txt ('P0: 12 numbers' lines; Tr and others kept too)."""
    table = read_table(path, 13, "NAME: 12 numbers of a 3x4 matrix")
    lines, rows = table.lines, table.rows
    out = {}
    for ln, r in zip(lines, rows):
        if not r[0].endswith(":"):
            raise FormatError(f"expected 'NAME:' before the 12 numbers, found '{r[0]}'", path, int(ln))
        out[r[0][:-1]] = to_float([r[1:]], slice(0, 12), path, np.array([ln]), "12 numbers").reshape(3, 4)
    for key in ("P0",):
        if key not in out:
            raise FormatError(f"missing projection matrix {key}", path)
    return out


class KittiSource(DatasetSource):
    """Frames of a KITTI odometry sequence: grayscale left (and right), poses of camera 0."""

    kind = "kitti"

    def __init__(self, path: str | Path, stereo: bool | None = None, strict: bool = True) -> None:
        self.root = require_dir(path, "a KITTI odometry sequence folder")
        if not is_kitti(self.root):
            raise InputError("not a KITTI odometry sequence (needs image_0/ and times.txt)", self.root)
        self.log = ProblemLog(strict)
        has_right = (self.root / "image_1").is_dir()
        if stereo and not has_right:
            raise InputError("stereo requested but the right camera folder is missing", self.root / "image_1")
        self.is_stereo = has_right if stereo is None else bool(stereo)

        times = self.root / "times.txt"
        table = read_table(times, 1, "timestamp [s]")
        lines, rows = table.lines, table.rows
        t = to_float(rows, [0], times, lines, "timestamp [s]")[:, 0]
        order = ordered(t, times, lines, self.log)
        names = [f"{i:06d}.png" for i in range(len(t))]
        present = np.ones(len(t), dtype=bool)
        for folder in ("image_0", "image_1") if self.is_stereo else ("image_0",):
            here = existing(self.root / folder, names)
            self.log.missing([str(self.root / folder / n) for n, ok in zip(names, here) if not ok], times)
            present &= here
        keep = order[present[order]]  # frame i of times.txt is image i, whatever the order of times
        if keep.size == 0:
            raise InputError("no usable frames (no image named in times.txt exists)", self.root / "image_0")
        self._ids = keep
        self.timestamps = t[keep]

        calib_path = require_file(self.root / "calib.txt", "KITTI calibration with P0..P3")
        P = read_calib(calib_path)
        K = P["P0"][:, :3]
        w, h = image_size(self.root / "image_0" / names[keep[0]])
        baseline = None
        T01 = None
        if self.is_stereo:
            if "P1" not in P:
                raise FormatError("missing projection matrix P1 (needed for stereo)", calib_path)
            # P_i = K [I | t_i]: the right camera sits at x = (P0[0,3] - P1[0,3]) / fx in camera 0.
            baseline = float((P["P0"][0, 3] - P["P1"][0, 3]) / P["P1"][0, 0])
            if baseline <= 0:
                raise FormatError(f"P1 gives a non-positive baseline {baseline:.4f} m", calib_path)
            T01 = np.eye(4)
            T01[0, 3] = baseline
        cam = CameraModel(w, h, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
        self.calibration = Calibration(camera=cam, rate_hz=rate_from(self.timestamps, 10.0),
                                       baseline=baseline, raw_cameras=[cam], T_cam0_cam1=T01)
        self.gt_poses = self._read_poses(len(t))

    def _poses_path(self) -> Path | None:
        for cand in (self.root / "poses.txt", self.root.parent.parent / "poses" / f"{self.root.name}.txt",
                     self.root.parent / "poses" / f"{self.root.name}.txt"):
            if cand.is_file():
                return cand
        return None

    def _read_poses(self, n_times: int) -> np.ndarray | None:
        """(N, 4, 4) T_world_cam0 of the kept frames (the KITTI line i is frame i), or None."""
        path = self._poses_path()
        if path is None:
            return None
        what = "12 numbers: the 3x4 pose [R | t] of camera 0, row by row"
        table = read_table(path, 12, what)
        lines, rows = table.lines, table.rows
        vals = to_float(rows, slice(0, 12), path, lines, what)
        if len(vals) != n_times:
            self.log.error(f"{len(vals)} poses for {n_times} timestamps in times.txt; "
                           "line i must be the pose of frame i", path)
        T = np.tile(np.eye(4), (n_times, 1, 1))
        T[:] = np.nan
        m = min(len(vals), n_times)
        T[:m, :3, :] = vals[:m].reshape(-1, 3, 4)
        T[:m, 3] = [0, 0, 0, 1]
        return T[self._ids]

    def __len__(self) -> int:
        return len(self._ids)

    def frame(self, i: int) -> Frame:
        """Frame i (random access; iteration reads them in order)."""
        size = (self.calibration.camera.width, self.calibration.camera.height)
        name = f"{self._ids[i]:06d}.png"
        left = read_image(self.root / "image_0" / name, cv2.IMREAD_GRAYSCALE, size)
        loader = None
        if self.is_stereo:  # read and checked now, decoded when tracking asks (keyframes)
            encoded = EncodedImage(self.root / "image_1" / name)
            loader = lambda: encoded.decode(cv2.IMREAD_GRAYSCALE, size)  # noqa: E731
        return Frame(index=i, timestamp=float(self.timestamps[i]), left=left, right_loader=loader,
                     gt_pose=self.gt_pose(i))

    def info(self) -> dict[str, Any]:
        """Description for `slam info`."""
        sensors = ["image_0"] + (["image_1"] if self.is_stereo else [])
        return base_info(self.kind, self.calibration, len(self), self.n_ground_truth, self.log, sensors=sensors,
                         path=str(self.root))
