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

__all__ = ["INLINE_MIRROR_ROWS", "VectorIndex", "numpy"]

INLINE_MIRROR_ROWS = 2000
"""New vectors a store's lookup mirrors itself; more than that, a background thread mirrors (the lookup misses)."""


def numpy() -> Any:
    """The NumPy module, or an ImportError saying which extra brings it."""
    try:
        import numpy as np
    except ImportError as exc:  # pragma: no cover - numpy is in the dev extra
        msg = "the semantic cache needs NumPy: pip install 'langchain-multigateway[cache]'"
        raise ImportError(msg) from exc
    return np


class _Shelf:
    """The vectors of one shape: a matrix grown by doubling, and the store ids of its rows.

    A row whose entry is gone is zeroed: its cosine with anything is 0, below every threshold."""

    __slots__ = ("count", "dim", "ids", "matrix", "row_of")

    def __init__(self, dim: int) -> None:
        np = numpy()
        self.dim = dim
        self.count = 0
        self.matrix = np.zeros((16, dim), dtype=np.float32)
        self.ids: list[Any] = []
        self.row_of: dict[Any, int] = {}

    def extend(self, ids: list[Any], units: Any) -> None:
        np = numpy()
        needed = self.count + len(ids)
        if needed > len(self.matrix):
            grown = np.zeros((max(needed, 2 * len(self.matrix)), self.dim), dtype=np.float32)
            grown[: self.count] = self.matrix[: self.count]
            self.matrix = grown
        self.matrix[self.count : needed] = units
        for offset, entry_id in enumerate(ids):
            self.row_of[entry_id] = self.count + offset
        self.ids.extend(ids)
        self.count = needed


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
        if unit is not None:
            self.add_many(shape, [entry_id], unit.reshape(1, -1))

    def add_many(self, shape: str, ids: list[Any], vectors: Any) -> None:
        """Mirror many stored vectors of one shape at once (a 2-D array, one row per id), normalised together."""
        np = numpy()
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or len(matrix) != len(ids) or not len(ids):
            return
        with np.errstate(over="ignore", invalid="ignore"):
            norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        usable = np.isfinite(norms) & (norms > 0)
        with self._lock:
            shelf = self._shelves.get(shape)
            if shelf is None:
                shelf = self._shelves[shape] = _Shelf(matrix.shape[1])
            if shelf.dim != matrix.shape[1]:
                return
            if not (usable.all() and shelf.row_of.keys().isdisjoint(ids)):  # the usual case skips this copy
                keep = [i for i, entry_id in enumerate(ids) if usable[i] and entry_id not in shelf.row_of]
                ids, matrix, norms = [ids[i] for i in keep], matrix[keep], norms[keep]
            if not ids:
                return
            start = shelf.count
            shelf.extend(ids, matrix)
            shelf.matrix[start : shelf.count] /= norms[:, None]  # in place: no second copy of the batch
            self.size += len(ids)

    def drop(self, shape: str, entry_id: Any) -> None:
        """Forget an id the store no longer holds."""
        with self._lock:
            shelf = self._shelves.get(shape)
            row = None if shelf is None else shelf.row_of.pop(entry_id, None)
            if shelf is not None and row is not None:
                shelf.matrix[row] = 0.0

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
            top = np.argpartition(-scores, limit)[:limit] if shelf.count > limit else np.arange(shelf.count)
            ranked = sorted(((float(scores[i]), int(i)) for i in top), reverse=True)
            return [(shelf.ids[i], s) for s, i in ranked if s >= threshold and shelf.ids[i] in shelf.row_of]
