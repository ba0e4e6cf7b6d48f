"""Which runs get a global bundle adjustment after each loop (loop.global_ba, global_ba_max_keyframes)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from slam.config import load_config
from slam.geometry.pinhole import Rig
from slam.map.map import Map
from slam.system import closing


def _system(mode: str, setting: bool | None, cap: int = 500) -> SimpleNamespace:
    cfg = load_config(None)
    cfg.loop.global_ba = setting
    cfg.loop.global_ba_max_keyframes = cap
    K = np.array([[400.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    rig = Rig(K, 640, 480, mode, 0.0 if mode == "mono" else 0.1)
    return SimpleNamespace(cfg=cfg, loaded=None, map=Map(), rig=rig, mode=mode, _on_loop=lambda rec: None,
                           out=Path("."), load_dir=None)


@pytest.mark.parametrize(("mode", "setting", "expected"), [
    ("mono", None, True), ("stereo", None, False), ("rgbd", None, False),
    ("stereo", True, True), ("mono", False, False)])
def test_global_ba_is_on_for_monocular_maps_unless_configured(mode: str, setting: bool | None, expected: bool) -> None:
    worker, why = closing.make_loop_worker(_system(mode, setting), "mixed")
    assert why is None
    assert (worker.closer.global_ba is not None) == expected


def test_global_ba_is_skipped_above_its_keyframe_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    import slam.odometry.global_ba as gba

    monkeypatch.setattr(gba, "global_ba", lambda *a: calls.append(a) or {"time_s": {"total": 0.0}})
    system = _system("mono", None, cap=2)
    worker, _ = closing.make_loop_worker(system, "mixed")
    system.map = SimpleNamespace(n_keyframes=2)
    assert worker.closer.global_ba(None) is not None and len(calls) == 1
    system.map = SimpleNamespace(n_keyframes=3)
    assert worker.closer.global_ba(None) is None and len(calls) == 1
