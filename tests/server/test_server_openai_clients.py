"""The OpenAI-compatible endpoint driven by real clients over TCP: the openai SDK, ChatOpenAI, curl.

The gateway serves ``build_app`` (what ``multigateway serve`` runs) in front of the
loopback STUB upstream; router ``main`` fails over from a deployment answering 503.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import openai
import pytest
from pydantic import BaseModel

from tests.server.conftest import Gateway


class City(BaseModel):
    """A city and its population."""

    name: str
    population: int


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def client(gateway: Gateway, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key or gateway.key, max_retries=0)


def test_sync_chat_fails_over_and_names_the_deployment(gateway: Gateway) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="failover", messages=[{"role": "user", "content": "hello there"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.model == "failover"
    assert raw.headers["x-multigateway-deployment"] == "backup"
    # every try counts: the 503s of the first deployment (retried within its policy), then the backup
    assert int(raw.headers["x-multigateway-attempts"]) == gateway.upstream.stats.by_model["down"] + 1
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        20,
        5,
        25,
    )


async def test_async_chat_and_stream_with_usage(gateway: Gateway) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0) as aclient:
        answer = await aclient.chat.completions.create(
            model="main", messages=[{"role": "user", "content": "async hi"}], temperature=0, max_tokens=20
        )
        assert answer.choices[0].message.content == "echo: async hi"
        stream = await aclient.chat.completions.create(
            model="main",
            messages=[{"role": "user", "content": "stream this please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage, finish = "", None, None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage is not None:
                usage = chunk.usage
    assert text == "echo: stream this please"
    assert finish == "stop"
    assert usage is not None
    assert usage.total_tokens == 25


def test_stream_without_include_usage_sends_no_usage_chunk(gateway: Gateway) -> None:
    chunks = list(
        client(gateway).chat.completions.create(model="clean", messages=[{"role": "user", "content": "x"}], stream=True)
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_tools_non_streamed_and_streamed(gateway: Gateway) -> None:
    c = client(gateway)
    answer = c.chat.completions.create(
        model="main",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    # the tool's result goes back as a tool message
    follow = c.chat.completions.create(
        model="main",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    assert follow.choices[0].message.content == "echo: Weather in Paris?"
    upstream_body = gateway.upstream.stats.bodies[-1]
    assert upstream_body["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}

    stream = c.chat.completions.create(
        model="main", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL], stream=True
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        for part in chunk.choices[0].delta.tool_calls or []:
            name += part.function.name or ""
            arguments += part.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Paris"}
    assert finish == "tool_calls"


def test_named_tool_choice_reaches_the_upstream(gateway: Gateway) -> None:
    client(gateway).chat.completions.create(
        model="clean",
        messages=[{"role": "user", "content": "x"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    sent = gateway.upstream.stats.bodies[-1]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_structured_output_json_schema_and_json_object(gateway: Gateway) -> None:
    c = client(gateway)
    parsed = c.chat.completions.parse(
        model="main", messages=[{"role": "user", "content": "A city"}], response_format=City
    )
    city = parsed.choices[0].message.parsed
    assert city == City(name="Paris", population=7)
    sent = gateway.upstream.stats.bodies[-1]["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "City"
    answer = c.chat.completions.create(
        model="clean", messages=[{"role": "user", "content": "json"}], response_format={"type": "json_object"}
    )
    assert json.loads(answer.choices[0].message.content or "") == {"ok": True}


def test_sampling_parameters_reach_the_upstream(gateway: Gateway) -> None:
    client(gateway).chat.completions.create(
        model="clean",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "x"}],
        temperature=0.3,
        top_p=0.9,
        max_completion_tokens=33,
        stop=["END"],
        seed=11,
        user="u-42",
    )
    sent = gateway.upstream.stats.bodies[-1]
    assert sent["temperature"] == 0.3
    assert sent["top_p"] == 0.9
    assert sent["max_tokens"] == 33
    assert sent["stop"] == ["END"]
    assert sent["seed"] == 11
    assert sent["user"] == "u-42"
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}


def test_models_lists_routers_and_models(gateway: Gateway) -> None:
    ids = [m.id for m in client(gateway).models.list()]
    assert ids == ["clean", "cut", "down", "failover", "main", "slow"]
    limited = gateway.new_key("only-main", models=["main"])
    assert [m.id for m in client(gateway, limited).models.list()] == ["main"]


def test_errors_in_openai_shape(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as wrong:
        client(gateway, "mg-not-a-key").chat.completions.create(
            model="main", messages=[{"role": "user", "content": "x"}]
        )
    assert wrong.value.status_code == 401
    assert wrong.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as unknown:
        client(gateway).chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert "serves: clean, cut, down, failover, main, slow" in str(unknown.value)
    with pytest.raises(openai.BadRequestError) as n2:
        client(gateway).chat.completions.create(model="main", messages=[{"role": "user", "content": "x"}], n=2)
    assert n2.value.param == "n"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client(gateway, gateway.new_key("main-only", models=["main"])).chat.completions.create(
            model="clean", messages=[{"role": "user", "content": "x"}]
        )
    assert "may not use 'clean'" in str(denied.value)


def test_chat_openai_invoke_stream_tools_structured(gateway: Gateway) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="main", base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0)
    answer = llm.invoke("hi from langchain")
    assert answer.content == "echo: hi from langchain"
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["total_tokens"] == 25
    streamed = "".join(str(c.content) for c in llm.stream("streamed words"))
    assert streamed == "echo: streamed words"
    called = llm.bind_tools([WEATHER_TOOL], tool_choice="get_weather").invoke("Weather?")
    assert called.tool_calls[0]["name"] == "get_weather"
    assert called.tool_calls[0]["args"] == {"city": "Paris"}
    city = llm.with_structured_output(City, method="json_schema").invoke("A city")
    assert city == City(name="Paris", population=7)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_chat_and_stream(gateway: Gateway) -> None:
    body = json.dumps({"model": "main", "messages": [{"role": "user", "content": "from curl"}]})
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            f"Authorization: Bearer {gateway.key}",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            gateway.url + "/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert json.loads(out)["choices"][0]["message"]["content"] == "echo: from curl"
    stream_body = json.dumps({"model": "main", "stream": True, "messages": [{"role": "user", "content": "curl"}]})
    out = subprocess.run(
        ["curl", "-sSN", "-H", f"x-api-key: {gateway.key}", "-d", stream_body, gateway.url + "/v1/chat/completions"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    events = [line[6:] for line in out.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "echo: curl"


def test_a_stream_names_the_deployment_that_served_it_after_failover(gateway: Gateway) -> None:
    before = gateway.upstream.stats.by_model["down"]
    with client(gateway).chat.completions.with_streaming_response.create(
        model="failover", messages=[{"role": "user", "content": "stream over"}], stream=True
    ) as raw:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
        headers = raw.headers
    assert text == "echo: stream over"
    assert headers["x-multigateway-deployment"] == "backup"
    # the first deployment's failed tries, then the backup's
    assert int(headers["x-multigateway-attempts"]) == gateway.upstream.stats.by_model["down"] - before + 1
    assert int(headers["x-multigateway-attempts"]) >= 2
