"""The odometry worker thread: inserts keyframes, creates landmarks, runs the window BA.

Tracking hands keyframes over with `submit` and never waits for BA (unless `blocking` is set for
deterministic runs): the worker drains every keyframe queued while it was busy, inserts them all,
then runs one window solve. The map lock is held only to copy the window out and to write the
result back, so tracking waits at most for a lock handoff. An exception in the worker is kept in
`error` and stops it; the pipeline checks it after every frame.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable

import numpy as np

from slam.odometry.config import OdometryConfig
from slam.geometry.pinhole import Rig
from slam.map.keyframe import KeyframeData
from slam.map.map import Map
from slam.odometry.landmarks import from_measurements, triangulate_tracks
from slam.odometry.window import WindowData, WindowStats, optimize
from slam.priority import counting_cpu, lower_priority

_STOP = object()


def timing_stats(seconds: list[float]) -> dict[str, float]:
    """Milliseconds: mean, median, p95, max, total (in s) and count of a list of durations (report.json)."""
    a = np.asarray(seconds, float) * 1e3
    if a.size == 0:
        return {"count": 0}
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "max": float(a.max()), "total_s": float(a.sum() / 1e3), "count": int(a.size)}


class WorkerError(RuntimeError):
    """The odometry worker stopped with an exception (the original is the __cause__)."""


class OdometryWorker:
    """Sliding-window bundle adjustment on its own thread."""

    def __init__(self, the_map: Map, rig: Rig, cfg: OdometryConfig, nice: int = 10,
                 observer: Callable[[WindowData], None] | None = None,
                 on_inserted: Callable[[KeyframeData], None] | None = None) -> None:
        self.map, self.rig, self.cfg = the_map, rig, cfg
        self.nice = nice
        self.observer = observer  # sees every window problem (benchmarks)
        self.on_inserted = on_inserted  # each keyframe once inserted and solved (the loop worker's input)
        self.precision = cfg.precision  # one source of truth: `slam run --precision` writes it into the config
        self.queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.stats: list[WindowStats] = []
        self.insert_times: list[float] = []
        self.landmarks_created = 0
        self._thread = threading.Thread(target=counting_cpu, args=(self, self._run), name="odometry", daemon=True)
        self._count_lock = threading.Lock()
        self._solved_cv = threading.Condition(self._count_lock)  # notified after every window solve
        self._submitted = self._inserted = self._solved = 0
        self.lag_wait_s = 0.0  # tracking time spent waiting for the worker to catch up (max_lag)
        self.cpu_s: float | None = None  # the thread's CPU time once it has ended

    def pending(self) -> int:
        """Keyframes submitted but not yet inserted into the map."""
        with self._count_lock:
            return self._submitted - self._inserted

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def submit(self, kf: KeyframeData) -> None:
        """Queue a keyframe (returns at once unless the config asks for blocking runs)."""
        self.check()
        with self._count_lock:
            self._submitted += 1
        self.queue.put(kf)
        if self.cfg.blocking:
            self.queue.join()
            self.check()

    def wait_until_caught_up(self) -> float:
        """Wait while more than cfg.max_lag (>= 0) keyframes await their first window solve; the
        seconds waited. The pipeline calls it between frames of recorded sources: tracking that
        runs far ahead of the window BA tracks and triangulates from unrefined poses, and the map
        then depends on how fast the machine is (room_loop stereo 752x480, no loop closure: 4.5-5.4
        mm ATE unthrottled at 37-38 frames/s, 2.5 mm with a lag of 3 keyframes at 26 frames/s,
        2.46 mm blocking)."""
        if self.cfg.blocking or self.cfg.max_lag is None or self.cfg.max_lag < 0:
            return 0.0
        t0 = time.perf_counter()
        with self._solved_cv:
            self._solved_cv.wait_for(lambda: self._submitted - self._solved <= self.cfg.max_lag
                                     or self.error is not None or not self._thread.is_alive())
        waited = time.perf_counter() - t0
        self.lag_wait_s += waited
        self.check()
        return waited

    def check(self) -> None:
        """Raise WorkerError if the worker died."""
        if self.error is not None:
            raise WorkerError(f"odometry worker failed: {self.error!r}") from self.error

    def stop(self, timeout: float | None = None) -> None:
        """Let the worker finish what is queued (one last window solve), then end the thread."""
        if self._thread.is_alive():
            self.queue.put(_STOP)
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    def _run(self) -> None:
        lower_priority(self.nice)
        stop = False
        while not stop:
            batch = [self.queue.get()]
            while True:  # drain: keyframes that queued up during the last solve go in together
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            try:
                kfs = [item for item in batch if item is not _STOP]
                if kfs and self.error is None:
                    for kf in kfs:
                        self._insert(kf)
                    st = optimize(self.map, self.cfg, self.rig.K, self.rig.baseline, self.precision, self.observer)
                    if st is not None:
                        self.stats.append(st)
                    if self.on_inserted is not None:
                        for kf in kfs:
                            self.on_inserted(kf)
            except BaseException as exc:  # kept for the main thread, which re-raises it
                self.error = exc
            finally:
                with self._solved_cv:
                    self._solved += sum(item is not _STOP for item in batch)
                    self._solved_cv.notify_all()
                for _ in batch:
                    self.queue.task_done()
            if self.error is not None:
                stop = True
        self._discard()

    def _discard(self) -> None:
        """After a failure: keep draining so that a blocking submit cannot hang."""
        if self.error is None:
            return
        while True:
            try:
                self.queue.get_nowait()
                self.queue.task_done()
            except queue.Empty:
                return

    def _insert(self, kf: KeyframeData) -> None:
        t0 = time.perf_counter()
        # BA (or a loop) moved the reference since tracking measured this keyframe against it:
        # the map moves it along, in the step that inserts it (a monocular Sim(3) correction of the
        # reference also rescaled its camera frame). Landmarks made from it below follow any
        # correction that lands after the insert (create_landmarks' measured_at).
        self.map.insert_keyframe(kf, follow_reference=True)
        n = from_measurements(self.map, kf, self.rig.K)
        n += triangulate_tracks(self.map, kf, self.rig.K, lookback=max(self.cfg.window, 2),
                                max_error=self.cfg.max_reprojection_error, min_parallax_deg=self.cfg.min_parallax)
        self.landmarks_created += n
        self.insert_times.append(time.perf_counter() - t0)
        with self._count_lock:
            self._inserted += 1

    def summary(self) -> dict:
        """BA statistics for report.json (times in milliseconds)."""
        s = self.stats
        return {
            "precision": self.precision, "solves": len(s),
            "window": self.cfg.window,
            "max_iterations": self.cfg.max_iterations, "max_lag": self.cfg.max_lag, "lag_wait_s": self.lag_wait_s,  # tracking waiting for BA (max_lag)
            "solve_ms": timing_stats([x.solve_s for x in s]), "build_ms": timing_stats([x.build_s for x in s]),
            "write_ms": timing_stats([x.write_s for x in s]), "insert_ms": timing_stats(self.insert_times),
            "iterations_mean": float(np.mean([x.iterations for x in s])) if s else 0.0,
            "cg_iterations_mean": float(np.mean([x.cg_iterations for x in s])) if s else 0.0,
            "keyframes_mean": float(np.mean([x.keyframes for x in s])) if s else 0.0,
            "points_mean": float(np.mean([x.points for x in s])) if s else 0.0,
            "observations_mean": float(np.mean([x.observations for x in s])) if s else 0.0,
            "rejected_observations": int(sum(x.rejected for x in s)),
            "culled_landmarks": int(sum(x.culled for x in s)),
            "landmarks_created": self.landmarks_created,
            "solver_precision": s[-1].precision if s else {},
            "stage_ms": {k: 1e3 * float(np.mean([x.stage_s.get(k, 0.0) for x in s])) for k in s[-1].stage_s} if s else {},
        }
