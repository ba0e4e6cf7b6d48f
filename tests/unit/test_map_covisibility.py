"""Covisibility counts (slam/map/covisibility.py) against a plain dict-of-dicts reimplementation."""

from __future__ import annotations

import numpy as np

from slam.map.covisibility import Covisibility


def _reference(calls: list[tuple[int, np.ndarray, np.ndarray]]) -> dict[int, dict[int, int]]:
    ref: dict[int, dict[int, int]] = {}
    for i, others, shared in calls:
        for o, c in zip(others.tolist(), shared.tolist()):
            for a, b in ((i, o), (o, i)):
                ref.setdefault(a, {})
                ref[a][b] = ref[a].get(b, 0) + c
    return ref


def test_counts_match_a_dict_of_dicts_with_repeats_and_duplicates() -> None:
    rng = np.random.default_rng(3)
    cov, calls = Covisibility(), []
    for i in range(60):
        k = int(rng.integers(0, 8))
        # other keyframes, with repeats inside one call and pairs seen before (fused landmarks)
        others = rng.integers(0, 60, k)
        others = others[others != i]
        shared = rng.integers(1, 50, len(others))
        cov.add(i, others, shared)
        calls.append((i, others, shared))
    ref = _reference(calls)
    for i in range(60):
        for m in (1, 20):
            assert cov.neighbours(i, m) == {o: n for o, n in ref.get(i, {}).items() if n >= m}
    got = {tuple(r) for r in cov.edges(20).tolist()}
    want = {(i, j, n) for i, d in ref.items() for j, n in d.items() if i < j and n >= 20}
    assert got == want and len(got) == len(cov.edges(20))
    cons = cov.consecutive(60)
    assert cons.shape == (59,)
    assert cons.tolist() == [ref.get(k, {}).get(k + 1, 0) for k in range(59)]


def test_empty_graph() -> None:
    cov = Covisibility()
    cov.add(0, np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert cov.neighbours(0) == {} and cov.neighbours(5) == {}
    assert cov.edges(1).shape == (0, 3)
    assert cov.consecutive(1).shape == (0,) and cov.consecutive(3).tolist() == [0, 0]
