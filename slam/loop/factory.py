"""Place recognition and verification as the loop closer's two callables, for one run.

`candidates(kf, place)` adds the keyframe's place descriptors to the run's own database (no
vocabulary to download) and returns the detector's consistent candidates, never recent keyframes
nor keyframes covisible with the query; `verify(kf, place, match)` checks one candidate
geometrically against the match's landmarks (SE(3) for stereo / RGB-D, Sim(3) for monocular).
"""

from __future__ import annotations

from typing import Any, Callable

from slam.config import LoopConfig


def place_recognition(the_map: Any, rig: Any, mode: str, cfg: LoopConfig) -> tuple[Callable, Callable]:
    """(candidates, verify) callables for LoopCloser; ImportError when the modules are missing."""
    from slam.loop.database import PlaceDatabase  # noqa: F401  (the detector's database)
    from slam.loop.detector import LoopDetector
    from slam.loop import verify as verification  # noqa: F401

    detector = LoopDetector()

    def candidates(kf_id: int, place: Any) -> list[tuple[int, float]]:
        excluded = set(range(max(0, kf_id - cfg.recent_keyframes), kf_id + 1))
        return detector.detect(kf_id, place.descriptors, excluded, lambda k: the_map.covisible(k))

    def verify(kf_id: int, place: Any, match: int) -> Any:
        raise NotImplementedError("verification adapter pending slam.loop.verify")

    candidates.detector = detector  # type: ignore[attr-defined]
    return candidates, verify
