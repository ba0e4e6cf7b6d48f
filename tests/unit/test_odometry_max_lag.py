"""Recorded sources do not run ahead of the window BA by more than odometry.max_lag keyframes."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np

from slam.odometry import worker as worker_mod
from slam.odometry.config import OdometryConfig
from slam.odometry.worker import OdometryWorker


def _worker(monkeypatch, release: threading.Event, **cfg) -> OdometryWorker:
    """A worker whose window solves wait for `release` (inserting does nothing)."""
    monkeypatch.setattr(worker_mod, "optimize", lambda *a, **k: release.wait(30) and None)
    w = OdometryWorker(None, SimpleNamespace(K=np.eye(3), baseline=0.1), OdometryConfig(**cfg), nice=0)  # type: ignore[arg-type]
    monkeypatch.setattr(w, "_insert", lambda kf: None)
    return w


def test_tracking_waits_while_more_than_max_lag_keyframes_await_a_solve(monkeypatch) -> None:
    release = threading.Event()
    w = _worker(monkeypatch, release, max_lag=2)
    w.start()
    for k in range(5):
        w.submit(k)  # type: ignore[arg-type]  # never waits itself
    waited: list[float] = []
    t = threading.Thread(target=lambda: waited.append(w.wait_until_caught_up()))
    t.start()
    time.sleep(0.3)
    assert t.is_alive()  # 5 submitted, none solved: more than 2 behind
    release.set()
    t.join(30)
    assert not t.is_alive() and waited[0] >= 0.25
    assert w.wait_until_caught_up() < 0.1  # caught up now
    assert w.summary()["lag_wait_s"] >= 0.25 and w.summary()["max_lag"] == 2
    w.stop(30)


def test_unthrottled_and_blocking_configs_never_wait_here(monkeypatch) -> None:
    for cfg in ({"max_lag": -1}, {"max_lag": 0, "blocking": True}):
        release = threading.Event()
        w = _worker(monkeypatch, release, **cfg)
        w.start()
        if not cfg.get("blocking"):
            for k in range(5):
                w.submit(k)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        assert w.wait_until_caught_up() == 0.0 and time.perf_counter() - t0 < 0.1
        release.set()
        w.stop(30)
