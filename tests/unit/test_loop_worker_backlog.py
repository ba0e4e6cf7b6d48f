"""The loop worker's queue keeps at most `max_backlog` keyframes' place inputs (images) waiting, thinned evenly."""

from __future__ import annotations

import threading
import time
from typing import Any

from slam.loop.worker import LoopWorker


class _SlowCloser:
    """Stands in for LoopCloser: the first keyframe blocks until released; records what it was given."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[tuple[int, Any]] = []
        self.abort: Any = None

    def process(self, kf_id: int, timestamp: float, place: Any) -> None:
        self.seen.append((kf_id, place))
        if kf_id == 0:
            self.release.wait(30)

    def place_due(self, timestamp: float) -> bool:
        return True

    def summary(self) -> dict:
        return {"accepted": 0}


def _wait_busy(worker: LoopWorker) -> None:
    t0 = time.monotonic()
    while worker.busy_since is None and time.monotonic() - t0 < 30:
        time.sleep(0.01)
    assert worker.busy_since is not None


def test_a_full_backlog_is_thinned_keeping_the_newest() -> None:
    closer = _SlowCloser()
    worker = LoopWorker(closer, blocking=False, nice=0, max_backlog=5)  # type: ignore[arg-type]
    worker.start()
    worker.submit(0, 0.0, "place-0")
    _wait_busy(worker)  # keyframe 0 is being processed: the queue is empty
    most_waiting = 0
    for k in range(1, 13):
        worker.submit(k, float(k), f"place-{k}")
        with worker.queue.mutex:
            most_waiting = max(most_waiting, sum(item[2] is not None for item in worker.queue.queue))
    closer.release.set()
    worker.stop(30)
    assert not worker.alive
    assert most_waiting <= 5  # never more than max_backlog images held
    assert [k for k, _ in closer.seen] == list(range(13))  # every keyframe still reaches the closer, in order
    kept = [k for k, p in closer.seen if p is not None]
    # 1..5 wait with theirs; the 6th halves them (1, 3, 5 drop theirs), and so on: the newest always
    # keeps its input (a revisit is recognised on the newest keyframes) and the kept ones are spread out
    assert kept == [0, 7, 10, 12]
    assert all(p == f"place-{k}" for k, p in closer.seen if p is not None)
    summary = worker.summary()
    assert summary["keyframes_skipped_behind"] == 9 and summary["status"] == "ok"


def test_blocking_runs_never_skip() -> None:
    closer = _SlowCloser()
    closer.release.set()
    worker = LoopWorker(closer, blocking=True, nice=0, max_backlog=0)  # type: ignore[arg-type]
    worker.start()
    for k in range(5):
        worker.submit(k, float(k), f"place-{k}")
    worker.stop(30)
    assert all(p is not None for _, p in closer.seen) and worker.skipped_behind == 0


def test_place_recognition_runs_at_most_place_rate_hz() -> None:
    """loop.place_rate_hz: the first keyframe of each 1/rate s slot of sequence time keeps its place
    input (features, query, database), the others reach the closer without it (pose graph only);
    0 keeps every one. report.json counts both."""
    from slam.loop.closer import LoopCloser, PlaceRecognition
    from slam.loop.config import LoopConfig

    times = [0.0, 0.1, 0.19, 0.2, 0.25, 0.41, 0.5, 0.61, 1.0]
    for rate, queried in ((5.0, [0, 3, 5, 7, 8]), (0.0, list(range(len(times))))):
        asked: list[int] = []
        places = PlaceRecognition(candidates=lambda kf, place: asked.append(kf) or [],
                                  verify=lambda kf, place, match: "unused")
        closer = LoopCloser(None, "stereo", LoopConfig(place_rate_hz=rate), "fp64", places)
        worker = LoopWorker(closer, blocking=True, nice=0)
        worker.start()
        for k, t in enumerate(times):
            worker.submit(k, t, f"place-{k}")
        worker.stop(30)
        assert asked == queried  # rate 5: slots [0, 0.2), [0.2, 0.4), [0.4, 0.6), [0.6, 0.8), [1.0, 1.2)
        s = worker.summary()
        assert s["keyframes_checked"] == len(times) and s["keyframes_queried"] == len(queried)
        assert s["keyframes_skipped_rate"] == len(times) - len(queried) and s["status"] == "ok"
