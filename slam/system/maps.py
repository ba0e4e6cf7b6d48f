"""Saved maps in a run: the loaded map checked against the run's camera, its place database, the final map saved."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from slam.errors import InputError
from slam.map.map import Map


def load_run_map(folder: Path, system: Any) -> Any:
    """The saved map, checked against this run's sensor and camera (InputError naming map.json otherwise)."""
    from slam.map.store import HEADER, load_map

    loaded = load_map(folder)
    head, rig = loaded.header, system.rig
    cam = head.get("camera") if isinstance(head.get("camera"), dict) else {}
    problems = []
    if head.get("sensor") != system.mode:
        problems.append(f"sensor {head.get('sensor')!r}, this run {system.mode!r}")
    if [cam.get("width"), cam.get("height")] != [rig.width, rig.height]:
        problems.append(f"images {cam.get('width')}x{cam.get('height')}, this run {rig.width}x{rig.height}")
    try:
        K = np.asarray(cam.get("K", np.zeros((3, 3))), np.float64)
        baseline = float(cam.get("baseline") or 0.0)
    except (TypeError, ValueError, AttributeError):
        from slam.errors import FormatError
        raise FormatError("camera must hold K (3x3 numbers), width, height and baseline", folder / HEADER) from None
    if K.shape != (3, 3) or not np.allclose(K, rig.K, rtol=1e-6, atol=1e-6):
        problems.append("other camera intrinsics K")
    if abs(baseline - float(rig.baseline)) > 1e-9:
        problems.append(f"baseline {cam.get('baseline')} m, this run {rig.baseline} m")
    if problems:
        raise InputError("the map was made with another camera: " + "; ".join(problems), folder / HEADER)
    return loaded


def place_database(the_map: Map, places: dict[str, np.ndarray] | None, folder: Path | None = None) -> Any:
    """The place database of a loaded map: the saved one, or (a map saved without one) one made from the
    descriptors of the landmarks each keyframe observes."""
    from slam.loop.database import PlaceDatabase

    if places is not None:
        from slam.errors import FormatError
        try:
            return PlaceDatabase.from_state(places)
        except ValueError as exc:
            raise FormatError(f"the place database does not load: {exc}",
                              (folder or Path(".")) / "places.npz") from None
    db = PlaceDatabase()
    for k in range(the_map.n_keyframes):  # per keyframe
        ids = the_map.keyframe_observations(k)[0]
        desc = the_map.landmarks(ids)[3]
        db.add(k, desc[desc.any(axis=1)])
    return db


def save_run_map(system: Any) -> Path:
    """Write the final map with its place database (slam/map/store.py); the header says which frame it is in."""
    from slam.map.store import save_map

    assert system.save_dir is not None
    ok = [system.results[k] for k in sorted(system.results) if system.results[k].ok]
    if system.loaded is not None:
        world = system.loaded.header.get("world")
    else:
        first = ok[0] if ok else None
        world = {"origin": "the camera of the first tracked frame of the run that made the map",
                 "source": system.spec, "frame": None if first is None else first.index,
                 "timestamp": None if first is None else first.timestamp,
                 "T_groundtruth_world": None if first is None or first.gt_pose is None else first.gt_pose.tolist()}
    db = system.place_database if system.place_database is not None else place_database(system.map, None)
    header = {"sensor": system.mode,
              "camera": {"K": system.rig.K.tolist(), "width": system.rig.width, "height": system.rig.height,
                         "baseline": system.rig.baseline},
              "source": system.spec, "frames": [ok[0].index, ok[-1].index] if ok else None,
              "world": world, "loaded_from": None if system.load_dir is None else str(system.load_dir),
              "places_from": "loop closure" if system.place_database is not None else "landmark descriptors",
              "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return save_map(system.save_dir, system.map, header, db.state())
