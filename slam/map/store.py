"""Saved maps: a folder with map.json (header), map.npz (the map's arrays) and places.npz (place database).

The format is documented in docs/maps.md; `FORMAT` and `VERSION` name it. Writing is atomic: the
folder is written beside the target under a temporary name and renamed into place, so a crash
never leaves a half-written map (an earlier map in the target is replaced only once the new one is
complete). Reading checks everything before a Map is built: a missing file, a header of another
format or version, a missing array, or an array of the wrong dtype or shape is a FormatError that
names the file and what was expected.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slam.errors import FormatError, InputError
from slam.map.map import Map

FORMAT = "slam-map"
VERSION = 1
HEADER, ARRAYS, PLACES = "map.json", "map.npz", "places.npz"

# name -> (dtype kind, shape with symbols: N landmarks (track ids), K keyframes, O observations, E edges)
MAP_ARRAYS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "next_id": ("i", ()), "corrections": ("i", ()),
    "lm_position": ("f", ("N", 3)), "lm_state": ("i", ("N",)), "lm_descriptor": ("u", ("N", 32)),
    "lm_has_descriptor": ("b", ("N",)), "lm_ref_kf": ("i", ("N",)), "lm_merged": ("i", ("N",)),
    "kf_pose": ("f", ("K", 4, 4)), "kf_timestamp": ("f", ("K",)), "kf_frame": ("i", ("K",)),
    "kf_segment": ("i", ("K",)), "kf_obs_range": ("i", ("K", 2)),
    "obs_kf": ("i", ("O",)), "obs_lm": ("i", ("O",)), "obs_uv": ("f", ("O", 2)), "obs_u_right": ("f", ("O",)),
    "obs_inlier": ("b", ("O",)),
    "covisibility": ("i", ("E", 3)),
}
# the place database (slam/loop/database.py PlaceDatabase.state): W (word, keyframe) entries, P keyframes
PLACE_ARRAYS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "params": ("f", (4,)), "positions": ("i", ("T", "B")), "kf_ids": ("i", ("P",)), "n_words": ("i", ("P",)),
    "words": ("i", ("W",)), "keyframes": ("i", ("W",)),
}


@dataclass
class LoadedMap:
    """What `load_map` returns: the map, its header and the place database's arrays (None: none saved)."""

    map: Map
    header: dict[str, Any]
    places: dict[str, np.ndarray] | None


def check_save_folder(folder: str | Path) -> None:
    """InputError when folder exists and is not an empty folder or a saved map (nothing would be written there)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / HEADER).is_file())):
        raise InputError("exists and is not a saved map (no map.json); choose another --save-map folder", folder)


def save_map(folder: str | Path, the_map: Map, header: dict[str, Any],
             places: dict[str, np.ndarray] | None = None) -> Path:
    """Write the map (and the place database's arrays) to folder atomically; returns the folder.

    header: what the caller knows (sensor, camera, source, frames...); format, version and counts
    are added here. A folder that exists and is not a saved map (no map.json) and not empty is refused.
    """
    folder = Path(folder)
    check_save_folder(folder)
    state = the_map.export_state()
    head = {"format": FORMAT, "version": VERSION, **header,
            "counts": {"keyframes": int(len(state["kf_pose"])), "track_ids": int(len(state["lm_state"])),
                       "landmarks": int(np.sum(state["lm_state"] == 1)), "observations": int(len(state["obs_kf"])),
                       "covisibility_edges": int(len(state["covisibility"])),
                       "place_keyframes": None if places is None else int(len(places["kf_ids"]))},
            "files": {"arrays": ARRAYS, "places": None if places is None else PLACES}}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        np.savez(tmp / ARRAYS, **state)
        if places is not None:
            np.savez(tmp / PLACES, **places)
        (tmp / HEADER).write_text(json.dumps(head, indent=2) + "\n", encoding="utf-8")
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{secrets.token_hex(4)}"
            os.rename(folder, old)
        os.rename(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_header(folder: str | Path) -> dict[str, Any]:
    """map.json of a saved map, checked for the format name and version."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such map folder (--load-map expects a folder written by --save-map)", folder)
    path = folder / HEADER
    if not path.is_file():
        raise FormatError(f"missing: a saved map folder holds {HEADER}, {ARRAYS} (docs/maps.md)", path)
    try:
        head = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"not valid JSON ({exc})", path) from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        got = head.get("format") if isinstance(head, dict) else type(head).__name__
        raise FormatError(f"format is {got!r}, expected {FORMAT!r}", path)
    if head.get("version") != VERSION:
        raise FormatError(f"map format version {head.get('version')!r}; this program reads version {VERSION} "
                          "(save the map again with this version)", path)
    return head


def _read_arrays(path: Path, spec: dict[str, tuple[str, tuple[Any, ...]]]) -> dict[str, np.ndarray]:
    """The arrays of an .npz, each checked against spec (dtype kind and shape, symbols consistent)."""
    if not path.is_file():
        raise FormatError("missing file of a saved map", path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise FormatError(f"not a readable .npz archive ({exc})", path) from None
    sizes: dict[str, int] = {}
    for name, (kind, shape) in spec.items():
        if name not in arrays:
            raise FormatError(f"array {name!r} is missing", path)
        a = arrays[name]
        ok_kind = a.dtype.kind == kind or (kind == "i" and a.dtype.kind == "u" and name != "lm_descriptor")
        if not ok_kind or a.ndim != len(shape):
            raise FormatError(f"array {name!r} is {a.dtype}{list(a.shape)}, expected kind {kind!r} with shape "
                              f"{list(shape)}", path)
        for dim, want in zip(a.shape, shape):
            if isinstance(want, str):
                want = sizes.setdefault(want, dim)
            if dim != want:
                raise FormatError(f"array {name!r} has shape {list(a.shape)}, expected {list(shape)} with "
                                  f"{', '.join(f'{k}={v}' for k, v in sizes.items())}", path)
    return arrays


def load_map(folder: str | Path) -> LoadedMap:
    """Read and check a saved map folder; FormatError (naming the file) when it is not as documented."""
    folder = Path(folder)
    head = read_header(folder)
    st = _read_arrays(folder / ARRAYS, MAP_ARRAYS)
    path = folder / ARRAYS
    n, k, o = len(st["lm_state"]), len(st["kf_pose"]), len(st["obs_kf"])
    if int(st["next_id"]) != n:
        raise FormatError(f"next_id is {int(st['next_id'])}, expected the number of track ids {n}", path)
    counts = head.get("counts", {})
    if counts.get("keyframes") != k or counts.get("observations") != o:
        raise FormatError(f"{HEADER} counts {counts.get('keyframes')} keyframes and {counts.get('observations')} "
                          f"observations, the arrays hold {k} and {o}", path)
    r = st["kf_obs_range"]
    if k and (r[0, 0] != 0 or r[-1, 1] != o or np.any(r[1:, 0] != r[:-1, 1]) or np.any(r[:, 1] < r[:, 0])):
        raise FormatError("kf_obs_range is not a contiguous partition of the observation rows", path)
    for name, ids, hi in (("obs_kf", st["obs_kf"], k), ("obs_lm", st["obs_lm"], n),
                          ("covisibility", st["covisibility"][:, :2], k)):
        if ids.size and (ids.min() < 0 or ids.max() >= hi):
            raise FormatError(f"{name} holds ids outside 0..{hi - 1}", path)
    for name in ("lm_ref_kf", "lm_merged"):
        a = st[name]
        if a.size and (a.min() < -1 or a.max() >= (k if name == "lm_ref_kf" else n)):
            raise FormatError(f"{name} holds ids out of range", path)
    places = None
    if head.get("files", {}).get("places"):
        places = _read_arrays(folder / PLACES, PLACE_ARRAYS)
        if places["kf_ids"].size and (places["kf_ids"].min() < 0 or places["kf_ids"].max() >= k):
            raise FormatError("the place database names keyframes that are not in the map", folder / PLACES)
    return LoadedMap(Map.from_state(st), head, places)
