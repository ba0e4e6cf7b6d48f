"""`--frames START:END`: a slice of a recorded source, frames outside it skipped without decoding where possible.

Frames keep their source index and timestamp (a slice of a sequence is the same sequence, cut).
Sources with random access (`frame(i)` of a DatasetSource, `render(i)` of a synthetic one) read
only the frames of the slice; others (a video) are read through and the frames before START dropped.
"""

from __future__ import annotations

from typing import Any, Iterator

from slam.errors import InputError
from slam.sources.base import Frame, Source


def parse_frames(text: str) -> tuple[int, int | None]:
    """(start, end or None) of START:END (END exclusive; either may be empty); InputError when malformed."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        end = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise InputError(f"--frames expects START:END (frame indices, END exclusive, e.g. 0:170), got {text!r}") from None
    if start < 0 or (end is not None and end <= start):
        raise InputError(f"--frames {text}: need 0 <= START < END")
    return start, end


class SliceSource(Source):
    """Frames start..end-1 of a recorded source (same calibration, kind and frame indices)."""

    def __init__(self, source: Source, start: int, end: int | None) -> None:
        if getattr(source, "live", False):
            raise InputError("--frames applies to recorded sources, not to a camera or stream")
        self.source, self.start = source, int(start)
        self.calibration = source.calibration
        self.kind = getattr(source, "kind", "unknown")
        try:
            n = len(source)
        except TypeError:
            n = None
        if n is not None and self.start >= n:
            raise InputError(f"--frames starts at {self.start} but the source has {n} frames")
        self.end = end if n is None else (n if end is None else min(end, n))
        self._getter = getattr(source, "frame", None) if callable(getattr(source, "frame", None)) else (
            getattr(source, "render", None) if callable(getattr(source, "render", None)) else None)

    def __len__(self) -> int:
        if self.end is None:
            raise TypeError("the slice's source has no length")
        return self.end - self.start

    def __iter__(self) -> Iterator[Frame]:
        if self._getter is not None and self.end is not None:
            for i in range(self.start, self.end):
                yield self._getter(i)
            return
        for k, frame in enumerate(self.source):  # no random access: read through
            if self.end is not None and k >= self.end:
                return
            if k >= self.start:
                yield frame

    def __getattr__(self, name: str) -> Any:
        if name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)  # gt_poses, sensor, ... of the source

    def info(self) -> dict[str, Any]:
        """The source's description with the slice."""
        out = dict(self.source.info())
        out["frames_slice"] = [self.start, self.end]
        return out

    def close(self) -> None:
        """Close the source."""
        self.source.close()
