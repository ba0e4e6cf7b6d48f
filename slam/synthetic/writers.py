"""Write synthetic sequences in the datasets' own formats, so the real loaders read them unchanged.

- EuRoC / ASL (`mav0/`): cam0 + cam1 (PNG, data.csv, sensor.yaml with a non-identity T_BS like the
  real rig), imu0 at 200 Hz (exact, noise-free), state_groundtruth_estimate0 at 200 Hz of the BODY
  (camera timestamps are on that grid), body.yaml. Timestamps in ns.
- TUM RGB-D: rgb/ (8-bit BGR PNG), depth/ (16-bit PNG, 5000 per metre, 0 = no depth), rgb.txt,
  depth.txt, groundtruth.txt (T_world_cam at every frame), calibration.yaml (TUM ships none).
- KITTI odometry: image_0/ + image_1/ (gray PNG), calib.txt (P0..P3, Tr), times.txt, poses.txt
  (camera 0 in the frame of the first camera, as KITTI defines it).
Numbers are written with 17 significant digits, so poses survive the round trip to ~1e-15.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from slam.errors import InputError
from slam.geometry.quaternion import rot_to_quat
from slam.io.text import atomic_output, write_text_atomic
from slam.synthetic.trajectory import body_motion
from slam.synthetic.source import SyntheticSource

FORMATS = {"euroc": "stereo", "tum": "rgbd", "kitti": "kitti"}
EUROC_T0_NS = 1_600_000_000_000_000_000  # start time of written EuRoC sequences (2020-09-13)
TUM_T0_S = 1_600_000_000  # start time of written TUM sequences, seconds
IMU_RATE_HZ = 200
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]
# The real EuRoC images are PNGs with stored (level-0) zlib blocks: 362 KB for 752x480, read in
# ~1.7 ms, where level 1 takes ~3.5 ms on a rendered image (its noise barely compresses). A
# benchmark on a written EuRoC sequence must pay what the real dataset costs to read, no more.
_PNG_EUROC = [cv2.IMWRITE_PNG_COMPRESSION, 0]

# Camera 0 in the body (IMU) frame: the rotation of the real EuRoC rig (orthonormalized) and its offset.
_R_BS = np.array([[0.0148655429818, -0.999880929698, 0.00414029679422],
                  [0.999557249008, 0.0149672133247, 0.025715529948],
                  [-0.0257744366974, 0.00375618835797, 0.999660727178]])
_U, _, _Vt = np.linalg.svd(_R_BS)
T_BODY_CAM0 = np.eye(4)
T_BODY_CAM0[:3, :3] = _U @ _Vt
T_BODY_CAM0[:3, 3] = [-0.0216401454975, -0.064676986768, 0.00981073058949]


def _g(x: float) -> str:
    return f"{x:.17g}"


def _rows(values: np.ndarray) -> list[str]:
    """Comma-free 17-digit text of each row."""
    return [" ".join(_g(v) for v in row) for row in np.atleast_2d(values)]


def _matrix_yaml(key: str, T: np.ndarray) -> str:
    vals = [_g(v) for v in T.ravel()]
    lines = [", ".join(vals[i:i + 4]) for i in range(0, 16, 4)]
    return f"{key}:\n  cols: 4\n  rows: 4\n  data: [" + ",\n         ".join(lines) + "]\n"


def _camera_yaml(src: SyntheticSource, T_BS: np.ndarray, comment: str) -> str:
    c = src.calibration.camera
    return ("%YAML:1.0\n# General sensor definitions.\nsensor_type: camera\n"
            f"comment: {comment}\n\n# Sensor extrinsics wrt. the body-frame.\n" + _matrix_yaml("T_BS", T_BS) +
            f"\n# Camera specific definitions.\nrate_hz: {src.sensor.rate_hz:g}\n"
            f"resolution: [{c.width}, {c.height}]\ncamera_model: pinhole\n"
            f"intrinsics: [{_g(c.fx)}, {_g(c.fy)}, {_g(c.cx)}, {_g(c.cy)}] #fu, fv, cu, cv\n"
            "distortion_model: radial-tangential\ndistortion_coefficients: [0.0, 0.0, 0.0, 0.0]\n")


def _render_all(src: SyntheticSource, save: Callable[[int, object, ThreadPoolExecutor], None]) -> float:
    """Render every frame and hand it to `save` (which queues PNG writes); returns seconds taken."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:  # PNG encoding releases the GIL
        jobs = []
        for frame in src:
            jobs += save(frame.index, frame, pool) or []
            if len(jobs) > 16:
                for j in jobs[:-8]:
                    j.result()
                jobs = jobs[-8:]
        for j in jobs:
            j.result()
    return time.perf_counter() - t0


def _imwrite(pool: ThreadPoolExecutor, path: Path, img: np.ndarray, params: list[int] = _PNG):
    def job() -> None:
        with atomic_output(path) as tmp:
            if not cv2.imwrite(str(tmp), img, params):
                raise OSError(f"cannot write {path}")
    return pool.submit(job)


def write_euroc(src: SyntheticSource, out: Path) -> None:
    """EuRoC ASL folder out/mav0 from a stereo synthetic source."""
    mav = out / "mav0"
    t_ns = EUROC_T0_NS + np.round(src.timestamps * 1e9).astype(np.int64)
    T_B1 = T_BODY_CAM0 @ src.T_cam0_cam1
    for cam, T in (("cam0", T_BODY_CAM0), ("cam1", T_B1)):
        (mav / cam / "data").mkdir(parents=True, exist_ok=True)
        write_text_atomic(mav / cam / "sensor.yaml", _camera_yaml(src, T, f"synthetic {src.scene} {cam}"))
        write_text_atomic(mav / cam / "data.csv", "#timestamp [ns],filename\n" + "".join(f"{t},{t}.png\n" for t in t_ns))

    def save(i: int, frame, pool):
        return [_imwrite(pool, mav / "cam0" / "data" / f"{t_ns[i]}.png", frame.left, _PNG_EUROC),
                _imwrite(pool, mav / "cam1" / "data" / f"{t_ns[i]}.png", frame.right, _PNG_EUROC)]
    _render_all(src, save)

    # ground truth and IMU on a 200 Hz grid that contains every camera timestamp (20 Hz)
    step_ns = 1_000_000_000 // IMU_RATE_HZ
    n = int((t_ns[-1] - t_ns[0]) // step_ns) + 1
    g_ns = t_ns[0] + np.arange(n, dtype=np.int64) * step_ns
    tg = (g_ns - EUROC_T0_NS) * 1e-9
    T_cam_body = np.linalg.inv(T_BODY_CAM0)
    T_wb = src.world.trajectory.poses(tg) @ T_cam_body
    vel, omega, acc = body_motion(src.world.trajectory, tg, T_cam_body)
    q = rot_to_quat(T_wb[:, :3, :3])[:, [3, 0, 1, 2]]
    gt = np.hstack([T_wb[:, :3, 3], q, vel, np.zeros((n, 6))])
    (mav / "state_groundtruth_estimate0").mkdir(parents=True, exist_ok=True)
    head = ("#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], q_RS_y [], q_RS_z [], "
            "v_RS_R_x [m s^-1], v_RS_R_y [m s^-1], v_RS_R_z [m s^-1], b_w_RS_S_x [rad s^-1], "
            "b_w_RS_S_y [rad s^-1], b_w_RS_S_z [rad s^-1], b_a_RS_S_x [m s^-2], b_a_RS_S_y [m s^-2], "
            "b_a_RS_S_z [m s^-2]\n")
    write_text_atomic(mav / "state_groundtruth_estimate0" / "data.csv",
        head + "".join(f"{t},{r.replace(' ', ',')}\n" for t, r in zip(g_ns, _rows(gt))))
    write_text_atomic(mav / "state_groundtruth_estimate0" / "sensor.yaml",
        "%YAML:1.0\nsensor_type: visual-inertial\ncomment: exact synthetic ground truth of the body\n"
        + _matrix_yaml("T_BS", np.eye(4)))
    (mav / "imu0").mkdir(parents=True, exist_ok=True)
    write_text_atomic(mav / "imu0" / "data.csv",
        "#timestamp [ns],w_RS_S_x [rad s^-1],w_RS_S_y [rad s^-1],w_RS_S_z [rad s^-1],"
        "a_RS_S_x [m s^-2],a_RS_S_y [m s^-2],a_RS_S_z [m s^-2]\n"
        + "".join(f"{t},{r.replace(' ', ',')}\n" for t, r in zip(g_ns, _rows(np.hstack([omega, acc])))))
    write_text_atomic(mav / "imu0" / "sensor.yaml",
        "%YAML:1.0\nsensor_type: imu\ncomment: exact synthetic IMU (no noise, no bias)\n"
        + _matrix_yaml("T_BS", np.eye(4)) + f"rate_hz: {IMU_RATE_HZ}\n"
        "gyroscope_noise_density: 0.0\ngyroscope_random_walk: 0.0\n"
        "accelerometer_noise_density: 0.0\naccelerometer_random_walk: 0.0\n")
    write_text_atomic(mav / "body.yaml", "%YAML:1.0\ncomment: synthetic rig (slam simulate)\n")


def write_tum(src: SyntheticSource, out: Path) -> None:
    """TUM RGB-D folder from an rgbd synthetic source (depth PNG at 5000 units per metre)."""
    for d in ("rgb", "depth"):
        (out / d).mkdir(parents=True, exist_ok=True)
    names = [f"{TUM_T0_S + t:.6f}" for t in src.timestamps]

    def save(i: int, frame, pool):
        d = np.round(frame.depth * 5000.0)
        d[(d > 65535) | (frame.depth <= 0)] = 0  # beyond 13.1 m the format has no code: unknown
        return [_imwrite(pool, out / "rgb" / f"{names[i]}.png", frame.left),
                _imwrite(pool, out / "depth" / f"{names[i]}.png", d.astype(np.uint16))]
    _render_all(src, save)
    head = f"# file: 'synthetic {src.scene} seed {src.seed}'\n"
    write_text_atomic(out / "rgb.txt", "# color images\n" + head + "# timestamp filename\n"
                                 + "".join(f"{n} rgb/{n}.png\n" for n in names))
    write_text_atomic(out / "depth.txt", "# depth maps\n" + head + "# timestamp filename\n"
                                   + "".join(f"{n} depth/{n}.png\n" for n in names))
    q = rot_to_quat(src.poses[:, :3, :3])
    rows = _rows(np.hstack([src.poses[:, :3, 3], q]))
    write_text_atomic(out / "groundtruth.txt", "# ground truth trajectory\n" + head + "# timestamp tx ty tz qx qy qz qw\n"
                                         + "".join(f"{n} {r}\n" for n, r in zip(names, rows)))
    c = src.calibration.camera
    write_text_atomic(out / "calibration.yaml",
        f"# synthetic TUM-like camera (rendered images are already pinhole)\nwidth: {c.width}\nheight: {c.height}\n"
        f"fx: {_g(c.fx)}\nfy: {_g(c.fy)}\ncx: {_g(c.cx)}\ncy: {_g(c.cy)}\ndistortion_model: none\n"
        f"rate_hz: {src.sensor.rate_hz:g}\ndepth_scale: 5000.0\n")


def write_kitti(src: SyntheticSource, out: Path) -> None:
    """KITTI odometry sequence folder from a kitti synthetic source."""
    for d in ("image_0", "image_1"):
        (out / d).mkdir(parents=True, exist_ok=True)

    def save(i: int, frame, pool):
        return [_imwrite(pool, out / "image_0" / f"{i:06d}.png", frame.left),
                _imwrite(pool, out / "image_1" / f"{i:06d}.png", frame.right)]
    _render_all(src, save)
    K = src.calibration.camera.K
    P0 = np.hstack([K, np.zeros((3, 1))])
    P1 = P0.copy()
    P1[0, 3] = -K[0, 0] * src.sensor.baseline
    lines = [f"{name}: {' '.join(_g(v) for v in P.ravel())}" for name, P in
             (("P0", P0), ("P1", P1), ("P2", P0), ("P3", P1), ("Tr", np.eye(4)[:3]))]
    write_text_atomic(out / "calib.txt", "\n".join(lines) + "\n")
    write_text_atomic(out / "times.txt", "".join(f"{t:.6e}\n" for t in src.timestamps))
    rel = np.linalg.inv(src.poses[0]) @ src.poses
    write_text_atomic(out / "poses.txt", "".join(r + "\n" for r in _rows(rel[:, :3, :].reshape(-1, 12))))


WRITERS = {"euroc": write_euroc, "tum": write_tum, "kitti": write_kitti}


def write_dataset(scene: str, fmt: str, out: Path, frames: int | None, seed: int, clean: bool) -> Path:
    """Render `scene` with the sensor of `fmt` and write it under `out` (see module docstring)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}'; expected one of {', '.join(FORMATS)}")
    src = SyntheticSource(scene, FORMATS[fmt], frames=frames, seed=seed, clean=clean)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("output exists and is not a folder", out)
    out.mkdir(parents=True, exist_ok=True)
    WRITERS[fmt](src, out)
    return out


def write_sequence(scene: str, fmt: str, out_dir: str | Path, frames: int | None = None, seed: int = 0,
                   clean: bool = False) -> Path:
    """Render a scene into a dataset folder in EuRoC ('euroc'), TUM RGB-D ('tum') or KITTI ('kitti') format.

    Returns the folder that the matching loader opens (out_dir itself).
    """
    return write_dataset(scene, fmt, Path(out_dir), frames, seed, clean)
