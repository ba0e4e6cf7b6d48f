"""The static factor in a minimum-degree block order (fillchol.py) against dense linear algebra."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from slam.eval.hard_graphs import lattice_graph
from slam.solvers.backend import numpy_backend
from slam.solvers.fillchol import LUPreconditioner, min_degree_block_order, static_cholesky
from slam.solvers.ichol import ICPreconditioner
from slam.solvers.pgo import from_pose_graph
from slam.solvers.twolevel import scale_columns


def _normal_matrix(n_side: int = 4) -> sp.csr_matrix:
    graph, _ = lattice_graph(n_side, n_side, 3, loop_fraction=1.0, seed=4)
    J = sp.csr_matrix(from_pose_graph(graph).static_jacobian())
    S = scale_columns(J)
    J.data *= S[J.indices]
    return (J.T @ J).tocsr() + 1e-5 * sp.eye(J.shape[1], format="csr")


def test_complete_factor_reproduces_the_permuted_matrix() -> None:
    A = _normal_matrix()
    L, perm, stats, lu = static_cholesky(A, 6, max_fill=1e9)
    assert lu is None and stats.dropped == 0 and stats.shift == 0.0
    Ap = A.toarray()[np.ix_(perm, perm)]
    np.testing.assert_allclose((L @ L.T).toarray(), Ap, atol=1e-10 * np.abs(Ap).max())
    assert np.all(np.diff(perm.reshape(-1, 6), axis=1) == 1)  # blocks stay whole
    # upper: the same factor transposed, read from SuperLU's U = D L^T
    U, perm_u, _, _ = static_cholesky(A, 6, max_fill=1e9, upper=True)
    assert np.array_equal(perm_u, perm) and sp.isspmatrix_csc(U) and sp.triu(U).nnz == U.nnz
    np.testing.assert_allclose(U.toarray(), L.T.toarray(), atol=1e-12 * np.abs(L.data).max())


def test_minimum_degree_order_needs_less_fill_than_file_order() -> None:
    A = _normal_matrix(5)
    order = min_degree_block_order(A, 6)
    assert np.array_equal(np.sort(order), np.arange(A.shape[0] // 6))
    perm = (order[:, None] * 6 + np.arange(6)).ravel()
    natural = spla.splu(sp.csc_matrix(A), permc_spec="NATURAL", diag_pivot_thresh=0.0,
                        options=dict(SymmetricMode=True)).L.nnz
    md = spla.splu(sp.csc_matrix(A[perm][:, perm]), permc_spec="NATURAL", diag_pivot_thresh=0.0,
                   options=dict(SymmetricMode=True)).L.nnz
    assert md < 0.7 * natural


@pytest.mark.parametrize("dtype, vector, tol", [(np.float64, np.float64, 1e-9), (np.float32, np.float64, 1e-5),
                                                (np.float16, np.float32, 3e-2)])
def test_complete_factor_preconditioner_inverts_the_static_matrix(dtype, vector, tol) -> None:
    """The fp64 factor applied with its two triangular solves in the precond dtype (fp32: rounded, not refactored)."""
    A = _normal_matrix()
    U, perm, _, _ = static_cholesky(A, 6, upper=True)
    pre = ICPreconditioner(U, numpy_backend(), dtype, vector, perm=perm, upper=True)
    assert pre._lu.U.dtype == (np.float32 if dtype == np.float16 else dtype)
    x = np.random.default_rng(0).normal(size=A.shape[0])
    z = pre((A @ x).astype(vector))
    assert z.dtype == vector
    assert np.linalg.norm(z - x) < tol * np.linalg.norm(x) * 1e3  # cond(A) ~ 1e3 after Jacobi scaling
    # outer d: the variables changed by a diagonal map, the matrix is then D^-1 A D^-1.
    d = np.random.default_rng(1).uniform(0.5, 2.0, A.shape[0])
    pre.outer = d
    z2 = pre(((A @ (x / d)) / d).astype(vector))
    assert np.linalg.norm(z2 - x) < tol * np.linalg.norm(x) * 1e3
    # the same as the lower factor given as L
    L, _, _, _ = static_cholesky(A, 6)
    lower = ICPreconditioner(L, numpy_backend(), dtype, vector, perm=perm)
    y = (A @ x).astype(vector)
    pre.outer = None
    np.testing.assert_allclose(lower(y), pre(y), rtol=1e-6 if dtype == np.float64 else 1e-2,
                               atol=1e-6 * np.abs(x).max())


def test_lu_preconditioner_inverts_the_static_matrix() -> None:
    """fp64: SuperLU's own L D L^T object, applied in one call, against the matrix it was built from."""
    A = _normal_matrix()
    _, perm, _, lu = static_cholesky(A, 6, keep_lu=True)
    assert lu is not None and lu.L.dtype == np.float64
    pre = LUPreconditioner(lu, perm, np.float64, np.float64)
    x = np.random.default_rng(0).normal(size=A.shape[0])
    np.testing.assert_allclose(pre(A @ x), x, rtol=0, atol=1e-9 * np.abs(x).max())
    d = np.random.default_rng(1).uniform(0.5, 2.0, A.shape[0])
    pre.outer = d
    np.testing.assert_allclose(pre((A @ (x / d)) / d), x, rtol=0, atol=1e-9 * np.abs(x).max())


def test_budget_drops_the_smallest_entries_and_stays_positive_definite() -> None:
    A = _normal_matrix()
    full, _, st_full, _ = static_cholesky(A, 6, max_fill=1e9)
    L, perm, st, lu = static_cholesky(A, 6, max_fill=1.5, keep_lu=True)
    assert lu is None and st.dropped > 0 and L.nnz <= 1.5 * st.nnz_lower_a
    np.testing.assert_array_equal(L.diagonal(), full.diagonal())
    M = (L @ L.T).toarray()
    assert np.linalg.eigvalsh(M).min() > 0
    pre = ICPreconditioner(L, numpy_backend(), np.float64, np.float64, perm=perm)
    r = np.random.default_rng(2).normal(size=A.shape[0])
    z = pre(r)
    np.testing.assert_allclose(M @ z[perm], r[perm], atol=1e-8 * np.abs(r).max())


def test_auto_fill_takes_the_complete_factor_only_where_it_is_cheap() -> None:
    """A chain with few loops (parking-garage-like) factors with little fill; a 3-D lattice does not."""
    from slam.eval.hard_graphs import torus_graph
    from slam.solvers.fillchol import block_order_and_fill
    from slam.solvers.lm import SolverOptions, solve

    chain, _ = torus_graph(laps=2, per_lap=60, seed=1)
    chain.edges, chain.measurements, chain.information = (a[:130] for a in (chain.edges, chain.measurements,
                                                                            chain.information))
    lattice, _ = lattice_graph(6, 6, 6, loop_fraction=1.0, seed=2)
    ratios = {}
    for name, g in (("chain", chain), ("lattice", lattice)):
        J = sp.csr_matrix(from_pose_graph(g).static_jacobian())
        ratios[name] = block_order_and_fill((J.T @ J).tocsr(), 6)[1]
        s = solve(from_pose_graph(g), SolverOptions(precision="fp64", max_iterations=2))
        ratios[name + " run"] = s.preconditioner
    assert ratios["chain"] <= 2.0 < ratios["lattice"]
    assert ratios["chain run"] == "ichol (amd)" and ratios["lattice run"] == "ichol (zero)"
