"""Anchor alignment (slam/frontend/anchored.py): warp prediction and affine Lucas-Kanade against known warps."""

from __future__ import annotations

import cv2
import numpy as np

from slam.frontend.anchored import AnchorAlignment, align, predicted_affine, refine_to_anchors, templates

K = np.array([[400.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])


def _texture(seed: int = 0, shape: tuple[int, int] = (480, 640)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random(shape).astype(np.float32) * 255, (0, 0), 2.0)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def _warped(img: np.ndarray, A: np.ndarray, c: np.ndarray) -> np.ndarray:
    """img seen through x_b = c + A (x_a - c) (bilinear)."""
    M = np.c_[A, c - A @ c]
    return cv2.warpAffine(img, M, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_predicted_affine_of_a_forward_motion_is_the_depth_ratio() -> None:
    # camera b 0.5 m ahead of camera a; a plane facing a at 2.5 m: magnification 2.5 / 2.0 at the principal point
    T_cw_a = np.eye(4)
    T_cw_b = np.eye(4)
    T_cw_b[2, 3] = -0.5
    X = np.array([[0.0, 0.0, 2.5], [np.nan, np.nan, np.nan]])
    A = predicted_affine(np.array([[320.0, 240.0], [100.0, 100.0]]), T_cw_a, T_cw_b, X, K)
    np.testing.assert_allclose(A[0], 1.25 * np.eye(2), atol=1e-9)
    np.testing.assert_array_equal(A[1], np.eye(2))  # no depth: identity


def test_affine_alignment_recovers_a_deformed_patch_where_translation_klt_is_biased() -> None:
    img_a = _texture(1)
    c = np.array([320.0, 240.0])
    th = np.deg2rad(8.0)
    A_true = 1.12 * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]) @ np.array([[1.0, 0.15], [0.0, 1.0]])
    img_b = _warped(img_a, A_true, c)
    rng = np.random.default_rng(2)
    uv_a = c + rng.uniform(-150, 150, (60, 2))
    truth = c + (uv_a - c) @ A_true.T
    start = truth + rng.normal(0, 0.6, truth.shape)  # a KLT track that drifted
    cfg = AnchorAlignment(iterations=20)
    T = templates(img_a, uv_a, np.broadcast_to(np.eye(2), (60, 2, 2)).copy(), cfg.radius + 1)
    uv, ok = align(img_b, T, start, cfg)
    assert ok.mean() > 0.9
    err = np.linalg.norm(uv[ok] - truth[ok], axis=1)
    assert np.median(err) < 0.03 and err.max() < 0.2
    # translation-only KLT of the same patches, from the same start, is biased by the deformation
    q, st, _ = cv2.calcOpticalFlowPyrLK(img_a.astype(np.uint8), img_b.astype(np.uint8),
                                        uv_a.astype(np.float32).reshape(-1, 1, 2),
                                        start.astype(np.float32).reshape(-1, 1, 2).copy(), winSize=(15, 15),
                                        maxLevel=0, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    klt = np.linalg.norm(q.reshape(-1, 2) - truth, axis=1)[st.ravel() == 1]
    assert np.median(klt) > 5 * np.median(err)


def test_a_different_texture_is_rejected_and_keeps_the_klt_position() -> None:
    img_a, img_b = _texture(3), _texture(4)
    uv = np.array([[200.0, 200.0], [400.0, 300.0]])
    cfg = AnchorAlignment()
    T = templates(img_a, uv, np.broadcast_to(np.eye(2), (2, 2, 2)).copy(), cfg.radius + 1)
    out, ok = align(img_b, T, uv + 0.5, cfg)
    assert not ok.any()
    np.testing.assert_array_equal(out, uv + 0.5)


def test_refine_to_anchors_uses_the_predicted_warp_and_leaves_unanchored_features() -> None:
    # camera b: 0.3 m forward and turned 4 degrees about y; a fronto-parallel textured wall at 3 m
    img_a = _texture(5)
    z = 3.0
    th = np.deg2rad(4.0)
    R = np.array([[np.cos(th), 0, np.sin(th)], [0, 1, 0], [-np.sin(th), 0, np.cos(th)]])
    T_cw_b = np.eye(4)
    T_cw_b[:3, :3], T_cw_b[:3, 3] = R, R @ np.array([0, 0, -0.3])
    # the plane z = 3 induces the homography H = K (R + t n^T / d) K^-1 from a to b
    n_, d = np.array([0, 0, 1.0]), z
    Hm = K @ (T_cw_b[:3, :3] + np.outer(T_cw_b[:3, 3], n_) / d) @ np.linalg.inv(K)
    img_b = cv2.warpPerspective(img_a, Hm, (640, 480), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    rng = np.random.default_rng(6)
    uv_a = np.c_[rng.uniform(150, 490, 40), rng.uniform(120, 360, 40)]
    X = np.c_[(uv_a - K[:2, 2]) / K[0, 0] * z, np.full(40, z)]
    p = np.c_[uv_a, np.ones(40)] @ Hm.T
    truth = p[:, :2] / p[:, 2:]
    start = truth + rng.normal(0, 0.7, truth.shape)
    anchor_kf = np.r_[np.zeros(35, np.int64), np.full(5, -1)]
    uv, ok = refine_to_anchors(img_b, start, anchor_kf, uv_a, {0: img_a}, {0: np.eye(4)}, T_cw_b, X, K,
                               AnchorAlignment(iterations=20))
    assert ok[:35].mean() > 0.9 and not ok[35:].any()
    np.testing.assert_array_equal(uv[35:], start[35:])
    err = np.linalg.norm(uv[:35][ok[:35]] - truth[:35][ok[:35]], axis=1)
    assert np.median(err) < 0.03
