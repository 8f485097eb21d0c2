"""Attacks on the response cache: concurrent writers (threads, processes), corrupt rows and files, planted secrets,
vectors mirrored across processes, hostile scopes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import AIMessage

from langchain_multigateway.cache import CacheScopeError, GatewayCache, RedisCacheStore, SQLiteCacheStore
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.testing import ScriptedChatModel

ROOT = Path(__file__).resolve().parents[2]
SCOPE = {"metadata": {"cache_scope": "tenant-a"}}


def routed(cache: GatewayCache, *steps: Any) -> tuple[RoutingChatModel, ScriptedChatModel]:
    llm = ScriptedChatModel(steps=list(steps) or [f"answer {i}" for i in range(100)])
    return RoutingChatModel(deployments=[Deployment(model=llm, name="dep")], response_cache=cache), llm


def unit(seed: int, dim: int = 32) -> Any:
    vector = np.random.default_rng(seed).standard_normal(dim)
    return vector / np.linalg.norm(vector)


# ---------------------------------------------------------------------- concurrency
def test_threads_writing_and_reading_one_file(tmp_path: Path) -> None:
    store = SQLiteCacheStore(tmp_path / "c.sqlite3")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(60):
                key = f"{worker:032x}{i:032x}"
                store.put(key, "shape", json.dumps({"worker": worker, "i": i}), ttl=60, vector=unit(worker * 1000 + i))
                found = store.get(key)
                assert found is not None
                assert json.loads(found.payload) == {"worker": worker, "i": i}
                store.nearest("shape", unit(worker * 1000 + i), 0.99)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 8 * 60


_WRITER = """
import json, sys
import numpy as np
sys.path.insert(0, {root!r})
from langchain_multigateway.cache import SQLiteCacheStore
store = SQLiteCacheStore({path!r}, busy_timeout=30)
worker = int(sys.argv[1])
for i in range(100):
    key = f"{{worker:032x}}{{i:032x}}"
    vector = np.random.default_rng(worker * 1000 + i).standard_normal(32)
    store.put(key, "shape", json.dumps([worker, i]), ttl=60, vector=vector)
    assert store.get(key) is not None
print("ok")
"""


def test_processes_writing_one_file_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    SQLiteCacheStore(path).close()  # the schema and WAL mode first
    code = _WRITER.format(root=str(ROOT), path=path)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(w)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for w in range(3)
    ]
    results = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [err for _, err in results]
    store = SQLiteCacheStore(path)
    assert store.count() == 300
    for worker in range(3):
        assert store.get(f"{worker:032x}{99:032x}") is not None
    # every process's vectors reach this one's index
    found = store.nearest("shape", unit(2 * 1000 + 99), 0.999)
    assert found is not None
    assert json.loads(found.payload) == [2, 99]


def test_vectors_written_elsewhere_are_mirrored_and_evicted_ones_dropped(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    writer, reader = SQLiteCacheStore(path, max_entries=2), SQLiteCacheStore(path, max_entries=2)
    writer.put("a" * 64, "shape", '"A"', ttl=None, vector=unit(1))
    found = reader.nearest("shape", unit(1), 0.99)
    assert found is not None
    assert found.key == "a" * 64
    assert found.similarity == pytest.approx(1.0, abs=1e-5)
    assert reader.nearest("other-shape", unit(1), 0.5) is None  # shapes never mix
    writer.put("b" * 64, "shape", '"B"', ttl=None, vector=unit(2))
    writer.put("c" * 64, "shape", '"C"', ttl=None, vector=unit(3))  # "a" is evicted
    assert reader.nearest("shape", unit(1), 0.99) is None
    again = reader.nearest("shape", unit(3), 0.99)
    assert again is not None
    assert again.payload == '"C"'


# ---------------------------------------------------------------------- corruption
@pytest.mark.parametrize(
    "planted",
    [
        "not json at all {",
        '{"content": 42, "tool_calls": [], "metadata": {}}',
        '{"content": "x", "tool_calls": [{"name": 1}], "metadata": {}}',
        '["a", "list"]',
        # well-formed JSON that is no message: each one crashed the call before (pydantic ValidationError)
        '{"content": [5], "tool_calls": [], "metadata": {}}',
        '{"content": "x", "tool_calls": [{"name": "f", "args": {}, "id": 123}], "metadata": {}}',
        '{"content": "x", "tool_calls": [], "metadata": {}, "usage": "lots"}',
    ],
)
def test_a_corrupt_row_is_a_miss_and_is_deleted(planted: str) -> None:
    store = SQLiteCacheStore()
    cache = GatewayCache(store=store)
    router, llm = routed(cache)
    router.invoke("hello", config=SCOPE)
    store._conn.execute("UPDATE cache_entries SET payload = ?", (planted,))
    again = router.invoke("hello", config=SCOPE)
    assert again.response_metadata["cache"] == "miss"
    assert again.content == "answer 1"
    assert cache.stats.errors == 1
    assert router.invoke("hello", config=SCOPE).response_metadata["cache"] == "exact"  # stored anew
    assert llm.call_count == 2


def test_a_planted_row_that_is_no_message_is_a_miss_when_streamed_too() -> None:
    store = SQLiteCacheStore()
    cache = GatewayCache(store=store)
    router, llm = routed(cache)
    router.invoke("hello", config=SCOPE)
    planted = '{"content": "x", "tool_calls": [{"name": "f", "args": {}, "id": ["id"]}], "metadata": {}}'
    store._conn.execute("UPDATE cache_entries SET payload = ?", (planted,))
    text = "".join(str(chunk.content) for chunk in router.stream("hello", config=SCOPE))
    assert text == "answer 1"
    assert cache.stats.errors == 1
    assert llm.call_count == 2


def test_a_store_that_fails_counts_an_error_not_an_answer_stored() -> None:
    store = SQLiteCacheStore()
    cache = GatewayCache(store=store)
    router, _ = routed(cache)
    store._conn.close()  # every lookup and write now fails
    assert router.invoke("hello", config=SCOPE).content == "answer 0"
    assert (cache.stats.stored, cache.stats.errors, cache.stats.misses) == (0, 2, 1)


def test_unreadable_expiry_blob_payload_and_vector_are_misses_not_crashes() -> None:
    store = SQLiteCacheStore()
    store.put("k" * 64, "shape", '"x"', ttl=60, vector=unit(5))
    store._conn.execute("UPDATE cache_entries SET expires = 'soon'")
    assert store.get("k" * 64) is None
    store._conn.execute(
        "UPDATE cache_entries SET expires = NULL, payload = ?, vector = ?", (b"\xff\xfe", b"\x01\x02\x03")
    )
    found = store.get("k" * 64)
    assert found is not None  # read back as text; the policy's parser then refuses it
    assert store.nearest("shape", unit(5), 0.5) is None  # a vector of 3 bytes is skipped


def test_a_cache_file_overwritten_with_garbage_costs_hits_not_calls(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = GatewayCache(store=SQLiteCacheStore(path))
    router, _ = routed(cache)
    router.invoke("hello", config=SCOPE)
    cache.store.close()
    path.write_bytes(b"this is not a database" * 200)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with pytest.raises(sqlite3.DatabaseError):
        SQLiteCacheStore(path)  # opening one says so at once
    broken = GatewayCache(store=_Reopened(path))
    router, _llm = routed(broken)
    assert router.invoke("hello", config=SCOPE).content == "answer 0"
    assert router.invoke("hello", config=SCOPE).content == "answer 1"  # still served, never a crash
    assert broken.stats.errors >= 2


class _Reopened(SQLiteCacheStore):
    """A store whose file went bad after it was opened: its connection is to that file as it is now."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.max_entries = 10
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._index = None
        self._mirrored = 0


# ---------------------------------------------------------------------- secrets and scopes
def test_the_cache_file_holds_no_scope_prompt_or_credential(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    leaky = AIMessage(
        content="The answer.",
        response_metadata={"headers": {"authorization": "Bearer sk-planted-header-0123456789"}, "model_name": "m"},
    )
    cache = GatewayCache(store=SQLiteCacheStore(path))
    router, _ = routed(cache, leaky)
    scope = "tenant-secret-scope-7f3a"
    prompt = "my private question about account 99812"
    router.invoke(prompt, config={"metadata": {"cache_scope": scope}}, api_key="sk-planted-kwarg-0123456789")
    cache.store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in (scope, prompt, "sk-planted-header", "sk-planted-kwarg", "99812"):
        assert secret.encode() not in raw, secret
    assert b"The answer." in raw


def test_redis_store_repr_never_shows_the_url() -> None:
    store = RedisCacheStore("redis://:hunter2-password@127.0.0.1:1/0")
    assert "hunter2" not in repr(store)
    assert "hunter2" not in repr(GatewayCache(store=store))


@pytest.mark.parametrize("scope", [42, "", ["tenant"]])
def test_a_scope_that_is_not_a_string_is_refused(scope: Any) -> None:
    router, llm = routed(GatewayCache())
    with pytest.raises(CacheScopeError):
        router.invoke("hello", config={"metadata": {"cache_scope": scope}})
    assert llm.call_count == 0


def test_many_threads_asking_at_once_are_all_served() -> None:
    router, _llm = routed(GatewayCache(), *[f"answer {i}" for i in range(64)])
    answers: list[str] = []
    lock = threading.Lock()

    def ask() -> None:
        message = router.invoke("the same question", config=SCOPE)
        with lock:
            answers.append(str(message.content))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 16
    # no request coalescing: calls that missed together were each served; once stored, one answer holds
    assert router.invoke("the same question", config=SCOPE).response_metadata["cache"] == "exact"
    assert all(h.in_flight == 0 for h in router.health().values())


def test_a_large_backlog_is_mirrored_in_the_background_never_on_the_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_multigateway.cache import sqlite as cache_sqlite

    monkeypatch.setattr(cache_sqlite, "INLINE_MIRROR_ROWS", 5)
    path = tmp_path / "c.sqlite3"
    writer = SQLiteCacheStore(path)
    for i in range(20):
        writer.put(f"{i:064x}", "shape", json.dumps(i), ttl=None, vector=unit(i))
    reader = SQLiteCacheStore(path)
    assert reader.nearest("shape", unit(7), 0.99) is None  # not mirrored yet: a miss at once
    assert reader._warming is not None
    reader._warming.join(timeout=30)
    found = reader.nearest("shape", unit(7), 0.99)
    assert found is not None
    assert found.payload == "7"
    writer.put("f" * 64, "shape", '"new"', ttl=None, vector=unit(99))  # a few new rows: mirrored inline
    again = reader.nearest("shape", unit(99), 0.99)
    assert again is not None
    assert again.payload == '"new"'
    warmed = SQLiteCacheStore(path)
    warmed.warm()
    assert warmed.nearest("shape", unit(3), 0.99) is not None


def test_a_question_about_another_picture_is_no_semantic_hit() -> None:
    """The semantic layer compares the embedded turn's text only; its image must match exactly. Before, the
    same question about a dog's picture was answered with the cat's description (cosine 1.0)."""
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.messages import HumanMessage

    from langchain_multigateway.cache import SemanticCache

    cache = GatewayCache(semantic=SemanticCache(embeddings=DeterministicFakeEmbedding(size=32)))
    router, llm = routed(cache, "a cat", "a dog")

    def about(url: str) -> list[HumanMessage]:
        question = {"type": "text", "text": "What is in this picture?"}
        return [HumanMessage([question, {"type": "image_url", "image_url": {"url": url}}])]

    assert router.invoke(about("https://example.test/cat.png"), config=SCOPE).content == "a cat"
    dog = router.invoke(about("https://example.test/dog.png"), config=SCOPE)
    assert (dog.content, dog.response_metadata["cache"]) == ("a dog", "miss")
    again = router.invoke(about("https://example.test/cat.png"), config=SCOPE)
    assert again.response_metadata["cache"] == "exact"
    assert llm.call_count == 2
