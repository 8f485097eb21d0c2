"""The semantic cache layer on real embeddings: llama.cpp's /v1/embeddings (Gemma 3 270M, mean-pooled), recorded.

Record again with
``MULTIGATEWAY_LIVE_BASE_URL=http://127.0.0.1:8093/v1 pytest tests/integration/test_cache_semantic.py
--gateway-record-mode=rewrite`` while ``LOCAL_LLM_EMBEDDINGS=1 ../shared/tools/local-llm start 8093`` serves.
The chat side is the scripted model: what is under test is the lookup, not the answer.

``test_labelled_pairs_at_the_default_threshold`` prints the hit rate on paraphrases and the false-hit
rate on non-paraphrases (the figures in README's "Caching" section).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import OpenAIEmbeddings

from langchain_multigateway.cache import GatewayCache, SemanticCache, SQLiteCacheStore
from langchain_multigateway.cache.keys import salient_terms
from langchain_multigateway.cache.policy import DEFAULT_THRESHOLD
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.testing import ScriptedChatModel
from tests.conftest import LIVE_BASE_URL, RECORDING_API_KEY
from tests.integration.cache_pairs import DIFFERENT, PARAPHRASES

pytestmark = pytest.mark.gateway_cassette


class Remembered(Embeddings):
    """Real embeddings, each vector also kept by its text (so the test can compute the cosine itself)."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.vectors: dict[str, list[float]] = {}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        found = self.inner.embed_documents(texts)
        self.vectors.update(zip(texts, found, strict=True))
        return found

    def embed_query(self, text: str) -> list[float]:
        self.vectors[text] = self.inner.embed_query(text)
        return self.vectors[text]

    async def aembed_query(self, text: str) -> list[float]:
        self.vectors[text] = await self.inner.aembed_query(text)
        return self.vectors[text]


def gemma_embeddings() -> Remembered:
    inner = OpenAIEmbeddings(
        model="gemma-3-270m",
        base_url=LIVE_BASE_URL,
        api_key=RECORDING_API_KEY,  # type: ignore[arg-type]
        check_embedding_ctx_length=False,  # raw text, not tiktoken ids: llama.cpp tokenizes for itself
    )
    return Remembered(inner)


def cosine(a: list[float], b: list[float]) -> float:
    va, vb = np.asarray(a), np.asarray(b)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def routed(cache: GatewayCache) -> tuple[RoutingChatModel, ScriptedChatModel]:
    llm = ScriptedChatModel(steps=[f"answer {i}" for i in range(200)])
    return RoutingChatModel(deployments=[Deployment(model=llm, name="local")], response_cache=cache), llm


def test_labelled_pairs_at_the_default_threshold() -> None:
    embeddings = gemma_embeddings()
    cache = GatewayCache(store=SQLiteCacheStore(), semantic=SemanticCache(embeddings=embeddings))
    assert cache.semantic is not None
    assert cache.semantic.threshold == DEFAULT_THRESHOLD == 0.92
    router, _ = routed(cache)
    outcomes: dict[str, list[bool]] = {"paraphrase": [], "different": []}
    for label, pairs in (("paraphrase", PARAPHRASES), ("different", DIFFERENT)):
        for number, (first, second) in enumerate(pairs):
            scope = {"metadata": {"cache_scope": f"{label}-{number}"}}  # each pair alone in its scope
            stored = router.invoke(first, config=scope)
            assert stored.response_metadata["cache"] == "miss"
            found = router.invoke(second, config=scope)
            similarity = cosine(embeddings.vectors[first], embeddings.vectors[second])
            expected = similarity >= DEFAULT_THRESHOLD and salient_terms(first) == salient_terms(second)
            hit = found.response_metadata["cache"] == "semantic"
            assert hit == expected, (first, second, similarity)
            if hit:
                assert found.content == stored.content
                assert found.response_metadata["cache_similarity"] == pytest.approx(similarity, abs=1e-4)
            outcomes[label].append(hit)
    hit_rate = sum(outcomes["paraphrase"]) / len(PARAPHRASES)
    false_hit_rate = sum(outcomes["different"]) / len(DIFFERENT)
    print(f"\nsemantic cache at {DEFAULT_THRESHOLD}: hit rate {hit_rate:.0%}, false-hit rate {false_hit_rate:.0%}")
    assert any(outcomes["paraphrase"])  # the layer answers paraphrases on real vectors


async def test_a_paraphrase_is_served_only_in_its_scope_and_shape() -> None:
    embeddings = gemma_embeddings()
    cache = GatewayCache(semantic=SemanticCache(embeddings=embeddings))
    router, llm = routed(cache)
    first, second = "What is the square root of 144?", "What's the square root of 144?"
    tenant_a = {"metadata": {"cache_scope": "tenant-a"}}
    stored = await router.ainvoke(first, config=tenant_a)
    hit = await router.ainvoke(second, config=tenant_a)
    assert hit.response_metadata["cache"] == "semantic"
    assert hit.content == stored.content
    assert hit.usage_metadata == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    streamed = [c async for c in router.astream(second, config=tenant_a)]
    assert streamed[-1].response_metadata["cache"] in ("exact", "semantic")
    assert "".join(str(c.content) for c in streamed) == stored.content
    # another tenant, another system prompt, another earlier turn: never the cached answer
    other_tenant = await router.ainvoke(second, config={"metadata": {"cache_scope": "tenant-b"}})
    assert other_tenant.response_metadata["cache"] == "miss"
    other_system = await router.ainvoke([SystemMessage("Answer in French."), HumanMessage(second)], config=tenant_a)
    assert other_system.response_metadata["cache"] == "miss"
    calls_before = llm.call_count
    other_numbers = await router.ainvoke("What is the square root of 169?", config=tenant_a)
    assert other_numbers.response_metadata["cache"] == "miss"
    assert llm.call_count == calls_before + 1


def test_an_embeddings_outage_costs_the_semantic_layer_not_the_call() -> None:
    class Unreachable(Embeddings):
        """Embeddings whose server is down (a real connection refused on a closed port)."""

        def __init__(self) -> None:
            self.inner = OpenAIEmbeddings(
                model="x",
                base_url="http://127.0.0.1:9/v1",
                api_key=RECORDING_API_KEY,  # type: ignore[arg-type]
                check_embedding_ctx_length=False,
                max_retries=0,
            )

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return self.inner.embed_documents(texts)

        def embed_query(self, text: str) -> list[float]:
            return self.inner.embed_query(text)

    cache = GatewayCache(semantic=SemanticCache(embeddings=Unreachable()))
    router, llm = routed(cache)
    scope: Any = {"metadata": {"cache_scope": "t"}}
    assert router.invoke("hello", config=scope).content == "answer 0"
    assert router.invoke("hello", config=scope).response_metadata["cache"] == "exact"  # exact still works
    assert cache.stats.errors >= 1
    assert llm.call_count == 1
