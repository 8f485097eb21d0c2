"""Hit rate and false-hit rate of the semantic cache on the labelled pairs, at several thresholds.

Reads the embeddings recorded from llama.cpp's /v1/embeddings (Gemma 3 270M, mean-pooled) in
``cassettes/test_cache_semantic/test_labelled_pairs_at_the_default_threshold.yaml`` (no server
needed), and for each threshold counts, over the 20 paraphrase and 20 non-paraphrase pairs of
``tests/integration/cache_pairs.py``, how many the semantic layer would answer from the cache:
on the cosine alone, and with the numbers-and-names rule the shape applies (``salient_terms``).

Run::

    .venv/bin/python benchmarks/cache_semantic_quality.py
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import yaml

from langchain_multigateway.cache.keys import salient_terms
from tests.integration.cache_pairs import DIFFERENT, PARAPHRASES

ROOT = Path(__file__).resolve().parent.parent
CASSETTE = ROOT / "cassettes" / "test_cache_semantic" / "test_labelled_pairs_at_the_default_threshold.yaml"
THRESHOLDS = (0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.96, 0.98)


def recorded_vectors() -> dict[str, np.ndarray]:
    vectors: dict[str, np.ndarray] = {}
    for interaction in yaml.safe_load(CASSETTE.read_text())["interactions"]:
        (text,) = json.loads(interaction["request"]["body"])["input"]
        body = json.loads(interaction["response"]["body"]["string"])
        vector = body["data"][0]["embedding"]
        if isinstance(vector, str):  # encoding_format=base64: little-endian float32
            vectors[text] = np.frombuffer(base64.b64decode(vector), dtype="<f4")
        else:
            vectors[text] = np.asarray(vector, dtype=np.float32)
    return vectors


def main() -> None:
    vectors = recorded_vectors()

    def cosine(a: str, b: str) -> float:
        va, vb = vectors[a], vectors[b]
        return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))

    pairs = {"paraphrase": PARAPHRASES, "different": DIFFERENT}
    scores = {
        label: [(cosine(a, b), salient_terms(a) == salient_terms(b)) for a, b in found]
        for label, found in pairs.items()
    }
    print(f"dimensions: {len(next(iter(vectors.values())))}; pairs: 20 paraphrases, 20 non-paraphrases")
    for label, found in scores.items():
        print(f"{label:>10} cosines: min {min(s for s, _ in found):.3f}, median {np.median([s for s, _ in found]):.3f},"
              f" max {max(s for s, _ in found):.3f}")  # fmt: skip
    print("threshold | hits (cosine only) | false hits (cosine only) | hits (with names) | false hits (with names)")
    for threshold in THRESHOLDS:
        row = [f"{threshold:.2f}"]
        for guarded in (False, True):
            for label in ("paraphrase", "different"):
                hits = sum(s >= threshold and (same or not guarded) for s, same in scores[label])
                row.append(f"{hits / len(scores[label]):.0%}")
        print(" | ".join([row[0], row[1], row[2], row[3], row[4]]))


if __name__ == "__main__":
    main()
