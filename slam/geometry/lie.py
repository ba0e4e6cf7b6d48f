"""Batched SO(3), SE(3), Sim(3) on float64 arrays in GTSAM's conventions (rotation first, right perturbation).

Every function takes a batch (N, ...) or a single element and returns the same rank; any leading
batch shape works. Tangents: SO(3) w (3,); SE(3) xi = [w, v] (6,); Sim(3) xi = [w, v, sigma] (7,)
with scale s = exp(sigma). Groups are 4x4 homogeneous matrices [[R, t], [0, 1]] and
[[s R, t], [0, 1]]. exp/log are the true group exponential/logarithm (translation through the
V matrix, as gtsam.Pose3.Expmap/Logmap). Jacobians: J_r(xi) = d Log(Exp(xi)^-1 Exp(xi + d)) / dd,
J_l(xi) = J_r(-xi).

Numerics: coefficients that cancel for small angles (e.g. (theta - sin theta) / theta^3) switch to
their Taylor series below theta = 0.5 with enough terms for full double precision, so exp, log and
Jacobians are accurate to ~1e-15 from theta = 0 up to pi. so3_log goes through the quaternion
(Shepperd pivot), accurate near 0 and near pi. Sim(3) is computed partly numerically, on purpose:
the coefficients of W = int_0^1 exp(tau (w^ + sigma I)) dtau come from Gauss-Legendre quadrature
(exact to rounding for |sigma| + theta up to ~60, no small-theta / small-sigma branches), and the
Sim(3) Jacobians are phi(+-ad) = sum (+-ad)^n / (n+1)! evaluated numerically (Taylor series of the
scaled ad, then doubling), their inverses by a batched linear inverse.
"""

from __future__ import annotations

from collections.abc import Callable
from math import factorial

import numpy as np

from slam.geometry.quaternion import rot_to_quat

_SERIES_BELOW = 0.5
_N_TERMS = 10
# Taylor coefficients (in theta^2) of the functions that lose digits to cancellation near 0.
_D_SERIES = np.array([(-1) ** k / factorial(2 * k + 3) for k in range(_N_TERMS)])  # (th - sin th)/th^3
_C3_SERIES = np.array([(-1) ** k / factorial(2 * k + 4) for k in range(_N_TERMS)])  # (cos th - 1 + th^2/2)/th^4
_C4_SERIES = np.array([(-1) ** k * (k + 1) / factorial(2 * k + 5) for k in range(_N_TERMS)])
# 1/th^2 - cot(th/2)/(2 th) = sum_{n>=1} (-1)^(n+1) B_2n / (2n)! th^(2n-2); B_2n are Bernoulli numbers.
_BERNOULLI_2N = [1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6, -3617 / 510, 43867 / 798,
                 -174611 / 330]
_E_SERIES = np.array([(-1) ** (n + 1) * b / factorial(2 * n) for n, b in enumerate(_BERNOULLI_2N, start=1)])
_PHI_TERMS = 18
_GL_RULES = {n: np.polynomial.legendre.leggauss(n) for n in (16, 32, 64)}


def _as(x: np.ndarray, tail: tuple[int, ...], name: str) -> np.ndarray:
    """float64 view of x, checking that its trailing shape is `tail`."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < len(tail) or x.shape[x.ndim - len(tail):] != tail:
        raise ValueError(f"{name}: expected shape (N, {', '.join(map(str, tail))}) or {tail}, got {x.shape}")
    return x


def _series_or(theta: np.ndarray, coeffs: np.ndarray,
               direct: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """direct(theta) where theta >= 0.5, the Taylor series in theta^2 below (no cancellation there)."""
    small = theta < _SERIES_BELOW
    safe = np.where(small, 1.0, theta)
    return np.where(small, np.polynomial.polynomial.polyval(theta * theta, coeffs), direct(safe))


def _sin_over(theta: np.ndarray) -> np.ndarray:
    """sin(theta) / theta, exact at 0."""
    return np.sinc(theta / np.pi)


def _one_minus_cos_over_sq(theta: np.ndarray) -> np.ndarray:
    """(1 - cos theta) / theta^2 written as 2 sin^2(theta/2) / theta^2, which never cancels."""
    return 0.5 * np.sinc(theta / (2 * np.pi)) ** 2


def _d_coeff(theta: np.ndarray) -> np.ndarray:
    """(theta - sin theta) / theta^3."""
    return _series_or(theta, _D_SERIES, lambda t: (t - np.sin(t)) / t**3)


def _e_coeff(theta: np.ndarray) -> np.ndarray:
    """1/theta^2 - (1 + cos theta) / (2 theta sin theta), the W^2 coefficient of J_r^-1 (finite at pi)."""
    return _series_or(theta, _E_SERIES, lambda t: 1.0 / t**2 - 0.5 / (t * np.tan(0.5 * t)))


def _col(c: np.ndarray) -> np.ndarray:
    """Scalar-per-element array -> broadcastable against (..., 3, 3)."""
    return c[..., None, None]


# ----------------------------------------------------------------------------------------- SO(3)

def hat(w: np.ndarray) -> np.ndarray:
    """(N,3) vectors -> (N,3,3) skew matrices with hat(w) @ p == cross(w, p)."""
    w = _as(w, (3,), "hat")
    W = np.zeros(w.shape[:-1] + (3, 3))
    W[..., 0, 1], W[..., 0, 2] = -w[..., 2], w[..., 1]
    W[..., 1, 0], W[..., 1, 2] = w[..., 2], -w[..., 0]
    W[..., 2, 0], W[..., 2, 1] = -w[..., 1], w[..., 0]
    return W


def vee(W: np.ndarray) -> np.ndarray:
    """(N,3,3) skew matrices -> (N,3) vectors, the inverse of hat."""
    W = _as(W, (3, 3), "vee")
    return np.stack([W[..., 2, 1], W[..., 0, 2], W[..., 1, 0]], axis=-1)


def _so3_poly(w: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """I + c1 hat(w) + c2 hat(w)^2, the form of every SO(3) exp and Jacobian."""
    W = hat(w)
    return np.eye(3) + _col(c1) * W + _col(c2) * (W @ W)


def so3_exp(w: np.ndarray) -> np.ndarray:
    """(N,3) rotation vectors -> (N,3,3) rotation matrices (Rodrigues)."""
    w = _as(w, (3,), "so3_exp")
    th = np.linalg.norm(w, axis=-1)
    return _so3_poly(w, _sin_over(th), _one_minus_cos_over_sq(th))


def so3_log(R: np.ndarray) -> np.ndarray:
    """(N,3,3) rotation matrices -> (N,3) rotation vectors with angle in [0, pi]."""
    R = _as(R, (3, 3), "so3_log")
    lead = R.shape[:-2]
    q = rot_to_quat(R.reshape(-1, 3, 3))  # w >= 0, so the angle 2 atan2(|v|, w) lies in [0, pi]
    v, qw = q[:, :3], q[:, 3]
    n = np.linalg.norm(v, axis=1)
    tiny = n < 1e-8
    safe_n, safe_w = np.where(tiny, 1.0, n), np.where(tiny, qw, 1.0)
    # 2 atan(n / w) / n = (2 / w) (1 - n^2 / (3 w^2) + ...); w ~ 1 whenever n is tiny
    scale = np.where(tiny, 2.0 / safe_w * (1.0 - n * n / (3.0 * safe_w**2)), 2.0 * np.arctan2(n, qw) / safe_n)
    return (v * scale[:, None]).reshape(lead + (3,))


def so3_right_jacobian(w: np.ndarray) -> np.ndarray:
    """J_r(w) = I - (1-cos)/th^2 W + (th-sin)/th^3 W^2: Exp(w + d) ~ Exp(w) Exp(J_r d)."""
    w = _as(w, (3,), "so3_right_jacobian")
    th = np.linalg.norm(w, axis=-1)
    return _so3_poly(w, -_one_minus_cos_over_sq(th), _d_coeff(th))


def so3_left_jacobian(w: np.ndarray) -> np.ndarray:
    """J_l(w) = J_r(-w): Exp(w + d) ~ Exp(J_l d) Exp(w); also the V matrix of SE(3)."""
    w = _as(w, (3,), "so3_left_jacobian")
    th = np.linalg.norm(w, axis=-1)
    return _so3_poly(w, _one_minus_cos_over_sq(th), _d_coeff(th))


def so3_right_jacobian_inv(w: np.ndarray) -> np.ndarray:
    """J_r(w)^-1 = I + W/2 + (1/th^2 - (1+cos)/(2 th sin)) W^2 (closed form)."""
    w = _as(w, (3,), "so3_right_jacobian_inv")
    th = np.linalg.norm(w, axis=-1)
    return _so3_poly(w, np.full_like(th, 0.5), _e_coeff(th))


def so3_left_jacobian_inv(w: np.ndarray) -> np.ndarray:
    """J_l(w)^-1 = J_r(-w)^-1 = I - W/2 + (1/th^2 - (1+cos)/(2 th sin)) W^2."""
    w = _as(w, (3,), "so3_left_jacobian_inv")
    th = np.linalg.norm(w, axis=-1)
    return _so3_poly(w, np.full_like(th, -0.5), _e_coeff(th))


# ----------------------------------------------------------------------------------------- SE(3)

def se3_from_Rt(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N,3,3) rotations and (N,3) translations -> (N,4,4) homogeneous matrices."""
    R = _as(R, (3, 3), "se3_from_Rt R")
    t = _as(t, (3,), "se3_from_Rt t")
    lead = np.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    T = np.zeros(lead + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def Rt(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,4,4) homogeneous matrices -> (R (N,3,3), t (N,3)) as copies."""
    T = _as(T, (4, 4), "Rt")
    return T[..., :3, :3].copy(), T[..., :3, 3].copy()


def se3_exp(xi: np.ndarray) -> np.ndarray:
    """(N,6) twists [w, v] -> (N,4,4): R = Exp(w), t = J_l(w) v (as gtsam.Pose3.Expmap)."""
    xi = _as(xi, (6,), "se3_exp")
    w, v = xi[..., :3], xi[..., 3:]
    t = (so3_left_jacobian(w) @ v[..., None])[..., 0]
    return se3_from_Rt(so3_exp(w), t)


def se3_log(T: np.ndarray) -> np.ndarray:
    """(N,4,4) -> (N,6) twists [w, v] with |w| <= pi, the inverse of se3_exp."""
    T = _as(T, (4, 4), "se3_log")
    w = so3_log(T[..., :3, :3])
    v = (so3_left_jacobian_inv(w) @ T[..., :3, 3:])[..., 0]
    return np.concatenate([w, v], axis=-1)


def se3_inverse(T: np.ndarray) -> np.ndarray:
    """(N,4,4) -> (N,4,4) inverses [[R^T, -R^T t], [0, 1]]."""
    T = _as(T, (4, 4), "se3_inverse")
    Rt_ = np.swapaxes(T[..., :3, :3], -1, -2)
    return se3_from_Rt(Rt_, -(Rt_ @ T[..., :3, 3:])[..., 0])


def se3_compose(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A @ B for (N,4,4) or (4,4) operands, broadcasting a single element against a batch."""
    return np.matmul(_as(A, (4, 4), "se3_compose A"), _as(B, (4, 4), "se3_compose B"))


def _affine_act(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    """M p + t with M the upper-left 3x3 block of T; p is (N,3) paired with T, or (N,M,3) per T."""
    M, t = T[..., :3, :3], T[..., :3, 3]
    if p.ndim < T.ndim:  # one point per transform (or a point shared by all)
        return (M @ p[..., None])[..., 0] + t
    return p @ np.swapaxes(M, -1, -2) + t[..., None, :]


def se3_act(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    """R p + t: T (N,4,4) with p (N,3) or (N,M,3); T (4,4) with p (3,) or (M,3)."""
    return _affine_act(_as(T, (4, 4), "se3_act T"), _as(p, (3,), "se3_act p"))


def se3_adjoint(T: np.ndarray) -> np.ndarray:
    """(N,4,4) -> (N,6,6) Ad_T = [[R, 0], [t^ R, R]] so that T Exp(xi) T^-1 = Exp(Ad_T xi)."""
    T = _as(T, (4, 4), "se3_adjoint")
    R = T[..., :3, :3]
    A = np.zeros(T.shape[:-2] + (6, 6))
    A[..., :3, :3] = R
    A[..., 3:, 3:] = R
    A[..., 3:, :3] = hat(T[..., :3, 3]) @ R
    return A


def se3_ad(xi: np.ndarray) -> np.ndarray:
    """(N,6) -> (N,6,6) ad_xi = [[w^, 0], [v^, w^]], the Lie bracket [xi, .] in [w, v] order."""
    xi = _as(xi, (6,), "se3_ad")
    W, V = hat(xi[..., :3]), hat(xi[..., 3:])
    a = np.zeros(xi.shape[:-1] + (6, 6))
    a[..., :3, :3] = W
    a[..., 3:, 3:] = W
    a[..., 3:, :3] = V
    return a


def _se3_q(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Barfoot's Q(rho=v, phi=w), the lower-left block of the SE(3) left Jacobian in [w, v] order."""
    th = np.linalg.norm(w, axis=-1)
    P, Rh = hat(w), hat(v)
    PR, RP = P @ Rh, Rh @ P
    PRP = PR @ P
    c2 = _d_coeff(th)
    c3 = _series_or(th, _C3_SERIES, lambda t: (np.cos(t) - 1.0 + 0.5 * t * t) / t**4)
    c4 = _series_or(th, _C4_SERIES, lambda t: (2 * t - 3 * np.sin(t) + t * np.cos(t)) / (2 * t**5))
    return (0.5 * Rh + _col(c2) * (PR + RP + PRP) + _col(c3) * (P @ PR + RP @ P - 3.0 * PRP)
            + _col(c4) * (PRP @ P + P @ PRP))


def _block_lower(D: np.ndarray, L: np.ndarray) -> np.ndarray:
    """[[D, 0], [L, D]] from (N,3,3) blocks."""
    J = np.zeros(D.shape[:-2] + (6, 6))
    J[..., :3, :3] = D
    J[..., 3:, 3:] = D
    J[..., 3:, :3] = L
    return J


def se3_left_jacobian(xi: np.ndarray) -> np.ndarray:
    """(N,6) -> (N,6,6) J_l = [[J_l(w), 0], [Q(w, v), J_l(w)]]: Exp(xi + d) ~ Exp(J_l d) Exp(xi)."""
    xi = _as(xi, (6,), "se3_left_jacobian")
    w, v = xi[..., :3], xi[..., 3:]
    return _block_lower(so3_left_jacobian(w), _se3_q(w, v))


def se3_left_jacobian_inv(xi: np.ndarray) -> np.ndarray:
    """(N,6) -> (N,6,6) J_l^-1 = [[Ji, 0], [-Ji Q Ji, Ji]] with Ji = J_l(w)^-1 (closed form)."""
    xi = _as(xi, (6,), "se3_left_jacobian_inv")
    w, v = xi[..., :3], xi[..., 3:]
    Ji = so3_left_jacobian_inv(w)
    return _block_lower(Ji, -Ji @ _se3_q(w, v) @ Ji)


def se3_right_jacobian(xi: np.ndarray) -> np.ndarray:
    """(N,6) -> (N,6,6) J_r(xi) = J_l(-xi), as gtsam.Pose3.ExpmapDerivative."""
    return se3_left_jacobian(-_as(xi, (6,), "se3_right_jacobian"))


def se3_right_jacobian_inv(xi: np.ndarray) -> np.ndarray:
    """(N,6) -> (N,6,6) J_r(xi)^-1 = J_l(-xi)^-1, as gtsam.Pose3.LogmapDerivative."""
    return se3_left_jacobian_inv(-_as(xi, (6,), "se3_right_jacobian_inv"))


# ----------------------------------------------------------------------------------------- Sim(3)

def sim3_from_sRt(s: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Scales (N,), rotations (N,3,3), translations (N,3) -> (N,4,4) [[s R, t], [0, 1]]."""
    R = _as(R, (3, 3), "sim3_from_sRt R")
    return se3_from_Rt(np.asarray(s, dtype=np.float64)[..., None, None] * R, t)


def sRt(S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,4,4) similarities -> (s (N,), R (N,3,3), t (N,3)); s = det(sR)^(1/3) must be > 0."""
    S = _as(S, (4, 4), "sRt")
    sR = S[..., :3, :3]
    s = np.cbrt(np.linalg.det(sR))
    if not np.all(s > 0):
        raise ValueError("sRt: the 3x3 block s R of a Sim(3) element must have a positive determinant")
    return s, sR / s[..., None, None], S[..., :3, 3].copy()


def _sim3_w_coeffs(theta: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """a0, a1, a2 of W = int_0^1 e^(sigma tau) Exp(tau w) dtau = a0 I + a1 w^ + a2 w^2, by Gauss-Legendre."""
    reach = float(np.max(np.abs(sigma) + theta, initial=0.0))
    n = 16 if reach <= 20 else 32 if reach <= 60 else 64  # 16 nodes are exact to rounding up to 20
    x, wt = _GL_RULES[n]
    tau, wt = 0.5 * (x + 1.0), 0.5 * wt
    e = wt * np.exp(sigma[..., None] * tau)
    tt = theta[..., None] * tau
    a0 = e.sum(axis=-1)
    a1 = (e * tau * _sin_over(tt)).sum(axis=-1)  # sin(tau th) / th
    a2 = (e * tau**2 * _one_minus_cos_over_sq(tt)).sum(axis=-1)  # (1 - cos(tau th)) / th^2
    return a0, a1, a2


def _sim3_w(w: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """(N,3,3) matrix W with t = W v in Sim(3) exp."""
    a0, a1, a2 = _sim3_w_coeffs(np.linalg.norm(w, axis=-1), sigma)
    W = hat(w)
    return _col(a0) * np.eye(3) + _col(a1) * W + _col(a2) * (W @ W)


def sim3_exp(xi: np.ndarray) -> np.ndarray:
    """(N,7) [w, v, sigma] -> (N,4,4) [[e^sigma Exp(w), W v], [0, 1]] (exact group exponential)."""
    xi = _as(xi, (7,), "sim3_exp")
    w, v, sigma = xi[..., :3], xi[..., 3:6], xi[..., 6]
    t = (_sim3_w(w, sigma) @ v[..., None])[..., 0]
    return sim3_from_sRt(np.exp(sigma), so3_exp(w), t)


def sim3_log(S: np.ndarray) -> np.ndarray:
    """(N,4,4) -> (N,7) [w, v, sigma] with |w| <= pi, the inverse of sim3_exp."""
    s, R, t = sRt(S)
    w, sigma = so3_log(R), np.log(s)
    v = np.linalg.solve(_sim3_w(w, sigma), t[..., None])[..., 0]  # W is well conditioned for |w| <= pi
    return np.concatenate([w, v, sigma[..., None]], axis=-1)


def sim3_inverse(S: np.ndarray) -> np.ndarray:
    """(N,4,4) -> (N,4,4) inverses [[R^T / s, -R^T t / s], [0, 1]]."""
    s, R, t = sRt(S)
    Ri = np.swapaxes(R, -1, -2) / s[..., None, None]
    return se3_from_Rt(Ri, -(Ri @ t[..., None])[..., 0])


def sim3_compose(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A @ B for (N,4,4) or (4,4) similarities, broadcasting a single element against a batch."""
    return np.matmul(_as(A, (4, 4), "sim3_compose A"), _as(B, (4, 4), "sim3_compose B"))


def sim3_act(S: np.ndarray, p: np.ndarray) -> np.ndarray:
    """s R p + t: S (N,4,4) with p (N,3) or (N,M,3); S (4,4) with p (3,) or (M,3)."""
    return _affine_act(_as(S, (4, 4), "sim3_act S"), _as(p, (3,), "sim3_act p"))


def sim3_adjoint(S: np.ndarray) -> np.ndarray:
    """(N,4,4) -> (N,7,7) [[R, 0, 0], [t^ R, s R, -t], [0, 0, 1]]: S Exp(xi) S^-1 = Exp(Ad_S xi)."""
    s, R, t = sRt(S)
    A = np.zeros(R.shape[:-2] + (7, 7))
    A[..., :3, :3] = R
    A[..., 3:6, :3] = hat(t) @ R
    A[..., 3:6, 3:6] = s[..., None, None] * R
    A[..., 3:6, 6] = -t
    A[..., 6, 6] = 1.0
    return A


def sim3_ad(xi: np.ndarray) -> np.ndarray:
    """(N,7) -> (N,7,7) ad_xi = [[w^, 0, 0], [v^, w^ + sigma I, -v], [0, 0, 0]]."""
    xi = _as(xi, (7,), "sim3_ad")
    w, v, sigma = xi[..., :3], xi[..., 3:6], xi[..., 6]
    a = np.zeros(xi.shape[:-1] + (7, 7))
    a[..., :3, :3] = hat(w)
    a[..., 3:6, :3] = hat(v)
    a[..., 3:6, 3:6] = hat(w) + _col(sigma) * np.eye(3)
    a[..., 3:6, 6] = -v
    return a


def _phi1(X: np.ndarray) -> np.ndarray:
    """sum_n X^n / (n+1)! for (N,k,k) by scaling and doubling: phi(2X) = phi(X) (e^X + I) / 2.

    X is scaled by 2^-s so every |X|_inf <= 1/2, where 18 Taylor terms reach double precision;
    e^X = I + X phi(X) comes with it. About 20 batched k x k products, ~100x faster than expm of the
    2k x 2k block matrix [[X, I], [0, 0]], and as accurate.
    """
    norm = float(np.max(np.abs(X).sum(axis=-1), initial=0.0))
    s = max(0, int(np.ceil(np.log2(norm / 0.5)))) if norm > 0.5 else 0
    Xs = X / 2.0**s
    eye = np.eye(X.shape[-1])
    phi = np.broadcast_to(eye / factorial(_PHI_TERMS + 1), X.shape)
    for n in range(_PHI_TERMS, 0, -1):  # Horner: phi = sum_{n<=18} Xs^n / (n+1)!
        phi = eye / factorial(n) + Xs @ phi
    E = eye + Xs @ phi
    for _ in range(s):
        phi = 0.5 * (phi @ (E + eye))
        E = E @ E
    return phi


def sim3_left_jacobian(xi: np.ndarray) -> np.ndarray:
    """(N,7) -> (N,7,7) J_l = sum ad^n / (n+1)! (numerical: scaled Taylor series and doubling)."""
    return _phi1(sim3_ad(_as(xi, (7,), "sim3_left_jacobian")))


def sim3_right_jacobian(xi: np.ndarray) -> np.ndarray:
    """(N,7) -> (N,7,7) J_r = sum (-ad)^n / (n+1)! (numerical: scaled Taylor series and doubling)."""
    return _phi1(-sim3_ad(_as(xi, (7,), "sim3_right_jacobian")))


def sim3_left_jacobian_inv(xi: np.ndarray) -> np.ndarray:
    """(N,7) -> (N,7,7) J_l^-1, the batched inverse of sim3_left_jacobian."""
    return np.linalg.inv(sim3_left_jacobian(xi))


# J_r^-1(xi) = ad / (I - e^-ad) = sum_n (-1)^n B_n ad^n / n! = I + ad/2 + sum_k B_2k ad^2k / (2k)!
# (Bernoulli numbers; converges for |ad| < 2 pi): the coefficients of ad^2, ad^4, ..., ad^10.
_JR_INV_EVEN = (1 / 12, -1 / 720, 1 / 30240, -1 / 1209600, 1 / 47900160)
_JR_INV_SERIES_MAX = 0.5  # inf-norm of ad up to which the series is used: next term < (0.5 / 2 pi)^12 ~ 6e-14


def sim3_right_jacobian_inv(xi: np.ndarray) -> np.ndarray:
    """(N,7) -> (N,7,7) J_r^-1 = d Log(Exp(xi) Exp(d)) / dd at 0, the inverse of sim3_right_jacobian.

    Small errors (|ad_xi|_inf <= 0.5, a pose graph near its solution) take the Bernoulli series
    (six batched 7x7 products); larger ones the inverse of the scaled Taylor series of J_r, which
    costs ~20 products and an inversion.
    """
    xi = _as(xi, (7,), "sim3_right_jacobian_inv")
    lead = xi.shape[:-1]
    A = sim3_ad(xi.reshape(-1, 7))
    norm = np.abs(A).sum(axis=-1).max(axis=-1)
    small = norm <= _JR_INV_SERIES_MAX
    out = np.empty(A.shape)
    if small.any():
        As = A[small]
        A2 = As @ As
        S = _JR_INV_EVEN[-1] * A2
        for c in _JR_INV_EVEN[-2::-1]:  # Horner in ad^2
            S = (S + c * np.eye(7)) @ A2
        out[small] = np.eye(7) + 0.5 * As + S
    if not small.all():
        out[~small] = np.linalg.inv(_phi1(-A[~small]))
    return out.reshape(lead + (7, 7))


def nearest_rotation(M: np.ndarray, with_scale: bool = False) -> np.ndarray:
    """The rotations nearest to (...,3,3) matrices M (SVD projection onto SO(3)); with_scale: s R
    with s the mean singular value (the nearest scaled rotation, Sim(3)'s linear block)."""
    u, sv, vt = np.linalg.svd(M)
    d = np.ones(u.shape[:-1])
    d[..., 2] = np.linalg.det(u @ vt)
    R = (u * d[..., None, :]) @ vt
    return sv.mean(axis=-1)[..., None, None] * R if with_scale else R


def orthonormalize(T: np.ndarray) -> np.ndarray:
    """The rigid transforms nearest to T (...,4,4) (SVD projection of the rotation blocks onto SO(3)).

    Chained products such as the constant-velocity prediction V T multiply rounding errors, which
    grow geometrically from frame to frame unless every new pose is projected back.
    """
    out = np.array(T, dtype=np.float64, copy=True)
    out[..., :3, :3] = nearest_rotation(out[..., :3, :3])
    return out


def scale_translation(T: np.ndarray, r: float) -> np.ndarray:
    """T (...,4,4) with its translation times r (a scalar, or (...,1) per transform): a relative pose
    measured in camera units that a Sim(3) correction has since rescaled by r (monocular loop closure)."""
    out = np.array(T, dtype=np.float64, copy=True)
    out[..., :3, 3] *= r
    return out


def transform_error(T: np.ndarray, scaled: bool = False) -> np.ndarray:
    """(N,) how far each (N,4,4) is from a rigid transform (scaled: from a similarity [[s R, t],
    [0, 1]], s > 0): the largest entry of |R^T R - I| and of the last row's deviation from
    [0, 0, 0, 1], with R the rotation block (divided by s = det^(1/3)); inf for a reflection."""
    A = T[:, :3, :3]
    det = np.linalg.det(A)
    R = A / np.cbrt(np.where(det > 0, det, 1.0))[:, None, None] if scaled else A
    err = np.abs(np.einsum("nji,njk->nik", R, R) - np.eye(3)).max(axis=(1, 2))
    err = np.maximum(err, np.abs(T[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=1))
    return np.where(det > 0, err, np.inf)


def frame_motion(T_now: np.ndarray, T_then_inv: np.ndarray, r: float = 1.0) -> np.ndarray:
    """The affine 4x4 map p -> T_now (r T_then^-1 p): where a point measured in a camera frame goes
    when the frame moves from T_then to T_now and its units are rescaled by r (r = 1: T_now T_then^-1,
    bit for bit, since products with 1 and 0 are exact)."""
    return T_now @ np.diag([r, r, r, 1.0]) @ T_then_inv
