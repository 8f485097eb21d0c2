"""How long a response-cache lookup takes with 100,000 entries: exact, and semantic (NumPy brute force).

Fills a ``SQLiteCacheStore`` on a temporary file through its own ``put`` (the path a
router's store takes) with ``--entries`` answers, each with a random unit vector of
``--dim`` dimensions (640: Gemma 3 270M's pooled embeddings; 1536: OpenAI's
text-embedding-3-small), all in one request shape: the worst case, one tenant and one
prompt shape holding every entry, so a query compares against all of them. Then times:

* ``put`` per entry (upsert, TTL purge and size bound in one transaction, WAL);
* the first semantic query of a fresh process (a miss: the vectors are mirrored in the background),
  and how long that mirroring (or ``warm()``) takes;
* semantic queries after that (``nearest``: one matrix-vector product, then the hit read back);
* exact lookups (``get``: one primary-key read).

Run by hand (timings depend on the machine)::

    .venv/bin/python benchmarks/cache_semantic.py --entries 100000 --dim 640
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from langchain_multigateway.cache import SQLiteCacheStore
from langchain_multigateway.cache.keys import request_keys
from langchain_multigateway.cache.vectors import VectorIndex


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(ordered) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=640)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((args.entries, args.dim), dtype=np.float32)
    shape = request_keys("benchmark-tenant", [], params={}).shape
    payload = '{"content":"' + "a cached answer of a few words. " * 8 + '","tool_calls":[],"metadata":{}}'
    keys = [f"{i:064x}" for i in range(args.entries)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cache.sqlite3"
        store = SQLiteCacheStore(path, max_entries=args.entries)
        started = time.perf_counter()
        for key, vector in zip(keys, vectors, strict=True):
            store.put(key, shape, payload, ttl=86400.0, vector=vector)
        filled = time.perf_counter() - started
        print(f"entries {store.count():,}, dim {args.dim}, file {path.stat().st_size / 2**20:.0f} MiB")
        print(f"put: {filled / args.entries * 1e6:.0f} µs per entry ({filled:.1f} s for all)")

        fresh = SQLiteCacheStore(path, max_entries=args.entries)  # another process's view: nothing mirrored yet
        near = vectors[rng.integers(0, args.entries, args.queries)] + 0.05 * rng.standard_normal(
            (args.queries, args.dim), dtype=np.float32
        )
        started = time.perf_counter()
        assert fresh.nearest(shape, near[0], 0.92) is None  # a cold index: mirrored in the background
        print(f"first semantic query of a fresh process (a miss): {(time.perf_counter() - started) * 1000:.1f} ms")
        warmed = SQLiteCacheStore(path, max_entries=args.entries)
        started = time.perf_counter()
        warmed.warm()
        print(f"mirroring {args.entries:,} vectors (background, or warm()): {time.perf_counter() - started:.1f} s")
        if fresh._warming is not None:
            fresh._warming.join()
        semantic: list[float] = []
        hits = 0
        for query in near:
            started = time.perf_counter()
            found = fresh.nearest(shape, query, 0.92)
            semantic.append(time.perf_counter() - started)
            hits += found is not None
        print(f"semantic query: {_ms(semantic)} ({hits}/{args.queries} hits)")
        index = VectorIndex()
        for i, vector in enumerate(vectors):
            index.add(shape, i, vector)
        search: list[float] = []
        for query in near:
            started = time.perf_counter()
            index.search(shape, query, 0.92)
            search.append(time.perf_counter() - started)
        print(f"  of which the NumPy search alone: {_ms(search)}")
        exact: list[float] = []
        for i in rng.integers(0, args.entries, args.queries):
            started = time.perf_counter()
            assert fresh.get(keys[i]) is not None
            exact.append(time.perf_counter() - started)
        print(f"exact lookup: {_ms(exact)}")
        store.close()
        fresh.close()
        warmed.close()


if __name__ == "__main__":
    main()
