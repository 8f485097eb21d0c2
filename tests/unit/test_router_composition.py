"""The router inside LangChain: LCEL, batch, with_fallbacks, cache, agents, events, structured output, config."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_multigateway._retry import RetryPolicy
from langchain_multigateway.errors import ProviderError
from langchain_multigateway.routing import Capabilities, Deployment, RoutingChatModel, routers_from_config
from langchain_multigateway.testing import ScriptedChatModel, Step

FAST = RetryPolicy(max_attempts=1)


@tool
def get_weather(city: str) -> str:
    """Weather in a city."""
    return f"sunny in {city}"


class Joke(BaseModel):
    setup: str
    punchline: str


JOKE = '{"setup": "Why?", "punchline": "Because."}'


def dep(name: str, steps: list[Any] | None = None, **kwargs: Any) -> Deployment:
    kwargs.setdefault("retry_policy", FAST)
    model = kwargs.pop("model", None) or ScriptedChatModel(model=name, steps=steps or [], default_reply=f"from {name}")
    return Deployment(model=model, name=name, **kwargs)


def test_lcel_chain() -> None:
    router = RoutingChatModel(deployments=[dep("a", [ProviderError("x")]), dep("b", priority=1)])
    chain = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")]) | router | StrOutputParser()
    assert chain.invoke({"q": "hi"}) == "from b"
    received = router.deployment("b").model.calls[0].messages  # type: ignore[attr-defined]
    assert [m.type for m in received] == ["system", "human"]


async def test_batch_and_abatch_with_max_concurrency() -> None:
    slow = [Step(reply=f"r{i}", latency=0.02) for i in range(20)]
    router = RoutingChatModel(deployments=[dep("a", slow, max_concurrency=2)])
    out = router.batch([f"q{i}" for i in range(5)], config={"max_concurrency": 3})
    assert sorted(str(m.content) for m in out) == [f"r{i}" for i in range(5)]
    aout = await router.abatch([f"q{i}" for i in range(8)], config={"max_concurrency": 8})
    assert len(aout) == 8
    assert router.health()["a"].in_flight == 0


def test_under_with_fallbacks() -> None:
    router = RoutingChatModel(
        deployments=[dep("a", [ProviderError("x")] * 2), dep("b", [ProviderError("y")] * 2, priority=1)]
    )
    backup = ScriptedChatModel(steps=["from backup"], exhausted="cycle")
    chain = router.with_fallbacks([backup])
    assert chain.invoke("hi").content == "from backup"
    assert chain.batch(["hi"])[0].content == "from backup"


def test_langchain_cache_sets_cached_flag() -> None:
    router = RoutingChatModel(deployments=[dep("a", ["first answer", "second answer"])], cache=InMemoryCache())
    first = router.invoke("same question")
    second = router.invoke("same question")
    assert first.content == second.content == "first answer"
    assert first.response_metadata["cached"] is False
    assert second.response_metadata["cached"] is True
    assert second.response_metadata["deployment"] == "a"
    assert router.deployment("a").model.call_count == 1  # type: ignore[attr-defined]
    third = router.invoke("same question")
    assert third.response_metadata["cached"] is True


def _tool_call(city: str, call_id: str) -> AIMessage:
    return AIMessage(
        "", tool_calls=[{"name": "get_weather", "args": {"city": city}, "id": call_id, "type": "tool_call"}]
    )


def test_agent_loop_through_router() -> None:
    from langchain.agents import create_agent

    flaky = dep("flaky", [ProviderError("down")] * 10)
    steady = dep("steady", [_tool_call("Paris", "c1"), "It is sunny in Paris."], priority=1)
    router = RoutingChatModel(deployments=[flaky, steady])
    agent = create_agent(router, tools=[get_weather])
    result = agent.invoke({"messages": [HumanMessage("Weather in Paris?")]})
    messages = result["messages"]
    assert messages[-1].content == "It is sunny in Paris."
    assert any(m.type == "tool" and m.content == "sunny in Paris" for m in messages)
    calls = steady.model.calls  # type: ignore[attr-defined]
    assert calls[0].kwargs["tools"][0]["function"]["name"] == "get_weather"
    assert messages[1].response_metadata["deployment"] == "steady"


async def test_astream_events_with_tools_fails_over() -> None:
    first = dep("first", [Step(reply="x", error=ProviderError("boom"), fail_after=0)])
    second = dep("second", [_tool_call("Oslo", "c9")], priority=1)
    router = RoutingChatModel(deployments=[first, second]).bind_tools([get_weather], tool_choice="auto")
    streamed: list[AIMessageChunk] = []
    ended: Any = None
    async for event in router.astream_events("Weather in Oslo?", version="v2"):
        if event["event"] == "on_chat_model_stream":
            streamed.append(event["data"]["chunk"])
        elif event["event"] == "on_chat_model_end":
            ended = event["data"]["output"]
    assert streamed
    assert ended.tool_calls[0]["args"] == {"city": "Oslo"}
    assert ended.response_metadata["deployment"] == "second"
    assert second.model.calls[0].kwargs["tool_choice"] == "auto"  # type: ignore[attr-defined]


class FunctionCallingOnly(ScriptedChatModel):
    structured_output_methods = ("function_calling",)  # type: ignore[assignment]


class PlainModel(ScriptedChatModel):
    """A model with no gateway hooks: the router uses its own with_structured_output."""

    _json_schema_request = None  # type: ignore[assignment]
    _json_mode_request = None  # type: ignore[assignment]


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_structured_output_across_heterogeneous_deployments(method: str) -> None:
    tools_only = dep("tools-only", model=FunctionCallingOnly(model="t", steps=[JOKE]))
    full = dep("full", [ProviderError("x")], priority=1)
    plain = dep("plain", model=PlainModel(model="p", steps=[JOKE]), priority=2)
    router = RoutingChatModel(deployments=[tools_only, full, plain])
    result = router.with_structured_output(Joke, method=method, include_raw=True).invoke("joke")  # type: ignore[arg-type]
    assert isinstance(result, dict)
    assert result["parsed"] == Joke(setup="Why?", punchline="Because.")
    served = result["raw"].response_metadata["deployment"]
    assert served == ("tools-only" if method == "function_calling" else "plain")
    if method == "function_calling":
        assert tools_only.model.calls[0].kwargs["tool_choice"] == "Joke"  # type: ignore[attr-defined]
    else:
        assert tools_only.model.call_count == 0  # type: ignore[attr-defined]


async def test_structured_output_async_and_streamed() -> None:
    router = RoutingChatModel(
        deployments=[dep("a", [JOKE, JOKE, JOKE]), dep("p", model=PlainModel(model="p", steps=[JOKE]))]
    )
    runnable = router.with_structured_output(Joke)
    assert await runnable.ainvoke("x") == Joke(setup="Why?", punchline="Because.")
    assert list(runnable.stream("x"))[-1] == Joke(setup="Why?", punchline="Because.")
    chunks = [c async for c in router.bind(structured_output={"schema": Joke, "method": "json_schema"}).astream("x")]
    assert "".join(str(c.content) for c in chunks) == JOKE
    only_plain = RoutingChatModel(deployments=[dep("p", model=PlainModel(model="p", steps=[JOKE, JOKE]))])
    parsed = [r async for r in only_plain.with_structured_output(Joke).astream("x")]
    assert parsed[-1] == Joke(setup="Why?", punchline="Because.")
    assert list(only_plain.with_structured_output(Joke).stream("x"))[-1].punchline == "Because."  # type: ignore[union-attr]


def test_structured_output_validation() -> None:
    router = RoutingChatModel(deployments=[dep("t", model=FunctionCallingOnly(model="t"))])
    with pytest.raises(ValueError, match="No deployment supports"):
        router.with_structured_output(Joke, method="json_schema")
    with pytest.raises(ValueError):
        router.with_structured_output(None)
    with pytest.raises(ValueError):
        router.with_structured_output(Joke, method="yaml")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        router.with_structured_output(Joke, method="function_calling", extra=True)
    no_tools = RoutingChatModel(
        deployments=[dep("n", capabilities=Capabilities(tools=False, json_schema=False, json_mode=False))]
    )
    for method in ("function_calling", "json_schema", "json_mode"):
        with pytest.raises(ValueError):
            no_tools.with_structured_output(Joke, method=method)  # type: ignore[arg-type]


def test_bind_tools_binding_without_runnable_binding() -> None:
    class OddBinder(ScriptedChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return super().bind_tools(tools, **kwargs) | (lambda m: m)

    router = RoutingChatModel(deployments=[dep("odd", model=OddBinder(model="odd", steps=[_tool_call("Rome", "c")]))])
    msg = router.bind_tools([get_weather]).invoke("weather?")
    assert msg.tool_calls[0]["args"] == {"city": "Rome"}  # type: ignore[attr-defined]
    router.deployment("odd").model.reset([_tool_call("Rome", "c")])  # type: ignore[attr-defined]
    chunks = list(router.bind_tools([get_weather]).stream("weather?"))
    assert chunks[-1].response_metadata["deployment"] == "odd"
    router.deployment("odd").model.reset([_tool_call("Rome", "c")])  # type: ignore[attr-defined]
    assert asyncio.run(router.bind_tools([get_weather]).ainvoke("w")).tool_calls  # type: ignore[attr-defined]


def test_from_models_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_multigateway.config import load_config
    from langchain_multigateway.registry import _registry, get_provider, register_provider

    # "scripted" is built in: replace it for this test and put the built-in entry back afterwards
    # (unregistering it broke every later test that names a scripted model in a config)
    builtin = get_provider("scripted")
    register_provider("scripted", ScriptedChatModel, default_model="scripted-model")
    try:
        router = RoutingChatModel.from_models(["scripted:m1", ScriptedChatModel(model="m2")], strategy="round_robin")
        assert [d.name for d in router.deployments] == ["scripted:m1", "scripted:m2"]
        config = load_config(
            {
                "models": {"fast": {"model": "scripted:fast-one"}},
                "routers": {
                    "main": {
                        "strategy": {"name": "balanced", "cost": 2},
                        "breaker": {"failure_threshold": 2, "cooldown": 5},
                        "failover": {"content_policy": "raise"},
                        "max_wait": 1,
                        "deployments": [
                            {"model": "fast", "name": "primary", "rpm": 10, "tags": ["eu"]},
                            {"model": "scripted:other", "params": {"default_reply": "hey"}, "priority": 1},
                            "scripted:third",
                        ],
                    },
                    "simple": {"deployments": ["scripted:x"]},
                },
            }
        )
        routers = routers_from_config(config)
        main = routers["main"]
        assert [d.name for d in main.deployments] == ["primary", "scripted:third", "scripted:other"]
        assert main.deployment("primary").rpm == 10
        assert main.failover.content_policy == "raise"
        assert main.max_wait == 1
        assert main.invoke("x", routing_tags=["eu"]).response_metadata["deployment"] == "primary"
        assert routers["simple"].invoke("x").content
        from langchain_multigateway.errors import ConfigurationError

        bad_cases: list[dict[str, Any]] = [
            {"routers": {"r": "nope"}},
            {"routers": {"r": {"deployments": []}}},
            {"routers": {"r": {"deployments": ["scripted:x"], "colour": "red"}}},
            {"routers": {"r": {"deployments": ["scripted:x"], "strategy": "fastest"}}},
            {"routers": {"r": {"deployments": ["scripted:x"], "strategy": {"name": "nope"}}}},
            {"routers": {"r": {"deployments": [{"model": "undeclared"}]}}},
            {"routers": {"r": {"deployments": [42]}}},
            {"routers": {"r": {"deployments": [{"model": "scripted:x", "rpm": -1}]}}},
            {"routers": {"r": {"deployments": ["scripted:x"], "failover": {"content_policy": "maybe"}}}},
            {"routers": {"r": {"deployments": ["scripted:x"], "max_wait": -3}}},
        ]
        for raw in bad_cases:
            with pytest.raises(ConfigurationError):
                routers_from_config(load_config(raw))
        ordered_with_options = load_config(
            {"routers": {"r": {"deployments": ["scripted:x"], "strategy": {"name": "weighted", "seed": 3}}}}
        )
        assert routers_from_config(ordered_with_options)["r"].invoke("x").content
    finally:
        _registry().register("scripted", builtin.target, default_model=builtin.default_model, origin=builtin.origin)


def test_structured_parser_edges() -> None:
    from langchain_core.exceptions import OutputParserException
    from langchain_core.outputs import Generation

    from langchain_multigateway.routing.structured import StructuredOutputParser, schema_name

    assert schema_name(None) == "response"
    assert schema_name(Joke) == "Joke"
    parser = StructuredOutputParser(target_schema=Joke)
    assert parser.parse(JOKE) == Joke(setup="Why?", punchline="Because.")
    assert parser.parse_result([Generation(text=JOKE)]) == Joke(setup="Why?", punchline="Because.")
    with pytest.raises(OutputParserException):
        parser.parse('{"setup": "only half"}')
    with pytest.raises(OutputParserException):
        parser.parse("no json here")
