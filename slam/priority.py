"""Thread scheduling priority for the background workers (odometry BA, loop closure): a leaf module."""

from __future__ import annotations

import os
import threading


def lower_priority(nice: int) -> None:
    """Run the calling thread below tracking: on a 2-core machine a worker then takes the CPU time
    tracking leaves instead of slowing it down (Linux schedules threads individually)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        pass  # not permitted here: run at normal priority


def one_blas_thread() -> None:
    """Before NumPy is imported: one BLAS/OpenMP thread per process unless the environment sets one.

    A run already keeps the cores busy with its own threads (reader, tracking, window BA, loop
    closing); OpenBLAS's thread pool on top of them oversubscribes the cores and spins, which made
    loop-closure PGO several times slower on the 2-core machine (scripts/bench_loop.py --pgo-size,
    with and without this setting).
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
