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
