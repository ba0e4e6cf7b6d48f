"""Umeyama and RANSAC Sim(3): exact recovery, robustness to outliers, degenerate input -> None."""

from __future__ import annotations

import numpy as np
import pytest

from slam.eval.align import umeyama as umeyama_alignment
from slam.geometry import lie
from slam.geometry.registration import ransac_sim3, umeyama


def _random_sim3(rng: np.random.Generator) -> tuple[float, np.ndarray, np.ndarray]:
    R = lie.so3_exp(rng.normal(size=3))
    return float(np.exp(rng.uniform(-1.5, 1.5))), R, rng.normal(scale=5.0, size=3)


@pytest.mark.parametrize("with_scale", [True, False])
def test_umeyama_exact_and_matches_eval_alignment(with_scale: bool) -> None:
    rng = np.random.default_rng(1)
    s, R, t = _random_sim3(rng)
    s = s if with_scale else 1.0
    src = rng.normal(size=(30, 3))
    dst = s * src @ R.T + t
    s_hat, R_hat, t_hat = umeyama(src, dst, with_scale)
    assert s_hat == pytest.approx(s, rel=1e-12)
    np.testing.assert_allclose(R_hat, R, atol=1e-12)
    np.testing.assert_allclose(t_hat, t, atol=1e-10)
    # Independent reference: the evo-compatible alignment of slam.eval on noisy data.
    noisy = dst + rng.normal(scale=0.05, size=dst.shape)
    ref = umeyama_alignment(src, noisy, with_scale)
    s2, R2, t2 = umeyama(src, noisy, with_scale)
    np.testing.assert_allclose(R2, ref.rotation, atol=1e-10)
    np.testing.assert_allclose(t2, ref.translation, atol=1e-9)
    assert s2 == pytest.approx(ref.scale, rel=1e-10)


def test_umeyama_reflection_is_not_returned() -> None:
    rng = np.random.default_rng(2)
    src = rng.normal(size=(10, 3))
    dst = src * np.array([1.0, 1.0, -1.0])  # a mirror image: the best rotation, not the reflection
    _, R, _ = umeyama(src, dst, True)
    assert np.linalg.det(R) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ransac_sim3_recovers_known_transform_with_half_outliers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s, R, t = _random_sim3(rng)
    n = 200
    src = rng.uniform(-4, 4, size=(n, 3))
    dst = s * src @ R.T + t + rng.normal(scale=0.002 * s, size=(n, 3))
    bad = rng.permutation(n)[: n // 2]
    dst[bad] = rng.uniform(-10, 10, size=(len(bad), 3)) * s + t  # 50% outliers
    res = ransac_sim3(src, dst, threshold=0.05 * s, with_scale=True, iterations=300, rng=rng)
    assert res is not None
    S, scale, inl = res
    assert scale == pytest.approx(s, rel=1e-3)
    np.testing.assert_allclose(S[:3, :3] / scale, R, atol=2e-3)
    np.testing.assert_allclose(S[:3, 3], t, atol=5e-3 * max(1.0, s))
    truth = np.ones(n, bool)
    truth[bad] = False
    assert np.array_equal(inl, truth)


def test_ransac_se3_keeps_unit_scale_and_per_point_threshold() -> None:
    rng = np.random.default_rng(5)
    _, R, t = _random_sim3(rng)
    src = rng.uniform(-3, 3, size=(80, 3))
    dst = src @ R.T + t
    dst[:20] += rng.normal(scale=2.0, size=(20, 3))
    th = np.full(80, 0.01)
    res = ransac_sim3(src, dst, th, with_scale=False, rng=rng)
    assert res is not None
    S, scale, inl = res
    assert scale == 1.0
    np.testing.assert_allclose(S[:3, :3], R, atol=1e-9)
    assert inl[20:].all() and not inl[:20].any()


def test_ransac_sim3_degenerate_input_gives_none() -> None:
    rng = np.random.default_rng(3)
    line = np.outer(np.linspace(0, 1, 20), [1.0, 2.0, 3.0])
    assert ransac_sim3(line, 2 * line + 1, 0.01) is None                      # collinear
    assert ransac_sim3(np.zeros((2, 3)), np.zeros((2, 3)), 0.01) is None        # < 3 points
    assert ransac_sim3(np.ones((10, 3)), np.ones((10, 3)), 0.01) is None        # coincident
    pts = rng.normal(size=(10, 3))
    nan = pts.copy()
    nan[:8] = np.nan                                                            # only 2 finite pairs
    assert ransac_sim3(nan, pts, 0.01) is None
    assert ransac_sim3(pts, pts[:9], 0.01) is None                              # shape mismatch
    assert ransac_sim3(pts, rng.normal(size=(10, 3)) * 100, 1e-6, min_inliers=5) is None  # no consensus
    # NaN rows are skipped, the rest still registers.
    good = rng.normal(size=(30, 3))
    mixed = good.copy()
    mixed[:3] = np.inf
    res = ransac_sim3(mixed, 2 * good, 0.01)
    assert res is not None and res[1] == pytest.approx(2.0) and not res[2][:3].any()
