"""Bundle adjustment against independent references: central differences, OpenCV's and BAL's own
projection, SciPy's least_squares, and exact synthetic data (the linear algebra: test_ba_linear.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from scipy.optimize import least_squares

from ba_scenes import make_problem as _problem, observe as _observe, perturb as _perturb, scene as _scene
from slam.errors import ProblemError
from slam.geometry import lie
from slam.io.bal import BALProblem, bal_cost, bal_residuals, read_bal
from slam.solvers.ba import BundleAdjustmentProblem, default_options, from_bal, robust_loss
from slam.solvers.backend import numpy_backend
from slam.solvers.lm import solve
from slam.solvers.precision import get_policy


def _central_differences(p: BundleAdjustmentProblem, f: Callable[[], np.ndarray]) -> np.ndarray:
    """d f / d x_j by central differences through the problem's own retraction, one column per parameter."""
    state = p.get_state()
    cols = []
    for j in range(p.n_params):
        is_intrinsic = j < p.n_cam_params and j % p.cam_dim >= 6
        h = 1e-4 if is_intrinsic else 1e-6  # intrinsics are hundreds of pixels, the rest O(1)
        out = []
        for sgn in (1.0, -1.0):
            dx = np.zeros(p.n_params)
            dx[j] = sgn * h
            p.set_state(state)
            p.retract(dx, np.float64)
            out.append(np.asarray(f(), dtype=np.float64))
        cols.append(((out[0] - out[1]) / (2 * h)).ravel())
    p.set_state(state)
    return np.stack(cols, axis=1)


def _numeric_jacobian(p: BundleAdjustmentProblem) -> np.ndarray:
    """Central differences of the (weighted) residual."""
    r0 = p.residuals()
    w = np.sqrt(robust_loss(p.loss, np.sum(r0 * r0, 1), p.loss_scale)[1])
    return _central_differences(p, lambda: p.residuals() * w[:, None])


def _assert_jacobian(p: BundleAdjustmentProblem) -> None:
    J, r = p.linearize(np.float64, np.float64)
    Jn = _numeric_jacobian(p)
    scale = np.abs(Jn).max(axis=0) + 1e-12
    err = np.abs(J.toarray() - Jn).max(axis=0) / scale
    assert err.max() < 1e-6, f"worst column {err.argmax()} relative error {err.max():.2e}"


# ------------------------------------------------------------------------------------ model
@pytest.mark.parametrize("projection", ["bal", "pinhole"])
def test_projection_matches_independent_models(projection: str) -> None:
    p = _problem(projection)
    assert p.reprojection_cost() < 1e-18  # observations from bal_project / cv2.projectPoints
    p.obs += 0.5
    assert p.reprojection_cost() == pytest.approx(0.5 * 0.25 * p.obs.size, rel=1e-9)


@pytest.mark.parametrize("projection", ["bal", "pinhole"])
@pytest.mark.parametrize("intrinsics", [False, True])
@pytest.mark.parametrize("chart", ["xyz", "inverse_depth"])
def test_jacobian_matches_central_differences(projection: str, intrinsics: bool, chart: str) -> None:
    p = _problem(projection, optimize_intrinsics=intrinsics, point_chart=chart)
    _perturb(p)  # residuals away from zero
    _assert_jacobian(p)


def test_sensor_offsets_project_like_a_shifted_camera_and_have_exact_jacobians() -> None:
    """A rig's second sensor: offset (0.3, -0.1, 0.05) in the pose's frame, same orientation."""
    sc = _scene("pinhole")
    off = np.tile([0.3, -0.1, 0.05], (len(sc["cam_idx"]), 1))
    off[::2] = 0.0  # half the observations by the pose's own camera
    shifted = dict(sc, t=sc["t"] - np.array([0.3, -0.1, 0.05]))  # T_sensor = [I | -o] T_pose
    obs = np.where((off != 0).any(1)[:, None], _observe(shifted, "pinhole"), _observe(sc, "pinhole"))
    p = _problem("pinhole", obs=obs, offsets=off)
    assert p.reprojection_cost() < 1e-18  # against cv2.projectPoints of the shifted camera
    _perturb(p)
    _assert_jacobian(p)
    with pytest.raises(ProblemError, match="offsets"):
        _problem("pinhole", offsets=off[:-1])


@pytest.mark.parametrize("loss", ["huber", "cauchy"])
def test_robust_weights_and_exact_gradient(loss: str) -> None:
    obs = _observe(_scene("bal"), "bal")
    obs[::7] += 25.0  # outliers beyond the loss scale
    p = _problem("bal", obs=obs, optimize_intrinsics=True, loss=loss, loss_scale=2.0)
    _perturb(p, scale=0.2)
    _assert_jacobian(p)  # rows scaled by sqrt(rho')
    # IRLS without the Triggs correction keeps the gradient exact: J^T r = d cost / dx.
    J, r = p.linearize(np.float64, np.float64)
    g = _central_differences(p, lambda: np.array([p.cost()]))[0]
    np.testing.assert_allclose(J.T @ r, g, rtol=1e-5, atol=1e-6 * np.abs(g).max())


@pytest.mark.parametrize("loss", ["none", "huber", "cauchy"])
def test_robust_loss_derivative_and_cost(loss: str) -> None:
    s = np.array([0.0, 0.5, 3.9, 4.0, 4.1, 50.0, 1e4])
    rho, drho = robust_loss(loss, s, 2.0)
    lo, hi = np.maximum(s - 1e-6, 0.0), s + 1e-6
    num = (robust_loss(loss, hi, 2.0)[0] - robust_loss(loss, lo, 2.0)[0]) / (hi - lo)
    np.testing.assert_allclose(drho, num, rtol=1e-5)
    assert np.all(rho <= s + 1e-12) and rho[0] == 0.0
    p = _problem("bal", loss=loss, loss_scale=2.0)
    p.obs[:, 0] += np.sqrt(s[np.arange(len(p.obs)) % len(s)])  # squared residual norms = s
    np.testing.assert_allclose(p.cost(), 0.5 * np.sum(robust_loss(loss, s, 2.0)[0][np.arange(len(p.obs)) % len(s)]),
                               rtol=1e-9)


def test_fixed_cameras_and_points_have_no_columns_and_stay_put() -> None:
    p = _problem("bal", optimize_intrinsics=True, fixed_cameras=[0, 2], fixed_points=np.arange(15) < 4)
    assert p.n_params == 2 * 9 + 11 * 3
    _assert_jacobian(p)
    truth = p.get_state()
    _perturb(p)
    for a, b in zip((p.R, p.t, p.intrinsics), truth[:3]):
        a[[0, 2]] = b[[0, 2]]  # the held cameras and points at their true values: the optimum is exact
    p.points[:4] = truth[3][:4]
    before = [a.copy() for a in p.get_state()]
    s = solve(p, default_options("fp64"))
    assert s.final_cost < 1e-12 * s.initial_cost, s.termination
    R, t, k, X = p.get_state()
    for c in (0, 2):
        assert np.array_equal(R[c], before[0][c]) and np.array_equal(t[c], before[1][c])
        assert np.array_equal(k[c], before[2][c])
    assert np.array_equal(X[:4], before[3][:4])
    assert not np.allclose(t[1], before[1][1]) and not np.allclose(X[4:], before[3][4:])


# ------------------------------------------------------------------------------------ solves
@pytest.mark.parametrize("projection", ["bal", "pinhole"])
def test_exact_synthetic_problem_reaches_zero_cost(projection: str) -> None:
    p = _problem(projection, n_cams=6, n_pts=60, optimize_intrinsics=(projection == "bal"))
    _perturb(p)
    assert p.cost() > 1e3
    s = solve(p, default_options("fp64"))
    assert s.final_cost < 1e-12, s.termination
    assert np.abs(p.residuals()).max() < 1e-6


def test_dubrovnik_is_solved(shared_data: Path) -> None:
    bal = read_bal(shared_data / "ba" / "dubrovnik-3-7-pre.txt")
    p = from_bal(bal)
    s = solve(p, default_options("fp64"))
    # 19 observations of 7 points by 3 cameras with f, k1, k2: fewer equations than unknowns, so
    # the optimum reprojects exactly.
    assert s.initial_cost == pytest.approx(bal_cost(bal), rel=1e-12)
    assert s.final_cost < 1e-12, s.termination
    assert bal_cost(p.to_bal()) == pytest.approx(p.reprojection_cost(), rel=1e-9, abs=1e-15)


def test_fp64_matches_scipy_least_squares_on_a_noisy_problem() -> None:
    rng = np.random.default_rng(11)
    sc = _scene("bal", n_cams=4, n_pts=30, seed=4)
    obs = _observe(sc, "bal") + rng.normal(scale=0.5, size=(4 * 30, 2))
    p = _problem("bal", obs=obs, seed=4, n_cams=4, n_pts=30, optimize_intrinsics=True)
    _perturb(p, seed=6)
    bal = p.to_bal()
    s = solve(p, default_options("fp64"))
    # Independent reference: MINPACK's LM on BAL's own parameterization (angle-axis and additive
    # updates, forward-difference Jacobian).
    C, P = len(bal.cameras), len(bal.points)

    def f(x: np.ndarray) -> np.ndarray:
        q = BALProblem(x[:9 * C].reshape(C, 9), x[9 * C:].reshape(P, 3), bal.cam_idx, bal.pt_idx, bal.observations)
        return bal_residuals(q).ravel()

    ref = least_squares(f, np.concatenate([bal.cameras.ravel(), bal.points.ravel()]), method="lm", xtol=1e-14,
                        ftol=1e-14, gtol=1e-14)
    assert s.final_cost == pytest.approx(0.5 * float(ref.fun @ ref.fun), rel=1e-6)
    assert s.final_cost < 1e-2 * s.initial_cost


def test_presets_agree_on_a_noisy_problem() -> None:
    rng = np.random.default_rng(7)
    sc = _scene("bal", n_cams=8, n_pts=120, seed=3)
    obs = _observe(sc, "bal") + rng.normal(scale=0.5, size=(8 * 120, 2))
    costs = {}
    for preset in ("fp64", "fp32", "mixed", "fp16"):
        p = _problem("bal", obs=obs, seed=3, n_cams=8, n_pts=120, optimize_intrinsics=True)
        _perturb(p, seed=5)
        s = solve(p, default_options(preset))
        assert np.isfinite(s.final_cost) and s.final_cost < 1e-2 * s.initial_cost, (preset, s.termination)
        costs[preset] = p.reprojection_cost()
    assert costs["fp32"] == pytest.approx(costs["fp64"], rel=1e-4)
    assert costs["mixed"] == pytest.approx(costs["fp64"], rel=1e-2)
    assert costs["fp16"] < 1.05 * costs["fp64"]  # runs to the end; loses a little (state held in fp16)
    assert costs["fp16"] >= costs["fp64"] * (1 - 1e-9)  # valid cameras: not below the optimum
    R = p.R  # the fp16 solve's cameras: rotations, though each update was rounded to fp16
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)


def test_rescue_step_refits_only_the_points_a_step_made_worse() -> None:
    p = _problem("bal", optimize_intrinsics=True, fixed_points=[3])
    solve(p, default_options("fp64"))  # at the optimum (exact data: zero cost)
    J, r = p.linearize(np.float64, np.float64)  # remembers the per-point costs of this state
    before = p.points.copy()
    p.points[[2, 3, 7]] += [[0.3, -0.2, 0.1], [0.2, 0.2, 0.2], [1e-9, 0.0, 0.0]]  # 7: a negligible rise
    moved = p.points.copy()
    assert p.rescue_step(np.float64)
    assert np.linalg.norm(p.points[2] - before[2]) < 1e-3  # 0.37 off, re-fit to the unchanged cameras (2 GN steps)
    np.testing.assert_array_equal(p.points[3], moved[3])  # fixed
    np.testing.assert_array_equal(p.points[7], moved[7])  # < 1% of the largest rise: left alone
    keep = np.setdiff1d(np.arange(len(before)), [2, 3, 7])
    np.testing.assert_array_equal(p.points[keep], before[keep])


def test_rescued_solve_reaches_the_same_optimum() -> None:
    rng = np.random.default_rng(7)
    sc = _scene("bal", n_cams=8, n_pts=120, seed=3)
    obs = _observe(sc, "bal") + rng.normal(scale=0.5, size=(8 * 120, 2))
    costs = []
    for rescue in (False, True):
        p = _problem("bal", obs=obs, seed=3, n_cams=8, n_pts=120, optimize_intrinsics=True)
        _perturb(p, seed=5)
        s = solve(p, default_options("mixed", rescue_steps=rescue))
        assert s.rescued_steps <= s.accepted_steps and (rescue or s.rescued_steps == 0)
        costs.append(s.final_cost)
    assert costs[1] == pytest.approx(costs[0], rel=1e-3)


# ------------------------------------------------------------------------------------ I/O and errors
def test_bal_round_trip_and_cost_convention(shared_data: Path) -> None:
    bal = read_bal(shared_data / "ba" / "problem-49-7776-pre.txt")
    p = BundleAdjustmentProblem.from_bal(bal)
    out = p.to_bal()
    np.testing.assert_allclose(out.cameras, bal.cameras, rtol=1e-12, atol=1e-15)
    assert p.cost() == pytest.approx(bal_cost(bal), rel=1e-12)
    assert p.reprojection_cost() == pytest.approx(bal_cost(out), rel=1e-12)


def test_bad_input_is_reported() -> None:
    sc = _scene("bal")
    args = ((sc["w"], sc["t"]), sc["X"], sc["cam_idx"], sc["pt_idx"], _observe(sc, "bal"), sc["k"])
    with pytest.raises(ProblemError, match="out of range"):
        BundleAdjustmentProblem(args[0], args[1], args[2] + 1, *args[3:])
    with pytest.raises(ProblemError, match="observations"):
        BundleAdjustmentProblem(*args[:4], args[4][:-1], args[5])
    with pytest.raises(ProblemError, match="intrinsics"):
        BundleAdjustmentProblem(*args[:5], np.ones((4, 4)))
    with pytest.raises(ProblemError, match="not a rotation"):
        BundleAdjustmentProblem((2.0 * lie.so3_exp(sc["w"]), sc["t"]), *args[1:])
    with pytest.raises(ProblemError, match="NaN"):
        BundleAdjustmentProblem(args[0], np.full_like(sc["X"], np.nan), *args[2:])
    with pytest.raises(ProblemError, match="every camera and every point is fixed"):
        BundleAdjustmentProblem(*args, fixed_cameras=np.ones(4, bool), fixed_points=np.arange(15))
    with pytest.raises(ValueError, match="unknown loss"):
        BundleAdjustmentProblem(*args, loss="tukey")


def test_inverse_depth_step_through_infinity_keeps_the_anchor_projection() -> None:
    """rho -> -rho moves a point through infinity to the mirror side of its anchor; projections are
    blind to the sign of P, so the anchor camera sees it where it was (the cost is continuous there)."""
    p = _problem("bal", point_chart="inverse_depth")
    p.points += np.random.default_rng(2).normal(scale=0.05, size=p.points.shape)  # cameras stay on the anchors
    r0 = p.residuals()
    first = np.array([np.flatnonzero(p.pt_idx == k)[0] for k in range(len(p.points))])
    rho = 1.0 / np.linalg.norm(p.points - p._anchor, axis=1)
    dx = np.zeros(p.n_params)
    dx[p.n_cam_params + 2::3] = -2.0 * rho
    mirrored = 2.0 * p._anchor - p.points
    p.retract(dx, np.float64)
    np.testing.assert_allclose(p.points, mirrored, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p.residuals()[first], r0[first], rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_inverse_depth_removes_the_slow_tail_on_ladybug(shared_data: Path) -> None:
    """problem-49-7776: in xyz, far points crawl outward for 20+ LM iterations of 1e-5 relative decrease
    each (34 iterations, 13344.29); in inverse depth they reach (and cross) infinity in a few steps,
    and LM stops below the xyz cost in a third of the iterations (measured: 9 its, 13121.27)."""
    bal = read_bal(shared_data / "ba" / "problem-49-7776-pre.txt")
    runs, problems = {}, {}
    for chart in ("xyz", "inverse_depth"):
        problems[chart] = from_bal(bal, point_chart=chart)
        runs[chart] = solve(problems[chart], default_options("fp64"))
    p = problems["inverse_depth"]
    assert runs["xyz"].iterations >= 25
    assert runs["inverse_depth"].iterations <= 15
    assert runs["inverse_depth"].final_cost <= runs["xyz"].final_cost
    assert runs["inverse_depth"].final_cost == pytest.approx(bal_cost(p.to_bal()), rel=1e-12)
    assert runs["inverse_depth"].termination == "relative cost decrease"


def test_mixed_precision_refinement_only_raises_the_model_decrease() -> None:
    from slam.solvers.lm import _refine

    rng = np.random.default_rng(5)
    A = rng.normal(size=(40, 12)) * np.logspace(0, -3, 12)  # ill-conditioned columns
    N = A.T @ A + 1e-6 * np.eye(12)
    rhs = rng.normal(size=12)
    exact = np.linalg.solve(N, rhs)

    def model(y: np.ndarray) -> float:
        return float(rhs @ y - 0.5 * y @ N @ y)

    pol, be = get_policy("mixed"), numpy_backend()
    y0 = exact + 1e-2 * rng.normal(size=12)  # a CG step spoiled by fp16 products
    y1 = _refine(y0.copy(), rhs, lambda D: N @ D, None, be, pol, 1)
    assert model(y1) >= model(y0)
    y3 = _refine(y0.copy(), rhs, lambda D: N @ D, None, be, pol, 3)
    assert model(y3) >= model(y1)
    np.testing.assert_allclose(_refine(0.5 * exact, rhs, lambda D: N @ D, None, be, pol, 1), exact, rtol=1e-8)


@pytest.mark.parametrize("preset", ["fp32", "mixed"])
def test_dubrovnik_low_precision_reaches_the_fp32_floor(shared_data: Path, preset: str) -> None:
    """Zero-residual optimum: fp32 costs bottom out near 1e-8 (measured fp32 7.8e-9, mixed 6.4e-9;
    without the refinement of fp16 steps, mixed ended at 7.6e-3 after 100 iterations)."""
    p = from_bal(read_bal(shared_data / "ba" / "dubrovnik-3-7-pre.txt"))
    s = solve(p, default_options(preset))
    assert s.final_cost < 2e-8
    assert s.termination != "max iterations"


def test_interrupt_ends_the_solve_after_the_first_iteration_and_keeps_its_state() -> None:
    rng = np.random.default_rng(7)
    sc = _scene("bal", n_cams=8, n_pts=120, seed=3)
    obs = _observe(sc, "bal") + rng.normal(scale=0.5, size=(8 * 120, 2))

    def run(**kw) -> tuple:
        p = _problem("bal", obs=obs, seed=3, n_cams=8, n_pts=120, optimize_intrinsics=True)
        _perturb(p, seed=5)
        return p, solve(p, default_options("mixed", **{"max_iterations": 6, **kw}))

    asked = []
    p1, s1 = run(interrupt=lambda: asked.append(1) or True)
    assert s1.termination == "interrupted" and s1.iterations == 1 and len(asked) == 1
    assert s1.final_cost < s1.initial_cost and s1.final_cost == pytest.approx(p1.cost(np.float64), rel=1e-12)
    _, s0 = run(max_iterations=1)  # the same first iteration, without an interrupt
    assert s1.final_cost == s0.final_cost
    _, s2 = run(interrupt=lambda: False)  # never asked to stop: as without the option
    _, s3 = run()
    assert s2.iterations == s3.iterations > 1 and s2.final_cost == s3.final_cost
