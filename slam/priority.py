"""Process and thread settings of a run: priority, BLAS threads, the allocator, thread CPU time (a leaf module)."""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator


def lower_priority(nice: int) -> None:
    """Run the calling thread below tracking: on a 2-core machine a worker then takes the CPU time
    tracking leaves instead of slowing it down (Linux schedules threads individually)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        pass  # not permitted here: run at normal priority


def counting_cpu(owner: Any, body: Callable[[], None]) -> None:
    """A worker thread's target: run body, then leave the thread's CPU seconds in owner.cpu_s
    (report.json's cpu_s), however body ended."""
    try:
        body()
    finally:
        owner.cpu_s = time.thread_time()


def one_blas_thread() -> None:
    """Before NumPy is imported: one BLAS/OpenMP thread per process unless the environment sets one.

    A run already keeps the cores busy with its own threads (reader, tracking, window BA, loop
    closing); OpenBLAS's thread pool on top of them oversubscribes the cores and spins, which made
    loop-closure PGO several times slower on the 2-core machine (scripts/bench_loop.py --pgo-size,
    with and without this setting).
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 64 << 20) -> bool:
    """glibc only: serve arrays up to 32 MiB from the heap and keep freed heap memory for reuse.

    By default glibc maps each large block (a NumPy temporary of a window BA: 0.1-4 MB) afresh and
    unmaps it when freed, so every new array pays a page fault per 4 KiB on first touch. On the
    2-core VM that was most of the time of the BA's Jacobian and block-Jacobi stages (a window
    problem of 13.6k observations: 6.6 -> 2.9 ms and 4.5 -> 1.7 ms per call with this setting).
    The cost: freed memory stays with the process, up to 64 MiB per malloc arena (one per thread
    that allocates) above what is in use; a stereo room_loop run peaked at 276 MB against 263 MB.
    Skipped where the user set MALLOC_* variables (their choice) or the C library is not glibc.
    Returns whether the setting was applied.
    """
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


@contextmanager
def short_gil_switch(interval: float = 5e-4) -> Iterator[None]:
    """Within the block, a thread waiting for the GIL gets it after at most `interval` s (Python's
    default: 5 ms); the previous setting is restored after.

    A run's threads (tracking, window BA, loop closing, reader) all hold the GIL between their
    NumPy/OpenCV calls, and tracking, which waits on the others' Python code several times a frame,
    waited up to 5 ms each time. Live stereo 752x480 (room_loop, loop closure on), three runs each,
    alternating: 40.4 / 41.1 / 40.3 -> 41.4 / 42.2 / 42.1 frames/s, tracking p99 about the same
    (45-53 ms); 0.2 ms was no better.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, interval))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
