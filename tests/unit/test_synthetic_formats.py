"""Synthetic sequences written as EuRoC / TUM / KITTI folders read back unchanged by the real loaders.

The loaders (slam.sources.open_source) are the peers: poses must come back to 1e-9, images
exactly (PNG is lossless), TUM depth to its 0.2 mm quantization, and `slam info --json` must
report the rendered intrinsics. Also `slam simulate` itself, and the exact IMU of the EuRoC writer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from slam.cli import main
from slam.errors import InputError
from slam.geometry.lie import so3_log
from slam.geometry.quaternion import quat_to_rot
from slam.sources.open import open_source
from slam.synthetic.writers import FORMATS, T_BODY_CAM0
from slam.synthetic import SyntheticSource, list_scenes, write_sequence


# every format and every scene at least once; street_loop-tum has depth beyond the 16-bit range
PAIRS = [("room_loop", "euroc"), ("office_long", "euroc"), ("room_figure8", "tum"), ("street_loop", "tum"),
         ("office_walk", "kitti"), ("street_loop", "kitti")]


@pytest.mark.parametrize("scene,fmt", PAIRS)
def test_written_sequence_reads_back_exactly(tmp_path, scene, fmt):
    n = 3
    path = write_sequence(scene, fmt, tmp_path / fmt, frames=n)
    src = SyntheticSource(scene, FORMATS[fmt], frames=n)
    loaded = open_source(str(path))
    assert loaded.kind == fmt and len(loaded) == n
    first_inv = np.linalg.inv(src.poses[0])
    t0 = None
    for a, b in zip(loaded, src):
        # KITTI poses are camera 0 in the first camera frame, by the format's definition
        ref = first_inv @ b.gt_pose if fmt == "kitti" else b.gt_pose
        assert np.abs(a.gt_pose - ref).max() < 1e-9
        assert np.array_equal(a.left, b.left)
        if b.right is not None:
            assert a.right is not None and np.array_equal(a.right, b.right)
        if b.depth is not None:
            known = (b.depth > 0) & (np.round(b.depth * 5000) <= 65535)  # beyond: no code
            assert np.array_equal(a.depth > 0, known)
            assert np.abs(a.depth - b.depth)[known].max() <= 0.5 / 5000 + 1e-6
        t0 = a.timestamp if t0 is None else t0
        assert abs((a.timestamp - t0) - b.timestamp) < 1e-6
    cal_a, cal_b = loaded.calibration, src.calibration
    for key in ("fx", "fy", "cx", "cy"):
        assert getattr(cal_a.camera, key) == pytest.approx(getattr(cal_b.camera, key), abs=1e-9)
    if cal_b.baseline is not None:
        assert cal_a.baseline == pytest.approx(cal_b.baseline, abs=1e-12)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_slam_info_reports_the_rendered_intrinsics(tmp_path, capsys, fmt):
    path = write_sequence("room_loop", fmt, tmp_path / fmt, frames=2, clean=True)
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    cam = SyntheticSource("room_loop", FORMATS[fmt], frames=2).calibration.camera
    assert info["frames"] == 2 and info["ground_truth"] == 2
    for key in ("fx", "fy", "cx", "cy"):
        assert info["calibration"][key] == pytest.approx(getattr(cam, key), abs=1e-9)
    assert info["resolution"] == [cam.width, cam.height]


def test_euroc_ground_truth_is_the_body_and_imu_is_exact(tmp_path):
    path = write_sequence("room_figure8", "euroc", tmp_path, frames=21, clean=True)
    mav = path / "mav0"
    assert np.degrees(np.linalg.norm(so3_log(T_BODY_CAM0[:3, :3]))) > 60  # a real rotation to undo
    gt = np.loadtxt(mav / "state_groundtruth_estimate0" / "data.csv", delimiter=",", comments="#")
    src = SyntheticSource("room_figure8", "stereo", frames=21, clean=True)
    cam_ns = np.loadtxt(mav / "cam0" / "data.csv", delimiter=",", comments="#", dtype=np.int64, usecols=0)
    gt_ns = np.loadtxt(mav / "state_groundtruth_estimate0" / "data.csv", delimiter=",", comments="#",
                       dtype=np.int64, usecols=0)  # float64 cannot hold these nanoseconds
    rows = np.searchsorted(gt_ns, cam_ns)
    assert np.array_equal(gt_ns[rows], cam_ns)
    body = (src.poses @ np.linalg.inv(T_BODY_CAM0))[:, :3, 3]
    assert np.abs(gt[rows, 1:4] - body).max() < 1e-9  # positions of the body, not of the camera
    assert np.linalg.norm(gt[rows, 1:4] - src.poses[:, :3, 3], axis=1).min() > 0.05
    # gyro = rotation rate between consecutive body poses; accel = d2p/dt2 - g in the body frame
    loaded = open_source(str(path))
    imu = loaded.imu
    R = quat_to_rot(gt[:, [5, 6, 7, 4]])
    dt = np.diff(gt_ns) * 1e-9
    w_fd = so3_log(np.einsum("nji,njk->nik", R[:-1], R[1:])) / dt[:, None]
    w_mid = 0.5 * (imu.gyro[:-1] + imu.gyro[1:])
    assert np.abs(w_fd - w_mid).max() < 2e-3 * max(1.0, np.abs(w_mid).max())
    p = gt[:, 1:4]
    a_world = (p[2:] - 2 * p[1:-1] + p[:-2]) / (dt[0] ** 2)
    f_fd = np.einsum("nji,nj->ni", R[1:-1], a_world + [0.0, 0.0, 9.81])
    assert np.abs(f_fd - imu.accel[1:-1]).max() < 0.02
    assert np.allclose(gt[:, 8:11][1:-1], (p[2:] - p[:-2]) / (2 * dt[0]), atol=1e-3)


def _zlib_levels(png: bytes) -> set[int]:
    """FLEVEL of the zlib stream of a PNG (0: stored/fastest ... 3: maximum compression)."""
    import struct
    i, idat = 8, b""
    while i < len(png):
        (length,), kind = struct.unpack(">I", png[i:i + 4]), png[i + 4:i + 8]
        if kind == b"IDAT":
            idat += png[i + 8:i + 8 + length]
        i += 12 + length
    return {idat[1] >> 6}


def test_euroc_images_are_stored_as_the_real_dataset_stores_them(tmp_path, shared_data):
    # the real EuRoC PNGs hold uncompressed (stored) zlib blocks, which read twice as fast as
    # deflated ones: a benchmark on a written sequence must pay the dataset's decoding cost
    real = sorted((shared_data / "euroc" / "V1_01_easy_head" / "mav0" / "cam0" / "data").glob("*.png"))[0]
    path = write_sequence("room_loop", "euroc", tmp_path, frames=2, clean=True)
    ours = sorted((path / "mav0" / "cam0" / "data").glob("*.png"))[0]
    assert _zlib_levels(real.read_bytes()) == _zlib_levels(ours.read_bytes()) == {0}
    assert ours.stat().st_size > 752 * 480  # no deflate: at least the raw pixels


def test_simulate_command_lists_writes_and_refuses_bad_input(tmp_path, capsys):
    assert main(["simulate", "--list"]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == list_scenes()
    out = tmp_path / "seq"
    assert main(["simulate", "office_walk", "--format", "tum", "--out", str(out), "--frames", "2",
                 "--seed", "0", "--clean"]) == 0
    assert "wrote 2 frames" in capsys.readouterr().out
    assert len(open_source(str(out))) == 2
    assert main(["simulate", "no_such_scene", "--out", str(tmp_path / "x")]) == 2
    assert "unknown synthetic scene 'no_such_scene'; expected one of room_loop" in capsys.readouterr().err
    assert main(["simulate", "office_walk", "--frames", "100000", "--out", str(tmp_path / "y")]) == 2
    assert "at most" in capsys.readouterr().err
    with pytest.raises(InputError, match="unknown format 'bag'"):
        write_sequence("room_loop", "bag", tmp_path / "z")
    with pytest.raises(InputError, match="unknown synthetic sensor 'lidar'"):
        SyntheticSource("room_loop", "lidar")


def test_synthetic_spec_streams_without_files():
    src = open_source("synthetic:room_loop", {"sensor": "rgbd"})
    assert isinstance(src, SyntheticSource) and src.sensor.name == "rgbd"
    f = next(iter(src))
    assert f.depth is not None and f.depth.dtype == np.float32 and f.gt_pose.shape == (4, 4)
    info = src.info()
    assert info["kind"] == "synthetic" and info["ground_truth"] == info["frames"] == len(src)
