"""ScriptedChatModel: scripted replies, errors, latency, streaming rules, tools, structured output."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from pydantic import BaseModel

from langchain_multigateway.errors import ProviderError, RateLimitError
from langchain_multigateway.testing import ScriptedChatModel, Step


class Joke(BaseModel):
    setup: str
    punchline: str


JOKE = '{"setup": "Why?", "punchline": "Because."}'


def test_replies_in_order_and_records_calls() -> None:
    model = ScriptedChatModel(steps=["one", "two"])
    assert model.invoke("a").content == "one"
    assert model.invoke([HumanMessage("b")], temperature=0.5).content == "two"
    assert model.invoke("c").content == model.default_reply
    calls = model.calls
    assert [c.messages[0].content for c in calls] == ["a", "b", "c"]
    assert calls[1].kwargs["temperature"] == 0.5
    assert [c.step_index for c in calls] == [0, 1, 2]
    assert model.call_count == 3


def test_response_and_usage_metadata() -> None:
    usage = {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}
    model = ScriptedChatModel(model="m1", steps=[Step(reply="hi", usage=usage), "counted reply"])
    first = model.invoke("x")
    assert first.usage_metadata == usage
    assert first.response_metadata["model_name"] == "m1"
    assert first.response_metadata["model_provider"] == "scripted"
    second = model.invoke("x")
    assert second.usage_metadata is not None
    assert second.usage_metadata["output_tokens"] > 0
    assert second.usage_metadata["total_tokens"] == (
        second.usage_metadata["input_tokens"] + second.usage_metadata["output_tokens"]
    )


def test_errors_raised_as_given() -> None:
    model = ScriptedChatModel(steps=[RateLimitError("slow", retry_after=2.5), "ok"])
    with pytest.raises(RateLimitError) as info:
        model.invoke("x")
    assert info.value.retry_after == 2.5
    assert model.invoke("x").content == "ok"


def test_exhausted_modes() -> None:
    cycling = ScriptedChatModel(steps=["a", "b"], exhausted="cycle")
    assert [cycling.invoke("x").content for _ in range(5)] == ["a", "b", "a", "b", "a"]
    strict = ScriptedChatModel(steps=["a"], exhausted="raise")
    strict.invoke("x")
    with pytest.raises(IndexError):
        strict.invoke("x")
    strict.reset(["again"])
    assert strict.invoke("x").content == "again"
    assert strict.call_count == 1
    with pytest.raises(TypeError):
        ScriptedChatModel(steps=[42]).invoke("x")


def test_latency_sync_and_async() -> None:
    model = ScriptedChatModel(steps=[Step(reply="slow", latency=0.05)] * 2)
    start = time.perf_counter()
    model.invoke("x")
    assert time.perf_counter() - start >= 0.05

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(model.ainvoke("x"), asyncio.sleep(0))
        return time.perf_counter() - start

    assert asyncio.run(run()) >= 0.05


def test_streaming_rules() -> None:
    model = ScriptedChatModel(model="m", steps=[Step(reply="a b c", chunks=["a ", "b ", "c"])])
    chunks = list(model.stream("x"))
    assert [c.content for c in chunks] == ["a ", "b ", "c", ""]
    assert chunks[-1].chunk_position == "last"
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    assert sum(1 for c in chunks if c.response_metadata.get("model_name")) == 1
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert isinstance(full, AIMessageChunk)
    assert full.content == "a b c"
    assert full.response_metadata["model_provider"] == "scripted"


def test_stream_default_split_and_empty_stream() -> None:
    model = ScriptedChatModel(steps=["hello big world", Step(reply="", chunks=[])])
    assert [c.content for c in model.stream("x")] == ["hello ", "big ", "world", ""]
    empty = list(model.stream("x"))
    assert [c.content for c in empty] == [""]
    assert empty[-1].chunk_position == "last"


def test_stream_failure_after_n_chunks() -> None:
    model = ScriptedChatModel(steps=[Step(reply="a b c", error=ProviderError("cut"), fail_after=2)])
    got: list[str] = []

    def consume() -> None:
        for chunk in model.stream("x"):
            got.append(str(chunk.content))

    with pytest.raises(ProviderError):
        consume()
    assert got == ["a ", "b "]


async def test_astream_failure_and_delay() -> None:
    model = ScriptedChatModel(
        steps=[Step(reply="a b", chunk_delay=0.01, latency=0.01), Step(error=ProviderError("boom"), reply="x y")]
    )
    assert [c.content async for c in model.astream("x")] == ["a ", "b", ""]
    with pytest.raises(ProviderError):
        async for _ in model.astream("x"):
            pass


def test_tool_calls_invoke_and_stream() -> None:
    call = {"name": "add", "args": {"a": 1, "b": 2}, "id": "c1", "type": "tool_call"}
    model = ScriptedChatModel(steps=[AIMessage("", tool_calls=[call])] * 2)

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    bound = model.bind_tools([add], tool_choice="auto")
    assert bound.invoke("1+2").tool_calls[0]["args"] == {"a": 1, "b": 2}  # type: ignore[attr-defined]
    assert model.calls[0].kwargs["tools"][0]["function"]["name"] == "add"
    assert model.calls[0].kwargs["tool_choice"] == "auto"
    full = None
    for chunk in bound.stream("1+2"):
        full = chunk if full is None else full + chunk
    assert isinstance(full, AIMessageChunk)
    assert full.tool_calls[0]["name"] == "add"
    assert full.tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert full.response_metadata["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_structured_output_methods(method: str) -> None:
    model = ScriptedChatModel(steps=[JOKE])
    result = model.with_structured_output(Joke, method=method).invoke("joke")  # type: ignore[arg-type]
    assert result == Joke(setup="Why?", punchline="Because.")
    kwargs = model.calls[0].kwargs
    if method == "function_calling":
        assert kwargs["tool_choice"] == "Joke"
    elif method == "json_schema":
        assert kwargs["response_format"]["type"] == "json_schema"
    else:
        assert kwargs["response_format"] == {"type": "json_object"}


def test_structured_output_include_raw_and_errors() -> None:
    model = ScriptedChatModel(steps=["not json", JOKE])
    runnable = model.with_structured_output(Joke, include_raw=True, strict=True)
    bad = runnable.invoke("joke")
    assert isinstance(bad, dict)
    assert bad["parsed"] is None
    assert bad["parsing_error"] is not None
    good = runnable.invoke("joke")
    assert isinstance(good, dict)
    assert good["parsed"] == Joke(setup="Why?", punchline="Because.")
    assert model.calls[0].kwargs["response_format"]["json_schema"]["strict"] is True
    schema_dict = {"title": "J", "type": "object", "properties": {"setup": {"type": "string"}}}
    as_dict = ScriptedChatModel(steps=['{"setup": "s"}']).with_structured_output(schema_dict)
    assert as_dict.invoke("x") == {"setup": "s"}
    with pytest.raises(ValueError):
        model.with_structured_output(None)
    with pytest.raises(ValueError):
        model.with_structured_output(Joke, method="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        model.with_structured_output(Joke, unknown=1)


def test_forced_tool_variants() -> None:
    model = ScriptedChatModel(steps=[JOKE, JOKE, '["not", "a dict"]'])
    by_dict = model.bind_tools([Joke], tool_choice={"type": "function", "function": {"name": "Joke"}})
    assert by_dict.invoke("x").tool_calls[0]["name"] == "Joke"  # type: ignore[attr-defined]
    by_any = model.bind_tools([Joke], tool_choice=True)
    assert by_any.invoke("x").tool_calls[0]["args"]["setup"] == "Why?"  # type: ignore[attr-defined]
    not_dict = model.bind_tools([Joke], tool_choice="any").invoke("x")
    assert not_dict.tool_calls == []  # type: ignore[attr-defined]


def test_ls_params_and_identity() -> None:
    model = ScriptedChatModel(temperature=0.1, max_tokens=5, stop=["x"])
    params = model._get_ls_params(model="other")
    assert params["ls_model_name"] == "other"
    assert params["ls_provider"] == "scripted"
    assert params["ls_temperature"] == 0.1
    assert params["ls_max_tokens"] == 5
    assert params["ls_stop"] == ["x"]
    assert model._identifying_params["provider"] == "scripted"


def test_thread_safe_step_counter() -> None:
    model = ScriptedChatModel(steps=[str(i) for i in range(200)], exhausted="raise")
    seen: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            reply = str(model.invoke("x").content)
            with lock:
                seen.append(reply)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen, key=int) == [str(i) for i in range(200)]
