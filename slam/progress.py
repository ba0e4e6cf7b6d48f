"""Progress of a run on the terminal: one updating line on a TTY, plain lines every few seconds otherwise.

A leaf module (imports nothing of slam): the pipeline hands it numbers, it decides when and how
to show them. On a terminal the line is redrawn in place (carriage return, erase to the end of the
line, cut to the terminal width so that it never wraps) and erased at the end; in a log file or a
pipe it writes one ordinary line at first after `first_plain_s` and then every `plain_interval_s`.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO

_ERASE = "\x1b[K"  # erase to the end of the line (ANSI; every terminal emulator in use has it)


@dataclass
class ProgressStats:
    """What a progress line shows; live sources add the camera's rate and the frames dropped."""

    frames: int
    elapsed_s: float
    total: int | None = None
    keyframes: int = 0
    loops: int = 0
    lost: int = 0
    live: bool = False
    input_fps: float | None = None   # live: frames arriving from the camera per second
    dropped: int = 0                 # live: frames skipped because tracking was behind

    @property
    def fps(self) -> float:
        """Frames processed per second since the start."""
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the average rate so far (None without a known total)."""
        if not self.total or self.frames <= 0 or self.elapsed_s <= 0:
            return None
        return max(self.total - self.frames, 0) * self.elapsed_s / self.frames


def format_duration(seconds: float) -> str:
    """'0:07', '12:34', '1:02:03'."""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_text(st: ProgressStats, eta: bool = True) -> str:
    """The line's text (no newline)."""
    tot = f"/{st.total}" if st.total else ""
    pct = f" ({100.0 * st.frames / st.total:.0f}%)" if st.total else ""
    parts = [f"frame {st.frames}{tot}{pct}", f"{st.fps:.1f} frames/s"]
    if st.live:
        cam = "?" if st.input_fps is None else f"{st.input_fps:.1f}"
        parts.append(f"camera {cam} frames/s, dropped {st.dropped}")
    parts += [f"keyframes {st.keyframes}", f"loops {st.loops}", f"lost {st.lost}"]
    left = st.eta_s if eta else None
    if left is not None:
        parts.append(f"ETA {format_duration(left)}")
    return "  ".join(parts)


class ProgressLine:
    """Shows ProgressStats on a stream: redrawn in place on a TTY, plain lines otherwise."""

    def __init__(self, stream: TextIO | None = None, prefix: str = "slam run: ", tty: bool | None = None,
                 tty_interval_s: float = 0.25, first_plain_s: float = 1.0, plain_interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = sys.stderr if stream is None else stream
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self.tty, self.prefix, self.clock = tty, prefix, clock
        self.tty_interval_s, self.plain_interval_s = tty_interval_s, plain_interval_s
        self._next = clock() + (tty_interval_s if tty else first_plain_s)
        self._drawn = False

    def due(self) -> bool:
        """True when the next update would be shown (callers skip gathering numbers otherwise)."""
        return self.clock() >= self._next

    def update(self, stats: ProgressStats) -> None:
        """Show the numbers (redraw on a TTY, one line otherwise) and schedule the next update."""
        text = self.prefix + progress_text(stats)
        if self.tty:
            width = shutil.get_terminal_size((100, 24)).columns
            self.stream.write("\r" + text[: max(width - 1, 10)] + _ERASE)
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._next = self.clock() + (self.tty_interval_s if self.tty else self.plain_interval_s)

    def finish(self, stats: ProgressStats) -> None:
        """Erase the line on a TTY (the caller prints its summary); a last plain line otherwise."""
        if self.tty:
            if self._drawn:
                self.stream.write("\r" + _ERASE)
        else:
            self.stream.write(self.prefix + "done " + progress_text(stats, eta=False) + "\n")
        self.stream.flush()
        self._drawn = False
