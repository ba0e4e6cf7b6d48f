"""Fast, exact emulation of fp16 rounding on fp32 arrays (the NumPy backend's half precision).

NumPy's float32 -> float16 -> float32 round trip converts element by element (several ns each, and
an order of magnitude slower on values that land in fp16's subnormal range), which made the
emulation, not the arithmetic, the bottleneck of the CG loop. The same rounding is a few integer
passes on the fp32 bit pattern: round the 23-bit mantissa to 10 bits (to nearest, ties to even),
then treat fp16's subnormal range (|x| < 2^-14, fixed quantum 2^-24) and overflow (|x| > 65504 ->
inf) separately. The result equals x.astype(float16).astype(float32) bit for bit (tests check it).
"""

from __future__ import annotations

import numpy as np

_F32 = np.dtype(np.float32)
_SUBNORMAL = np.float32(2.0 ** -14)   # smallest normal fp16
_QUANTUM_SHIFT = np.float32(0.75)     # ulp(0.75) in fp32 is 2^-24, the fp16 subnormal quantum
_OVERFLOW = np.float32(65520.0)  # halfway between 65504 (fp16 max) and 2^16: ties go to inf


_SMALL = 2048  # below this many values NumPy's own conversion wins: the passes below cost ~10 us each call


def round_half(x: np.ndarray) -> np.ndarray:
    """x rounded to the nearest fp16 value (ties to even), returned as a new float32 array."""
    x = np.ascontiguousarray(x, dtype=_F32)
    if x.size < _SMALL:
        with np.errstate(over="ignore"):  # overflow to inf is the rounding's result, as below
            return x.astype(np.float16).astype(_F32)
    b = x.view(np.int32)
    t = b >> 13
    t &= 1                      # lowest kept mantissa bit: ties go to even
    t += 0x0FFF
    t += b
    t &= np.int32(~0x1FFF)      # drop the 13 mantissa bits fp16 does not have
    y = t.view(_F32)
    a = np.abs(x)
    small = a < _SUBNORMAL
    if small.any():
        # Adding 0.75 in fp32 rounds to a multiple of 2^-24 (ties to even), as fp16 subnormals do.
        y[small] = (x[small] + _QUANTUM_SHIFT) - _QUANTUM_SHIFT
    big = ~(a < _OVERFLOW)  # also true for inf and NaN, whose low bits must not be rounded
    if big.any():
        xb = x[big]
        y[big] = np.where(np.isnan(xb), xb, np.copysign(np.float32(np.inf), xb))
    return y
