"""Place recognition: the database against a plain reimplementation, the detector's rules, `slam places`
on rendered image sets whose revisits are known from the ground truth."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from slam.cli import main
from slam.loop.database import STOP_MIN_KEYFRAMES, PlaceDatabase
from slam.loop.detector import LoopDetector
from slam.synthetic import SyntheticSource


def _noisy(d: np.ndarray, rng: np.random.Generator, flips: int) -> np.ndarray:
    """Copies of descriptors with `flips` random bits flipped in each."""
    bits = np.unpackbits(d, axis=1)
    for row in bits:
        row[rng.choice(256, flips, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def _reference_scores(db: PlaceDatabase, kf_descs: list[np.ndarray], query: np.ndarray) -> np.ndarray:
    """The documented score computed the plain way: Python sets of words, idf, L1 with binary weights."""
    def words(d: np.ndarray) -> set[int]:
        out = set()
        for row in d:
            bits = np.unpackbits(row)
            for j, pos in enumerate(db._positions):
                out.add(j * (1 << db.bits) + int(sum(int(bits[p]) << k for k, p in enumerate(pos))))
        return out

    sets = [words(d) for d in kf_descs]
    q = words(query)
    n = len(sets)
    df = {w: sum(w in s for s in sets) for w in q}
    idf = {w: np.log((n + 1.0) / max(df[w], 1)) for w in q}
    wq = sum(idf.values())
    out = []
    for s in sets:
        votes = sum(idf[w] for w in q if w in s and 0 < df[w] <= max(STOP_MIN_KEYFRAMES, db.stop_fraction * n))
        wkf = len(s) * wq / len(q)
        out.append(votes / max(wq, wkf))
    return np.array(out)


def test_database_scores_match_a_plain_reimplementation() -> None:
    rng = np.random.default_rng(0)
    base = [rng.integers(0, 256, (60, 32), dtype=np.uint8) for _ in range(12)]
    db = PlaceDatabase(n_tables=4, bits=10, merge_entries=1000)  # small merge size: main and tail both used
    for k, d in enumerate(base):
        db.add(100 + k, d)
    assert len(db) == 12 and len(db._main_w) > 0 and len(db._tail_w) > 0
    # the offsets, updated by the tail's counts at every merge, are those of the merged array
    recount = np.concatenate([[0], np.cumsum(np.bincount(db._main_w, minlength=len(db._start) - 1))])
    np.testing.assert_array_equal(db._start, recount)
    query = _noisy(base[7][:40], rng, 6)
    ids, scores = db.score_all(query)
    np.testing.assert_array_equal(ids, 100 + np.arange(12))
    np.testing.assert_allclose(scores, _reference_scores(db, base, query), rtol=1e-12)
    res = db.query(query, max_results=3)
    assert res[0][0] == 107 and res[0][1] > 3 * max(s for _, s in res[1:])
    assert all(k != 107 for k, _ in db.query(query, max_results=12, exclude=np.array([107])))
    np.testing.assert_allclose(db.scores(query, [107, 5]), [scores[7], 0.0])
    # words computed once by the caller (the detector's query-then-add) give the same scores and index
    np.testing.assert_array_equal(db.score_all(query, db.words(query))[1], scores)
    twin = PlaceDatabase(n_tables=4, bits=10, merge_entries=1000)
    for k, d in enumerate(base):
        twin.add(100 + k, d, twin.words(d))
    np.testing.assert_array_equal(twin.score_all(query)[1], scores)


def test_a_place_seen_twice_in_a_small_database_still_scores() -> None:
    # Five keyframes, two of them the same place: the words they share are held by 2 of 5 keyframes,
    # more than stop_fraction (0.2) of them; the stop-word floor keeps them, so a third look scores.
    rng = np.random.default_rng(3)
    place = rng.integers(0, 256, (200, 32), dtype=np.uint8)
    db = PlaceDatabase()
    for k in range(5):
        db.add(k, _noisy(place, rng, 6) if k in (1, 3) else rng.integers(0, 256, (200, 32), dtype=np.uint8))
    ids, scores = db.score_all(_noisy(place, rng, 6))
    assert db.stop_fraction * 5 < 2 <= STOP_MIN_KEYFRAMES  # the fraction alone would stop these words
    assert set(ids[np.argsort(-scores)[:2]].tolist()) == {1, 3} and scores[[1, 3]].min() > 0.2
    assert scores[[0, 2, 4]].max() < 0.05


def test_database_bad_input() -> None:
    db = PlaceDatabase()
    assert db.query(np.zeros((10, 32), np.uint8)) == []
    db.add(1, np.zeros((0, 32), np.uint8))  # a keyframe without descriptors is allowed, it matches nothing
    with pytest.raises(ValueError, match="already"):
        db.add(1, np.zeros((5, 32), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        db.add(2, np.zeros((5, 32), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 32\)"):
        db.add(3, np.zeros((5, 16), np.uint8))
    with pytest.raises(ValueError):
        PlaceDatabase(n_tables=20, bits=16)


def test_detector_needs_consistent_consecutive_candidates_and_never_returns_excluded() -> None:
    rng = np.random.default_rng(1)
    places = [rng.integers(0, 256, (300, 32), dtype=np.uint8) for _ in range(6)]
    det = LoopDetector(min_consistency=3)
    # keyframes 0..5 see places 0..5, keyframes 6..11 again places 0..5 (a revisit), 12..13 new places
    seq = list(range(6)) + list(range(6))
    neighbours = {k: {k - 1, k + 1} for k in range(20)}
    out = {}
    for k, place in enumerate(seq):
        d = _noisy(places[place], rng, 8)
        excluded = np.array([k - 1, k - 2])
        out[k] = det.detect(k, d, excluded, lambda i: neighbours[i])
        assert all(c not in excluded for c, _ in out[k])
    assert all(out[k] == [] for k in range(8))  # keyframes 6 and 7 are still building consistency
    for k in range(8, 12):
        assert out[k] and out[k][0][0] in (k - 6 - 1, k - 6, k - 6 + 1)
    assert det.rejections["inconsistent"] == 2 and det.rejections["empty_database"] == 1
    assert det.queries == 12 and len(det.database) == 12
    # a new place: no candidate and the consistency restarts
    for k in (12, 13):
        assert det.detect(k, rng.integers(0, 256, (300, 32), dtype=np.uint8), np.array([k - 1]),
                          lambda i: {i - 1}) == []
    assert det.rejections["low_score"] + det.rejections["inconsistent"] >= 4


def _render_folder(tmp_path, scene: str, step: int, frames: int | None = None):
    """Grayscale PNGs of every step-th frame and their ground-truth camera centres and axes."""
    src = SyntheticSource(scene, "mono", frames=frames, seed=3)
    centres, axes = [], []
    for i in range(0, len(src), step):
        f = src.render(i)
        cv2.imwrite(str(tmp_path / f"{i:05d}.png"), f.left)
        centres.append(f.gt_pose[:3, 3])
        axes.append(f.gt_pose[:3, 2])
    return np.array(centres), np.array(axes)


def test_slam_places_finds_the_revisit_of_a_loop(tmp_path, capsys) -> None:
    C, Z = _render_folder(tmp_path, "room_loop", 10)
    assert main(["places", str(tmp_path), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    index = {f"{10 * k:05d}.png": k for k in range(len(C))}
    # Ground truth: the queries that come back within 1 m and 30 degrees of an image the camera had left.
    revisits = set()
    for i in range(len(C)):
        for j in range(i):
            near = np.linalg.norm(C[i] - C[j]) < 1.0 and Z[i] @ Z[j] > np.cos(np.radians(30))
            left = any(np.linalg.norm(C[k] - C[j]) > 1.0 for k in range(j, i))
            if near and left:
                revisits.add(i)
    assert len(revisits) >= 4
    assert found, "no revisit found"
    for r in found:
        i, j = index[r["query"]], index[r["match"]]
        assert np.linalg.norm(C[i] - C[j]) < 1.0, r  # no false revisit
        assert i in revisits and r["inliers"] >= 30 and r["score"] > 0
    assert len({index[r["query"]] for r in found}) >= len(revisits) - 2  # consistency costs the first one or two


def test_slam_places_reports_nothing_without_a_revisit(tmp_path, capsys) -> None:
    _render_folder(tmp_path, "office_walk", 25, frames=600)
    assert main(["places", str(tmp_path)]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and "0 revisits" in cap.err


def test_slam_places_bad_input(tmp_path, capsys) -> None:
    assert main(["places", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["places", str(tmp_path)]) == 2
    assert "no images" in capsys.readouterr().err
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert main(["places", str(tmp_path)]) == 2
    assert "broken.png: not a readable image" in capsys.readouterr().err


def test_slam_places_on_a_few_photos_reports_the_score_it_matched_with(tmp_path, capsys) -> None:
    # Six images, the first place seen again twice: in so small a set the fraction rule alone made
    # the shared words stop words, and the score was read after the query joined the database (0.0).
    src = SyntheticSource("office_walk", "mono", frames=600, seed=3)
    for k, i in enumerate([0, 150, 300, 3, 450, 6]):
        cv2.imwrite(str(tmp_path / f"{k:02d}.png"), src.render(i).left)
    assert main(["places", str(tmp_path), "--consistency", "1", "--json"]) == 0
    found = {r["query"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(found) == {"03.png", "05.png"}
    assert all(r["match"] in ("00.png", "03.png") and r["score"] > 0.05 and r["inliers"] >= 30 for r in found.values())


def test_slam_places_keeps_what_it_found_when_an_image_is_unreadable(tmp_path, capsys) -> None:
    src = SyntheticSource("office_walk", "mono", frames=600, seed=3)
    for k, i in enumerate([0, 150, 300, 3]):
        cv2.imwrite(str(tmp_path / f"{k:02d}.png"), src.render(i).left)
    (tmp_path / "04_broken.png").write_bytes(b"not a png")
    assert main(["places", str(tmp_path), "--consistency", "1", "--json"]) == 2
    cap = capsys.readouterr()
    assert [r["query"] for r in json.loads(cap.out)] == ["03.png"]
    assert "04_broken.png: not a readable image" in cap.err and "stopped after 4 of them" in cap.err


def test_slam_places_takes_numbered_images_in_numeric_order(tmp_path) -> None:
    # frame2 before frame10, as `slam run` and `slam calibrate` take an image folder
    from slam.commands.places import image_files

    for name in ("frame10.png", "frame2.png", "frame1.png", "notes.txt", "frame9.jpg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "frame3.png").mkdir()  # a folder is not an image
    assert [p.name for p in image_files(tmp_path)] == ["frame1.png", "frame2.png", "frame9.jpg", "frame10.png"]

    for p in tmp_path.iterdir():
        (p.rmdir if p.is_dir() else p.unlink)()
    for name in ("2.0.png", "1.5.png", "1.25.png", "10.png"):  # timestamps: by value, not by digit runs
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in image_files(tmp_path)] == ["1.25.png", "1.5.png", "2.0.png", "10.png"]
