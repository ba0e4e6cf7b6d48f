"""Stereo-rig bundle adjustment: gradient against central differences, recovery of ground truth,
and the sliding window's choice of free and fixed keyframes."""

from __future__ import annotations

import numpy as np
import pytest

from slam.odometry.config import OdometryConfig
from slam.geometry import lie
from slam.map.keyframe import KeyframeData
from slam.map.map import Map
from slam.odometry.rig_ba import StereoBundleAdjustment
from slam.odometry.window import gather, loss_scale, optimize, robust_sigma
from slam.solvers.lm import SolverOptions, solve

K = np.array([[458.0, 0.0, 367.0], [0.0, 458.0, 248.0], [0.0, 0.0, 1.0]])
B = 0.11


def _world(seed: int = 0, C: int = 6, P: int = 80):
    rng = np.random.default_rng(seed)
    T_wc = np.tile(np.eye(4), (C, 1, 1))
    T_wc[:, :3, :3] = lie.so3_exp(rng.normal(0, 0.05, (C, 3)))
    T_wc[:, :3, 3] = np.stack([np.linspace(0, 1.5, C), rng.normal(0, 0.05, C), rng.normal(0, 0.05, C)], 1)
    X = np.stack([rng.uniform(-2, 3.5, P), rng.uniform(-1, 1, P), rng.uniform(3, 7, P)], 1)
    T_cw = lie.se3_inverse(T_wc)
    cam, pt = np.repeat(np.arange(C), P), np.tile(np.arange(P), C)
    Pc = np.einsum("oij,oj->oi", T_cw[cam, :3, :3], X[pt]) + T_cw[cam, :3, 3]
    uv = Pc[:, :2] / Pc[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
    ur = uv[:, 0] - K[0, 0] * B / Pc[:, 2]
    ur[rng.random(len(ur)) < 0.3] = np.nan  # some features without a stereo match
    return rng, T_wc, T_cw, X, cam, pt, uv, ur


def test_gradient_matches_central_differences() -> None:
    rng, _, T_cw, X, cam, pt, uv, ur = _world()
    fixed = np.zeros(len(T_cw), bool)
    fixed[0] = True
    T0 = T_cw.copy()
    T0[1:, :3, 3] += rng.normal(0, 0.02, (len(T_cw) - 1, 3))
    prob = StereoBundleAdjustment(T0, X + rng.normal(0, 0.05, X.shape), cam, pt, uv + rng.normal(0, 0.5, uv.shape),
                                  ur, K, B, fixed, loss="huber", loss_scale=1.0)
    J, r = prob.linearize(np.float64, np.float64)
    g = J.T @ r  # IRLS rows and residuals: J^T r is the gradient of 1/2 sum rho
    h = 1e-6
    fd = np.empty(prob.n_params)
    for k in range(prob.n_params):
        s = prob.get_state()
        e = np.zeros(prob.n_params)
        e[k] = h
        prob.retract(e, np.float64)
        cp = prob.cost()
        prob.set_state(s)
        prob.retract(-e, np.float64)
        cm = prob.cost()
        prob.set_state(s)
        fd[k] = (cp - cm) / (2 * h)
    assert np.max(np.abs(g - fd)) < 1e-6 * np.max(np.abs(fd))


@pytest.mark.parametrize("precision", ["fp64", "mixed"])
def test_recovers_ground_truth_and_keeps_the_rig_rigid(precision: str) -> None:
    rng, T_wc, T_cw, X, cam, pt, uv, ur = _world(1)
    fixed = np.zeros(len(T_cw), bool)
    fixed[0] = True
    T0 = T_cw.copy()
    T0[1:, :3, :3] = lie.so3_exp(rng.normal(0, 0.01, (len(T_cw) - 1, 3))) @ T0[1:, :3, :3]
    T0[1:, :3, 3] += rng.normal(0, 0.03, (len(T_cw) - 1, 3))
    prob = StereoBundleAdjustment(T0, X + rng.normal(0, 0.1, X.shape), cam, pt, uv, ur, K, B, fixed,
                                  loss="huber", loss_scale=2.0)
    summary = solve(prob, SolverOptions(precision=precision, max_iterations=30))
    est = lie.se3_inverse(prob.T_cw)
    # exact data: the stereo baseline fixes the scale, so the truth is the optimum
    assert np.abs(est[:, :3, 3] - T_wc[:, :3, 3]).max() < (1e-6 if precision == "fp64" else 2e-4)
    assert np.abs(prob.points - X).max() < (1e-5 if precision == "fp64" else 2e-3)
    assert summary.final_cost < 1e-6 * summary.initial_cost
    # the right camera is the left one shifted by the baseline: its residuals vanish at the truth too
    e_left, e_right = prob.errors()
    assert np.nanmax(e_right) < (1e-6 if precision == "fp64" else 5e-3) and np.isnan(e_right).sum() == (ur != ur).sum()


def _map_with_track(n_kf: int, segment_of=lambda i: 0) -> tuple[Map, np.ndarray, np.ndarray]:
    """Keyframes along x observing a shared set of points with stereo, exact measurements."""
    rng = np.random.default_rng(3)
    m = Map()
    P = 60
    X = np.stack([rng.uniform(-1, 3, P), rng.uniform(-1, 1, P), rng.uniform(3, 6, P)], 1)
    ids = m.allocate_ids(P)
    m.create_landmarks(ids, X, 0)
    poses = []
    for i in range(n_kf):
        T = np.eye(4)
        T[0, 3] = 0.2 * i
        Pc = X - T[:3, 3]
        uv = Pc[:, :2] / Pc[:, 2:] * 458.0 + [367.0, 248.0]
        ur = uv[:, 0] - 458.0 * B / Pc[:, 2]
        m.insert_keyframe(KeyframeData(i, i, 0.1 * i, T, segment_of(i), ids, uv, ur, Pc[:, 2]))
        poses.append(T)
    return m, ids, np.array(poses)


def test_window_fixes_old_observers_and_recovers_perturbed_poses() -> None:
    m, ids, truth = _map_with_track(8)
    d = gather(m, window=5, max_fixed=2)
    assert list(d.kf_ids) == [3, 4, 5, 6, 7, 1, 2]  # window first, then the 2 fixed observers
    np.testing.assert_array_equal(d.fixed, [False] * 5 + [True] * 2)
    bumped = m.keyframe_poses()
    bumped[5:, :3, 3] += [0.02, -0.01, 0.03]
    m.apply_window_solve(np.arange(5, 8), bumped[5:], ids[:0], np.zeros((0, 3)))
    cfg = OdometryConfig(window=5, max_fixed=2, max_iterations=20)
    st = optimize(m, cfg, K, B, "fp64")
    assert st is not None and st.fixed == 2 and st.rejected == 0 and st.culled == 0
    np.testing.assert_allclose(m.keyframe_poses()[:, :3, 3], truth[:, :3, 3], atol=1e-6)


def test_window_fixes_the_first_keyframe_of_each_segment() -> None:
    m, _, _ = _map_with_track(6, segment_of=lambda i: 0 if i < 3 else 1)
    d = gather(m, window=6, max_fixed=2)
    np.testing.assert_array_equal(d.fixed, [True, False, False, True, False, False])


def test_monocular_window_fixes_two_keyframes_of_each_segment() -> None:
    m, _, _ = _map_with_track(7, segment_of=lambda i: 0 if i < 4 else 1)
    d = gather(m, window=7, max_fixed=2, gauge_keyframes=2)
    np.testing.assert_array_equal(d.fixed, [True, True, False, False, True, True, False])
    d = gather(m, window=4, max_fixed=2, gauge_keyframes=2)  # segment 0's pair is outside the window
    np.testing.assert_array_equal(d.kf_ids, [3, 4, 5, 6, 1, 2])
    np.testing.assert_array_equal(d.fixed, [False, True, True, False, True, True])


def test_robust_sigma_ignores_outliers_and_sizes_the_window_loss() -> None:
    rng = np.random.default_rng(4)
    r = rng.normal(0, 0.1, (4000, 2))
    r[:400] = rng.uniform(-6, 6, (400, 2))  # 10% gross errors
    assert abs(robust_sigma(r) - 0.1) < 0.015
    _, _, T_cw, X, cam, pt, uv, ur = _world()
    prob = StereoBundleAdjustment(T_cw, X, cam, pt, uv + rng.normal(0, 0.1, uv.shape), ur + rng.normal(0, 0.1, ur.shape),
                                  K, B, np.zeros(len(T_cw), bool), loss="cauchy")
    cfg = OdometryConfig()
    assert abs(loss_scale(prob, cfg) - cfg.loss_sigmas * 0.1) < 0.06
    assert loss_scale(prob, OdometryConfig(loss_sigmas=0.0, loss_scale=1.7)) == 1.7  # fixed when asked
    assert loss_scale(prob, OdometryConfig(loss_sigmas=100.0)) == OdometryConfig().loss_scale  # ceiling


def test_adaptive_cauchy_resists_moderate_outliers_that_a_fixed_huber_absorbs() -> None:
    """10% of observations slid 0.5-3 px the same way, the rest within 0.05 px: a 2 px Huber takes
    the slid ones at full weight and bends the poses; Cauchy at 3 robust sigmas does not.

    The window starts near its optimum, as a window solved at the previous keyframe does (1 mm);
    the scale follows the start's residuals, so a far start only widens the loss toward 2 px."""
    ratios = []
    for seed in range(4):
        rng, _, T_cw, X, cam, pt, uv, ur = _world(seed=seed, C=8, P=120)
        noisy = uv + rng.normal(0, 0.05, uv.shape)
        bad = rng.random(len(uv)) < 0.1
        noisy[bad, 0] += rng.uniform(0.5, 3.0, bad.sum())
        noisy_ur = ur + rng.normal(0, 0.05, ur.shape)
        fixed = np.zeros(len(T_cw), bool)
        fixed[:2] = True
        T0 = T_cw.copy()
        T0[2:, :3, 3] += rng.normal(0, 0.001, (len(T_cw) - 2, 3))
        errs = {}
        for name, cfg in (("huber", OdometryConfig(loss="huber", loss_sigmas=0.0)), ("adaptive", OdometryConfig())):
            prob = StereoBundleAdjustment(T0, X, cam, pt, noisy, noisy_ur, K, B, fixed,
                                          loss=cfg.loss, loss_scale=cfg.loss_scale)
            prob.loss_scale = loss_scale(prob, cfg)
            solve(prob, SolverOptions(precision="fp64", max_iterations=50, relative_cost_tol=1e-12))
            e = lie.se3_inverse(prob.T_cw)[:, :3, 3] - lie.se3_inverse(T_cw)[:, :3, 3]
            errs[name] = float(np.sqrt(np.mean(np.sum(e * e, axis=1))))
        ratios.append(errs["adaptive"] / errs["huber"])
    assert max(ratios) < 0.6 and np.mean(ratios) < 0.35, ratios  # measured 0.04-0.17
