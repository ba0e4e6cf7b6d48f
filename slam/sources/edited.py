"""A source with some frames edited: blanked (a covered lens, a dark tunnel), cut short, or interrupted.

How the pipeline behaves when images go black, when a recording ends early or when the user
presses Ctrl-C is checked on real or synthetic sources wrapped in this (tests, scripts/bench_segments.py).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from slam.sources.base import Frame, Source


class EditedSource(Source):
    """Frames of `src` with those in `blank` set to `value` (depth images to 0, no depth, when
    blank_depth), ending before frame `stop_at`, raising KeyboardInterrupt at frame `interrupt_at`."""

    def __init__(self, src: Source, blank: range = range(0), value: int = 0, blank_depth: bool = False,
                 stop_at: int | None = None, interrupt_at: int | None = None) -> None:
        self.src, self.blank, self.value, self.blank_depth = src, blank, value, blank_depth
        self.stop_at, self.interrupt_at = stop_at, interrupt_at
        self.calibration, self.kind = src.calibration, getattr(src, "kind", "edited")
        # what the source says about its sensor (a synthetic RGB-D source has depth without a TUM depth
        # scale): the pipeline's sensor check reads it (bench_segments' RGB-D run was refused without it)
        self.sensor = getattr(src, "sensor", None)

    def __len__(self) -> int:
        return len(self.src)

    def __iter__(self) -> Iterator[Frame]:
        for f in self.src:
            if f.index == self.stop_at:
                return
            if f.index == self.interrupt_at:
                raise KeyboardInterrupt
            if f.index in self.blank:
                f.left = np.full_like(f.left, self.value)
                f.right = None if f.right is None else np.full_like(f.right, self.value)
                if self.blank_depth and f.depth is not None:
                    f.depth = np.zeros_like(f.depth)
            yield f
