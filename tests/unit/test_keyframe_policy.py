"""KeyframePolicy: every rule of the decision, at and around its threshold."""

from __future__ import annotations

import numpy as np
import pytest

from slam.frontend.config import KeyframeConfig
from slam.frontend.keyframes import KeyframePolicy, median_parallax

CFG = KeyframeConfig(max_rate_hz=10.0, parallax=12.0, min_parallax=2.0, min_tracked_ratio=0.75, min_tracked=80,
                     max_pending=2)


@pytest.mark.parametrize("t, parallax, n_lm, ratio, pending, make, reason", [
    (1.0, 1.9, 200, 1.0, 0, False, "still"),          # standing still: never, even with few landmarks
    (1.0, 1.9, 5, 0.1, 0, False, "still"),
    (0.05, 30.0, 200, 1.0, 0, False, "rate"),         # 50 ms after the last: above 10 Hz
    (0.1, 12.0, 200, 1.0, 0, True, "parallax"),       # exactly 1 / max_rate_hz later
    (0.5, 11.9, 200, 1.0, 0, False, "enough"),
    (0.5, 5.0, 200, 0.74, 0, True, "tracked_ratio"),
    (0.5, 5.0, 79, 0.9, 0, True, "few_tracked"),
    (0.5, 30.0, 200, 1.0, 2, False, "busy"),          # worker behind: only urgent keyframes
    (0.5, 30.0, 39, 1.0, 2, True, "parallax"),        # urgent: fewer than min_tracked / 2 landmarks
    (0.5, 5.0, 200, 0.3, 5, True, "tracked_ratio"),   # urgent: ratio below half the threshold
])
def test_decisions(t: float, parallax: float, n_lm: int, ratio: float, pending: int, make: bool, reason: str) -> None:
    d = KeyframePolicy(CFG).decide(t, 0.0, parallax, n_lm, ratio, pending=pending)
    assert (d.make, d.reason) == (make, reason)
    assert d.parallax == parallax and d.tracked_ratio == ratio


def test_forced_keyframe_ignores_the_rate_but_not_standing_still() -> None:
    p = KeyframePolicy(CFG)
    assert p.decide(0.01, 0.0, 3.0, 200, 1.0, force=True).reason == "forced"
    assert not p.decide(0.01, 0.0, 1.0, 200, 1.0, force=True).make


def test_median_parallax_of_common_tracks() -> None:
    ids_kf = np.array([1, 2, 3, 5])
    uv_kf = np.zeros((4, 2))
    ids_now = np.array([2, 3, 4, 5, 9])
    uv_now = np.array([[3.0, 4.0], [0.0, 1.0], [50.0, 50.0], [6.0, 8.0], [99.0, 0.0]])
    par, n = median_parallax(ids_now, uv_now, ids_kf, uv_kf)
    assert n == 3 and par == 5.0  # median of 5, 1, 10
    assert median_parallax(ids_now, uv_now, np.array([7]), np.zeros((1, 2))) == (0.0, 0)
