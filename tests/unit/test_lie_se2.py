"""SE(2) on planar 4x4 matrices: against scipy's expm/logm, GTSAM's Pose2, finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm, logm

from slam.geometry import lie
from slam.geometry.lie_se2 import se2_adjoint, se2_exp, se2_log, se2_right_jacobian, se2_right_jacobian_inv

RNG = np.random.default_rng(7)
XI = np.c_[RNG.normal(size=(60, 2)), RNG.uniform(-3.0, 3.0, 60)]
XI[:10, 2] *= 1e-9  # tiny angles: the cancellation-free coefficients
XI[10:13, 2] = 0.0


def _algebra(xi: np.ndarray) -> np.ndarray:
    """3x3 se(2) matrix [[theta^, v], [0, 0]]."""
    return np.array([[0.0, -xi[2], xi[0]], [xi[2], 0.0, xi[1]], [0.0, 0.0, 0.0]])


def _planar(T4: np.ndarray) -> np.ndarray:
    return T4[..., [0, 1, 3], :][..., [0, 1, 3]]


def test_exp_and_log_against_matrix_exponential() -> None:
    T = se2_exp(XI)
    for xi, Tk in zip(XI, T):
        np.testing.assert_allclose(_planar(Tk), expm(_algebra(xi)), atol=1e-13)
        assert Tk[2, 2] == 1.0 and not Tk[2, [0, 1, 3]].any() and not Tk[[0, 1], 2].any()
    np.testing.assert_allclose(se2_log(T), XI, atol=1e-13)
    for xi, Tk in zip(XI[13:], T[13:]):
        L = np.real(logm(_planar(Tk)))
        np.testing.assert_allclose([L[0, 2], L[1, 2], L[1, 0]], xi, atol=1e-9)


def test_against_gtsam_pose2() -> None:
    gtsam = pytest.importorskip("gtsam")
    for xi in XI[13:]:  # GTSAM switches to a first-order approximation for tiny angles
        np.testing.assert_allclose(_planar(se2_exp(xi)), gtsam.Pose2.Expmap(xi).matrix(), atol=1e-12)
        p = gtsam.Pose2(*xi)
        T = np.eye(4)
        T[[0, 0, 1, 1], [0, 1, 0, 1]] = p.matrix()[[0, 0, 1, 1], [0, 1, 0, 1]]
        T[:2, 3] = xi[:2]
        np.testing.assert_allclose(se2_log(T), gtsam.Pose2.Logmap(p), atol=1e-12)
        np.testing.assert_allclose(se2_adjoint(se2_exp(xi)), gtsam.Pose2.Expmap(xi).AdjointMap(), atol=1e-12)


def test_adjoint_moves_a_perturbation_across_a_pose() -> None:
    X = se2_exp(XI[::-1])
    lhs = X @ se2_exp(XI) @ lie.se3_inverse(X)
    rhs = se2_exp(np.einsum("nij,nj->ni", se2_adjoint(X), XI))
    np.testing.assert_allclose(lhs, rhs, atol=1e-12)


def test_right_jacobian_against_finite_differences_and_its_inverse() -> None:
    h = 1e-6
    T_inv = lie.se3_inverse(se2_exp(XI))
    J = se2_right_jacobian(XI)
    for k in range(3):
        d = np.zeros(3)
        d[k] = h
        num = (se2_log(T_inv @ se2_exp(XI + d)) - se2_log(T_inv @ se2_exp(XI - d))) / (2 * h)
        np.testing.assert_allclose(num, J[:, :, k], atol=1e-8)
    np.testing.assert_allclose(se2_right_jacobian_inv(XI) @ J, np.broadcast_to(np.eye(3), J.shape), atol=1e-13)
    np.testing.assert_allclose(se2_right_jacobian_inv(XI), np.linalg.inv(J), atol=1e-12)
