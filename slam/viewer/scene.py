"""What the viewer draws, as plain arrays: map points, keyframe frusta, trajectories, loop edges.

Both the live window and `slam view` (window or --screenshot) build one `Scene` and hand it to the
same Open3D drawing code (`render.py`), so a screenshot shows exactly what the window shows. This
module needs only NumPy: the scene, the colour convention and the view camera are testable without
Open3D.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The colour convention (RGB in [0, 1]); the legend lists it in this order.
COLORS: dict[str, tuple[float, float, float]] = {
    "points": (0.45, 0.45, 0.45),
    "keyframes": (0.10, 0.30, 0.90),
    "trajectory": (1.00, 0.50, 0.00),
    "ground_truth": (0.80, 0.10, 0.75),
    "loops": (0.90, 0.05, 0.05),
    "current": (0.00, 0.70, 0.20),
}
LABELS: dict[str, str] = {
    "points": "map points",
    "keyframes": "keyframes",
    "trajectory": "estimated trajectory",
    "ground_truth": "ground truth (aligned)",
    "loops": "loop closures",
    "current": "current camera",
}
BACKGROUND = (1.0, 1.0, 1.0)
NOMINAL_HFOV_DEG = 70.0  # frusta of a run whose report gives no intrinsics


@dataclass
class Scene:
    """One picture's content, all in the estimate's world frame (the run's first camera)."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    keyframe_poses: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))  # T_world_cam
    trajectory: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    ground_truth: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    loop_edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 3)))
    current_pose: np.ndarray | None = None
    K: np.ndarray | None = None        # intrinsics of the run's camera (frustum shape)
    image_size: tuple[int, int] = (640, 480)
    info: list[str] = field(default_factory=list)  # lines of text shown beside the legend

    def legend(self) -> list[tuple[str, tuple[float, float, float]]]:
        """(label, colour) of every kind of element present."""
        present = {"points": len(self.points), "keyframes": len(self.keyframe_poses),
                   "trajectory": len(self.trajectory) > 1, "ground_truth": len(self.ground_truth) > 1,
                   "loops": len(self.loop_edges), "current": self.current_pose is not None}
        return [(LABELS[k], COLORS[k]) for k in COLORS if present[k]]

    def anchor_points(self) -> np.ndarray:
        """(N,3) positions that must be in view: trajectories, keyframes and the current camera."""
        parts = [self.trajectory, self.ground_truth, self.keyframe_poses[:, :3, 3]]
        if self.current_pose is not None:
            parts.append(self.current_pose[None, :3, 3])
        parts = [p for p in parts if len(p)]
        return np.concatenate(parts) if parts else np.zeros((0, 3))


def nominal_K(width: int, height: int, hfov_deg: float = NOMINAL_HFOV_DEG) -> np.ndarray:
    """Pinhole intrinsics with a given horizontal field of view, principal point at the centre."""
    f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])


def frustum_size(scene: Scene) -> float:
    """Depth of a drawn frustum: a fraction of the scene's extent, so frusta read at any scale."""
    a = scene.anchor_points()
    if len(a) < 2:
        return 0.1
    ext = float(np.linalg.norm(np.ptp(a, axis=0)))
    return max(0.025 * ext, 1e-3)


def frustum_lines(poses: np.ndarray, K: np.ndarray, size: tuple[int, int],
                  depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (5N,3) and line index pairs (8N,2) of camera frusta: apex and image corners at `depth`."""
    poses = np.asarray(poses, np.float64).reshape(-1, 4, 4)
    w, h = size
    corners_px = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64)
    rays = corners_px @ np.linalg.inv(K).T * depth                      # (4,3) in the camera frame
    local = np.concatenate([np.zeros((1, 3)), rays])                     # apex first
    verts = np.einsum("nij,kj->nki", poses[:, :3, :3], local) + poses[:, None, :3, 3]
    base = np.array([[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [2, 3], [3, 4], [4, 1]], np.int64)
    lines = (base[None] + 5 * np.arange(len(poses))[:, None, None]).reshape(-1, 2)
    return verts.reshape(-1, 3), lines


def polyline(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and consecutive line pairs of a path."""
    n = len(points)
    pairs = np.stack([np.arange(n - 1), np.arange(1, n)], 1).reshape(-1, 2)
    return np.asarray(points, np.float64).reshape(-1, 3), pairs


def loop_edges(loops: list[dict[str, Any]], kf_ids: np.ndarray, kf_times: np.ndarray,
               kf_positions: np.ndarray) -> np.ndarray:
    """(L,2,3) segments between the query and match keyframes of loops.json records.

    A record names each keyframe by id and timestamp; the timestamp is matched first (it survives
    any renumbering of keyframes), the id otherwise. Records naming unknown keyframes are skipped.
    """
    out = []
    for rec in loops:
        ends = []
        for side in ("query", "match"):
            ref = rec.get(side, {}) if isinstance(rec, dict) else {}
            idx = _find_keyframe(ref, kf_ids, kf_times)
            if idx is None:
                break
            ends.append(kf_positions[idx])
        if len(ends) == 2:
            out.append(ends)
    return np.array(out, np.float64).reshape(-1, 2, 3)


def _find_keyframe(ref: dict[str, Any], kf_ids: np.ndarray, kf_times: np.ndarray) -> int | None:
    t = ref.get("timestamp")
    if t is not None and len(kf_times):
        i = int(np.argmin(np.abs(kf_times - float(t))))
        if abs(kf_times[i] - float(t)) < 1e-6:
            return i
    k = ref.get("keyframe")
    if k is not None:
        hit = np.flatnonzero(kf_ids == int(k))
        if len(hit):
            return int(hit[0])
    return None


def align_ground_truth(est_times: np.ndarray, est_pos: np.ndarray, gt_times: np.ndarray, gt_pos: np.ndarray,
                       with_scale: bool) -> np.ndarray | None:
    """Ground-truth positions moved into the estimate's frame (Umeyama on matched timestamps); None if
    fewer than 3 matches or a degenerate (straight-line) match."""
    from slam.errors import ProblemError
    from slam.eval.align import associate, umeyama

    if len(est_times) < 3 or len(gt_times) < 3:
        return None
    i_est, i_gt = associate(np.asarray(est_times), np.asarray(gt_times), max_diff=0.02)
    if len(i_est) < 3:
        return None
    try:
        a = umeyama(gt_pos[i_gt], est_pos[i_est], with_scale=with_scale)
    except ProblemError:
        return None
    return (a.scale * gt_pos) @ a.rotation.T + a.translation


# ---------------------------------------------------------------------- the view camera
@dataclass(frozen=True)
class View:
    """A pinhole view camera: intrinsics K, T_cam_world (OpenCV axes: x right, y down, z forward)."""

    K: np.ndarray
    T_cam_world: np.ndarray
    width: int
    height: int
    target: np.ndarray  # the point the camera looks at (on its optical axis)

    @property
    def eye(self) -> np.ndarray:
        """Camera centre in the world."""
        R, t = self.T_cam_world[:3, :3], self.T_cam_world[:3, 3]
        return -R.T @ t

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (N,2) of world points and whether each is in front of the camera."""
        X = np.asarray(X, np.float64).reshape(-1, 3)
        Xc = X @ self.T_cam_world[:3, :3].T + self.T_cam_world[:3, 3]
        z = Xc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (Xc @ self.K.T)[:, :2] / z[:, None]
        return uv, z > 0


def look_at(eye: np.ndarray, center: np.ndarray, up: np.ndarray) -> np.ndarray:
    """T_cam_world of a camera at eye looking at center, with `up` appearing upwards in the image."""
    z = center - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)  # OpenCV: y points down, so x = z x up
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0]))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: camera axes in world coordinates
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, -R @ eye
    return T


def scene_up(scene: Scene) -> np.ndarray:
    """The world's up: the normal of a planar trajectory, signed like the cameras' up (-y), else
    the cameras' mean up."""
    kf = scene.keyframe_poses
    cam_up = -kf[:, :3, 1].mean(axis=0) if len(kf) else np.array([0, -1.0, 0])
    if np.linalg.norm(cam_up) < 1e-9:
        cam_up = np.array([0, -1.0, 0])
    cam_up = cam_up / np.linalg.norm(cam_up)
    a = scene.anchor_points()
    if len(a) >= 3:
        _, s, vt = np.linalg.svd(a - a.mean(axis=0), full_matrices=False)
        if s[1] > 1e-9 and s[2] < 0.5 * s[1]:  # spread in a plane: its normal is up
            n = vt[2]
            return n if n @ cam_up >= 0 else -n
    return cam_up


def default_view(scene: Scene, width: int, height: int, elevation_deg: float = 55.0,
                 vfov_deg: float = 50.0, left_margin: int = 0) -> View:
    """A view from above and to the side that frames the trajectories, keyframes and the bulk of the
    map in the image right of `left_margin` pixels (room for a legend)."""
    a = scene.anchor_points()
    if len(a) == 0:
        a = scene.points if len(scene.points) else np.zeros((1, 3))
    lo, hi = a.min(axis=0), a.max(axis=0)
    if len(scene.points) >= 20:  # the bulk of the map too, without its far outliers
        p_lo, p_hi = np.percentile(scene.points, [20, 80], axis=0)
        lo, hi = np.minimum(lo, p_lo), np.maximum(hi, p_hi)
    center = 0.5 * (lo + hi)
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 0.05)
    up = scene_up(scene)
    # Look across the trajectory's long axis: pick the horizontal direction of least spread.
    c = a - a.mean(axis=0)
    c = c - np.outer(c @ up, up)
    _, _, vt = np.linalg.svd(c, full_matrices=False) if len(c) >= 2 else (None, None, np.eye(3))
    side = vt[1] if len(vt) > 1 else np.cross(up, [1.0, 0, 0])
    side = side - (side @ up) * up
    if np.linalg.norm(side) < 1e-9:
        side = np.cross(up, [1.0, 0, 0]) if abs(up[0]) < 0.9 else np.cross(up, [0, 1.0, 0])
    side = side / np.linalg.norm(side)
    el = np.radians(elevation_deg)
    direction = np.cos(el) * side + np.sin(el) * up
    f = 0.5 * height / np.tan(np.radians(vfov_deg) / 2)
    margin = min(max(int(left_margin), 0), width // 2)
    half = min(np.arctan(0.5 * height / f), np.arctan(0.5 * (width - margin) / f))
    dist = 1.1 * radius / np.sin(half)
    eye = center + dist * direction
    K = np.array([[f, 0, (width + margin) / 2], [0, f, height / 2], [0, 0, 1.0]])
    return View(K, look_at(eye, center, up), int(width), int(height), center)
