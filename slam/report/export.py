"""trajectory.* in the format and frame a user's evaluation tool expects (--trajectory-format, --frame).

The run folder always holds trajectory.tum and keyframes.tum in the camera frame (the first
tracked camera is the world frame); these are converted from them, losslessly (%.17g text):

- format: `tum` (.tum), `kitti` (.kitti: 12 values a line, times in <name>_times.txt), `euroc` (.csv,
  integer nanoseconds, quaternion w first);
- frame `body`: the sensor body of a source that defines a body-to-camera transform T_body_cam
  (EuRoC's T_BS of cam0, composed with its rectification). Estimates become T_b0_bi = T_bc T_c0_ci
  T_cb (the first body pose is the world, as the first camera was); ground truth, already in the
  dataset's world, becomes T_w_bi = T_w_ci T_cb. Files get a `_body` suffix, so trajectory.tum stays
  the camera-frame file other tools of this project read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slam.errors import InputError
from slam.io.trajectory import Trajectory, read_tum, write_euroc_csv, write_kitti, write_tum

FORMATS = ("tum", "kitti", "euroc")
FRAMES = ("camera", "body")
EXTENSIONS = {"tum": ".tum", "kitti": ".kitti", "euroc": ".csv"}
_NAMES = ("trajectory", "keyframes", "groundtruth")


def check_body_frame(T_body_cam: np.ndarray | None, mode: str, kind: str) -> None:
    """An InputError when --frame body cannot be honoured for this source and sensor mode."""
    if T_body_cam is None:
        raise InputError(f"--frame body: a {kind} source defines no body-to-camera transform (only EuRoC's "
                         "sensor.yaml T_BS does), so its body frame is unknown; use --frame camera")
    if mode == "mono":
        raise InputError("--frame body: a monocular trajectory has no metric scale, so the camera-to-body "
                         "lever arm (metres) cannot be applied; use --frame camera (and the camera-frame "
                         "groundtruth.tum with Sim(3) alignment)")


def _inverse(T: np.ndarray) -> np.ndarray:
    inv = np.eye(4)
    inv[:3, :3] = T[:3, :3].T
    inv[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return inv


def to_body_frame(poses: np.ndarray, T_body_cam: np.ndarray, ground_truth: bool = False) -> np.ndarray:
    """(N,4,4) camera poses -> body poses: T_bc P T_cb (estimates) or P T_cb (ground truth)."""
    T_cb = _inverse(np.asarray(T_body_cam, dtype=np.float64))
    out = np.asarray(poses, dtype=np.float64) @ T_cb
    return out if ground_truth else np.asarray(T_body_cam, dtype=np.float64) @ out


def export_trajectories(folder: str | Path, fmt: str = "tum", frame: str = "camera",
                        T_body_cam: np.ndarray | None = None) -> list[Path]:
    """Write trajectory/keyframes/groundtruth in fmt and frame beside the .tum files; returns the new files."""
    folder = Path(folder)
    if fmt not in FORMATS or frame not in FRAMES:
        raise InputError(f"trajectory format {fmt!r} / frame {frame!r}; allowed {FORMATS} and {FRAMES}")
    if frame == "body" and T_body_cam is None:
        raise InputError("--frame body needs the source's body-to-camera transform")
    if fmt == "tum" and frame == "camera":
        return []
    written = []
    for name in _NAMES:
        src = folder / f"{name}.tum"
        if not src.is_file():
            continue
        traj = read_tum(src)
        poses = traj.poses
        stem = name
        if frame == "body":
            poses = to_body_frame(poses, T_body_cam, ground_truth=name == "groundtruth")
            stem += "_body"
        out = folder / f"{stem}{EXTENSIONS[fmt]}"
        conv = Trajectory(traj.timestamps, poses)
        if fmt == "tum":
            write_tum(out, conv)
        elif fmt == "euroc":
            write_euroc_csv(out, conv)
        else:
            times = folder / f"{stem}_times.txt"
            write_kitti(out, conv, times)
            written.append(times)
        written.append(out)
    return written
