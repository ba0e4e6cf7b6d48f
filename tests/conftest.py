"""Shared fixtures: the real-data folder ../shared/data (skipped with a clear message when absent).

The tests run with one BLAS thread, as `slam` itself does (slam/priority.py, set before NumPy is
imported): the runs they start keep the cores busy with their own threads, and an OpenBLAS pool
beside them spins (in CI, 21 s of CPU beyond the run's own threads during one loop-closure test).
"""

from __future__ import annotations

from slam.priority import one_blas_thread

one_blas_thread()  # before anything imports NumPy

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when the folder is absent (a user's clone has none)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data folder {SHARED_DATA} is absent (it ships beside the project only on dev/CI machines)")
    return SHARED_DATA
