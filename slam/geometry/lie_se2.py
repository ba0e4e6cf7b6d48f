"""Batched SE(2) on planar 4x4 matrices, in GTSAM's Pose2 conventions (tangent [v_x, v_y, theta]).

A planar pose is kept as the SE(3) matrix [[Rz(theta), (x, y, 0)], [0, 1]] (slam.io.g2o_planar), so
the pose-graph code multiplies and inverts it like any SE(3) pose (lie.se3_inverse); only the
tangent is 3-D. exp/log are the true group exponential and logarithm (translation through
V(theta) = [[A, -B], [B, A]], A = sin(theta)/theta, B = (1 - cos theta)/theta, as
gtsam.Pose2.Expmap/Logmap). J_r(xi) = d Log(Exp(xi)^-1 Exp(xi + d)) / dd (Sola, "A micro Lie
theory", eq. 163) and its inverse are in closed form. Coefficients that cancel near 0 use lie.py's
cancellation-free forms.
"""

from __future__ import annotations

import numpy as np

from slam.geometry.lie import _as, _d_coeff, _one_minus_cos_over_sq, _sin_over


# Where the SE(2) tangent [v_x, v_y, theta] sits in the SE(3) tangent [w_x w_y w_z v_x v_y v_z] of a
# planar pose (slam.io.g2o_planar lifts 2-D information with it, pgo.from_pose_graph takes it back).
PLANE_IN_SE3 = np.array([3, 4, 2])


def se2_v_coeffs(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of V(theta) = [[A, -B], [B, A]]: A = sin(th)/th, B = (1 - cos th)/th (signed theta)."""
    return _sin_over(theta), theta * _one_minus_cos_over_sq(theta)


def _coeffs(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A, B (se2_v_coeffs), C = (1 - cos)/th^2 (even), D = (th - sin)/th^2 (odd) of a signed theta."""
    A, B = se2_v_coeffs(theta)
    return A, B, _one_minus_cos_over_sq(theta), theta * _d_coeff(np.abs(theta))


def se2_exp(xi: np.ndarray) -> np.ndarray:
    """(..., 3) tangents [v_x, v_y, theta] -> (..., 4, 4) planar poses."""
    xi = _as(xi, (3,), "se2_exp")
    th = xi[..., 2]
    A, B = se2_v_coeffs(th)
    c, s = np.cos(th), np.sin(th)
    T = np.zeros(xi.shape[:-1] + (4, 4))
    T[..., 0, 0], T[..., 0, 1], T[..., 1, 0], T[..., 1, 1] = c, -s, s, c
    T[..., 2, 2] = T[..., 3, 3] = 1.0
    T[..., 0, 3] = A * xi[..., 0] - B * xi[..., 1]
    T[..., 1, 3] = B * xi[..., 0] + A * xi[..., 1]
    return T


def se2_log(T: np.ndarray) -> np.ndarray:
    """(..., 4, 4) planar poses -> (..., 3) tangents [v_x, v_y, theta], theta = atan2 in [-pi, pi]."""
    T = _as(T, (4, 4), "se2_log")
    return se2_log_parts(T[..., 0, 0], T[..., 1, 0], T[..., 0, 3], T[..., 1, 3])


def se2_log_parts(c: np.ndarray, s: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """se2_log of poses given as cos, sin and translation (x, y) arrays -> (..., 3) [V^-1 t, theta]."""
    th = np.arctan2(s, c)
    A, B = se2_v_coeffs(th)
    den = A * A + B * B  # det V = 2 (1 - cos th) / th^2 > 0 on (-2 pi, 2 pi)
    return np.stack([(A * x + B * y) / den, (-B * x + A * y) / den, th], axis=-1)


def se2_adjoint(T: np.ndarray) -> np.ndarray:
    """(..., 3, 3) Ad(T): T Exp(xi) T^-1 = Exp(Ad(T) xi), = [[R, (t_y, -t_x)], [0, 0, 1]]."""
    T = _as(T, (4, 4), "se2_adjoint")
    Ad = np.zeros(T.shape[:-2] + (3, 3))
    Ad[..., :2, :2] = T[..., :2, :2]
    Ad[..., 0, 2] = T[..., 1, 3]
    Ad[..., 1, 2] = -T[..., 0, 3]
    Ad[..., 2, 2] = 1.0
    return Ad


def se2_right_jacobian(xi: np.ndarray) -> np.ndarray:
    """(..., 3, 3) J_r(xi) for tangents [v_x, v_y, theta]."""
    xi = _as(xi, (3,), "se2_right_jacobian")
    A, B, C, D = _coeffs(xi[..., 2])
    r1, r2 = xi[..., 0], xi[..., 1]
    J = np.zeros(xi.shape[:-1] + (3, 3))
    J[..., 0, 0], J[..., 0, 1], J[..., 0, 2] = A, B, r1 * D - r2 * C
    J[..., 1, 0], J[..., 1, 1], J[..., 1, 2] = -B, A, r1 * C + r2 * D
    J[..., 2, 2] = 1.0
    return J


def se2_right_jacobian_inv(xi: np.ndarray) -> np.ndarray:
    """(..., 3, 3) J_r(xi)^-1 in closed form: J_r = [[M, c], [0, 1]] with M = [[A, B], [-B, A]], so
    J_r^-1 = [[M^-1, -M^-1 c], [0, 1]], M^-1 = [[A, -B], [B, A]] / (A^2 + B^2) (|theta| < 2 pi)."""
    J = se2_right_jacobian(xi)
    A, B = J[..., 0, 0], J[..., 0, 1]
    den = A * A + B * B
    a, b = A / den, B / den
    c1, c2 = J[..., 0, 2], J[..., 1, 2]
    out = np.zeros_like(J)
    out[..., 0, 0], out[..., 0, 1], out[..., 0, 2] = a, -b, -(a * c1 - b * c2)
    out[..., 1, 0], out[..., 1, 1], out[..., 1, 2] = b, a, -(b * c1 + a * c2)
    out[..., 2, 2] = 1.0
    return out
