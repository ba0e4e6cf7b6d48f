"""EuRoC/ASL source: pairing, missing files, calibration, rectification, ground truth, IMU."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slam.sources.common import SourceWarning
from slam.sources.euroc import EurocSource


def euroc_dir(shared_data: Path) -> Path:
    return shared_data / "euroc" / "V1_01_easy_head"


def yaml_numbers(path: Path, key: str) -> np.ndarray:
    """The numbers of a `key: [...]` list in an ASL sensor.yaml, read with a regex (not our loader)."""
    text = path.read_text()
    m = re.search(rf"^{key}:\s*\[([^\]]*)\]", text, re.M | re.S)
    return np.array([float(x) for x in m.group(1).replace("\n", " ").split(",")])


def t_bs(path: Path) -> np.ndarray:
    text = path.read_text()
    m = re.search(r"T_BS:.*?data:\s*\[([^\]]*)\]", text, re.S)
    return np.array([float(x) for x in m.group(1).split(",")]).reshape(4, 4)


def make_euroc(tmp: Path, shared_data: Path, n: int = 3, stereo: bool = True) -> Path:
    """A small ASL folder in tmp: the real sensor.yaml files and links to the first n real images."""
    src = euroc_dir(shared_data) / "mav0"
    stamps = [ln.split(",")[0] for ln in (src / "cam0" / "data.csv").read_text().splitlines()[1:n + 1]]
    for cam in ("cam0", "cam1") if stereo else ("cam0",):
        (tmp / "mav0" / cam / "data").mkdir(parents=True)
        shutil.copy(src / cam / "sensor.yaml", tmp / "mav0" / cam / "sensor.yaml")
        rows = ["#timestamp [ns],filename"]
        for s in stamps:
            os.symlink(src / cam / "data" / f"{s}.png", tmp / "mav0" / cam / "data" / f"{s}.png")
            rows.append(f"{s},{s}.png")
        (tmp / "mav0" / cam / "data.csv").write_text("\n".join(rows) + "\n")
    return tmp


def klt_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corners of a tracked into b by pyramidal KLT, kept when the backward track returns (< 0.5 px)."""
    p = cv2.goodFeaturesToTrack(a, 400, 0.01, 10)
    q, st, _ = cv2.calcOpticalFlowPyrLK(a, b, p, None, winSize=(21, 21), maxLevel=3)
    r, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, q, None, winSize=(21, 21), maxLevel=3)
    ok = (st.ravel() == 1) & (st2.ravel() == 1) & (np.linalg.norm((r - p).reshape(-1, 2), axis=1) < 0.5)
    return p.reshape(-1, 2)[ok], q.reshape(-1, 2)[ok]


def test_real_sequence_pairs_by_timestamp_and_reports_missing_files(shared_data):
    root = euroc_dir(shared_data) / "mav0"
    listed = [ln.split(",")[1] for ln in (root / "cam1" / "data.csv").read_text().splitlines()[1:]]
    absent = sorted(f for f in listed if not (root / "cam1" / "data" / f).exists())
    assert len(absent) == 4
    with pytest.warns(SourceWarning, match="cam1/data.csv: 4 listed file"):
        src = EurocSource(euroc_dir(shared_data))
    assert len(src) == 95 and src.calibration.stereo
    info = src.info()
    assert info["frames"] == 95 and info["stereo"] and info["ground_truth"] == 0
    assert sorted(Path(p).name for p in info["missing_files"]) == absent
    # Every pair shares one timestamp: the right file name is the left one (no shift by the gaps).
    assert all(Path(a).name == Path(b).name for a, b in src._files)
    cam0_ns = np.array([int(ln.split(",")[0]) for ln in (root / "cam0" / "data.csv").read_text().splitlines()[1:]])
    np.testing.assert_array_equal(src.timestamps, cam0_ns * 1e-9)
    frame = next(iter(src))
    assert frame.left.shape == (480, 752) and frame.left.dtype == np.uint8
    assert frame.right.shape == (480, 752) and frame.gt_pose is None and frame.depth is None


def test_calibration_equals_sensor_yaml(shared_data):
    root = euroc_dir(shared_data) / "mav0"
    with pytest.warns(SourceWarning):
        cal = EurocSource(euroc_dir(shared_data)).calibration
    for cam, raw in zip(("cam0", "cam1"), cal.raw_cameras):
        y = root / cam / "sensor.yaml"
        np.testing.assert_array_equal([raw.fx, raw.fy, raw.cx, raw.cy], yaml_numbers(y, "intrinsics"))
        np.testing.assert_array_equal(raw.distortion, yaml_numbers(y, "distortion_coefficients"))
        assert (raw.width, raw.height) == (752, 480) and raw.distortion_model == "radtan"
    T0, T1 = t_bs(root / "cam0" / "sensor.yaml"), t_bs(root / "cam1" / "sensor.yaml")
    # The rectified cam0 frame keeps cam0's centre and puts cam1's centre on its +x axis.
    np.testing.assert_allclose(cal.T_body_cam[:3, 3], T0[:3, 3], atol=1e-12)
    c1 = np.linalg.solve(cal.T_body_cam, T1[:, 3])
    b = np.linalg.norm(np.linalg.solve(T0, T1[:, 3])[:3])
    np.testing.assert_allclose(c1[:3], [b, 0, 0], atol=1e-9)
    assert cal.baseline == pytest.approx(b, rel=1e-9) and 0.10 < b < 0.12
    np.testing.assert_allclose(cal.T_body_cam[:3, :3].T @ cal.T_body_cam[:3, :3], np.eye(3), atol=1e-12)
    assert cal.camera.distortion_model == "none" and cal.camera.fx == cal.camera.fy


def test_rectified_features_lie_on_the_same_row(shared_data):
    with pytest.warns(SourceWarning):
        src = EurocSource(euroc_dir(shared_data))
    frames = [src.frame(i) for i in (0, 47, 94)]
    for f in frames:
        p, q = klt_pairs(f.left, f.right)
        dy, dx = q[:, 1] - p[:, 1], p[:, 0] - q[:, 0]
        assert len(p) > 80
        assert np.median(np.abs(dy)) < 0.5          # measured 0.10-0.11 px
        assert np.median(dx) > 0                     # cam1 is the right camera: positive disparity
    # Control: the raw images are far from row-aligned, so the check above can fail.
    raw = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in src._files[0]]
    p, q = klt_pairs(*raw)
    assert np.median(np.abs(q[:, 1] - p[:, 1])) > 5  # measured 12.8 px


def radtan(xy: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Radial-tangential distortion of normalized points (the model of the EuRoC sensor.yaml)."""
    k1, k2, p1, p2 = d
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    return np.stack([x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                     y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y], axis=1)


def test_mono_undistortion_puts_points_where_the_pinhole_model_says(tmp_path, shared_data):
    root = make_euroc(tmp_path, shared_data, n=1, stereo=False)
    data = root / "mav0" / "cam0" / "data"
    img_path = next(data.iterdir())
    img_path.unlink()
    cv2.imwrite(str(img_path), np.zeros((480, 752), np.uint8))
    src_probe = EurocSource(root, stereo=False)
    cam, raw = src_probe.calibration.camera, src_probe.calibration.raw_cameras[0]
    # Render Gaussian dots at the distorted positions of a grid of delivered pixels.
    u, v = np.meshgrid(np.linspace(80, 670, 6), np.linspace(70, 410, 4))
    want = np.stack([u.ravel(), v.ravel()], 1)
    xy = (want - [cam.cx, cam.cy]) / [cam.fx, cam.fy]
    dist = radtan(xy, raw.distortion) * [raw.fx, raw.fy] + [raw.cx, raw.cy]
    yy, xx = np.mgrid[0:480, 0:752]
    image = np.zeros((480, 752))
    for px, py in dist:
        image += 250 * np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * 1.5 ** 2))
    cv2.imwrite(str(img_path), np.clip(image, 0, 255).astype(np.uint8))
    out = next(iter(EurocSource(root, stereo=False))).left.astype(np.float64)
    for wu, wv in want:
        x0, y0 = int(round(wu)), int(round(wv))
        win = out[y0 - 7:y0 + 8, x0 - 7:x0 + 8]
        gy, gx = np.mgrid[y0 - 7:y0 + 8, x0 - 7:x0 + 8]
        c = np.array([(win * gx).sum(), (win * gy).sum()]) / win.sum()
        assert np.linalg.norm(c - [wu, wv]) < 0.1  # measured at most 0.042 px


def test_ground_truth_is_moved_from_body_to_delivered_camera_frame(tmp_path, shared_data):
    root = make_euroc(tmp_path, shared_data, n=3, stereo=True)
    stamps = [int(ln.split(",")[0]) for ln in (root / "mav0/cam0/data.csv").read_text().splitlines()[1:]]
    rng = np.random.default_rng(3)
    q_xyzw = rng.normal(size=(3, 4))
    q_xyzw /= np.linalg.norm(q_xyzw, axis=1, keepdims=True)
    p = rng.normal(size=(3, 3))
    gt = root / "mav0" / "state_groundtruth_estimate0"
    gt.mkdir()
    rows = ["#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], q_RS_y [], q_RS_z []"]
    for s, pp, q in zip(stamps, p, q_xyzw):
        # 1 ms after the image: still the nearest pose, well within 0.02 s
        rows.append(",".join([str(s + 1_000_000)] + [f"{x:.12f}" for x in (*pp, q[3], *q[:3])] + ["0"] * 9))
    (gt / "data.csv").write_text("\n".join(rows) + "\n")
    T_BS = t_bs(root / "mav0/cam0/sensor.yaml")
    for stereo in (False, True):
        src = EurocSource(root, stereo=stereo)
        frames = list(src)
        assert src.info()["ground_truth"] == 3
        for f, pp, q in zip(frames, p, q_xyzw):
            T_wb = np.eye(4)
            T_wb[:3, :3] = Rotation.from_quat(q).as_matrix()  # scipy: scalar-last
            T_wb[:3, 3] = pp
            T_wc = T_wb @ T_BS
            if stereo:  # the delivered camera is the rectified one: same centre, rotated axes
                T_wc = T_wb @ src.calibration.T_body_cam
                np.testing.assert_allclose(T_wc[:3, 3], (T_wb @ T_BS)[:3, 3], atol=1e-9)
            np.testing.assert_allclose(f.gt_pose, T_wc, atol=1e-9)


def test_imu_is_read_whole_and_sliced_between_frames(shared_data):
    with pytest.warns(SourceWarning):
        src = EurocSource(euroc_dir(shared_data))
    imu = src.imu
    csv = euroc_dir(shared_data) / "mav0" / "imu0" / "data.csv"
    lines = csv.read_text().splitlines()[1:]
    first = np.array([float(x) for x in lines[0].split(",")])
    assert imu.timestamps.size == len(lines) == 29120
    assert imu.timestamps[0] == int(lines[0].split(",")[0]) * 1e-9
    np.testing.assert_array_equal(imu.gyro[0], first[1:4])
    np.testing.assert_array_equal(imu.accel[0], first[4:7])
    assert imu.rate_hz == pytest.approx(200.0, rel=1e-3)
    t = src.timestamps
    assert imu.between(t[0], t[1]).stop - imu.between(t[0], t[1]).start == 10  # 200 Hz / 20 Hz


def equidistant(X: np.ndarray, K: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Pixels of camera-frame points under the equidistant (Kannala-Brandt) model, as ASL defines it."""
    x, y = X[:, 0] / X[:, 2], X[:, 1] / X[:, 2]
    r = np.hypot(x, y)
    th = np.arctan(r)
    thd = th * (1 + k[0] * th**2 + k[1] * th**4 + k[2] * th**6 + k[3] * th**8)
    s = thd / r
    return np.stack([K[0, 0] * s * x + K[0, 2], K[1, 1] * s * y + K[1, 2]], 1)


def render_dots(pix: np.ndarray, shape=(480, 752)) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    img = np.zeros(shape)
    for px, py in pix:
        img += 250 * np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * 1.5 ** 2))
    return np.clip(img, 0, 255).astype(np.uint8)


def centroid(img: np.ndarray, u: float, v: float, r: int = 7) -> np.ndarray:
    x0, y0 = int(round(u)), int(round(v))
    win = img[y0 - r:y0 + r + 1, x0 - r:x0 + r + 1].astype(np.float64)
    gy, gx = np.mgrid[y0 - r:y0 + r + 1, x0 - r:x0 + r + 1]
    return np.array([(win * gx).sum(), (win * gy).sum()]) / win.sum()


def test_equidistant_stereo_is_rectified_too(tmp_path, shared_data):
    root = make_euroc(tmp_path, shared_data, n=1, stereo=True)
    k = np.array([-0.013, 0.02, -0.011, 0.003])
    for cam in ("cam0", "cam1"):
        y = root / "mav0" / cam / "sensor.yaml"
        text = re.sub(r"distortion_model: .*", "distortion_model: equidistant", y.read_text())
        y.write_text(re.sub(r"distortion_coefficients: .*", f"distortion_coefficients: {k.tolist()}", text))
        img = next((root / "mav0" / cam / "data").iterdir())
        img.unlink()
        cv2.imwrite(str(img), np.zeros((480, 752), np.uint8))
    src = EurocSource(root)
    cal = src.calibration
    T0, T1 = t_bs(root / "mav0/cam0/sensor.yaml"), t_bs(root / "mav0/cam1/sensor.yaml")
    # Points 3-6 m in front of the rectified rig, spread over the image.
    u, v = np.meshgrid(np.linspace(150, 600, 4), np.linspace(120, 360, 3))
    depth = np.linspace(3, 6, u.size)
    K = cal.camera.K
    X_rect = np.linalg.solve(K, np.stack([u.ravel(), v.ravel(), np.ones(u.size)])).T * depth[:, None]
    X_body = (cal.T_body_cam[:3, :3] @ X_rect.T).T + cal.T_body_cam[:3, 3]
    raws = []
    for T, cam in zip((T0, T1), cal.raw_cameras):
        X_cam = (X_body - T[:3, 3]) @ T[:3, :3]  # R^T (X - t)
        raws.append(equidistant(X_cam, cam.K, k))
    for cam, pix in zip(("cam0", "cam1"), raws):
        cv2.imwrite(str(next((root / "mav0" / cam / "data").iterdir())), render_dots(pix))
    frame = next(iter(EurocSource(root)))
    want_left = np.stack([u.ravel(), v.ravel()], 1)
    want_right = want_left - np.stack([K[0, 0] * cal.baseline / depth, np.zeros(u.size)], 1)
    got_left = np.array([centroid(frame.left, *p) for p in want_left])
    got_right = np.array([centroid(frame.right, *p) for p in want_right])
    assert np.abs(got_left - want_left).max() < 0.1      # measured at most 0.037 px
    assert np.abs(got_right - want_right).max() < 0.1
    assert np.abs(got_left[:, 1] - got_right[:, 1]).max() < 0.1  # measured at most 0.050 px
