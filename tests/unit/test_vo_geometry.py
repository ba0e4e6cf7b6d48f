"""Frontend geometry against ground truth: triangulation, two-view initialization, pose refinement, PnP."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slam.frontend.initializer import two_view
from slam.geometry.pose import _jacobian, pnp_ransac, project, refine_pose
from slam.geometry.lie import orthonormalize
from slam.geometry.triangulation import checked_triangulation, triangulate
from slam.geometry import lie

K = np.array([[458.0, 0.0, 367.0], [0.0, 458.0, 248.0], [0.0, 0.0, 1.0]])


def _pose(w, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = lie.so3_exp(np.asarray(w, float))
    T[:3, 3] = t
    return T


def _scene(rng: np.random.Generator, n: int, planar: bool = False) -> np.ndarray:
    X = np.stack([rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(3, 8, n)], axis=1)
    if planar:
        X[:, 2] = 5.0 + 0.3 * X[:, 0]  # one tilted plane
    return X


def test_triangulation_recovers_points_and_rejects_bad_ones() -> None:
    rng = np.random.default_rng(0)
    X = _scene(rng, 200)
    Ta, Tb = np.eye(4), _pose([0.02, -0.05, 0.01], [-0.4, 0.05, 0.02])  # world-to-camera
    ua, _ = project(Ta, X, K)
    ub, _ = project(Tb, X, K)
    np.testing.assert_allclose(triangulate(Ta, Tb, ua, ub, K), X, atol=1e-8)
    ub_bad = ub.copy()
    ub_bad[:20, 1] += 15.0  # off the epipolar line: must fail the reprojection test
    Xt, good, par = checked_triangulation(Ta, Tb, ua, ub_bad, K, max_error=2.0, min_parallax_deg=0.5)
    assert not good[:20].any()
    assert good[20:].mean() > 0.95 and (par[20:][good[20:]] >= 0.5).all()
    np.testing.assert_allclose(Xt[20:][good[20:]], X[20:][good[20:]], atol=1e-8)


@pytest.mark.parametrize("planar, expected", [(False, "essential"), (True, "homography")])
def test_two_view_selects_the_model_and_recovers_motion(planar: bool, expected: str) -> None:
    cv2.setRNGSeed(7)  # OpenCV's RANSAC draws from its global generator
    rng = np.random.default_rng(1)
    X = _scene(rng, 300, planar)
    T_cur_ref = _pose([0.03, -0.08, 0.02], [-0.5, 0.05, 0.1])
    a, _ = project(np.eye(4), X, K)
    b, _ = project(T_cur_ref, X, K)
    a += rng.normal(0, 0.3, a.shape)
    b += rng.normal(0, 0.3, b.shape)
    tv = two_view(a, b, K, min_points=60, min_parallax_deg=1.0)
    assert tv is not None and tv.model == expected
    # refined by two-view BA: 0.3 px noise leaves a small fraction of a degree
    angle = np.linalg.norm(lie.so3_log(tv.T_cur_ref[:3, :3] @ T_cur_ref[:3, :3].T))
    assert np.degrees(angle) < 0.25
    t_dir = T_cur_ref[:3, 3] / np.linalg.norm(T_cur_ref[:3, 3])
    assert np.dot(tv.T_cur_ref[:3, 3] / np.linalg.norm(tv.T_cur_ref[:3, 3]), t_dir) > np.cos(np.radians(2.0))
    # scale convention: median depth of the initial points in the first camera is 1
    assert np.median(tv.points[tv.good, 2]) == pytest.approx(1.0)
    s = np.median(X[tv.good, 2])
    err = np.linalg.norm(tv.points[tv.good] * s - X[tv.good], axis=1) / X[tv.good, 2]
    assert np.median(err) < 0.015


def test_two_view_refuses_pure_rotation() -> None:
    rng = np.random.default_rng(2)
    X = _scene(rng, 300)
    a, _ = project(np.eye(4), X, K)
    b, _ = project(_pose([0.0, 0.06, 0.0], [0.0, 0.0, 0.0]), X, K)
    assert two_view(a, b, K, min_points=60, min_parallax_deg=1.0) is None


def test_refine_pose_converges_and_flags_outliers() -> None:
    rng = np.random.default_rng(3)
    X = _scene(rng, 250)
    T = _pose([0.1, -0.2, 0.05], [0.3, -0.1, 0.5])
    uv, _ = project(T, X, K)
    uv += rng.normal(0, 0.2, uv.shape)
    uv[:25] += rng.uniform(20, 40, (25, 2))  # 10% outliers
    start = _pose([0.12, -0.17, 0.06], [0.34, -0.08, 0.45]) @ np.eye(4)
    Tr, inl = refine_pose(start, X, uv, K, threshold=2.5)
    assert not inl[:25].any() and inl[25:].mean() > 0.97
    assert np.linalg.norm(Tr[:3, 3] - T[:3, 3]) < 5e-3
    assert np.abs(Tr[:3, :3] @ Tr[:3, :3].T - np.eye(3)).max() < 1e-12


def test_pose_jacobian_matches_finite_differences_and_the_cross_product_form() -> None:
    # the written-out rows of pose-only Gauss-Newton against central differences of the projection
    # under the perturbation it uses, P <- Exp(w) P + v, and against the np.cross form they replace
    rng = np.random.default_rng(5)
    P = _scene(rng, 60)
    iz = 1.0 / P[:, 2]
    J = _jacobian(P, iz, K[0, 0], K[1, 1])
    h = 1e-6
    for k in range(6):
        d = np.zeros(6)
        d[k] = h
        up = project(np.eye(4), P @ lie.so3_exp(d[:3]).T + d[3:], K)[0]
        um = project(np.eye(4), P @ lie.so3_exp(-d[:3]).T - d[3:], K)[0]
        np.testing.assert_allclose((up - um) / (2 * h), J[:, :, k], rtol=1e-6, atol=1e-5)
    A = J[:, :, 3:]
    assert np.array_equal(J[:, :, :3], np.cross(P[:, None, :], A))  # bit for bit: runs stay as they were


def test_pnp_ransac_from_scratch() -> None:
    rng = np.random.default_rng(4)
    X = _scene(rng, 200)
    T = _pose([-0.2, 0.4, 0.1], [1.0, 0.2, -0.3])
    uv, _ = project(T, X, K)
    uv[:60] = rng.uniform(0, 700, (60, 2))  # 30% outliers
    res = pnp_ransac(X, uv, K, threshold=2.0)
    assert res is not None
    Tr, inl = res
    assert inl[60:].all() and inl[:60].mean() < 0.1
    assert np.linalg.norm(Tr[:3, 3] - T[:3, 3]) < 1e-6


def test_orthonormalize_projects_onto_so3() -> None:
    T = _pose([0.3, -0.2, 0.1], [1, 2, 3])
    bad = T.copy()
    bad[:3, :3] *= 1.01
    fixed = orthonormalize(bad)
    np.testing.assert_allclose(fixed, T, atol=1e-12)
