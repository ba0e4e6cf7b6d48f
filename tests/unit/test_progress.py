"""The progress line: redrawn in place on a terminal, plain lines every few seconds in a pipe or log."""

from __future__ import annotations

import io

from slam.progress import ProgressLine, ProgressStats, format_duration, progress_text


class FakeTTY(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _feed(line: ProgressLine, clock: Clock, seconds: float, step: float = 0.125, total: int = 400) -> int:
    """Call the line as the pipeline does (every frame, gathering numbers only when due); 20 frames/s."""
    shown = 0
    while clock.t < seconds - 1e-9:
        clock.t += step
        if line.due():
            line.update(ProgressStats(int(round(clock.t * 20)), clock.t, total, keyframes=7, loops=1, lost=2))
            shown += 1
    return shown


def test_terminal_gets_one_line_redrawn_and_cleared_at_the_end() -> None:
    out, clock = FakeTTY(), Clock()
    line = ProgressLine(out, clock=clock)   # tty detected from isatty()
    assert line.tty
    shown = _feed(line, clock, 10.0)
    assert shown == 40                      # every 0.25 s
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") == shown
    last = text.rsplit("\r", 1)[1]
    # 200 of 400 frames after 10 s at 20 frames/s: 10 s left.
    assert last.startswith("slam run: frame 200/400 (50%)  20.0 frames/s") and last.endswith("\x1b[K")
    assert "keyframes 7" in last and "loops 1" in last and "lost 2" in last and "ETA 0:10" in last
    line.finish(ProgressStats(400, 20.0, 400))
    assert out.getvalue().endswith("\r\x1b[K")  # erased: the caller's summary starts on a clean line
    assert "\n" not in out.getvalue()


def test_a_pipe_gets_plain_lines_every_few_seconds() -> None:
    out, clock = io.StringIO(), Clock()      # StringIO.isatty() is False
    line = ProgressLine(out, clock=clock)
    assert not line.tty
    shown = _feed(line, clock, 20.0)
    lines = out.getvalue().splitlines()
    assert shown == len(lines) == 4          # at 1 s, then every 5 s: 1, 6, 11, 16
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[0].startswith("slam run: frame 20/400 (5%)") and "ETA 0:19" in lines[0]
    line.finish(ProgressStats(400, 20.0, 400, keyframes=9))
    final = out.getvalue().splitlines()[-1]
    assert final.startswith("slam run: done frame 400/400 (100%)") and "keyframes 9" in final


def test_live_line_shows_camera_rate_and_drops_and_no_eta() -> None:
    text = progress_text(ProgressStats(120, 10.0, None, keyframes=3, live=True, input_fps=30.0, dropped=180))
    assert text.startswith("frame 120  12.0 frames/s  camera 30.0 frames/s, dropped 180")
    assert "ETA" not in text
    assert format_duration(7) == "0:07" and format_duration(754) == "12:34" and format_duration(3723) == "1:02:03"


def test_terminal_line_never_wraps(monkeypatch) -> None:
    import os
    import shutil

    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(100, 24): os.terminal_size((40, 24)))
    out, clock = FakeTTY(), Clock()
    line = ProgressLine(out, clock=clock)
    clock.t = 1.0
    line.update(ProgressStats(10, 1.0, 100, keyframes=3))
    drawn = out.getvalue()[1:].replace("\x1b[K", "")
    assert len(drawn) == 39
