"""Frame reader threads of a run: a prefetching reader for recorded sources, a newest-frame reader for cameras."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Iterator

from slam.priority import counting_cpu
from slam.sources.base import Frame, Source

_END = object()


class Prefetcher:
    """Reads frames on a thread, a few ahead of tracking (image decoding releases the GIL)."""

    def __init__(self, source: Source, depth: int, max_frames: int | None) -> None:
        self.source, self.max_frames = source, max_frames
        self.q: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self.stop_event = threading.Event()
        self.read_times: list[float] = []
        self.cpu_s: float | None = None  # the thread's CPU time once it has ended
        self._thread = threading.Thread(target=counting_cpu, args=(self, self._run), name="reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self.stop_event.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            it = iter(self.source)
            n = 0
            while self.max_frames is None or n < self.max_frames:
                t0 = time.perf_counter()
                try:
                    frame = next(it)
                except StopIteration:
                    break
                self.read_times.append(time.perf_counter() - t0)
                n += 1
                if not self._put(frame):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the main thread
            self._put(exc)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                item = self.q.get(timeout=0.1)  # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        """Stop reading and wait for the thread."""
        self.stop_event.set()
        self._thread.join(timeout=5.0)


class LatestFrameReader(Prefetcher):
    """Reader of a live source: holds only the newest frame, so tracking that falls behind skips frames.

    A camera does not wait for tracking: a queue would grow (or, bounded, hand over ever older
    frames). Here a frame not yet taken when the next one arrives is dropped and counted.
    """

    def __init__(self, source: Source, max_frames: int | None) -> None:
        self.frames_read = 0
        self.dropped = 0
        self.first_read: float | None = None
        self.last_read: float | None = None
        super().__init__(source, 1, max_frames)

    def _put(self, item: Any) -> bool:
        if not isinstance(item, Frame):
            return super()._put(item)  # the end or an error waits for the consumer: nothing is lost
        now = time.perf_counter()
        self.first_read = now if self.first_read is None else self.first_read
        self.last_read = now
        self.frames_read += 1
        try:
            self.q.get_nowait()  # this thread is the only producer: afterwards the queue is empty
            self.dropped += 1
        except queue.Empty:
            pass
        self.q.put_nowait(item)
        return not self.stop_event.is_set()

    def stop(self) -> None:
        """Stop the source's own grabber too: a stalled camera must not hold the reader in a read."""
        self.stop_event.set()
        stop_source = getattr(self.source, "stop", None)
        if callable(stop_source):
            stop_source()
        super().stop()

    @property
    def input_fps(self) -> float | None:
        """Rate at which frames arrived from the source (None before two frames)."""
        if self.frames_read < 2 or self.last_read is None or self.first_read is None:
            return None
        dt = self.last_read - self.first_read
        return (self.frames_read - 1) / dt if dt > 0 else None
