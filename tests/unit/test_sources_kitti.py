"""KITTI odometry source: frames, times, poses of camera 0, calibration and stereo baseline."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from slam.errors import FormatError, InputError
from slam.sources.kitti import KittiSource


def kitti_dir(shared_data: Path) -> Path:
    return shared_data / "kitti" / "07_head"


def make_stereo(tmp: Path, shared_data: Path, n: int = 3) -> Path:
    """sequences/07 with n real left images (also linked as right ones) and poses in poses/07.txt."""
    src = kitti_dir(shared_data)
    seq = tmp / "sequences" / "07"
    for cam in ("image_0", "image_1"):
        (seq / cam).mkdir(parents=True)
        for i in range(n):
            os.symlink(src / "image_0" / f"{i:06d}.png", seq / cam / f"{i:06d}.png")
    shutil.copy(src / "calib.txt", seq / "calib.txt")
    (seq / "times.txt").write_text("".join((src / "times.txt").read_text().splitlines(True)[:n]))
    (tmp / "poses").mkdir()
    (tmp / "poses" / "07.txt").write_text("".join((src / "poses.txt").read_text().splitlines(True)[:n]))
    return seq


def test_real_sequence_has_160_frames_with_poses(shared_data):
    root = kitti_dir(shared_data)
    src = KittiSource(root)
    assert len(src) == 160 and not src.calibration.stereo
    poses = np.loadtxt(root / "poses.txt").reshape(-1, 3, 4)
    times = np.loadtxt(root / "times.txt")
    np.testing.assert_array_equal(src.timestamps, times)
    info = src.info()
    assert info["ground_truth"] == 160 and info["frames"] == 160 and info["resolution"] == [1226, 370]
    P0 = np.array((root / "calib.txt").read_text().splitlines()[0].split()[1:], float).reshape(3, 4)
    cam = src.calibration.camera
    np.testing.assert_array_equal(cam.K, P0[:, :3])
    for i in (0, 80, 159):
        f = src.frame(i)
        assert f.left.shape == (370, 1226) and f.left.dtype == np.uint8 and f.right is None
        np.testing.assert_array_equal(f.gt_pose[:3], poses[i])
        np.testing.assert_array_equal(f.gt_pose[3], [0, 0, 0, 1])
    np.testing.assert_allclose(src.frame(0).gt_pose, np.eye(4), atol=1e-9)
    assert src.calibration.rate_hz == pytest.approx(1 / np.median(np.diff(times)))


def test_stereo_without_image_1_names_the_folder(shared_data):
    with pytest.raises(InputError, match="image_1"):
        KittiSource(kitti_dir(shared_data), stereo=True)


def test_stereo_baseline_from_P1_and_poses_from_the_poses_folder(tmp_path, shared_data):
    seq = make_stereo(tmp_path, shared_data)
    src = KittiSource(seq)
    assert src.calibration.stereo and len(src) == 3
    # P1 = [fx 0 cx -fx*b; ...]: calib.txt has fx 707.0912 and -fx*b = -379.8145.
    assert src.calibration.baseline == pytest.approx(379.8145 / 707.0912, rel=1e-12)
    f = src.frame(2)
    assert f.right.shape == f.left.shape and f.gt_pose is not None
    np.testing.assert_array_equal(src.calibration.T_cam0_cam1[:3, 3], [src.calibration.baseline, 0, 0])


def test_pose_count_must_match_times(tmp_path, shared_data):
    seq = make_stereo(tmp_path, shared_data)
    poses = tmp_path / "poses" / "07.txt"
    poses.write_text("".join(poses.read_text().splitlines(True)[:2]))
    with pytest.raises(FormatError, match=r"07\.txt: 2 poses for 3 timestamps"):
        KittiSource(seq)
