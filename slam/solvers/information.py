"""Information matrices that are not positive definite: find them, or project them onto the PD cone.

Some public pose graphs carry thousands of edges whose 6x6 information is indefinite or singular
(rounded covariances inverted, or hand-edited files). By default they are refused (slam.io.g2o);
on request each is replaced by the nearest symmetric matrix, in the Frobenius norm, whose
eigenvalues are at least a floor: symmetrize, then clamp the eigenvalues from below
(Higham 1988, the nearest positive semidefinite matrix, with a positive floor so that the
whitening Cholesky factor exists). The floor is relative to the matrix's own largest eigenvalue
magnitude, so a repaired edge keeps its scale and trusts its bad directions very little.
"""

from __future__ import annotations

import numpy as np

DEFAULT_FLOOR = 1e-6  # eigenvalue floor relative to the largest |eigenvalue| of the same matrix
_ABS_FLOOR = 1e-12    # ... and an absolute floor for an all-zero matrix


def not_positive_definite(information: np.ndarray) -> np.ndarray:
    """Indices of the (M, d, d) matrices whose symmetric part has a non-positive (or non-finite) eigenvalue."""
    info = np.asarray(information, dtype=np.float64)
    sym = 0.5 * (info + info.transpose(0, 2, 1))
    finite = np.isfinite(sym).all(axis=(1, 2))
    low = np.full(len(sym), -np.inf)
    if finite.any():
        low[finite] = np.linalg.eigvalsh(sym[finite])[:, 0]
    return np.flatnonzero(~(low > 0))


def repair_information(information: np.ndarray, floor: float = DEFAULT_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """(repaired copy, indices repaired): each matrix that is not PD projected onto eigenvalues >= floor * max|eig|.

    Positive definite matrices are returned unchanged (bit for bit). Non-finite matrices cannot be
    repaired and raise ValueError naming the first one.
    """
    if not floor > 0:
        raise ValueError(f"the eigenvalue floor must be positive, got {floor}")
    info = np.array(information, dtype=np.float64)
    bad = not_positive_definite(info)
    if bad.size == 0:
        return info, bad
    sym = 0.5 * (info[bad] + info[bad].transpose(0, 2, 1))
    nonfinite = ~np.isfinite(sym).all(axis=(1, 2))
    if nonfinite.any():
        raise ValueError(f"information matrix {int(bad[np.argmax(nonfinite)])} holds NaN or Inf: cannot be repaired")
    w, V = np.linalg.eigh(sym)
    lo = np.maximum(floor * np.abs(w).max(axis=1), _ABS_FLOOR)
    w = np.maximum(w, lo[:, None])
    fixed = np.einsum("mij,mj,mkj->mik", V, w, V)
    info[bad] = 0.5 * (fixed + fixed.transpose(0, 2, 1))
    return info, bad
