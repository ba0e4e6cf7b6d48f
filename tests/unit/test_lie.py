"""slam.geometry.lie against independent references: expm/logm, block-exponential Jacobians,
central finite differences, scipy Rotation and GTSAM (when importable)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm, logm
from scipy.spatial.transform import Rotation

from slam.geometry import lie

RNG = np.random.default_rng(1234)
PI = np.pi
# Angles that exercise both branches of every series switch (0.5), the tiny and the near-pi regimes.
ANGLES = np.array([0.0, 1e-12, 1e-9, 1e-6, 1e-3, 0.1, 0.5 - 1e-9, 0.5, 0.5 + 1e-9, 1.0, 2.0, 3.0,
                   PI - 1e-3, PI - 1e-6, PI - 1e-9])


@pytest.fixture(autouse=True)
def _reseed() -> None:
    """Every test draws the same numbers whatever runs before it."""
    global RNG
    RNG = np.random.default_rng(1234)


def _rotvecs(angles: np.ndarray) -> np.ndarray:
    """One rotation vector per angle, with a random axis."""
    axis = RNG.normal(size=(len(angles), 3))
    return axis / np.linalg.norm(axis, axis=1, keepdims=True) * angles[:, None]


def _twists(angles: np.ndarray, vnorm: float = 1.0) -> np.ndarray:
    return np.concatenate([_rotvecs(angles), vnorm * RNG.normal(size=(len(angles), 3))], axis=1)


def _sim3_tangents() -> np.ndarray:
    """Every angle of ANGLES with every sigma (tiny, moderate, large scale changes)."""
    sigmas = np.array([0.0, 1e-12, 1e-9, 1e-6, 0.3, -0.3, 3.0, -3.0, 10.0])
    th, sg = np.meshgrid(ANGLES, sigmas, indexing="ij")
    th, sg = th.ravel(), sg.ravel()
    return np.concatenate([_rotvecs(th), RNG.normal(size=(len(th), 3)), sg[:, None]], axis=1)


def _random_rotations(n: int) -> np.ndarray:
    return Rotation.random(n, random_state=7).as_matrix()


def _twist_matrix(xi: np.ndarray) -> np.ndarray:
    """4x4 generator of SE(3) ([w, v], 6) or Sim(3) ([w, v, sigma], 7)."""
    G = np.zeros(xi.shape[:-1] + (4, 4))
    G[..., :3, :3] = lie.hat(xi[..., :3])
    if xi.shape[-1] == 7:
        G[..., :3, :3] += xi[..., 6, None, None] * np.eye(3)
    G[..., :3, 3] = xi[..., 3:6]
    return G


def _phi1_reference(A: np.ndarray) -> np.ndarray:
    """sum A^n/(n+1)! via expm of the block matrix [[A, I], [0, 0]] (the exact J_l for A = ad)."""
    k = A.shape[-1]
    M = np.zeros(A.shape[:-2] + (2 * k, 2 * k))
    M[..., :k, :k] = A
    M[..., :k, k:] = np.eye(k)
    return expm(M)[..., :k, k:]


def _fd_jacobian(xi: np.ndarray, exp, log, inv, kind: str, h: float = 1e-6) -> np.ndarray:
    """Central finite differences of the four Jacobians; batch over xi (N, d)."""
    n, d = xi.shape
    E = h * np.eye(d)
    X = exp(xi)[:, None]
    Xi = inv(exp(xi))[:, None]

    def f(sign: float) -> np.ndarray:
        if kind == "right":      # Log(Exp(xi)^-1 Exp(xi + h e_k))
            return log(Xi @ exp(xi[:, None] + sign * E))
        if kind == "left":       # Log(Exp(xi + h e_k) Exp(xi)^-1)
            return log(exp(xi[:, None] + sign * E) @ Xi)
        if kind == "right_inv":  # Log(Exp(xi) Exp(h e_k))
            return log(X @ exp(sign * E)[None])
        return log(exp(sign * E)[None] @ X)  # left_inv: Log(Exp(h e_k) Exp(xi))

    return np.swapaxes((f(1.0) - f(-1.0)) / (2 * h), -1, -2)


# ------------------------------------------------------------------------------------------- SO(3)

def test_hat_vee() -> None:
    w, p = RNG.normal(size=(20, 3)), RNG.normal(size=(20, 3))
    np.testing.assert_allclose(np.einsum("nij,nj->ni", lie.hat(w), p), np.cross(w, p), atol=1e-15)
    np.testing.assert_array_equal(lie.vee(lie.hat(w)), w)


def test_so3_exp_against_scipy_rotation_and_expm() -> None:
    w = _rotvecs(ANGLES)
    R = lie.so3_exp(w)
    assert np.abs(R - Rotation.from_rotvec(w).as_matrix()).max() < 1e-15 * 4
    assert np.abs(R - expm(lie.hat(w))).max() < 2e-15
    assert np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(3)).max() < 1e-15 * 4


def test_so3_log_round_trip_tiny_and_near_pi() -> None:
    w = _rotvecs(ANGLES)
    back = lie.so3_log(lie.so3_exp(w))
    err = np.linalg.norm(back - w, axis=1)
    # relative accuracy at tiny angles, absolute rounding level near pi
    assert np.all(err <= 1e-15 * np.maximum(np.linalg.norm(w, axis=1), 1.0) * 8)
    np.testing.assert_allclose(lie.so3_log(Rotation.from_rotvec(w).as_matrix()), w, rtol=0, atol=1e-14)


def test_so3_log_of_random_and_half_turn_rotations() -> None:
    R = _random_rotations(200)
    assert np.abs(lie.so3_exp(lie.so3_log(R)) - R).max() < 2e-15
    half = lie.so3_exp(_rotvecs(np.full(5, PI)))  # exactly pi: either sign of the axis is correct
    w = lie.so3_log(half)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), PI, rtol=1e-15)
    assert np.abs(lie.so3_exp(w) - half).max() < 2e-15


@pytest.mark.parametrize("name", ["right", "left"])
def test_so3_jacobians_against_block_exponential(name: str) -> None:
    w = _rotvecs(ANGLES)
    A = lie.hat(w) if name == "left" else -lie.hat(w)
    ref = _phi1_reference(A)
    J = getattr(lie, f"so3_{name}_jacobian")(w)
    Ji = getattr(lie, f"so3_{name}_jacobian_inv")(w)
    assert np.abs(J - ref).max() < 1e-15 * 4
    assert np.abs(Ji - np.linalg.inv(ref)).max() < 1e-14
    assert np.abs(J @ Ji - np.eye(3)).max() < 1e-15 * 4


@pytest.mark.parametrize("kind", ["right", "left", "right_inv", "left_inv"])
def test_so3_jacobians_against_finite_differences(kind: str) -> None:
    w = _rotvecs(ANGLES[ANGLES < PI - 1e-4])
    name = {"right": "so3_right_jacobian", "left": "so3_left_jacobian",
            "right_inv": "so3_right_jacobian_inv", "left_inv": "so3_left_jacobian_inv"}[kind]
    fd = _fd_jacobian(w, lie.so3_exp, lie.so3_log, lambda R: np.swapaxes(R, -1, -2), kind)
    assert np.abs(getattr(lie, name)(w) - fd).max() < 1e-8


# ------------------------------------------------------------------------------------------- SE(3)

def test_se3_exp_log_against_expm_logm() -> None:
    xi = _twists(RNG.uniform(0.0, 3.0, size=20), vnorm=2.0)
    G = _twist_matrix(xi)
    assert np.abs(lie.se3_exp(xi) - expm(G)).max() < 1e-14
    T = expm(G)
    ref = np.stack([logm(t).real for t in T])  # logm has no batch mode
    assert np.abs(_twist_matrix(lie.se3_log(T)) - ref).max() < 1e-12


def test_se3_round_trips() -> None:
    xi = _twists(ANGLES)
    err = np.abs(lie.se3_log(lie.se3_exp(xi)) - xi).max(axis=1)
    assert np.all(err <= 1e-14 * np.maximum(np.abs(xi).max(axis=1), 1.0))
    tiny = _twists(np.array([1e-9, 1e-6]), vnorm=1e-7)
    np.testing.assert_allclose(lie.se3_log(lie.se3_exp(tiny)), tiny, rtol=1e-12, atol=0)
    T = lie.se3_from_Rt(_random_rotations(100), RNG.normal(size=(100, 3)) * 5)
    assert np.abs(lie.se3_exp(lie.se3_log(T)) - T).max() < 1e-14


def test_se3_group_operations() -> None:
    A = lie.se3_exp(_twists(RNG.uniform(0, 3, 30)))
    B = lie.se3_exp(_twists(RNG.uniform(0, 3, 30)))
    C = lie.se3_exp(_twists(np.array([2.0])))[0]
    eye = np.broadcast_to(np.eye(4), A.shape)
    assert np.abs(lie.se3_compose(A, lie.se3_inverse(A)) - eye).max() < 1e-15 * 8
    assert np.abs(lie.se3_compose(lie.se3_inverse(A), A) - eye).max() < 1e-15 * 8
    np.testing.assert_allclose(lie.se3_inverse(A), np.linalg.inv(A), atol=1e-14)
    # broadcasting N vs 1 and associativity
    np.testing.assert_allclose(lie.se3_compose(A, C), np.einsum("nij,jk->nik", A, C), atol=1e-15)
    np.testing.assert_allclose(lie.se3_compose(C, A), np.einsum("ij,njk->nik", C, A), atol=1e-15)
    np.testing.assert_allclose(lie.se3_compose(lie.se3_compose(A, B), C),
                               lie.se3_compose(A, lie.se3_compose(B, C)), atol=1e-14)
    R, t = lie.Rt(A)
    np.testing.assert_array_equal(lie.se3_from_Rt(R, t), A)
    # actions: one point per pose, M points per pose, a single pose on M points
    p, P = RNG.normal(size=(30, 3)), RNG.normal(size=(30, 7, 3))
    ph = np.concatenate([p, np.ones((30, 1))], axis=1)
    np.testing.assert_allclose(lie.se3_act(A, p), np.einsum("nij,nj->ni", A, ph)[:, :3], atol=1e-14)
    np.testing.assert_allclose(lie.se3_act(A, P)[:, 3], lie.se3_act(A, P[:, 3]), atol=1e-15)
    np.testing.assert_allclose(lie.se3_act(C, p), lie.se3_act(np.broadcast_to(C, A.shape), p), atol=1e-15)
    np.testing.assert_allclose(lie.se3_act(lie.se3_compose(A, B), p), lie.se3_act(A, lie.se3_act(B, p)),
                               atol=1e-14)
    np.testing.assert_allclose(lie.se3_act(lie.se3_inverse(A), lie.se3_act(A, P)), P, atol=1e-14)


def test_se3_adjoint() -> None:
    T = lie.se3_exp(_twists(RNG.uniform(0, 3, 30), vnorm=3.0))
    xi = _twists(RNG.uniform(0, 1.5, 30))
    Ad = lie.se3_adjoint(T)
    lhs = T @ lie.se3_exp(xi) @ lie.se3_inverse(T)
    assert np.abs(lhs - lie.se3_exp(np.einsum("nij,nj->ni", Ad, xi))).max() < 1e-13
    # Ad_T hat(xi) T^-1 at the algebra level, and Ad of a product
    np.testing.assert_allclose(_twist_matrix(np.einsum("nij,nj->ni", Ad, xi)),
                               T @ _twist_matrix(xi) @ np.linalg.inv(T), atol=1e-13)
    np.testing.assert_allclose(lie.se3_adjoint(T @ T[::-1]), Ad @ Ad[::-1], atol=1e-13)
    # ad is the derivative of Ad at the identity: Ad(Exp(xi)) = expm(ad(xi))
    np.testing.assert_allclose(lie.se3_adjoint(lie.se3_exp(xi)), expm(lie.se3_ad(xi)), atol=1e-14)


@pytest.mark.parametrize("name", ["right", "left"])
def test_se3_jacobians_against_block_exponential(name: str) -> None:
    xi = np.concatenate([_twists(ANGLES), _twists(ANGLES, vnorm=10.0)])
    A = lie.se3_ad(xi) if name == "left" else -lie.se3_ad(xi)
    ref = _phi1_reference(A)
    J = getattr(lie, f"se3_{name}_jacobian")(xi)
    Ji = getattr(lie, f"se3_{name}_jacobian_inv")(xi)
    scale = np.maximum(np.abs(xi).max(axis=1), 1.0)[:, None, None]
    assert np.all(np.abs(J - ref) <= 1e-14 * scale)
    assert np.all(np.abs(Ji - np.linalg.inv(ref)) <= 1e-13 * scale)
    assert np.all(np.abs(J @ Ji - np.eye(6)) <= 1e-14 * scale)


@pytest.mark.parametrize("kind", ["right", "left", "right_inv", "left_inv"])
def test_se3_jacobians_against_finite_differences(kind: str) -> None:
    xi = _twists(ANGLES[ANGLES < PI - 1e-4], vnorm=2.0)
    name = {"right": "se3_right_jacobian", "left": "se3_left_jacobian",
            "right_inv": "se3_right_jacobian_inv", "left_inv": "se3_left_jacobian_inv"}[kind]
    fd = _fd_jacobian(xi, lie.se3_exp, lie.se3_log, lie.se3_inverse, kind)
    assert np.abs(getattr(lie, name)(xi) - fd).max() < 1e-8


def test_against_gtsam() -> None:
    gtsam = pytest.importorskip("gtsam")
    xi = np.concatenate([_twists(ANGLES), _twists(RNG.uniform(0, 3, 10), vnorm=3.0)])
    for x, T, Jr, Jri, Ad, R, Sr, Sri in zip(
            xi, lie.se3_exp(xi), lie.se3_right_jacobian(xi), lie.se3_right_jacobian_inv(xi),
            lie.se3_adjoint(lie.se3_exp(xi)), lie.so3_exp(xi[:, :3]), lie.so3_right_jacobian(xi[:, :3]),
            lie.so3_right_jacobian_inv(xi[:, :3])):
        # GTSAM's own Logmap and LogmapDerivative lose ~7 digits at pi - 1e-3 (ours stay at 1e-15 against
        # expm-based references above), and its ExpmapDerivative series is 1e-13 off at 1e-3 rad.
        near_pi = np.linalg.norm(x[:3]) > PI - 1e-2
        pose = gtsam.Pose3.Expmap(x)
        np.testing.assert_allclose(T, pose.matrix(), rtol=0, atol=1e-14)
        np.testing.assert_allclose(Ad, pose.AdjointMap(), rtol=0, atol=1e-14)
        np.testing.assert_allclose(R, gtsam.Rot3.Expmap(x[:3]).matrix(), rtol=0, atol=1e-14)
        np.testing.assert_allclose(Jr, gtsam.Pose3.ExpmapDerivative(x), rtol=0, atol=1e-12)
        np.testing.assert_allclose(Sr, gtsam.Rot3.ExpmapDerivative(x[:3]), rtol=0, atol=1e-12)
        tol = 1e-7 if near_pi else 1e-12
        np.testing.assert_allclose(lie.se3_log(pose.matrix()), gtsam.Pose3.Logmap(pose), rtol=0, atol=tol)
        np.testing.assert_allclose(Jri, gtsam.Pose3.LogmapDerivative(x), rtol=0, atol=tol)
        np.testing.assert_allclose(Sri, gtsam.Rot3.LogmapDerivative(x[:3]), rtol=0, atol=tol)


# ------------------------------------------------------------------------------------------- Sim(3)

def test_sim3_exp_log_against_expm_logm() -> None:
    n = 40
    xi = np.concatenate([_twists(RNG.uniform(0.0, 3.0, n), 2.0), RNG.uniform(-2, 2, (n, 1))], axis=1)
    G = _twist_matrix(xi)
    S = lie.sim3_exp(xi)
    # scipy's expm itself is only good to ~2e-13 relative here (measured against 50-digit mpmath)
    assert np.all(np.abs(S - expm(G)) <= 3e-13 * np.abs(expm(G)).max(axis=(1, 2), keepdims=True))
    ref = np.stack([logm(s).real for s in S])
    assert np.abs(_twist_matrix(lie.sim3_log(S)) - ref).max() < 1e-12


def test_sim3_round_trips_small_and_large_sigma() -> None:
    xi = _sim3_tangents()
    back = lie.sim3_log(lie.sim3_exp(xi))
    scale = np.maximum(np.abs(xi).max(axis=1), 1.0)
    assert np.all(np.abs(back - xi).max(axis=1) <= 1e-13 * scale)
    G = expm(_twist_matrix(xi))
    assert np.all(np.abs(lie.sim3_exp(xi) - G).max(axis=(1, 2)) <= 3e-13 * np.abs(G).max(axis=(1, 2)))
    s = np.exp(RNG.uniform(-3, 3, 50))
    S = lie.sim3_from_sRt(s, _random_rotations(50), RNG.normal(size=(50, 3)) * 5)
    np.testing.assert_allclose(lie.sim3_exp(lie.sim3_log(S)), S, rtol=0, atol=1e-13 * np.abs(S).max())
    s2, R2, t2 = lie.sRt(S)
    np.testing.assert_allclose(s2, s, rtol=1e-15 * 4)


# expm of the 4x4 generator at 50 digits (mpmath 1.3), for the regimes where scipy's expm is weakest
MPMATH_SIM3 = [
    ([0.0, 0.0, 1e-9], 10.0, [2202.5465834454553, -4405.093156978952, 1101.2732897403357], 22026.465794806718),
    ([0.0, 0.0, 3.141591653589793], -3.0, [0.5164585692795614, -0.15902408528305018, 0.15836882193868934],
     -0.04978706836783905),
    ([0.6, 0.0, 0.8], 1e-9, [1.6721047054687144, -1.453093123162825, -0.004078528476535667], 0.7057934764614029),
    ([1e-7, 2e-7, 0.0], 1e-12, [1.0000000500004866, -2.0000000250009933, 0.49999980000024585], 1.00000000000098),
]


def test_sim3_exp_against_high_precision_values() -> None:
    xi = np.array([w + [1.0, -2.0, 0.5, sigma] for w, sigma, _, _ in MPMATH_SIM3])
    S = lie.sim3_exp(xi)
    t_ref = np.array([t for _, _, t, _ in MPMATH_SIM3])
    np.testing.assert_allclose(S[:, :3, 3], t_ref, rtol=2e-15, atol=1e-15)
    np.testing.assert_allclose(S[:, 0, 0], [m for _, _, _, m in MPMATH_SIM3], rtol=2e-15, atol=0)
    np.testing.assert_allclose(lie.sim3_log(S), xi, rtol=1e-14, atol=1e-15)


def test_sim3_reduces_to_se3_at_unit_scale() -> None:
    xi6 = _twists(ANGLES, vnorm=3.0)
    xi7 = np.concatenate([xi6, np.zeros((len(xi6), 1))], axis=1)
    scale = np.maximum(np.abs(xi6).max(axis=1), 1.0)[:, None, None]
    assert np.all(np.abs(lie.sim3_exp(xi7) - lie.se3_exp(xi6)) <= 4e-15 * scale)
    assert np.all(np.abs(lie.sim3_right_jacobian(xi7)[:, :6, :6] - lie.se3_right_jacobian(xi6)) <= 4e-15 * scale)
    assert np.all(np.abs(lie.sim3_left_jacobian_inv(xi7)[:, :6, :6] - lie.se3_left_jacobian_inv(xi6))
                  <= 1e-14 * scale)


def test_sim3_group_operations_and_adjoint() -> None:
    def rand(n: int) -> np.ndarray:
        return np.concatenate([_twists(RNG.uniform(0, 3, n), 2.0), RNG.uniform(-1, 1, (n, 1))], axis=1)

    A, B, xi = lie.sim3_exp(rand(30)), lie.sim3_exp(rand(30)), rand(30) * 0.5
    np.testing.assert_allclose(lie.sim3_inverse(A), np.linalg.inv(A), rtol=0, atol=1e-13)
    np.testing.assert_allclose(lie.sim3_compose(A, lie.sim3_inverse(A)), np.broadcast_to(np.eye(4), A.shape),
                               atol=1e-14)
    np.testing.assert_allclose(lie.sim3_compose(A, B[0]), A @ B[0], atol=1e-15)
    p, P = RNG.normal(size=(30, 3)), RNG.normal(size=(30, 5, 3))
    ph = np.concatenate([p, np.ones((30, 1))], axis=1)
    np.testing.assert_allclose(lie.sim3_act(A, p), np.einsum("nij,nj->ni", A, ph)[:, :3], atol=1e-14)
    np.testing.assert_allclose(lie.sim3_act(lie.sim3_inverse(A), lie.sim3_act(A, P)), P, atol=1e-13)
    Ad = lie.sim3_adjoint(A)
    lhs = A @ lie.sim3_exp(xi) @ lie.sim3_inverse(A)
    np.testing.assert_allclose(lie.sim3_exp(np.einsum("nij,nj->ni", Ad, xi)), lhs, atol=1e-13)
    np.testing.assert_allclose(lie.sim3_adjoint(A @ B), Ad @ lie.sim3_adjoint(B), atol=1e-13)
    np.testing.assert_allclose(lie.sim3_adjoint(lie.sim3_exp(xi)), expm(lie.sim3_ad(xi)), atol=1e-13)


@pytest.mark.parametrize("name", ["right", "left"])
def test_sim3_jacobians_against_block_exponential(name: str) -> None:
    xi = _sim3_tangents()
    xi[::2, 3:6] *= 10.0  # large translations too
    A = lie.sim3_ad(xi) if name == "left" else -lie.sim3_ad(xi)
    ref = _phi1_reference(A)
    J = getattr(lie, f"sim3_{name}_jacobian")(xi)
    # scipy's expm is the weaker side here (1.5e-13 off 40-digit mpmath at sigma = +-3; ours 2e-14)
    assert np.all(np.abs(J - ref).max(axis=(1, 2)) <= 3e-13 * np.abs(ref).max(axis=(1, 2)))


@pytest.mark.parametrize("kind", ["right", "left", "right_inv", "left_inv"])
def test_sim3_jacobians_against_finite_differences(kind: str) -> None:
    xi = _sim3_tangents()
    xi = xi[(np.linalg.norm(xi[:, :3], axis=1) < PI - 1e-4) & (np.abs(xi[:, 6]) < 5)]
    fd = _fd_jacobian(xi, lie.sim3_exp, lie.sim3_log, lie.sim3_inverse, kind)
    J = getattr(lie, "sim3_" + kind.replace("_inv", "") + "_jacobian" + ("_inv" if "inv" in kind else ""))(xi)
    assert np.abs(J - fd).max() < 1e-7
    inv = getattr(lie, "sim3_" + kind.replace("_inv", "") + "_jacobian" + ("" if "inv" in kind else "_inv"))(xi)
    assert np.abs(J @ inv - np.eye(7)).max() < 1e-13


# ------------------------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("fn, arg, out", [
    ("hat", (3,), (3, 3)), ("vee", (3, 3), (3,)), ("so3_exp", (3,), (3, 3)), ("so3_log", "R", (3,)),
    ("so3_right_jacobian", (3,), (3, 3)), ("so3_left_jacobian_inv", (3,), (3, 3)),
    ("se3_exp", (6,), (4, 4)), ("se3_log", "T", (6,)), ("se3_inverse", "T", (4, 4)),
    ("se3_adjoint", "T", (6, 6)), ("se3_right_jacobian", (6,), (6, 6)), ("se3_left_jacobian_inv", (6,), (6, 6)),
    ("sim3_exp", (7,), (4, 4)), ("sim3_log", "T", (7,)), ("sim3_inverse", "T", (4, 4)),
    ("sim3_adjoint", "T", (7, 7)), ("sim3_right_jacobian_inv", (7,), (7, 7)),
])
def test_single_element_and_batch_shapes(fn: str, arg, out: tuple[int, ...]) -> None:
    if arg == "R":
        x = _random_rotations(4)
    elif arg == "T":
        x = lie.se3_from_Rt(_random_rotations(4), RNG.normal(size=(4, 3)))
    else:
        x = RNG.normal(size=(4,) + arg) * 0.5
    f = getattr(lie, fn)
    batch = f(x)
    assert batch.shape == (4,) + out
    np.testing.assert_allclose(f(x[2]), batch[2], atol=1e-15)
    assert f(x.reshape((2, 2) + x.shape[1:])).shape == (2, 2) + out


def test_wrong_shape_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="se3_exp.*6"):
        lie.se3_exp(np.zeros((5, 7)))
    with pytest.raises(ValueError, match="positive determinant"):
        lie.sim3_log(np.diag([-1.0, 1.0, 1.0, 1.0]))


def test_sim3_right_jacobian_inv_series_and_inverse_agree() -> None:
    """Small errors take the Bernoulli series of J_r^-1, larger ones the inverse of J_r's Taylor
    series: both branches, in one batch and at the switch, equal inv(J_r) to rounding."""
    rng = np.random.default_rng(5)
    xi = np.concatenate([rng.normal(size=(300, 7)) * s for s in (1e-8, 1e-3, 0.05, 0.08, 0.3, 1.5)])
    A = lie.sim3_ad(xi)
    norm = np.abs(A).sum(axis=-1).max(axis=-1)
    assert np.any((norm > 0.45) & (norm <= 0.5)) and np.any(norm <= 0.5) and np.any(norm > 0.5)
    ref = np.linalg.inv(lie.sim3_right_jacobian(xi))
    got = lie.sim3_right_jacobian_inv(xi)
    np.testing.assert_allclose(got, ref, atol=2e-14 * np.maximum(1.0, np.abs(ref).max()))
    np.testing.assert_allclose(got @ lie.sim3_right_jacobian(xi), np.broadcast_to(np.eye(7), got.shape), atol=1e-13)
