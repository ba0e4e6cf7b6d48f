"""Saved maps (slam/map/store.py): a round trip gives identical arrays; a bad folder is a clear FormatError."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slam.errors import FormatError, InputError
from slam.loop.database import PlaceDatabase
from slam.map.keyframe import KeyframeData
from slam.map.map import Map
from slam.map.store import ARRAYS, HEADER, PLACES, VERSION, load_map, save_map


def _map() -> Map:
    m = Map()
    ids = m.allocate_ids(120)
    rng = np.random.default_rng(1)
    for i in range(5):
        sel = np.sort(rng.choice(ids, 50, replace=False))
        n = len(sel)
        T = np.eye(4)
        T[:3, 3] = rng.normal(size=3)
        desc = rng.integers(0, 256, (n, 32), dtype=np.uint8)
        m.insert_keyframe(KeyframeData(id=i, frame_index=3 * i, timestamp=0.1 * i, pose=T, segment=0, ids=sel,
                                       uv=rng.uniform(0, 100, (n, 2)), u_right=rng.uniform(0, 100, n),
                                       depth=np.full(n, 2.0), descriptors=desc, desc_ok=np.ones(n, bool)))
    m.create_landmarks(ids[:100], rng.normal(size=(100, 3)), ref_kf=2)
    m.cull_landmarks(ids[90:95])
    m.reject_observations(np.array([3, 7, 11]))
    m.fuse_landmarks(ids[:3], ids[50:53])
    return m


def _places() -> dict[str, np.ndarray]:
    db = PlaceDatabase(merge_entries=100)
    rng = np.random.default_rng(2)
    for k in range(5):
        db.add(k, rng.integers(0, 256, (60, 32), dtype=np.uint8))
    return db.state()


def test_round_trip_gives_identical_arrays(tmp_path: Path) -> None:
    m = _map()
    save_map(tmp_path / "m", m, {"sensor": "stereo"}, _places())
    loaded = load_map(tmp_path / "m")
    a, b = m.export_state(), loaded.map.export_state()
    assert a.keys() == b.keys()
    for k in a:
        if k == "covisibility":  # an edge list: the order of a dict's items
            a[k], b[k] = a[k][np.lexsort(a[k].T[::-1])], b[k][np.lexsort(b[k].T[::-1])]
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert a[k].dtype == b[k].dtype, k
    assert loaded.header["sensor"] == "stereo" and loaded.header["version"] == VERSION
    assert loaded.header["counts"]["keyframes"] == 5
    for k in range(5):
        assert loaded.map.covisible(k) == m.covisible(k)
    ids = np.arange(120)
    np.testing.assert_array_equal(loaded.map.resolve(ids), m.resolve(ids))
    # new ids continue after the loaded ones
    assert loaded.map.allocate_ids(1)[0] == 120 and loaded.map.n_keyframes == 5


def test_place_database_round_trip(tmp_path: Path) -> None:
    st = _places()
    db = PlaceDatabase.from_state(st)
    ref = PlaceDatabase(merge_entries=100)
    rng = np.random.default_rng(2)
    descs = [rng.integers(0, 256, (60, 32), dtype=np.uint8) for _ in range(5)]
    for k, d in enumerate(descs):
        ref.add(k, d)
    for d in descs:
        np.testing.assert_allclose(db.score_all(d)[1], ref.score_all(d)[1])
    new = rng.integers(0, 256, (60, 32), dtype=np.uint8)
    db.add(7, new)  # and it grows
    assert db.query(new, 1)[0][0] == 7 and db.query(descs[3], 1)[0][0] == 3
    save_map(tmp_path / "m", _map(), {}, st)
    back = load_map(tmp_path / "m").places
    assert back is not None
    for k in st:
        np.testing.assert_array_equal(st[k], back[k])


def test_save_replaces_a_map_and_refuses_other_folders(tmp_path: Path) -> None:
    save_map(tmp_path / "m", _map(), {})
    save_map(tmp_path / "m", Map(), {})  # an earlier map is replaced
    assert load_map(tmp_path / "m").map.n_keyframes == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a saved map"):
        save_map(tmp_path / "other", _map(), {})


def _saved(tmp_path: Path) -> Path:
    return save_map(tmp_path / "m", _map(), {"sensor": "stereo"}, _places())


def test_missing_folder_and_header(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such map folder"):
        load_map(tmp_path / "nothing")
    d = _saved(tmp_path)
    (d / HEADER).unlink()
    with pytest.raises(FormatError, match=r"map\.json: missing"):
        load_map(d)


@pytest.mark.parametrize("change, message", [
    ({"version": VERSION + 1}, "version"),
    ({"version": "1"}, "version"),
    ({"format": "orbslam-atlas"}, "format is 'orbslam-atlas'"),
])
def test_wrong_format_or_version(tmp_path: Path, change: dict, message: str) -> None:
    d = _saved(tmp_path)
    head = json.loads((d / HEADER).read_text())
    head.update(change)
    (d / HEADER).write_text(json.dumps(head))
    with pytest.raises(FormatError, match=message) as e:
        load_map(d)
    assert str(d / HEADER) in str(e.value)


def test_corrupt_files(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    (d / HEADER).write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_map(d)
    d = _saved(tmp_path)
    data = (d / ARRAYS).read_bytes()
    (d / ARRAYS).write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="not a readable .npz") as e:
        load_map(d)
    assert str(d / ARRAYS) in str(e.value)
    d = _saved(tmp_path)
    (d / PLACES).unlink()
    with pytest.raises(FormatError, match="missing file"):
        load_map(d)


def test_array_shape_and_consistency(tmp_path: Path) -> None:
    d = _saved(tmp_path)
    with np.load(d / ARRAYS) as z:
        arrays = {k: z[k] for k in z.files}
    bad = dict(arrays, kf_pose=arrays["kf_pose"][:, :3])
    np.savez(d / ARRAYS, **bad)
    with pytest.raises(FormatError, match="'kf_pose'.*expected"):
        load_map(d)
    bad = dict(arrays, obs_uv=arrays["obs_uv"][:-1])
    np.savez(d / ARRAYS, **bad)
    with pytest.raises(FormatError, match="'obs_uv' has shape"):
        load_map(d)
    bad = {k: v for k, v in arrays.items() if k != "lm_state"}
    np.savez(d / ARRAYS, **bad)
    with pytest.raises(FormatError, match="'lm_state' is missing"):
        load_map(d)
    bad = dict(arrays, obs_lm=arrays["obs_lm"] + 1000)
    np.savez(d / ARRAYS, **bad)
    with pytest.raises(FormatError, match="obs_lm holds ids"):
        load_map(d)
