"""CSR matrix-vector products on the GPU with values and operands natively in fp16, fp32 or fp64.

cupyx.scipy.sparse (and cuSPARSE through it) accepts only fp32/fp64/complex values, so CGNR's fp16
products J v and J^T u would silently run on fp32 copies. This kernel keeps the matrix and the
vector in their stage dtype in device memory (half the bytes of fp32 for fp16, which is the point
of the fp16 stage: these products are memory-bound) and accumulates in fp32 (fp64 for fp64
matrices), as GPU half-precision kernels do and as the NumPy backend emulates. A group of G
threads (a power of two up to a warp, from the mean row length) shares each row and reduces with
warp shuffles. CuPy only; imported lazily by the CuPy backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

_SOURCE = r"""
#include <cuda_fp16.h>
__device__ __forceinline__ float ld(const __half v) { return __half2float(v); }
__device__ __forceinline__ float ld(const float v) { return v; }
__device__ __forceinline__ double ld(const double v) { return v; }

extern "C" __global__ void csr_spmv(const long long n_rows, const int* __restrict__ indptr,
                                    const int* __restrict__ indices, const VAL_T* __restrict__ data,
                                    const VAL_T* __restrict__ x, ACC_T* __restrict__ y) {
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long row = tid / GROUP;
    const int lane = (int)(tid % GROUP);
    ACC_T sum = 0;
    if (row < n_rows) {
        const int end = indptr[row + 1];
        for (int k = indptr[row] + lane; k < end; k += GROUP) {
            sum += (ACC_T)ld(data[k]) * (ACC_T)ld(x[indices[k]]);
        }
    }
    // Every lane of the warp takes part in the shuffles (rows past the end carry zeros).
    for (int off = GROUP / 2; off > 0; off >>= 1) {
        sum += __shfl_down_sync(0xffffffffu, sum, off, GROUP);
    }
    if (row < n_rows && lane == 0) {
        y[row] = sum;
    }
}
"""

_C_TYPES = {"float16": "__half", "float32": "float", "float64": "double"}
_THREADS = 256
_kernels: dict[tuple[str, int], Any] = {}


def accumulate_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype products with `dtype` values are accumulated and returned in (fp32 for fp16)."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def _kernel(dtype: np.dtype, group: int) -> Any:
    import cupy

    key = (np.dtype(dtype).name, group)
    if key not in _kernels:
        acc = _C_TYPES[accumulate_dtype(dtype).name]
        src = (f"#define VAL_T {_C_TYPES[key[0]]}\n#define ACC_T {acc}\n#define GROUP {group}\n") + _SOURCE
        _kernels[key] = cupy.RawKernel(src, "csr_spmv")
    return _kernels[key]


def group_size(indptr: np.ndarray) -> int:
    """Threads per row: the power of two nearest half the mean row length, within [1, 32]."""
    n = max(len(indptr) - 1, 1)
    mean = float(indptr[-1] - indptr[0]) / n
    g = 1
    while g < 32 and 2 * g <= mean:
        g *= 2
    return g


class DeviceCSR:
    """A CSR matrix held on the GPU in fp16, fp32 or fp64; `A @ x` returns fp32 (fp64 for fp64 values)."""

    def __init__(self, A: sp.spmatrix, dtype: np.dtype) -> None:
        import cupy

        A = sp.csr_matrix(A)  # no sort_indices: the kernel does not need it, and it would permute
        # the caller's arrays in place (a problem's J shares its fixed index pattern between linearizations)
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in _C_TYPES:
            raise ValueError(f"DeviceCSR holds float16, float32 or float64 values, not {self.dtype}")
        self.shape = A.shape
        self.nnz = A.nnz
        self.indptr = cupy.asarray(A.indptr.astype(np.int32, copy=False))
        self.indices = cupy.asarray(A.indices.astype(np.int32, copy=False))
        # One rounding from the host values (fp64 or already-rounded fp32) to the stage dtype.
        self.data = cupy.asarray(np.asarray(A.data).astype(self.dtype))
        self.group = group_size(A.indptr)
        self.out_dtype = accumulate_dtype(self.dtype)

    def __matmul__(self, x: Any) -> Any:
        """A x with x cast to the matrix dtype (exact when x already is), accumulated in out_dtype."""
        import cupy

        if x.ndim != 1 or x.shape[0] != self.shape[1]:
            raise ValueError(f"DeviceCSR {self.shape} @ vector of shape {x.shape}")
        x = cupy.ascontiguousarray(x, dtype=self.dtype)
        m = self.shape[0]
        y = cupy.empty(m, dtype=self.out_dtype)
        if m == 0:
            return y
        if self.nnz == 0:
            y.fill(0)
            return y
        threads = m * self.group
        grid = (threads + _THREADS - 1) // _THREADS
        _kernel(self.dtype, self.group)((grid,), (_THREADS,),
                                        (np.int64(m), self.indptr, self.indices, self.data, x, y))
        return y

    def get(self) -> sp.csr_matrix:
        """The matrix back on the host (values in its dtype; fp16 as float32 holding the fp16 values)."""
        data = self.data.get()
        if data.dtype == np.float16:
            data = data.astype(np.float32)
        return sp.csr_matrix((data, self.indices.get(), self.indptr.get()), shape=self.shape)


class TriangularSolver:
    """x = A^-1 b for a sparse triangular A on the GPU, with cuSPARSE's analysis done once per factor.

    cupyx's spsolve_triangular analyses the matrix again on every call (the analysis costs more
    than the solve); the static IC(0) factor never changes within a problem, so the descriptors,
    workspace and analysis are kept and each call is one cusparseSpSM_solve on a persistent
    right-hand side. fp32 or fp64 (cuSPARSE has no fp16 triangular solve). A residual check of
    one solve at construction guards the reuse; `fallback` tells whether it failed and calls go
    through spsolve_triangular instead.
    """

    def __init__(self, A: sp.spmatrix, lower: bool, dtype: np.dtype) -> None:
        import cupy
        import cupyx.scipy.sparse as csps

        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"cuSPARSE triangular solves take float32 or float64, not {self.dtype}")
        self.lower = lower
        self.A = csps.csr_matrix(sp.csr_matrix(A, dtype=self.dtype))
        self.A.sum_duplicates()
        n = self.A.shape[0]
        self._b = cupy.zeros((n, 1), dtype=self.dtype, order="F")
        self._c = cupy.zeros((n, 1), dtype=self.dtype, order="F")
        self.fallback = False
        try:
            self._analyse()
            v = cupy.asarray(np.random.default_rng(0).normal(size=n).astype(self.dtype))
            x = self(v)
            res = float(cupy.linalg.norm(self.A @ x - v) / cupy.linalg.norm(v))
            self.fallback = not (np.isfinite(res) and res < (1e-3 if self.dtype == np.float32 else 1e-10))
        except Exception:  # an older CuPy without the low-level SpSM bindings
            self.fallback = True

    def _analyse(self) -> None:
        import cupy
        from cupy._core import _dtype
        from cupy.cuda import device
        from cupy_backends.cuda.libs import cusparse as lib
        from cupyx import cusparse

        self._lib = lib
        self._handle = device.get_cusparse_handle()
        self._mat_a = cusparse.SpMatDescriptor.create(self.A)
        self._mat_b = cusparse.DnMatDescriptor.create(self._b)
        self._mat_c = cusparse.DnMatDescriptor.create(self._c)
        self._mat_a.set_attribute(lib.CUSPARSE_SPMAT_FILL_MODE,
                                  lib.CUSPARSE_FILL_MODE_LOWER if self.lower else lib.CUSPARSE_FILL_MODE_UPPER)
        self._mat_a.set_attribute(lib.CUSPARSE_SPMAT_DIAG_TYPE, lib.CUSPARSE_DIAG_TYPE_NON_UNIT)
        self._alpha = np.array(1.0, dtype=self.dtype)
        self._cuda_dtype = _dtype.to_cuda_dtype(self.dtype)
        self._op = lib.CUSPARSE_OPERATION_NON_TRANSPOSE
        self._descr = lib.spSM_createDescr()
        size = lib.spSM_bufferSize(self._handle, self._op, self._op, self._alpha.ctypes.data, self._mat_a.desc,
                                   self._mat_b.desc, self._mat_c.desc, self._cuda_dtype,
                                   lib.CUSPARSE_SPSM_ALG_DEFAULT, self._descr)
        self._buf = cupy.empty(max(int(size), 1), dtype=cupy.int8)
        lib.spSM_analysis(self._handle, self._op, self._op, self._alpha.ctypes.data, self._mat_a.desc,
                          self._mat_b.desc, self._mat_c.desc, self._cuda_dtype, lib.CUSPARSE_SPSM_ALG_DEFAULT,
                          self._descr, self._buf.data.ptr)

    def __call__(self, v: Any) -> Any:
        """A^-1 v in the solver's dtype (a new array)."""
        if self.fallback:
            from cupyx.scipy.sparse.linalg import spsolve_triangular

            return spsolve_triangular(self.A, v.astype(self.dtype, copy=False), lower=self.lower).astype(self.dtype)
        self._b[:, 0] = v
        self._c.fill(0)  # SpSM expects a zeroed output (as cupyx.cusparse.spsm notes)
        self._lib.spSM_solve(self._handle, self._op, self._op, self._alpha.ctypes.data, self._mat_a.desc,
                             self._mat_b.desc, self._mat_c.desc, self._cuda_dtype, self._lib.CUSPARSE_SPSM_ALG_DEFAULT,
                             self._descr, self._buf.data.ptr)
        return self._c[:, 0].copy()

    def __del__(self) -> None:
        descr = getattr(self, "_descr", None)
        if descr is not None:
            try:
                self._lib.spSM_destroyDescr(descr)
            except Exception:  # interpreter shutdown: the library may be gone already
                pass
            self._descr = None


# fp16 operands with a power-of-two scale computed on the device: the same scale as
# cgnr.pow2_of_max (s with max|x| s in [0.5, 1), 1 for zero or non-finite) and the same roundings
# as the NumPy path, without the two host round trips pow2_of_max costs per call (CG is
# latency-bound on the GPU at the sizes of our problems).
_POW2 = ("__device__ double pow2_of_max(double m) { if (!(m > 0.0) || isinf(m) || isnan(m)) return 1.0; "
         "int e; frexp(m, &e); return ldexp(1.0, -e); }\n")
_elementwise: dict[str, Any] = {}


def _ew(name: str) -> Any:
    import cupy

    if name not in _elementwise:
        if name == "amax":
            _elementwise[name] = cupy.ReductionKernel("T x", "T y", "abs(x)", "max(a, b)", "y = a", "0", "amax_abs")
        elif name == "half":
            _elementwise[name] = cupy.ElementwiseKernel(
                "T x, T m", "float16 y", "float v = (float)((double)x * pow2_of_max((double)m)); y = v;",
                "scaled_to_half", preamble=_POW2)
        else:
            _elementwise[name] = cupy.ElementwiseKernel(
                "T a, T b", "float32 u",
                "u = (float)((double)u / (pow2_of_max((double)a) * pow2_of_max((double)b)));",
                "unscale_pair", preamble=_POW2)
    return _elementwise[name]


def abs_max(x: Any) -> Any:
    """max |x| as a 0-d device array (no host synchronization)."""
    return _ew("amax")(x)


def scaled_half(x: Any, m: Any) -> Any:
    """fp16(x * s), s = the power of two of pow2_of_max for the maximum m (a 0-d device array)."""
    return _ew("half")(x, m)


def unscale(u: Any, ma: Any, mb: Any) -> Any:
    """u /= s_a s_b in place (float32 u), the scales of scaled_half for maxima ma and mb."""
    return _ew("unscale")(ma, mb, u)


DEVICE_SCALING_ERROR: str | None = None  # why the device-side scaling is unavailable (None: it works)


def half_normal_product(J: DeviceCSR, JT: DeviceCSR, p: Any) -> Any | None:
    """J^T (J p) in fp32 with both operands scaled by powers of two and rounded to fp16 on the device.

    Returns None, once and for all (DEVICE_SCALING_ERROR says why; the tests check it is unset),
    when these kernels cannot be built here, and the caller takes the host-scaled path.
    """
    global DEVICE_SCALING_ERROR
    if DEVICE_SCALING_ERROR is not None:
        return None
    try:
        mp = abs_max(p)
        q = J @ scaled_half(p, mp)
        mq = abs_max(q)
        return unscale(JT @ scaled_half(q, mq), mp, mq)
    except Exception as exc:  # CompileException on an unusual toolchain: correctness first
        DEVICE_SCALING_ERROR = f"{type(exc).__name__}: {exc}"
        return None
