"""EditedSource: blanked frames (with and without their depth), a cut, an interrupt; other frames untouched."""

from __future__ import annotations

import numpy as np
import pytest

from slam.sources.edited import EditedSource
from slam.synthetic import SyntheticSource


def test_blanks_only_the_chosen_frames_and_their_depth_when_asked() -> None:
    frames = list(EditedSource(SyntheticSource("room_loop", "rgbd", frames=6), blank=range(2, 4), blank_depth=True))
    plain = list(SyntheticSource("room_loop", "rgbd", frames=6))
    assert [f.index for f in frames] == list(range(6))
    for f, p in zip(frames, plain):
        if f.index in (2, 3):
            assert not f.left.any() and not f.depth.any()
        else:
            np.testing.assert_array_equal(f.left, p.left)
            np.testing.assert_array_equal(f.depth, p.depth)
    kept = list(EditedSource(SyntheticSource("room_loop", "rgbd", frames=4), blank=range(1, 2), value=128))
    assert (kept[1].left == 128).all() and kept[1].depth.any()  # depth kept unless blank_depth


def test_stops_early_and_interrupts() -> None:
    assert len(list(EditedSource(SyntheticSource("room_loop", "stereo", frames=6), stop_at=3))) == 3
    it = iter(EditedSource(SyntheticSource("room_loop", "stereo", frames=6), interrupt_at=1))
    next(it)
    with pytest.raises(KeyboardInterrupt):
        next(it)


def test_an_edited_rgbd_source_still_runs_as_rgbd() -> None:
    """The pipeline's sensor check sees the wrapped source's sensor (a synthetic RGB-D source has
    depth but no TUM depth scale): bench_segments' RGB-D run was refused as 'no depth images'."""
    from slam.system.pipeline import choose_mode

    src = EditedSource(SyntheticSource("room_loop", "rgbd", frames=2), blank=range(1, 2), blank_depth=True)
    assert choose_mode("rgbd", src) == "rgbd" and choose_mode("auto", src) == "rgbd"
