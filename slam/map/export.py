"""Map and trajectory export: PLY point cloud, TUM trajectories of frames and keyframes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slam.geometry import lie
from slam.io.text import write_bytes_atomic
from slam.io.trajectory import Trajectory, write_tum
from slam.map.views import MapSnapshot


def write_ply(path: str | Path, points: np.ndarray, keyframe_centers: np.ndarray | None = None) -> None:
    """Binary little-endian PLY: landmarks in gray, keyframe centres (optional) in red."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    cen = np.zeros((0, 3)) if keyframe_centers is None else np.asarray(keyframe_centers, np.float64).reshape(-1, 3)
    n = len(pts) + len(cen)
    rec = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    xyz = np.concatenate([pts, cen]).astype(np.float32)
    rec["x"], rec["y"], rec["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    color = np.concatenate([np.tile([200, 200, 200], (len(pts), 1)), np.tile([255, 0, 0], (len(cen), 1))])
    rec["r"], rec["g"], rec["b"] = color[:, 0], color[:, 1], color[:, 2]
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"comment {len(pts)} landmarks, {len(cen)} keyframe centres (red)\n"
              f"element vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    write_bytes_atomic(path, header.encode("ascii") + rec.tobytes())


def read_ply_points(path: str | Path) -> np.ndarray:
    """(N,3) vertices of a PLY written by write_ply (for tests and `slam view`)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    n = int(next(line.split()[2] for line in header if line.startswith("element vertex")))
    rec = np.frombuffer(data[end:], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"),
                                           ("b", "u1")], count=n)
    return np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float64)


def frame_poses(ref_kf: np.ndarray, T_ref_cam: np.ndarray, kf_poses: np.ndarray,
                fallback: np.ndarray, ref_scale: np.ndarray | None = None,
                kf_scales: np.ndarray | None = None) -> np.ndarray:
    """(N,4,4) T_world_cam of tracked frames: the final pose of each frame's reference keyframe
    times the frame's pose relative to it (so frames follow their keyframe through BA). With
    ref_scale (N,) (the keyframe's units when the frame was tracked) and kf_scales (K,) (its units
    now, Map.keyframe_scale), a relative translation measured before a monocular Sim(3)
    correction is rescaled as the keyframe's frame was."""
    out = np.array(fallback, dtype=np.float64, copy=True)
    have = (ref_kf >= 0) & (ref_kf < len(kf_poses))
    if have.any():
        rel = T_ref_cam[have]
        if ref_scale is not None and kf_scales is not None:
            r = kf_scales[ref_kf[have]] / np.asarray(ref_scale, np.float64)[have]
            rel = lie.scale_translation(rel, r[:, None])
        out[have] = kf_poses[ref_kf[have]] @ rel
    return out


def write_trajectories(folder: Path, timestamps: np.ndarray, poses: np.ndarray, snap: MapSnapshot) -> None:
    """trajectory.tum (every tracked frame) and keyframes.tum."""
    write_tum(folder / "trajectory.tum", Trajectory(timestamps, poses.reshape(-1, 4, 4)))
    write_tum(folder / "keyframes.tum", Trajectory(snap.keyframe_timestamps, snap.keyframe_poses.reshape(-1, 4, 4)))
