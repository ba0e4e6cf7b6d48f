"""The CuPy backend against the NumPy one: same problems, same answers, fp16 held natively on the GPU.

Every test that needs a GPU takes the `cp` fixture, which skips with the reason (CuPy not
installed, or no CUDA device) where there is none; scripts/gpu_check.sh runs this file on a GPU.
The reference is always the NumPy backend (itself tested against dense solvers, finite
differences and GTSAM in test_solvers_pgo.py / test_ba.py) or a fp64 product of the same
rounded operands.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from slam.io.g2o import read_g2o
from slam.solvers import lm as lm_mod
from slam.solvers.backend import get_backend, numpy_backend
from slam.solvers.ba import BundleAdjustmentProblem, default_options
from slam.solvers.cgnr import ScaledSystem
from slam.solvers.gpu_sparse import group_size
from slam.solvers.lm import SolverOptions, solve
from slam.solvers.pgo import from_pose_graph
from slam.solvers.precision import get_policy
from slam.solvers.twolevel import build_ichol


@pytest.fixture(scope="module")
def cp():
    """CuPy with a usable CUDA device, or a skip that says which of the two is missing."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install '.[gpu]'): GPU backend tests skipped")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver
        pytest.skip(f"CuPy is installed but no CUDA device is usable ({exc}): GPU backend tests skipped")
    if n < 1:
        pytest.skip("CuPy is installed but the machine has no CUDA device: GPU backend tests skipped")
    return cupy


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


# ------------------------------------------------------------------------------ no GPU needed

def test_group_size_follows_mean_row_length() -> None:
    assert group_size(np.array([0, 1, 2, 3])) == 1
    assert group_size(np.array([0, 12, 24])) == 8
    assert group_size(np.array([0, 5000])) == 32
    assert group_size(np.array([0])) == 1  # no rows


def test_emulated_stages_per_backend() -> None:
    be = numpy_backend()
    assert be.emulated_stages(get_policy("mixed")) == ["matvec", "precond"]
    assert be.emulated_stages(get_policy("fp32")) == []
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("opencl")


# ------------------------------------------------------------------------------ kernels

def _random_csr(rng: np.random.Generator, m: int, n: int, long_rows: bool) -> sp.csr_matrix:
    """Rows of 0 to 40 entries (empty rows included), or a few rows of thousands (J^T of BA cameras)."""
    lengths = rng.integers(0, 40, m) if not long_rows else rng.integers(1000, 3000, m)
    lengths[rng.integers(0, m, 3)] = 0
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    cols = rng.integers(0, n, indptr[-1])  # unsorted within rows, duplicates possible (both sum)
    return sp.csr_matrix((rng.normal(size=cols.size) * 10.0 ** rng.uniform(-2, 1, cols.size), cols, indptr),
                         shape=(m, n))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("long_rows", [False, True])
def test_device_csr_product_equals_fp64_product_of_rounded_operands(cp, dtype, long_rows: bool) -> None:
    from slam.solvers.gpu_sparse import DeviceCSR

    rng = np.random.default_rng()  # fresh inputs every run: the kernel must compute the function
    A = _random_csr(rng, 30 if long_rows else 5000, 4000, long_rows)
    x = rng.normal(size=A.shape[1])
    indices = A.indices.copy()
    D = DeviceCSR(A, dtype)
    assert np.array_equal(A.indices, indices)  # the caller's pattern is not reordered (lm shares it)
    assert D.data.dtype == np.dtype(dtype)  # stored natively: fp16 is 2 bytes a value on the device
    xd = cp.asarray(x.astype(dtype))
    y = D @ xd
    assert y.dtype == (np.float64 if dtype == np.float64 else np.float32)
    Ar = sp.csr_matrix((A.data.astype(dtype).astype(np.float64), A.indices, A.indptr), shape=A.shape)
    ref = Ar @ x.astype(dtype).astype(np.float64)
    got = cp.asnumpy(y)
    assert np.all(np.isfinite(got))  # every row written, the empty ones with 0
    assert np.all(got[np.diff(A.indptr) == 0] == 0.0)
    tol = 1e-13 if dtype == np.float64 else 2e-6  # fp32 accumulation (fp16 x fp16 products are exact in fp32)
    assert _rel(got, ref) < tol


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lower", [True, False])
def test_triangular_solver_reuses_its_analysis_and_matches_scipy(cp, dtype, lower: bool) -> None:
    from scipy.sparse.linalg import spsolve_triangular

    from slam.solvers.gpu_sparse import TriangularSolver

    rng = np.random.default_rng()
    n = 3000
    B = sp.random(n, n, density=2e-3, random_state=rng, format="csr")
    A = (sp.tril(B, -1) if lower else sp.triu(B, 1)) + sp.diags(rng.uniform(1.0, 2.0, n))
    A = sp.csr_matrix(A)
    T = TriangularSolver(A, lower, dtype)
    assert not T.fallback  # the cached-analysis path ran and passed its own residual check
    for _ in range(3):  # one analysis, several right-hand sides
        b = rng.normal(size=n)
        x = cp.asnumpy(T(cp.asarray(b.astype(dtype))))
        assert x.dtype == np.dtype(dtype)
        ref = spsolve_triangular(A.astype(np.float64), b.astype(dtype).astype(np.float64), lower=lower)
        assert _rel(x, ref) < (1e-4 if dtype == np.float32 else 1e-12)


# ------------------------------------------------------------------------------ solver pieces

def _pgo(shared_data: Path, name: str = "smallGrid3D"):
    return from_pose_graph(read_g2o(shared_data / "pgo" / f"{name}.g2o"))


def test_normal_matvec_runs_native_fp16_and_matches_the_emulation(cp, shared_data: Path, monkeypatch) -> None:
    from slam.solvers import gpu_sparse

    pol = get_policy("mixed")
    seen: list = []
    orig = gpu_sparse.DeviceCSR.__matmul__

    def spy(self, x):
        seen.append((self.data.dtype, x.dtype))
        return orig(self, x)

    monkeypatch.setattr(gpu_sparse.DeviceCSR, "__matmul__", spy)
    out = {}
    p = np.random.default_rng().normal(size=_pgo(shared_data).n_params).astype(np.float32)
    for name in ("numpy", "cupy"):
        be = get_backend(name)
        lin = lm_mod._linearize(_pgo(shared_data), pol, be, True, lm_mod._Transposer())
        sysm = ScaledSystem(be, lin.J_hi, lin.J_mv, lin.J_mv_T, lin.rhs, 1e-3, pol.matvec, pol.vector)
        u = sysm.normal_matvec(be.asarray(p))
        assert u.dtype == np.float32
        out[name] = be.to_host(u)
    assert seen and all(d == np.float16 and x == np.float16 for d, x in seen)
    assert gpu_sparse.DEVICE_SCALING_ERROR is None  # the scaling ran on the device, not the host fallback
    # Same fp16 operands, fp32 accumulation in another order: J p may round differently to fp16.
    assert _rel(out["cupy"], out["numpy"]) < 2e-3


@pytest.mark.parametrize(("preset", "tol"), [("fp64", 1e-10), ("fp32", 1e-4), ("mixed", 5e-3)])
def test_ichol_preconditioner_matches_numpy(cp, shared_data: Path, preset: str, tol: float) -> None:
    pol = get_policy(preset)
    r = np.random.default_rng().normal(size=_pgo(shared_data).n_params)
    z = {}
    for name in ("numpy", "cupy"):
        be = get_backend(name)
        prob = _pgo(shared_data)
        J, _ = prob.linearize(np.float64, np.float64)
        S = np.ones(prob.n_params)
        pre, _, _ = build_ichol(prob, sp.csr_matrix(J), S, 1e-4, be, pol)
        pre.outer = np.full(prob.n_params, 0.5)
        out = pre(be.asarray(r.astype(pol.vector)))
        assert out.dtype == np.dtype(pol.vector)
        z[name] = be.to_host(out)
    assert np.all(np.isfinite(z["cupy"]))
    assert _rel(z["cupy"], z["numpy"]) < tol


# ------------------------------------------------------------------------------ whole solves

@pytest.mark.parametrize(("preset", "rel"), [("fp64", 1e-6), ("fp32", 1e-4), ("mixed", 1e-3)])
def test_pgo_on_gpu_reaches_the_numpy_fp64_cost(cp, shared_data: Path, preset: str, rel: float) -> None:
    ref = solve(_pgo(shared_data), SolverOptions(precision="fp64", backend="numpy"))
    prob = _pgo(shared_data)
    s = solve(prob, SolverOptions(precision=preset, backend="cupy"))
    assert s.precision["backend"] == "cupy"
    assert s.precision["emulated_stages"] == (["precond"] if preset == "mixed" else [])
    assert s.final_cost == pytest.approx(ref.final_cost, rel=rel)
    assert s.final_cost == pytest.approx(prob.cost(np.float64), rel=1e-12)  # the summary is the state's cost


def _noisy_ba(seed: int = 3, n_cams: int = 8, n_pts: int = 150) -> BundleAdjustmentProblem:
    """A BAL-convention scene observed by every camera, pixels with 0.5 px noise, start perturbed."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n_pts, 3))
    w = rng.normal(scale=0.15, size=(n_cams, 3))
    t = np.column_stack([rng.normal(scale=0.5, size=(n_cams, 2)), np.full(n_cams, -6.0)])
    k = np.column_stack([rng.uniform(400, 600, n_cams), np.full(n_cams, -0.3), np.full(n_cams, 0.2)])
    ci, pi = (a.ravel() for a in np.meshgrid(np.arange(n_cams), np.arange(n_pts), indexing="ij"))
    truth = BundleAdjustmentProblem((w, t), X, ci, pi, np.zeros((ci.size, 2)), k, projection="bal")
    obs = truth.residuals() + rng.normal(scale=0.5, size=(ci.size, 2))  # residual with obs 0 = projection
    p = BundleAdjustmentProblem((w, t), X + rng.normal(scale=0.05, size=X.shape), ci, pi, obs, k, projection="bal")
    p.t += rng.normal(scale=0.05, size=p.t.shape)
    return p


@pytest.mark.parametrize(("preset", "rel"), [("fp64", 1e-6), ("fp32", 1e-4), ("mixed", 1e-2)])
def test_ba_on_gpu_reaches_the_numpy_fp64_cost(cp, preset: str, rel: float) -> None:
    ref = solve(_noisy_ba(), default_options("fp64", backend="numpy", relative_cost_tol=1e-10))
    p = _noisy_ba()
    s = solve(p, default_options(preset, backend="cupy", relative_cost_tol=1e-10))
    assert s.preconditioner == "problem" and s.precision["backend"] == "cupy"
    assert np.isfinite(s.final_cost) and s.final_cost < 1e-2 * s.initial_cost, s.termination
    assert s.final_cost == pytest.approx(ref.final_cost, rel=rel)
