"""--frames START:END (slam/sources/slice.py): parsing, random access reads only the slice, read-through otherwise."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest

from slam.errors import InputError
from slam.sources.base import Calibration, CameraModel, DatasetSource, Frame, Source
from slam.sources.slice import SliceSource, parse_frames

CAL = Calibration(CameraModel(8, 6, 5.0, 5.0, 4.0, 3.0), rate_hz=10.0)


class Stream(Source):
    """No random access: counts the frames it decodes."""

    calibration = CAL

    def __init__(self, n: int) -> None:
        self.n, self.decoded = n, 0

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.n):
            self.decoded += 1
            yield Frame(i, 0.1 * i, np.zeros((6, 8), np.uint8))


class Table(DatasetSource):
    """Random access: records which frames were read."""

    calibration = CAL

    def __init__(self, n: int) -> None:
        self.n, self.read = n, []

    def __len__(self) -> int:
        return self.n

    def frame(self, i: int) -> Frame:
        self.read.append(i)
        return Frame(i, 0.1 * i, np.zeros((6, 8), np.uint8))


def test_parse() -> None:
    assert parse_frames("0:170") == (0, 170)
    assert parse_frames("170:") == (170, None)
    assert parse_frames(":5") == (0, 5)
    for bad in ("5", "a:b", "5:5", "-1:3", "1:2:3"):
        with pytest.raises(InputError, match="--frames"):
            parse_frames(bad)


def test_random_access_reads_only_the_slice() -> None:
    src = Table(20)
    s = SliceSource(src, 5, 9)
    assert len(s) == 4 and [f.index for f in s] == [5, 6, 7, 8] and src.read == [5, 6, 7, 8]
    assert len(SliceSource(Table(20), 15, None)) == 5 and len(SliceSource(Table(20), 15, 99)) == 5
    with pytest.raises(InputError, match="starts at 20 but the source has 20 frames"):
        SliceSource(Table(20), 20, None)


def test_other_sources_are_read_through() -> None:
    src = Stream(10)
    s = SliceSource(src, 3, 6)
    assert [f.index for f in s] == [3, 4, 5] and src.decoded == 7  # stops after the slice
    assert s.calibration is CAL


def test_live_sources_are_refused() -> None:
    src = Stream(3)
    src.live = True
    with pytest.raises(InputError, match="recorded sources"):
        SliceSource(src, 0, 2)
