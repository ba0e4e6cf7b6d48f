"""Array backends: NumPy/SciPy on the CPU (fp16 emulated) or CuPy on an NVIDIA GPU (fp16 native)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from slam.solvers.fp16 import round_half

F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)


@dataclass(frozen=True)
class Backend:
    """Where the linear algebra runs.

    On NumPy, fp16 is *emulated*: operands are rounded to fp16 and stored in fp32, arithmetic and
    accumulation are fp32 (what GPU half kernels with fp32 accumulation do), so the accuracy of
    fp16 is reproduced but not its speed (NumPy fp16 arithmetic is ~50x slower than fp32 and SciPy
    sparse has no fp16). On CuPy, fp16 arrays are stored natively.
    """

    name: str
    xp: Any
    sparse: Any

    @property
    def emulates_fp16(self) -> bool:
        """True when fp16 stages are rounded through fp16 but computed in fp32."""
        return self.name == "numpy"

    def storage_dtype(self, dtype: np.dtype) -> np.dtype:
        """The dtype arrays of a stage are actually held in on this backend."""
        dtype = np.dtype(dtype)
        return F32 if (dtype == F16 and self.emulates_fp16) else dtype

    def cast(self, x: Any, dtype: np.dtype) -> Any:
        """Round x to `dtype` and return it in that stage's storage dtype (a rounded fp32 for emulated fp16)."""
        dtype = np.dtype(dtype)
        # Overflow to inf is a legitimate outcome of an fp16 stage (the fp16 preset studies it);
        # the LM driver rejects non-finite steps, so no warning per cast.
        with np.errstate(over="ignore", invalid="ignore"):
            if dtype == F16 and self.emulates_fp16:
                if x.dtype == F32:
                    return round_half(x)  # bit-identical to x.astype(float16).astype(float32), faster
                return x.astype(F16).astype(F32)  # one rounding: fp64 -> fp32 -> fp16 could round twice
            return x.astype(dtype, copy=False)


    def emulated_stages(self, policy: Any) -> list[str]:
        """The policy's fp16 stages that are rounded through fp16 but computed in fp32 on this backend.

        NumPy: every fp16 stage. CuPy: CGNR's products and vectors run natively in fp16
        (gpu_sparse.py); the problem's residual, Jacobian and update are host code on every
        backend, and the preconditioner's triangular solves stay fp32 because cuSPARSE has no
        half-precision triangular solve.
        """
        half = [s for s in ("residual", "jacobian", "matvec", "precond", "vector", "update")
                if np.dtype(getattr(policy, s)) == F16]
        return half if self.emulates_fp16 else [s for s in half if s not in ("matvec", "vector")]

    def synchronize(self) -> None:
        """Wait for the device's queued work (no-op on NumPy), so host clocks time finished work."""
        if self.name == "cupy":
            self.xp.cuda.Device().synchronize()

    def asarray(self, x: Any) -> Any:
        """Move a host array to this backend."""
        return self.xp.asarray(x)

    def to_host(self, x: Any) -> np.ndarray:
        """Move an array of this backend to the host as NumPy."""
        return x.get() if hasattr(x, "get") and self.name == "cupy" else np.asarray(x)


def numpy_backend() -> Backend:
    """The CPU backend (always available)."""
    import scipy.sparse as sps

    return Backend("numpy", np, sps)


def cupy_backend() -> Backend:
    """The GPU backend; raises RuntimeError with the reason when CuPy or a GPU is not available."""
    try:
        import cupy
        import cupyx.scipy.sparse as csps

        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # ImportError, CUDARuntimeError: no usable GPU
        raise RuntimeError(f"CuPy backend unavailable ({exc}); install '.[gpu]' on a machine with an NVIDIA GPU") from exc
    return Backend("cupy", cupy, csps)


def get_backend(name: str = "numpy") -> Backend:
    """Backend by name: 'numpy', 'cupy', or 'auto' (CuPy when it works, else NumPy)."""
    if name == "numpy":
        return numpy_backend()
    if name == "cupy":
        return cupy_backend()
    if name == "auto":
        try:
            return cupy_backend()
        except RuntimeError:
            return numpy_backend()
    raise ValueError(f"unknown backend '{name}'; choose numpy, cupy or auto")
