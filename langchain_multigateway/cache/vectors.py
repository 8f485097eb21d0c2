"""Brute-force cosine search over the semantic entries of each request shape, in NumPy.

The vectors live in the store beside their exact entries; this index is the process's
in-memory mirror of them, filled incrementally from the store (each store knows which
rows it has not mirrored yet). Vectors are kept unit-length in one float32 matrix per
shape, so a query is one matrix-vector product over the entries of its own shape only.
An id the store no longer holds (expired, evicted, replaced) is found out when its hit is
read back, and is then dropped here.

NumPy is imported here only, when a semantic layer is built: ``pip install
'langchain-multigateway[cache]'``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["VectorIndex", "numpy"]


def numpy() -> Any:
    """The NumPy module, or an ImportError saying which extra brings it."""
    try:
        import numpy as np
    except ImportError as exc:  # pragma: no cover - numpy is in the dev extra
        msg = "the semantic cache needs NumPy: pip install 'langchain-multigateway[cache]'"
        raise ImportError(msg) from exc
    return np


class _Shelf:
    """The vectors of one shape: a matrix grown by doubling, the store ids of its rows, and which rows are gone."""

    __slots__ = ("alive", "count", "dim", "ids", "matrix", "row_of")

    def __init__(self, dim: int) -> None:
        np = numpy()
        self.dim = dim
        self.count = 0
        self.matrix = np.zeros((16, dim), dtype=np.float32)
        self.alive = np.zeros(16, dtype=bool)
        self.ids: list[Any] = []
        self.row_of: dict[Any, int] = {}

    def add(self, entry_id: Any, unit: Any) -> None:
        np = numpy()
        if self.count == len(self.matrix):
            grown = np.zeros((2 * len(self.matrix), self.dim), dtype=np.float32)
            grown[: self.count] = self.matrix[: self.count]
            alive = np.zeros(len(grown), dtype=bool)
            alive[: self.count] = self.alive[: self.count]
            self.matrix, self.alive = grown, alive
        self.matrix[self.count] = unit
        self.alive[self.count] = True
        self.ids.append(entry_id)
        self.row_of[entry_id] = self.count
        self.count += 1


class VectorIndex:
    """Unit vectors per shape; ``search`` returns the best live ids at or above a threshold."""

    def __init__(self) -> None:
        self._shelves: dict[str, _Shelf] = {}
        self._lock = threading.Lock()
        self.size = 0
        """Rows held, live or not (the store rebuilds the index when this outgrows it)."""

    @staticmethod
    def unit(vector: Sequence[float] | Any) -> Any | None:
        """``vector`` as a unit-length float32 array; None for an empty, zero or non-finite one."""
        np = numpy()
        try:
            arr = np.asarray(vector, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            return None
        norm = float(np.linalg.norm(arr)) if arr.size else 0.0
        if not np.isfinite(norm) or norm == 0.0:
            return None
        return arr / norm

    def add(self, shape: str, entry_id: Any, vector: Sequence[float] | Any) -> None:
        """Mirror one stored vector (a vector of another dimension than its shape's is ignored)."""
        unit = self.unit(vector)
        if unit is None:
            return
        with self._lock:
            shelf = self._shelves.get(shape)
            if shelf is None:
                shelf = self._shelves[shape] = _Shelf(len(unit))
            if shelf.dim != len(unit) or entry_id in shelf.row_of:
                return
            shelf.add(entry_id, unit)
            self.size += 1

    def drop(self, shape: str, entry_id: Any) -> None:
        """Forget an id the store no longer holds."""
        with self._lock:
            shelf = self._shelves.get(shape)
            row = None if shelf is None else shelf.row_of.pop(entry_id, None)
            if shelf is not None and row is not None:
                shelf.alive[row] = False

    def forget(self, shape: str) -> None:
        """Forget every vector of ``shape`` (the store is about to mirror them again)."""
        with self._lock:
            shelf = self._shelves.pop(shape, None)
            if shelf is not None:
                self.size -= shelf.count

    def clear(self) -> None:
        with self._lock:
            self._shelves.clear()
            self.size = 0

    def search(self, shape: str, query: Any, threshold: float, limit: int = 4) -> list[tuple[Any, float]]:
        """Up to ``limit`` (id, cosine) pairs of ``shape`` with cosine ≥ ``threshold``, best first."""
        np = numpy()
        unit = self.unit(query)
        if unit is None:
            return []
        with self._lock:
            shelf = self._shelves.get(shape)
            if shelf is None or shelf.dim != len(unit) or shelf.count == 0:
                return []
            scores = shelf.matrix[: shelf.count] @ unit
            scores = np.where(shelf.alive[: shelf.count], scores, -2.0)
            top = np.argpartition(-scores, limit)[:limit] if shelf.count > limit else np.arange(shelf.count)
            ranked = sorted(((float(scores[i]), int(i)) for i in top), reverse=True)
            return [(shelf.ids[i], s) for s, i in ranked if s >= threshold]
