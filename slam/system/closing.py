"""The loop worker of a run: place recognition, verification and the closer wired to the run's map."""

from __future__ import annotations

from typing import Any

from slam.loop.worker import LoopWorker
from slam.system.maps import place_database


def make_loop_worker(system: Any, precision: str) -> tuple[LoopWorker | None, str | None]:
    """The loop worker with place recognition and verification, or (None, why it is not available)."""
    from slam.loop.closer import LoopCloser
    try:
        from slam.loop.factory import place_recognition
    except ImportError as exc:
        return None, f"not available: {exc}"
    from slam.frontend.features import make_orb
    from slam.frontend.place import place_features

    cfg = system.cfg.loop
    db = None if system.loaded is None else place_database(system.map, system.loaded.places, system.load_dir)
    places = place_recognition(system.map, system.rig, system.mode, cfg, database=db)
    system.place_database = places.database  # saved with the map (None: a stand-in recognizer has none)
    orb = make_orb()  # the loop thread's own extractor
    rig, fcfg = system.rig, system.cfg.frontend
    closer = LoopCloser(system.map, system.mode, cfg, cfg.precision or precision, places,
                        notify=system._on_loop, export_dir=system.out / "pose_graphs" if cfg.export_graphs else None,
                        features=lambda inp: place_features(inp, cfg.place_features, rig, fcfg, orb))
    if cfg.global_ba or (cfg.global_ba is None and system.mode == "mono"):
        from slam.odometry.global_ba import global_ba

        prec = cfg.precision or precision
        closer.global_ba = lambda abort: (
            global_ba(system.map, rig.K, rig.baseline, system.cfg.odometry, prec, cfg.global_ba_iterations, abort)
            if system.map.n_keyframes <= cfg.global_ba_max_keyframes else None)
    return LoopWorker(closer, blocking=cfg.blocking or system.cfg.odometry.blocking, nice=cfg.nice,
                      max_backlog=cfg.max_backlog), None
