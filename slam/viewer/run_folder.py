"""A finished run folder (map.ply, trajectory.tum, keyframes.tum, groundtruth.tum, loops.json) as a Scene."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from slam.errors import InputError
from slam.io.text import read_text
from slam.io.trajectory import Trajectory, read_tum
from slam.viewer.scene import Scene, align_ground_truth, loop_edges, nominal_K

_PLY_DTYPE = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")]


def read_map_points(path: Path) -> np.ndarray:
    """Landmarks of a map.ply written by `slam run` (its red keyframe centres left out)."""
    data = path.read_bytes()
    marker = b"end_header\n"
    if not data.startswith(b"ply\n") or marker not in data:
        raise InputError(f"{path}: not a PLY file (no 'ply' / 'end_header')")
    end = data.index(marker) + len(marker)
    header = data[:end].decode("ascii", "replace").splitlines()
    props = [line.split()[-1] for line in header if line.startswith("property")]
    if "format binary_little_endian 1.0" not in header or props != ["x", "y", "z", "red", "green", "blue"]:
        raise InputError(f"{path}: expected the binary PLY `slam run` writes (x y z float, red green blue uchar), "
                         f"got properties {props}")
    n = int(next(line.split()[2] for line in header if line.startswith("element vertex")))
    if len(data) - end < n * 15:
        raise InputError(f"{path}: truncated: header announces {n} vertices, file holds {(len(data) - end) // 15}")
    rec = np.frombuffer(data[end:], dtype=_PLY_DTYPE, count=n)
    keyframe_centre = (rec["r"] == 255) & (rec["g"] == 0) & (rec["b"] == 0)
    xyz = np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float64)[~keyframe_centre]
    return xyz[np.all(np.isfinite(xyz), axis=1)]


def _read_optional_tum(path: Path) -> Trajectory | None:
    if not path.exists():
        return None
    if not any(line.strip() and not line.lstrip().startswith("#") for line in read_text(path, "TUM trajectory").splitlines()):
        return None  # an empty trajectory (every frame lost) is a valid run output
    return read_tum(path)


def _read_json(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(read_text(path, "JSON file"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None


def load_run(run_dir: str | Path) -> Scene:
    """The Scene of a run folder; a clear error when the folder is not one."""
    d = Path(run_dir)
    if not d.is_dir():
        raise InputError(f"{d}: no such run folder")
    if not (d / "trajectory.tum").exists() and not (d / "keyframes.tum").exists():
        raise InputError(f"{d}: not a run folder (expected trajectory.tum and keyframes.tum, written by `slam run`)")
    traj = _read_optional_tum(d / "trajectory.tum")
    kfs = _read_optional_tum(d / "keyframes.tum")
    gt = _read_optional_tum(d / "groundtruth.tum")
    report = _read_json(d / "report.json", {})
    loops = _read_json(d / "loops.json", [])
    if not isinstance(loops, list):
        raise InputError(f"{d / 'loops.json'}: expected a JSON list of loop records")
    scene = Scene()
    if (d / "map.ply").exists():
        scene.points = read_map_points(d / "map.ply")
    if kfs is not None:
        scene.keyframe_poses = kfs.poses
    if traj is not None:
        scene.trajectory = traj.positions
    w, h = (report.get("resolution") or [640, 480])[:2]
    scene.image_size = (int(w), int(h))
    cam = report.get("camera") or {}
    scene.K = np.asarray(cam["K"], np.float64) if "K" in cam else nominal_K(int(w), int(h))
    if gt is not None and traj is not None:
        method = (report.get("ate") or {}).get("align", "sim3" if report.get("sensor") == "mono" else "se3")
        with_scale = method == "sim3"
        aligned = align_ground_truth(traj.timestamps, traj.positions, gt.timestamps, gt.positions, with_scale)
        if aligned is not None:
            scene.ground_truth = aligned
    if kfs is not None and loops:
        scene.loop_edges = loop_edges(loops, np.arange(len(kfs)), kfs.timestamps, kfs.positions)
    scene.info = _info_lines(d, report, scene, len(loops))
    return scene


def _info_lines(d: Path, report: dict[str, Any], scene: Scene, n_loops: int) -> list[str]:
    lines = [d.name or str(d)]
    if report:
        frames = f", {report['frames']} frames" if "frames" in report else ""
        lines.append(f"{report.get('source', '?')} ({report.get('sensor', '?')}){frames}")
    lines.append(f"{len(scene.keyframe_poses)} keyframes, {len(scene.points)} points, {n_loops} loop{'' if n_loops == 1 else 's'}")
    ate = report.get("ate") or {}
    if "rmse" in ate:
        lines.append(f"ATE RMSE {ate['rmse']:.4f} m ({ate.get('align', '?')})")
    return lines
