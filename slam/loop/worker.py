"""The loop worker thread: runs LoopCloser on every keyframe the odometry worker inserted.

Keyframes arrive through `submit` (called by the odometry worker after it inserted them; one
keyframe per 1/loop.place_rate_hz s keeps its place input, LoopCloser.place_due), so
tracking never waits for place recognition or PGO (unless `blocking` is set for deterministic
runs). The thread runs below the odometry worker's priority. An exception stops loop closure only:
it is kept in `error`, later keyframes are dropped, and the run finishes as odometry. `stop`
drains the queue; `abort` ends at once, dropping a correction still being computed, so that an
interrupted run keeps the last correction that was written.

The queue is bounded in what it holds: when `max_backlog` waiting keyframes carry their place
input (the image and features place recognition would describe), every other one of them, oldest
first, drops it (it is then not a loop query and does not enter the place database), so the
backlog halves and what stays is spread evenly over the stretch of the run it covers. Without the
bound a long run whose loop thread falls behind (large PGOs on a loaded machine) kept every
waiting keyframe's image: 10,000 frames of room_loop reached 2.3 GB, and the end of the run waited
for thousands of queued keyframes. Refusing the newest keyframes instead (the first policy) made
a loaded machine miss the revisit at the end of a run: the revisiting keyframes are the newest
ones, and neighbouring keyframes show nearly the same view, so thinning loses little recognition.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from typing import Any

from slam.loop.closer import LoopCloser
from slam.priority import counting_cpu, lower_priority

_STOP = object()


class LoopWorker:
    """LoopCloser on its own thread."""

    def __init__(self, closer: LoopCloser, blocking: bool = False, nice: int = 15, max_backlog: int = 40) -> None:
        self.closer = closer
        self.blocking, self.nice, self.max_backlog = blocking, nice, max_backlog
        self.skipped_behind = 0  # keyframes whose place input was dropped: the worker was max_backlog behind
        self.queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.error_text: str | None = None
        self.abort_event = threading.Event()
        closer.abort = self.abort_event
        self.busy_since: float | None = None
        self.cpu_s: float | None = None  # the thread's CPU time once it has ended
        self._thread = threading.Thread(target=counting_cpu, args=(self, self._run), name="loop", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def submit(self, kf_id: int, timestamp: float, place: Any) -> None:
        """Queue an inserted keyframe (dropped once the worker has failed or been stopped)."""
        if self.error is not None or self.abort_event.is_set():
            return
        if place is not None and not self.closer.place_due(timestamp):
            place = None  # between two place queries (loop.place_rate_hz): pose graph only
        if place is not None and not self.blocking:
            self._thin()
        self.queue.put((kf_id, timestamp, place))
        if self.blocking:
            self.queue.join()

    def _thin(self) -> None:
        """Drop the place input of every other waiting keyframe (oldest first) once max_backlog hold one."""
        with self.queue.mutex:  # the worker takes items under the same lock
            waiting = self.queue.queue
            holders = [i for i, item in enumerate(waiting) if item is not _STOP and item[2] is not None]
            if len(holders) < self.max_backlog:
                return
            for i in holders[0::2]:
                kf_id, timestamp, _ = waiting[i]
                waiting[i] = (kf_id, timestamp, None)
            self.skipped_behind += len(holders[0::2])

    def stop(self, timeout: float | None = None) -> None:
        """Process what is queued, then end the thread."""
        if self._thread.is_alive():
            self.queue.put(_STOP)
            self._thread.join(timeout)

    def abort(self, timeout: float = 5.0) -> None:
        """End now: queued keyframes are dropped and a correction being computed is not written."""
        self.abort_event.set()
        if self._thread.is_alive():
            self.queue.put(_STOP)
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    def _run(self) -> None:
        lower_priority(self.nice)
        while True:
            item = self.queue.get()
            try:
                if item is _STOP:
                    return
                if self.error is None and not self.abort_event.is_set():
                    self.busy_since = time.perf_counter()
                    self.closer.process(*item)
            except BaseException as exc:  # loop closure stops; the run goes on as odometry
                self.error = exc
                self.error_text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            finally:
                self.busy_since = None
                self.queue.task_done()

    def summary(self) -> dict:
        """report.json's loop-closure section."""
        out = self.closer.summary()
        out["status"] = "failed" if self.error is not None else "ok"
        out["keyframes_skipped_behind"] = self.skipped_behind
        out["error"] = self.error_text
        return out
