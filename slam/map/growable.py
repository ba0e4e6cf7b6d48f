"""Append-only arrays with amortized doubling: the map's storage (slam/map/map.py)."""

from __future__ import annotations

import numpy as np


class Growable:
    """An append-only array with amortized doubling (rows of a fixed shape and dtype)."""

    def __init__(self, shape: tuple[int, ...], dtype: type, fill: float | int = 0) -> None:
        self.a = np.full((64,) + shape, fill, dtype=dtype)
        self.n = 0
        self.fill = fill

    def reserve(self, n: int) -> None:
        """Room for n rows (capacity at least doubles, so appending is amortized O(1) per row)."""
        if n > len(self.a):
            new = np.full((max(n, 2 * len(self.a)),) + self.a.shape[1:], self.fill, dtype=self.a.dtype)
            new[:self.n] = self.a[:self.n]
            self.a = new

    def extend(self, rows: np.ndarray) -> None:
        """Append rows."""
        rows = np.asarray(rows)
        self.reserve(self.n + len(rows))
        self.a[self.n:self.n + len(rows)] = rows
        self.n += len(rows)

    @property
    def view(self) -> np.ndarray:
        """The rows stored so far (a view, not a copy)."""
        return self.a[:self.n]
