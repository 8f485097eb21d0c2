"""GatewayCache through RoutingChatModel: keys, scopes, modes, TTL and size, streams, tools, accounting."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from langchain_multigateway.cache import CacheScopeError, GatewayCache, SQLiteCacheStore
from langchain_multigateway.cache import sqlite as cache_sqlite
from langchain_multigateway.cache.keys import request_keys, salient_terms
from langchain_multigateway.errors import ProviderError, StreamInterruptedError
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.telemetry import PrometheusCallbackHandler
from langchain_multigateway.testing import ScriptedChatModel
from langchain_multigateway.testing.scripted import Step
from langchain_multigateway.usage import UsageCallbackHandler, track_usage

SCOPE = {"metadata": {"cache_scope": "tenant-a"}}
USAGE = {"input_tokens": 12, "output_tokens": 7, "total_tokens": 19}


def model(*steps: Any, name: str = "gpt-4o-mini") -> ScriptedChatModel:
    script = list(steps) or [Step(reply=f"answer {i}", usage=USAGE) for i in range(1, 20)]  # type: ignore[arg-type]
    return ScriptedChatModel(model=name, model_provider="openai", steps=script)


def router(cache: GatewayCache, *models: ScriptedChatModel, **kwargs: Any) -> RoutingChatModel:
    deployments = [Deployment(model=m, name=f"dep{i}") for i, m in enumerate(models or (model(),))]
    return RoutingChatModel(deployments=deployments, response_cache=cache, **kwargs)


# ---------------------------------------------------------------------- exact layer
def test_second_identical_call_is_served_from_the_cache_with_zero_usage() -> None:
    llm = model()
    r = router(GatewayCache(), llm)
    first = r.invoke("What is the capital of France?", config=SCOPE)
    second = r.invoke("What is the capital of France?", config=SCOPE)
    assert llm.call_count == 1
    assert first.response_metadata["cache"] == "miss"
    assert second.content == first.content == "answer 1"
    assert second.response_metadata["cache"] == "exact"
    assert second.response_metadata["cache_similarity"] == 1.0
    assert second.response_metadata["cached_from"] == "dep0"
    assert second.response_metadata["cached_usage"]["total_tokens"] == 19
    assert second.usage_metadata == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    assert r.response_cache is not None
    stats = r.response_cache.stats
    assert (stats.exact, stats.misses, stats.stored) == (1, 1, 1)


def test_an_answer_cached_via_one_deployment_serves_the_same_request_on_another() -> None:
    cache = GatewayCache()
    router(cache, model(name="gpt-4o-mini")).invoke("hello", config=SCOPE)
    other = model(name="mistral-small")
    again = router(cache, other).invoke("hello", config=SCOPE)
    assert again.response_metadata["cache"] == "exact"
    assert other.call_count == 0


@pytest.mark.parametrize(
    ("call_kwargs", "same"),
    [
        ({"temperature": 0.9}, False),
        ({"max_tokens": 5}, False),
        ({"stop": ["\n"]}, False),
        ({"timeout": 3.0}, True),  # transport settings never change the answer
        ({"extra_headers": {"x-trace": "1"}}, True),
    ],
)
def test_generation_params_that_change_the_answer_change_the_key(call_kwargs: dict[str, Any], same: bool) -> None:
    llm = model()
    r = router(GatewayCache(), llm)
    r.invoke("hello", config=SCOPE)
    r.invoke("hello", config=SCOPE, **call_kwargs)
    assert llm.call_count == (1 if same else 2)


def test_system_prompt_tools_and_response_format_are_part_of_the_key() -> None:
    class Weather(BaseModel):
        """Weather in a city."""

        city: str

    class Stock(BaseModel):
        """A stock price."""

        ticker: str

    keys = {
        "plain": request_keys("s", [HumanMessage("hi")], params={}),
        "system": request_keys("s", [SystemMessage("be terse"), HumanMessage("hi")], params={}),
        "tools": request_keys("s", [HumanMessage("hi")], params={}, tools=[Weather]),
        "other tools": request_keys("s", [HumanMessage("hi")], params={}, tools=[Stock]),
        "choice": request_keys(
            "s", [HumanMessage("hi")], params={}, tools=[Weather], tool_kwargs={"tool_choice": "any"}
        ),
        "format": request_keys("s", [HumanMessage("hi")], params={}, response_format={"schema": Weather}),
        "scope": request_keys("t", [HumanMessage("hi")], params={}),
    }
    assert len({k.exact for k in keys.values()}) == len(keys)
    assert len({k.shape for k in keys.values()}) == len(keys)
    # the deployment's own settings (the key, the endpoint) never enter a key
    assert request_keys("s", [HumanMessage("hi")], params={"api_key": "sk-x", "base_url": "http://a"}) == keys["plain"]


def test_salient_terms_are_numbers_and_names_not_sentence_openings() -> None:
    assert salient_terms("What is the capital of France?") == ["france"]
    assert salient_terms("Which city is the capital of France? Paris.") == ["france"]
    assert salient_terms("What's the square root of 1,444?") == ["1444"]
    assert salient_terms("How do I reverse a list in Python?") == ["python"]
    assert salient_terms("hello there") == []


# ---------------------------------------------------------------------- scope
def test_tenant_a_answer_is_never_served_to_tenant_b() -> None:
    llm = model()
    r = router(GatewayCache(), llm)
    a = r.invoke("What is our refund policy?", config={"metadata": {"cache_scope": "tenant-a"}})
    b = r.invoke("What is our refund policy?", config={"metadata": {"cache_scope": "tenant-b"}})
    assert (a.content, b.content) == ("answer 1", "answer 2")
    assert b.response_metadata["cache"] == "miss"
    assert llm.call_count == 2


def test_a_call_without_scope_is_refused_before_anything_is_sent() -> None:
    llm = model()
    r = router(GatewayCache(), llm)
    with pytest.raises(CacheScopeError, match="cache_scope"):
        r.invoke("hello")
    with pytest.raises(CacheScopeError, match="cache_scope"):
        list(r.stream("hello"))
    assert llm.call_count == 0
    assert r.invoke("hello", cache="off").content == "answer 1"  # an explicit opt-out needs no scope


def test_scope_from_kwarg_metadata_or_default_scope() -> None:
    llm = model()
    r = router(GatewayCache(default_scope="single-tenant-app"), llm)
    r.invoke("hello")
    assert r.invoke("hello").response_metadata["cache"] == "exact"
    assert r.invoke("hello", cache_scope="single-tenant-app").response_metadata["cache"] == "exact"
    assert r.invoke("hello", config={"metadata": {"cache_scope": "other"}}).response_metadata["cache"] == "miss"
    assert "cache_scope" not in llm.calls[-1].kwargs  # never sent to the provider
    assert "cache" not in llm.calls[-1].kwargs


def test_a_kwarg_scope_never_overrides_the_runs_scope() -> None:
    """The run's scope is the one a server set from the caller's key: cache_scope= naming another
    tenant was served that tenant's answer before; now it is refused before anything is sent."""
    llm = model()
    r = router(GatewayCache(), llm)
    r.invoke("What is our refund policy?", config={"metadata": {"cache_scope": "victim"}})
    attacker = {"metadata": {"cache_scope": "attacker"}}
    with pytest.raises(CacheScopeError, match="differs"):
        r.invoke("What is our refund policy?", config=attacker, cache_scope="victim")
    with pytest.raises(CacheScopeError, match="differs"):
        list(r.stream("What is our refund policy?", config=attacker, cache_scope="victim"))
    assert llm.call_count == 1
    same = r.invoke("What is our refund policy?", config=attacker, cache_scope="attacker")  # agreeing is fine
    assert same.response_metadata["cache"] == "miss"


def test_an_infinite_or_nan_ttl_is_refused() -> None:
    """ttl=inf was accepted, and Redis's expiry (px=int(inf)) then failed every write: nothing was ever cached."""
    for ttl in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="ttl"):
            GatewayCache(ttl=ttl)


class TwoAnswers(ScriptedChatModel):
    """A model asked for n=2 that returns two generations (as OpenAI does)."""

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        result = super()._generate(messages, stop, run_manager, **kwargs)
        result.generations.append(result.generations[0])
        return result


def test_a_result_of_several_generations_is_never_cached_as_one() -> None:
    llm = TwoAnswers(model="gpt-4o-mini", model_provider="openai", steps=["one", "two"])
    r = router(GatewayCache(), llm)
    first = r.generate([[HumanMessage("hello")]], n=2, metadata={"cache_scope": "tenant-a"})
    assert len(first.generations[0]) == 2
    again = r.generate([[HumanMessage("hello")]], n=2, metadata={"cache_scope": "tenant-a"})
    assert len(again.generations[0]) == 2  # served again, never replayed as one answer
    assert llm.call_count == 2


def test_bad_cache_mode_is_a_typed_error() -> None:
    r = router(GatewayCache())
    with pytest.raises(CacheScopeError, match="cache must be one of"):
        r.invoke("hello", config=SCOPE, cache="sometimes")


# ---------------------------------------------------------------------- modes
def test_modes_read_write_off() -> None:
    llm = model()
    r = router(GatewayCache(), llm)
    assert r.invoke("q", config=SCOPE, cache="read").response_metadata["cache"] == "miss"
    assert r.invoke("q", config=SCOPE, cache="read").response_metadata["cache"] == "miss"  # read never stored
    assert llm.call_count == 2
    written = r.invoke("q", config=SCOPE, cache="write")
    assert "cache" not in written.response_metadata  # write-only never looked
    assert r.invoke("q", config=SCOPE, cache="write").content == "answer 4"  # and never answers from the cache
    assert r.invoke("q", config=SCOPE, cache="off").content == "answer 5"
    hit = r.invoke("q", config={"metadata": {"cache_scope": "tenant-a", "cache": "read"}})
    assert hit.response_metadata["cache"] == "exact"
    assert hit.content == "answer 4"  # the last write replaced the first
    assert llm.call_count == 5


def test_ttl_expires_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]

    class Clock:
        @staticmethod
        def time() -> float:
            return now[0]

    monkeypatch.setattr(cache_sqlite, "time", Clock)
    llm = model()
    r = router(GatewayCache(ttl=60), llm)
    r.invoke("hello", config=SCOPE)
    now[0] += 59
    assert r.invoke("hello", config=SCOPE).response_metadata["cache"] == "exact"
    now[0] += 2
    assert r.invoke("hello", config=SCOPE).response_metadata["cache"] == "miss"
    assert llm.call_count == 2


def test_max_entries_evicts_the_oldest() -> None:
    store = SQLiteCacheStore(max_entries=3)
    llm = model()
    r = router(GatewayCache(store=store), llm)
    for i in range(5):
        r.invoke(f"question {i}", config=SCOPE)
    assert store.count() == 3
    assert r.invoke("question 0", config=SCOPE).response_metadata["cache"] == "miss"  # evicted
    assert r.invoke("question 4", config=SCOPE).response_metadata["cache"] == "exact"


def test_store_must_be_a_cache_store() -> None:
    with pytest.raises(ValueError, match="CacheStore"):
        GatewayCache(store={"path": "x"})
    with pytest.raises(ValueError, match="max_entries"):
        SQLiteCacheStore(max_entries=0)


# ---------------------------------------------------------------------- streams
def test_a_streamed_answer_is_stored_and_a_hit_streams_back_in_chunks() -> None:
    text = "The capital of France is Paris, a city on the Seine with about two million people."
    llm = model(Step(reply=text, chunks=[*(w + " " for w in text.split(" ")[:-1]), "people."], usage=USAGE))  # type: ignore[arg-type]
    r = router(GatewayCache(), llm)
    served = list(r.stream("capital of France?", config=SCOPE))
    assert served[-1].response_metadata["cache"] == "miss"
    replay = list(r.stream("capital of France?", config=SCOPE))
    assert llm.call_count == 1
    assert len(replay) > 3
    assert "".join(str(c.content) for c in replay) == text
    last = replay[-1]
    assert last.chunk_position == "last"
    assert last.response_metadata["cache"] == "exact"
    assert last.usage_metadata == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    assert sum(1 for c in replay if c.usage_metadata) == 1
    # and an invoke of the same request is the same hit
    assert r.invoke("capital of France?", config=SCOPE).content == text


async def test_async_invoke_and_stream_share_the_cache() -> None:
    llm = model()
    r = router(GatewayCache(), llm)
    first = await r.ainvoke("hello", config=SCOPE)
    second = await r.ainvoke("hello", config=SCOPE)
    chunks = [c async for c in r.astream("hello", config=SCOPE)]
    assert second.response_metadata["cache"] == "exact"
    assert "".join(str(c.content) for c in chunks) == first.content
    assert chunks[-1].response_metadata["cache"] == "exact"
    miss = [c async for c in r.astream("another", config=SCOPE)]
    assert miss[-1].response_metadata["cache"] == "miss"
    assert (await r.ainvoke("another", config=SCOPE)).response_metadata["cache"] == "exact"
    assert llm.call_count == 2


def test_a_stream_cut_short_is_never_cached() -> None:
    cut = Step(reply="partial answer that breaks", chunks=["partial ", "answer ", "that ", "breaks"], fail_after=2,
               error=ProviderError("connection reset", retryable=True))  # fmt: skip
    llm = model(cut, Step(reply="whole answer", usage=USAGE))  # type: ignore[arg-type]
    cache = GatewayCache()
    r = router(cache, llm)
    with pytest.raises(StreamInterruptedError):
        list(r.stream("tell me", config=SCOPE))
    assert cache.store.count() == 0
    assert r.invoke("tell me", config=SCOPE).content == "whole answer"  # served, not the partial text


async def test_an_abandoned_stream_is_never_cached() -> None:
    text = "one two three four five six"
    llm = model(Step(reply=text, chunks=[w + " " for w in text.split()]), Step(reply=text))  # type: ignore[arg-type]
    cache = GatewayCache()
    r = router(cache, llm)
    for chunk in r.stream("count", config=SCOPE):
        assert chunk.content
        break
    stream = r.astream("count", config=SCOPE)
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert cache.store.count() == 0
    assert all(h.in_flight == 0 for h in r.health().values())


# ---------------------------------------------------------------------- tools and structured output
def test_tool_calls_are_cached_and_replayed_invoked_or_streamed() -> None:
    class GetWeather(BaseModel):
        """Get the weather."""

        city: str

    call = AIMessage(content="", tool_calls=[{"name": "GetWeather", "args": {"city": "Paris"}, "id": "call_1"}])
    llm = model(call)
    r = router(GatewayCache(), llm)
    bound = r.bind_tools([GetWeather], tool_choice="any")
    first = bound.invoke("Weather in Paris?", config=SCOPE)
    second = bound.invoke("Weather in Paris?", config=SCOPE)
    streamed: Any = None
    for chunk in bound.stream("Weather in Paris?", config=SCOPE):
        streamed = chunk if streamed is None else streamed + chunk
    assert llm.call_count == 1
    assert second.response_metadata["cache"] == "exact"
    assert second.tool_calls == first.tool_calls
    assert isinstance(streamed, AIMessageChunk)
    assert streamed.tool_calls == first.tool_calls
    # without the tools bound it is another request
    assert r.invoke("Weather in Paris?", config=SCOPE).response_metadata["cache"] == "miss"


def test_structured_output_is_parsed_from_a_cached_answer() -> None:
    class Capital(BaseModel):
        country: str
        city: str

    llm = model('{"country": "France", "city": "Paris"}')
    structured = router(GatewayCache(), llm).with_structured_output(Capital, include_raw=True)
    first = structured.invoke("Capital of France?", config=SCOPE)
    second = structured.invoke("Capital of France?", config=SCOPE)
    assert llm.call_count == 1
    assert second["parsed"] == first["parsed"] == Capital(country="France", city="Paris")
    assert second["raw"].response_metadata["cache"] == "exact"


def test_an_empty_or_broken_answer_is_not_kept() -> None:
    broken = AIMessage(content="", invalid_tool_calls=[{"name": "f", "args": "{oops", "id": "1", "error": "bad"}])
    llm = model("", broken, "fine")
    cache = GatewayCache()
    r = router(cache, llm)
    r.invoke("a", config=SCOPE)
    r.invoke("b", config=SCOPE)
    assert cache.store.count() == 0


# ---------------------------------------------------------------------- accounting
def test_a_hit_counts_in_usage_as_a_hit_with_zero_cost() -> None:
    r = router(GatewayCache())
    with track_usage() as usage:
        r.invoke("hello", config=SCOPE)
        r.invoke("hello", config=SCOPE)
    totals = usage.totals
    assert totals.requests == 2
    assert totals.cache_hits == 1
    assert totals.total_tokens == 19  # only the served call's tokens
    served_cost = UsageCallbackHandler().prices.cost(USAGE, "gpt-4o-mini")
    assert served_cost is not None
    assert totals.cost_usd == pytest.approx(served_cost)
    assert "answered by a response cache" in usage.summary()


def test_prometheus_counts_hits_and_misses() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusCallbackHandler(registry=registry)
    r = router(GatewayCache())
    config: Any = {**SCOPE, "callbacks": [metrics]}
    r.invoke("hello", config=config)
    r.invoke("hello", config=config)
    r.invoke("hello", config=config)
    list(r.stream("hello", config=config))
    get = registry.get_sample_value
    assert get("multigateway_response_cache_lookups_total", {"result": "miss"}) == 1
    assert get("multigateway_response_cache_lookups_total", {"result": "exact"}) == 3


def test_cache_repr_and_stats_hold_no_secret() -> None:
    cache = GatewayCache(store=SQLiteCacheStore(max_entries=10), default_scope="tenant-secret-scope")
    r = router(cache)
    r.invoke("hello", config={"metadata": {"cache_scope": "tenant-secret-scope"}})
    assert "tenant-secret-scope" not in repr(cache)
    assert "tenant-secret-scope" not in repr(cache.stats)
    assert json.loads(cache.store._conn.execute("SELECT payload FROM cache_entries").fetchone()[0])["content"]


def test_concurrent_calls_from_tasks_store_once_each() -> None:
    llm = model(*[Step(reply=f"answer {i}") for i in range(40)])  # type: ignore[arg-type]
    r = router(GatewayCache(), llm)

    async def main() -> list[AIMessage]:
        return list(await asyncio.gather(*(r.ainvoke(f"q{i % 10}", config=SCOPE) for i in range(30))))

    answers = asyncio.run(main())
    assert len(answers) == 30
    # each of the 10 questions answered consistently once it was stored
    again = [r.invoke(f"q{i}", config=SCOPE) for i in range(10)]
    assert all(a.response_metadata["cache"] == "exact" for a in again)
    assert all(h.in_flight == 0 for h in r.health().values())


def test_a_hit_is_in_the_ledger_as_a_hit_with_zero_cost() -> None:
    from langchain_multigateway.usage import Ledger, LedgerCallbackHandler

    with Ledger(":memory:") as ledger:
        config: Any = {**SCOPE, "callbacks": [LedgerCallbackHandler(ledger)]}
        r = router(GatewayCache())
        r.invoke("hello", config=config)
        r.invoke("hello", config=config)
        rows = ledger.records()
        assert [row["cache"] for row in rows] == ["miss", "exact"]
        hit = rows[1]
        assert (hit["cost_usd"], hit["total_tokens"], hit["outcome"]) == (0.0, 0, "ok")
        assert rows[0]["cost_usd"] > 0
        (total,) = ledger.totals(by="outcome")
        assert (total["requests"], total["cache_hits"]) == (2, 1)


# ---------------------------------------------------------------------- routers sharing one store
def test_two_routers_sharing_one_store_never_serve_each_others_answers() -> None:
    """A server's "smart" and "cheap" routers (one cache file, or one Redis) are asked by name: each
    answers with its own models, so one's cached answer is never the other's (deployments within one
    router still share)."""
    store = SQLiteCacheStore()
    smart_llm, cheap_llm = model(name="gpt-4o"), model(name="tiny")
    smart = router(GatewayCache(store=store), smart_llm, model="smart")
    cheap = router(GatewayCache(store=store), cheap_llm, model="cheap")
    assert smart.invoke("hello", config=SCOPE).content == "answer 1"
    served = cheap.invoke("hello", config=SCOPE)
    assert served.response_metadata["cache"] == "miss"
    assert cheap_llm.call_count == 1
    assert smart.invoke("hello", config=SCOPE).response_metadata["cache"] == "exact"


def test_routing_tags_are_part_of_the_key() -> None:
    """routing_tags pick which deployments (models) may answer: an answer for one tag set is not another's."""
    llm = model()
    r = RoutingChatModel(deployments=[Deployment(model=llm, name="d", tags=["fast"])], response_cache=GatewayCache())
    r.invoke("hello", config=SCOPE)
    r.invoke("hello", config={"metadata": {"cache_scope": "tenant-a", "routing_tags": "fast"}})
    assert llm.call_count == 2
    again = r.invoke("hello", config={"metadata": {"cache_scope": "tenant-a", "routing_tags": ["fast"]}})
    assert again.response_metadata["cache"] == "exact"
