"""LM iterations of window solves: 5 in blocking and monocular runs, at most 2 in other stereo / RGB-D runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from slam.config import load_config
from slam.errors import InputError
from slam.odometry.config import OdometryConfig, iterations_for


def test_iterations_per_run_kind() -> None:
    assert iterations_for(OdometryConfig(), "stereo") == 2
    assert iterations_for(OdometryConfig(), "rgbd") == 2
    assert iterations_for(OdometryConfig(), "mono") == 5
    assert iterations_for(OdometryConfig(blocking=True), "stereo") == 5
    assert iterations_for(OdometryConfig(max_iterations_live=4), "rgbd") == 4
    assert iterations_for(OdometryConfig(max_iterations=1), "stereo") == 1  # the cap never raises it
    assert iterations_for(OdometryConfig(max_iterations=3, max_iterations_live=8), "stereo") == 3


def test_the_run_reports_the_iterations_it_used(tmp_path: Path) -> None:
    from slam.synthetic import SyntheticSource
    from slam.system import System

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "synthetic.yaml")
    cfg.loop.enabled = False
    for blocking, expected in ((False, 2), (True, 5)):
        cfg.odometry.blocking = blocking
        src = SyntheticSource("room_loop", "stereo", seed=0)
        rep = System(cfg, src, "synthetic:room_loop", tmp_path / str(blocking), loop=False, progress=False,
                     max_frames=12).run().report
        assert rep["ba"]["max_iterations"] == expected


def test_a_live_cap_below_one_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("odometry:\n  max_iterations_live: 0\n")
    with pytest.raises(InputError, match="max_iterations_live"):
        load_config(p)
