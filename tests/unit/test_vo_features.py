"""Feature detection, KLT, stereo matching and depth lookup against images with a known motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slam.frontend.features import build_pyramid, cell_index, detect, klt, make_orb, orb_descriptors
from slam.frontend.stereo import depth_lookup, refine_disparity, row_search, stereo_match
from slam.geometry.pinhole import backproject


def _texture(h: int = 480, w: int = 752, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 255.0
    return img.astype(np.uint8)


def _shift(img: np.ndarray, dx: float, dy: float, gain: float = 1.0) -> np.ndarray:
    M = np.float32([[1, 0, dx], [0, 1, dy]])
    out = cv2.warpAffine(img.astype(np.float32), M, img.shape[::-1], flags=cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_REFLECT)
    return np.clip(out * gain, 0, 255).astype(np.uint8)


def test_detect_fills_the_grid_and_keeps_its_distance() -> None:
    img = _texture()
    existing = np.array([[50.0, 50.0], [60.0, 300.0], [200.0, 200.0]], np.float32)
    pts = detect(img, existing, 240, 8, 6, 15, 0.01, 10)
    cells = np.bincount(cell_index(pts, img.shape, 8, 6), minlength=48)
    assert (cells > 0).all() and cells.max() <= 5  # quota ceil(240 / 48) = 5 per cell
    d = np.linalg.norm(pts[:, None, :] - existing[None, :, :], axis=2)
    assert d.min() >= 15 - 1
    assert (pts[:, 0] >= 10).all() and (pts[:, 1] >= 10).all() and (pts[:, 0] < 742).all()


@pytest.mark.parametrize("check_levels", [-1, 1])  # the backward pass on every level, on one (stereo/RGB-D)
def test_klt_recovers_a_subpixel_shift_and_rejects_occlusions(check_levels: int) -> None:
    img = _texture()
    moved = _shift(img, 3.4, -2.1)
    pts = detect(img, np.zeros((0, 2)), 200, 8, 6, 15, 0.01, 30)
    moved[200:300, 300:400] = 128  # occluder: tracks there must fail
    a, b = build_pyramid(img, 21, 3), build_pyramid(moved, 21, 3)
    new, ok = klt(a, b, pts, None, 0.5, check_levels)
    inside = (pts[:, 0] > 310) & (pts[:, 0] < 390) & (pts[:, 1] > 210) & (pts[:, 1] < 290)  # window inside
    near = (pts[:, 0] > 285) & (pts[:, 0] < 415) & (pts[:, 1] > 185) & (pts[:, 1] < 315)
    assert not ok[inside].any()
    assert inside.any() and ok[~near].mean() > 0.95
    err = new[ok] - pts[ok] - np.array([3.4, -2.1])
    assert np.median(np.abs(err)) < 0.05


def test_stereo_match_finds_the_disparity_despite_a_gain_difference() -> None:
    left = _texture(seed=1)
    right = _shift(left, -23.4, 0.0, gain=1.1)  # right camera sees everything 23.4 px further left
    pts = detect(left, np.zeros((0, 2)), 200, 8, 6, 15, 0.01, 30).astype(np.float64)
    pts = pts[pts[:, 0] > 60]
    ur = stereo_match(build_pyramid(left, 21, 3), build_pyramid(right, 21, 3), pts, 50.0,
                      min_disparity=1.0, max_disparity=120.0)
    ok = np.isfinite(ur)
    assert ok.mean() > 0.9
    assert np.median(np.abs(pts[ok, 0] - ur[ok] - 23.4)) < 0.1
    assert np.mean(np.abs(pts[ok, 0] - ur[ok] - 23.4) > 1.0) < 0.02


def test_disparity_refinement_is_sub_pixel_where_the_zncc_parabola_is_not() -> None:
    left = _texture(seed=2)
    right = np.clip(_shift(left, -17.37, 0.0).astype(np.float32) * 0.9 + 12.0, 0, 255).astype(np.uint8)
    rng = np.random.default_rng(3)
    pts = detect(left, np.zeros((0, 2)), 200, 8, 6, 15, 0.01, 30).astype(np.float64)
    pts = pts[pts[:, 0] > 60] + rng.uniform(-0.5, 0.5, (len(pts[pts[:, 0] > 60]), 2))  # tracked features are sub-pixel
    d_zncc, score, _ = row_search(left.astype(np.float32), right.astype(np.float32), pts,
                                  np.full(len(pts), 14), 7, 5)
    assert (score > 0.9).mean() > 0.9
    start = 17.37 + rng.uniform(-0.7, 0.7, len(pts))  # anywhere within a pixel of the truth
    d = refine_disparity(left, right, pts, start)
    ok = np.isfinite(d)
    assert ok.mean() > 0.95
    err_lk = np.abs(d[ok] - 17.37)
    err_parabola = np.abs(d_zncc - 17.37)
    # 0.025 / 0.042 / 0.25 px measured: the test image is shifted with cubic interpolation, the
    # refinement samples bilinearly
    assert np.median(err_lk) < 0.04 and np.quantile(err_lk, 0.95) < 0.08
    assert np.median(err_lk) < 0.25 * np.median(err_parabola)  # gain and offset do not bias it
    far = refine_disparity(left, right, pts, np.full(len(pts), 17.37 + 4.0))  # outside its basin
    assert np.mean(np.abs(far - 17.37) < 0.1) < 0.2  # converges elsewhere or gives up, never silently right-looking
    assert np.isnan(refine_disparity(left, right, pts, np.full(len(pts), np.nan))).all()


def test_depth_lookup_rejects_edges_and_holes() -> None:
    depth = np.full((100, 100), 2.0, np.float32)
    depth[:, 50:] = 4.0  # occlusion edge at x = 49.5
    depth[10:20, 10:20] = 0.0  # hole
    pts = np.array([[25.0, 50.0], [75.0, 50.0], [49.6, 50.0], [15.0, 15.0], [25.0, 21.0]])
    d = depth_lookup(depth, pts, 0.1, 10.0)
    np.testing.assert_array_equal(np.isfinite(d), [True, True, False, False, True])
    np.testing.assert_allclose(d[[0, 1, 4]], [2.0, 4.0, 2.0])


def test_backproject_inverts_projection() -> None:
    K = np.array([[500.0, 0, 320], [0, 510.0, 240], [0, 0, 1]])
    T_wc = np.eye(4)
    T_wc[:3, :3] = cv2.Rodrigues(np.array([0.1, -0.2, 0.3]))[0]
    T_wc[:3, 3] = [1.0, 2.0, -0.5]
    uv = np.array([[100.0, 50.0], [320.0, 240.0], [600.0, 400.0]])
    z = np.array([1.5, 3.0, 7.0])
    X = backproject(uv, z, K, T_wc)
    Pc = (X - T_wc[:3, 3]) @ T_wc[:3, :3]
    np.testing.assert_allclose(Pc[:, 2], z)
    np.testing.assert_allclose(Pc[:, :2] / Pc[:, 2:] * [500.0, 510.0] + [320, 240], uv)


def test_orb_descriptors_follow_their_points() -> None:
    img = _texture(seed=2)
    orb = make_orb()
    pts = np.array([[5.0, 5.0], [100.0, 100.0], [400.0, 300.0], [745.0, 100.0], [200.0, 250.0]])
    d, ok = orb_descriptors(img, pts, orb)
    np.testing.assert_array_equal(ok, [False, True, True, False, True])
    ref = orb.compute(img, cv2.KeyPoint_convert(pts[[2]].astype(np.float32), 31.0))[1]
    np.testing.assert_array_equal(d[2], ref[0])
