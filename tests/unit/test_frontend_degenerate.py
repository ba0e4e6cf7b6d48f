"""Every OpenCV call of tracking meets degenerate input: it must answer "no estimate", not raise.

One test per call: pure rotation (where a motion is estimated), coincident or collinear points,
fewer points than the minimum, NaN coordinates, empty input. Where the degenerate rows are mixed
with good ones, the good ones must still give the right answer (checked against the truth the data
was made from), so a guard that simply refuses everything would fail here.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from slam.frontend.features import build_pyramid, detect, klt, make_orb, orb_descriptors
from slam.geometry.guard import affine_rank, attempt
from slam.frontend.initializer import Rejection, TwoView, try_two_view, two_view
from slam.geometry.pose import pnp_ransac, project, refine_pose
from slam.frontend.relocalizer import multiscale_features
from slam.geometry.matching import match_descriptors
from slam.frontend.stereo import depth_lookup, stereo_match
from slam.geometry.triangulation import checked_triangulation, triangulate
from slam.geometry import lie

K = np.array([[458.0, 0.0, 367.0], [0.0, 458.0, 248.0], [0.0, 0.0, 1.0]])


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    """A degenerate case must not print a raw RuntimeWarning either."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _pose(w, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = lie.so3_exp(np.asarray(w, float))
    T[:3, 3] = t
    return T


def _scene(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(3, 8, n)], axis=1)


def _texture(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 2.0)
    return ((img - img.min()) / (img.max() - img.min()) * 255.0).astype(np.uint8)


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    M = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, M, img.shape[::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def test_guard_helpers() -> None:
    assert attempt(cv2.findHomography, np.zeros((0, 2)), np.zeros((0, 2)), cv2.RANSAC, 1.0) is None
    assert affine_rank(np.ones((5, 3))) == 0
    assert affine_rank(np.outer(np.arange(5.0), [1.0, 2.0, 3.0])) == 1
    assert affine_rank(_scene(10)) == 3
    assert affine_rank(np.zeros((1, 2))) == 0


# ---------------------------------------------------------------- calcOpticalFlowPyrLK
def test_klt_on_degenerate_points_and_images() -> None:
    img = _texture()
    a, b = build_pyramid(img, 21, 3), build_pyramid(_shift(img, 2.5, -1.5), 21, 3)
    good = np.array([[100.0, 100.0], [200.0, 120.0], [150.0, 180.0]], np.float32)
    pts = np.vstack([good, [[np.nan, 50.0], [np.inf, np.inf]]]).astype(np.float32)
    new, ok = klt(a, b, pts, None, 0.5)
    np.testing.assert_array_equal(ok, [True, True, True, False, False])
    np.testing.assert_allclose(new[:3] - good, [[2.5, -1.5]] * 3, atol=0.1)  # the finite ones still track
    guess = pts + [2.0, -1.0]
    guess[1] = np.nan  # a NaN seed: that track is lost, not the others
    _, ok = klt(a, b, pts, guess, 0.5)
    np.testing.assert_array_equal(ok, [True, False, True, False, False])
    for p in (np.zeros((0, 2)), np.full((4, 2), np.nan), np.full((6, 2), 100.0)):  # empty, NaN, coincident
        new, ok = klt(a, b, p, None, 0.5)
        assert new.shape == (len(p), 2) and ok.shape == (len(p),)
        assert np.isfinite(new[ok]).all()
    assert klt(a, b, np.full((6, 2), 100.0, np.float32), None, 0.5)[1].all()  # coincident points all track
    for other in (build_pyramid(np.zeros((0, 0), np.uint8), 21, 3), build_pyramid(img[:50, :60], 21, 3)):
        _, ok = klt(a, other, good, None, 0.5)  # an empty image or one of another size: no track, no error
        assert not ok.any()


# ---------------------------------------------------------------- goodFeaturesToTrack (+ dilate)
def test_detect_on_degenerate_images_and_existing_points() -> None:
    img = _texture()
    existing = np.array([[60.0, 60.0], [200.0, 150.0]])
    with_nan = np.vstack([existing, [[np.nan, np.nan], [np.nan, 10.0]]])
    np.testing.assert_array_equal(detect(img, with_nan, 100, 4, 3, 10, 0.01, 10),
                                  detect(img, existing, 100, 4, 3, 10, 0.01, 10))
    for gray in (np.zeros((240, 320), np.uint8), np.zeros((0, 0), np.uint8), img[:15, :15]):  # blank, empty, tiny
        assert detect(gray, existing, 100, 4, 3, 10, 0.01, 10).shape == (0, 2)
    assert detect(img, np.zeros((0, 2)), 0, 4, 3, 10, 0.01, 10).shape == (0, 2)  # nothing wanted


# ---------------------------------------------------------------- ORB compute
def test_orb_descriptors_on_degenerate_points() -> None:
    img = _texture(seed=3)
    orb = make_orb()
    good = np.array([[100.0, 100.0], [200.0, 150.0]])
    d_ref, ok_ref = orb_descriptors(img, good, orb)
    assert ok_ref.all()
    pts = np.vstack([good, [[np.nan, 100.0], [100.0, np.inf]]])
    d, ok = orb_descriptors(img, pts, orb)
    np.testing.assert_array_equal(ok, [True, True, False, False])
    np.testing.assert_array_equal(d[:2], d_ref)
    d, ok = orb_descriptors(img, np.array([[100.0, 100.0]] * 3), orb)  # coincident: one descriptor, no error
    assert ok[0] and (d[ok] == d_ref[0]).all()
    for p in (np.zeros((0, 2)), np.full((3, 2), np.nan)):
        d, ok = orb_descriptors(img, p, orb)
        assert d.shape == (len(p), 32) and not ok.any()
    assert not orb_descriptors(np.zeros((0, 0), np.uint8), good, orb)[1].any()


# ---------------------------------------------------------------- BFMatcher.knnMatch
def test_match_descriptors_on_degenerate_input() -> None:
    rng = np.random.default_rng(5)
    train = rng.integers(0, 256, (20, 32), dtype=np.uint8)
    q, t = match_descriptors(train[[3, 7]], train)
    np.testing.assert_array_equal(q, [0, 1])
    np.testing.assert_array_equal(t, [3, 7])
    for query, tr in ((train[:0], train), (train, train[:1]), (train.astype(np.float32), train),
                      (train[:, :16], train), (np.repeat(train[:1], 5, axis=0), np.repeat(train[:1], 5, axis=0))):
        q, t = match_descriptors(query, tr)  # empty, one candidate, not binary, other length, all identical
        assert len(q) == len(t) and len(q) <= 1


# ---------------------------------------------------------------- solvePnPRansac + Rodrigues
def test_pnp_ransac_on_degenerate_input() -> None:
    X = _scene(80, seed=1)
    T = _pose([0.1, -0.2, 0.05], [0.3, -0.1, 0.4])
    uv, _ = project(T, X, K)
    Xn, uvn = X.copy(), uv.copy()
    Xn[:5, 0] = np.nan
    uvn[5:8, 1] = np.inf
    res = pnp_ransac(Xn, uvn, K, 2.0)  # NaN rows mixed in: the others still give the pose
    assert res is not None
    assert np.abs(res[0] - T).max() < 1e-6 and not res[1][:8].any() and res[1][8:].all()
    line = np.outer(np.linspace(-1, 1, 20), [1.0, 0.5, 0.2]) + [0.0, 0.0, 5.0]
    cases = {
        "fewer than 6": (X[:5], uv[:5]),
        "collinear": (line, project(T, line, K)[0]),
        "coincident": (np.repeat(X[:1], 20, axis=0), np.repeat(uv[:1], 20, axis=0)),
        "coincident pixels": (X[:20], np.repeat(uv[:1], 20, axis=0)),
        "all NaN": (np.full((20, 3), np.nan), uv[:20]),
        "empty": (np.zeros((0, 3)), np.zeros((0, 2))),
    }
    for name, (Xc, uvc) in cases.items():
        assert pnp_ransac(Xc, uvc, K, 2.0) is None, name


# ---------------------------------------------------------------- pose-only refinement (no OpenCV, same contract)
def test_refine_pose_on_degenerate_input() -> None:
    X = _scene(60, seed=2)
    T = _pose([0.05, 0.1, -0.02], [0.2, 0.0, -0.1])
    uv, _ = project(T, X, K)
    Xn = X.copy()
    Xn[:6] = np.nan
    Tr, inl = refine_pose(_pose([0.06, 0.09, -0.01], [0.22, 0.01, -0.12]), Xn, uv, K, 2.0)
    assert not inl[:6].any() and inl[6:].all() and np.abs(Tr - T).max() < 1e-6
    for Xc, uvc, start in ((np.full((10, 3), np.nan), uv[:10], T), (X, uv, np.full((4, 4), np.nan)),
                           (np.repeat(X[:1], 10, axis=0), np.repeat(uv[:1], 10, axis=0), T),
                           (X[:3], uv[:3], T), (np.zeros((0, 3)), np.zeros((0, 2)), T)):
        Tr, inl = refine_pose(start, Xc, uvc, K, 2.0)  # all NaN, NaN start, coincident, too few, empty
        assert inl.shape == (len(Xc),)
        assert not inl.any() or np.isfinite(Tr).all()
        assert np.isfinite(Tr).all() or not np.isfinite(start).all()


# ---------------------------------------------------------------- findEssentialMat / findHomography / decompose*
def test_two_view_on_degenerate_input() -> None:
    X = _scene(300, seed=3)
    a, _ = project(np.eye(4), X, K)
    b_rot, _ = project(_pose([0.0, 0.06, 0.0], [0.0, 0.0, 0.0]), X, K)
    plane = X.copy()
    plane[:, 2] = 5.0 + 0.3 * plane[:, 0]
    pa, _ = project(np.eye(4), plane, K)
    pb_rot, _ = project(_pose([0.02, -0.04, 0.0], [0.0, 0.0, 0.0]), plane, K)
    u = np.linspace(50, 650, 300)
    row = np.stack([u, 0.5 * u + 20], axis=1)
    cases = {
        "pure rotation": (a, b_rot),
        "pure rotation, plane": (pa, pb_rot),
        "collinear": (row, row + [5.0, 0.0]),
        "coincident": (np.repeat(a[:1], 300, axis=0), np.repeat(b_rot[:1], 300, axis=0)),
        "fewer than the minimum": (a[:40], b_rot[:40]),
        "all NaN": (np.full_like(a, np.nan), b_rot),
        "empty": (np.zeros((0, 2)), np.zeros((0, 2))),
    }
    for name, (ca, cb) in cases.items():
        cv2.setRNGSeed(1)
        res = try_two_view(ca, cb, K, min_points=60, min_parallax_deg=1.0)
        assert isinstance(res, Rejection) and res.reason and res.detail, name
        assert two_view(ca, cb, K) is None, name
    # NaN rows among a good two-view: refused for those rows only, the motion is still found
    T = _pose([0.03, -0.08, 0.02], [-0.5, 0.05, 0.1])
    b, _ = project(T, X, K)
    an = a.copy()
    an[:10] = np.nan
    cv2.setRNGSeed(7)
    res = try_two_view(an, b, K, min_points=60, min_parallax_deg=1.0)
    assert isinstance(res, TwoView)
    assert res.points.shape == (300, 3) and not res.good[:10].any() and res.good[10:].mean() > 0.9
    assert np.isfinite(res.points[res.good]).all()
    angle = np.linalg.norm(lie.so3_log(res.T_cur_ref[:3, :3] @ T[:3, :3].T))
    assert np.degrees(angle) < 0.05


# ---------------------------------------------------------------- triangulation (DLT by SVD)
def test_triangulation_on_degenerate_input() -> None:
    X = _scene(50, seed=4)
    Ta, Tb = np.eye(4), _pose([0.02, -0.05, 0.01], [-0.4, 0.05, 0.02])
    ua, _ = project(Ta, X, K)
    ub, _ = project(Tb, X, K)
    ua[:4] = np.nan
    P = triangulate(Ta, Tb, ua, ub, K)  # NaN pixels: NaN points (numpy's SVD would raise on them)
    assert np.isnan(P[:4]).all()
    np.testing.assert_allclose(P[4:], X[4:], atol=1e-8)
    Xt, good, _ = checked_triangulation(Ta, Tb, ua, ub, K, 2.0, 0.5)
    assert not good[:4].any() and good[4:].all()
    R = _pose([0.0, 0.05, 0.0], [0.0, 0.0, 0.0])  # pure rotation: no baseline, no point
    ur, _ = project(R, X, K)
    assert not checked_triangulation(Ta, R, ua, ur, K, 2.0, 0.5)[1].any()
    assert not checked_triangulation(Ta, Ta, ua, ua, K, 2.0, 0.5)[1].any()  # the same camera twice
    bad_pose = np.full((4, 4), np.nan)
    assert not checked_triangulation(Ta, bad_pose, ua, ub, K, 2.0, 0.5)[1].any()
    assert triangulate(Ta, Tb, np.zeros((0, 2)), np.zeros((0, 2)), K).shape == (0, 3)


# ---------------------------------------------------------------- pyrDown (stereo) and depth lookup
def test_stereo_and_depth_on_degenerate_input() -> None:
    left = _texture(seed=6)
    right = _shift(left, -12.3, 0.0)
    pl, pr = build_pyramid(left, 21, 3), build_pyramid(right, 21, 3)
    good = np.array([[150.0, 100.0], [200.0, 150.0], [250.0, 120.0]])
    ref = stereo_match(pl, pr, good, 50.0, max_disparity=60.0)
    assert np.isfinite(ref).all() and np.abs(good[:, 0] - ref - 12.3).max() < 0.2
    pts = np.vstack([good, [[np.nan, 100.0], [np.inf, 5.0]]])
    ur = stereo_match(pl, pr, pts, 50.0, max_disparity=60.0)
    np.testing.assert_array_equal(ur[:3], ref)
    assert np.isnan(ur[3:]).all()
    for other in (build_pyramid(np.zeros((0, 0), np.uint8), 21, 3), build_pyramid(right[:100], 21, 3)):
        assert np.isnan(stereo_match(pl, other, good, 50.0)).all()  # empty image, not a rectified pair
    assert stereo_match(pl, pr, np.zeros((0, 2)), 50.0).shape == (0,)
    depth = np.full((60, 80), 2.0, np.float32)
    d = depth_lookup(depth, np.array([[20.0, 20.0], [np.nan, 3.0], [30.0, 40.0]]), 0.1, 10.0)
    np.testing.assert_array_equal(np.isfinite(d), [True, False, True])
    assert np.isnan(depth_lookup(np.zeros((2, 2), np.float32), good, 0.1, 10.0)).all()


# ---------------------------------------------------------------- resize (relocalization's image pyramid)
def test_multiscale_features_on_tiny_and_blank_images() -> None:
    orb = make_orb()
    for gray in (np.zeros((240, 320), np.uint8), np.zeros((1, 1), np.uint8), np.zeros((0, 0), np.uint8)):
        uv, d = multiscale_features(gray, orb, 500)
        assert uv.shape == (0, 2) and d.shape[0] == 0
