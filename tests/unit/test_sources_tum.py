"""TUM RGB-D source: association as associate.py, ground truth, depth scale, Freiburg cameras."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slam.errors import FormatError, InputError
from slam.sources.common import SourceWarning
from slam.sources.tum import TumSource, associate, camera_from_name


def associate_py(first: list[float], second: list[float], max_difference: float) -> list[tuple[float, float]]:
    """The algorithm of the TUM benchmark's associate.py, transcribed as is (offset 0)."""
    first_keys, second_keys = list(first), list(second)
    potential = [(abs(a - b), a, b) for a in first_keys for b in second_keys if abs(a - b) < max_difference]
    potential.sort()
    matches = []
    for _, a, b in potential:
        if a in first_keys and b in second_keys:
            first_keys.remove(a)
            second_keys.remove(b)
            matches.append((a, b))
    matches.sort()
    return matches


def write_list(path: Path, stamps: list[float], folder: str) -> None:
    path.write_text("# timestamp filename\n" + "".join(f"{t:.6f} {folder}/{t:.6f}.png\n" for t in stamps))


def make_tum(root: Path, rgb: list[float], depth: list[float] | None, size=(64, 48),
             depth_value: int = 5000) -> Path:
    (root / "rgb").mkdir(parents=True)
    write_list(root / "rgb.txt", rgb, "rgb")
    for t in rgb:
        cv2.imwrite(str(root / "rgb" / f"{t:.6f}.png"), np.full((size[1], size[0], 3), 100, np.uint8))
    if depth is not None:
        (root / "depth").mkdir()
        write_list(root / "depth.txt", depth, "depth")
        for t in depth:
            d = np.full((size[1], size[0]), depth_value, np.uint16)
            d[0, 0] = 0
            cv2.imwrite(str(root / "depth" / f"{t:.6f}.png"), d)
    (root / "calibration.yaml").write_text(f"width: {size[0]}\nheight: {size[1]}\nfx: 50\nfy: 50\ncx: 32\ncy: 24\n")
    return root


def test_real_fr3_frames_and_ground_truth_within_20ms(shared_data):
    root = shared_data / "tum" / "fr3_long_office_household_1hz"
    with pytest.warns(SourceWarning, match="1 frame"):
        src = TumSource(root)
    assert len(src) == 17 and src.calibration.depth_scale is None
    cam = src.calibration.camera
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (535.4, 539.2, 320.1, 247.6, 640, 480)
    gt = np.loadtxt(root / "groundtruth.txt")
    rgb_t = np.loadtxt(root / "rgb.txt", usecols=0)
    frames = list(src)
    assert [f.timestamp for f in frames] == rgb_t.tolist()
    with_pose = 0
    for f in frames:
        assert f.left.shape == (480, 640, 3) and f.left.dtype == np.uint8 and f.depth is None
        gap = np.abs(gt[:, 0] - f.timestamp)
        k = int(np.argmin(gap))
        if gap[k] >= 0.02:
            assert f.gt_pose is None
            continue
        with_pose += 1
        T = np.eye(4)
        T[:3, :3] = Rotation.from_quat(gt[k, 4:8]).as_matrix()
        T[:3, 3] = gt[k, 1:4]
        np.testing.assert_allclose(f.gt_pose, T, atol=1e-12)
    # The first image (t=...980.723) precedes the first ground-truth line (...980.790) by 67 ms.
    assert with_pose == 16 and frames[0].gt_pose is None
    assert src.info()["ground_truth"] == 16


def test_association_matches_associate_py():
    rgb, depth = [0.000, 0.010, 0.100], [0.006, 0.1195, 0.5]
    ia, ib = associate(np.array(rgb), np.array(depth), 0.02)
    # Hand check: 0.010-0.006 (4 ms) wins 0.006 over 0.000 (6 ms); 0.100-0.1195 is 19.5 ms < 20 ms.
    assert list(zip(ia, ib)) == [(1, 0), (2, 1)]
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = np.sort(rng.choice(np.arange(0, 2000), 60, replace=False)) / 1000.0
        b = np.sort(rng.choice(np.arange(0, 2000), 45, replace=False)) / 1000.0 + 0.0003
        ia, ib = associate(a, b, 0.02)
        assert [(a[i], b[j]) for i, j in zip(ia, ib)] == associate_py(a.tolist(), b.tolist(), 0.02)


def test_depth_is_associated_scaled_and_checked(tmp_path):
    root = make_tum(tmp_path / "scene", [1.000, 1.033, 1.066], [1.005, 1.040, 1.200], depth_value=7500)
    with pytest.warns(SourceWarning, match="no depth image"):
        src = TumSource(root)
    frames = list(src)
    assert [f.timestamp for f in frames] == [1.000, 1.033]
    d = frames[0].depth
    assert d.dtype == np.float32 and d[0, 0] == 0.0 and d[1, 1] == np.float32(1.5)  # 7500 / 5000
    assert src.calibration.depth_scale == 5000.0 and src.info()["depth"]
    rgb_only = TumSource(root, depth=False)
    assert len(rgb_only) == 3 and next(iter(rgb_only)).depth is None


def test_depth_of_the_wrong_size_names_the_file(tmp_path):
    root = make_tum(tmp_path / "scene", [1.0], [1.0])
    bad = root / "depth" / "1.000000.png"
    cv2.imwrite(str(bad), np.zeros((10, 10), np.uint16))
    with pytest.raises(FormatError, match=r"1\.000000\.png.*10x10, expected 64x48"):
        next(iter(TumSource(root)))


def test_freiburg_camera_from_folder_name_and_undistortion(tmp_path):
    assert camera_from_name("rgbd_dataset_freiburg1_xyz") == "freiburg1"
    assert camera_from_name("fr2_desk") == "freiburg2" and camera_from_name("office") is None
    root = make_tum(tmp_path / "rgbd_dataset_freiburg1_xyz", [1.0], [1.0], size=(640, 480))
    (root / "calibration.yaml").unlink()
    depth = (np.arange(640 * 480).reshape(480, 640) % 7 * 1000 + 1000).astype(np.uint16)
    cv2.imwrite(str(root / "depth" / "1.000000.png"), depth)
    src = TumSource(root)
    raw = src.calibration.raw_cameras[0]
    assert (raw.fx, raw.fy, raw.cx, raw.cy) == (517.3, 516.5, 318.6, 255.3)
    np.testing.assert_array_equal(raw.distortion, [0.2624, -0.9531, -0.0054, 0.0026, 1.1633])
    assert src.calibration.camera.distortion_model == "none"
    out = next(iter(src)).depth
    # Depth is remapped by nearest neighbour: no value blended between neighbours.
    assert set(np.unique(out)) <= {0.0} | set((np.unique(depth) / np.float32(5000)).tolist())


def test_unknown_camera_is_an_error_unless_named(tmp_path):
    root = make_tum(tmp_path / "office", [1.0], None)
    (root / "calibration.yaml").unlink()
    with pytest.raises(InputError, match="tum_camera"):
        TumSource(root)
    src = TumSource(root, camera="freiburg3")
    assert src.calibration.camera.fx == 535.4 and len(src) == 1 and src.gt_poses is None
