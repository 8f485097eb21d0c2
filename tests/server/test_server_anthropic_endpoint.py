"""``POST /v1/messages`` in Anthropic's documented wire format, over the same routers.

Driven by raw httpx (JSON and the SSE event sequence Anthropic documents) and by this
package's ``AnthropicChatModel`` pointed at the gateway; upstream is the loopback STUB.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from langchain_multigateway import AnthropicChatModel
from tests.server.conftest import Gateway

WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def headers(gateway: Gateway) -> dict[str, str]:
    return {"x-api-key": gateway.key, "anthropic-version": "2023-06-01", "content-type": "application/json"}


def events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    event = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            assert data["type"] == event  # each event's data names the same type
            out.append((event, data))
    return out


def test_message_with_system_and_usage(gateway: Gateway) -> None:
    body = {
        "model": "main",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello anthropic"}]}],
        "stop_sequences": ["END"],
    }
    response = httpx.post(gateway.url + "/v1/messages", json=body, headers=headers(gateway))
    assert response.status_code == 200
    message = response.json()
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": "echo: hello anthropic"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"] == {"input_tokens": 20, "output_tokens": 5}
    assert response.headers["x-multigateway-deployment"] == "clean"
    sent = gateway.upstream.stats.bodies[-1]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["max_tokens"] == 50
    assert sent["stop"] == ["END"]


def test_stream_event_sequence(gateway: Gateway) -> None:
    body = {"model": "main", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "stream me"}]}
    with httpx.stream("POST", gateway.url + "/v1/messages", json=body, headers=headers(gateway)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        seen = events(response)
    kinds = [kind for kind, _ in seen]
    assert kinds[0] == "message_start"
    assert kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    text = "".join(data["delta"]["text"] for kind, data in seen if kind == "content_block_delta")
    assert text == "echo: stream me"
    delta = seen[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == 5


def test_tools_tool_use_and_tool_result_round_trip(gateway: Gateway) -> None:
    body = {
        "model": "main",
        "max_tokens": 100,
        "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    message = httpx.post(gateway.url + "/v1/messages", json=body, headers=headers(gateway)).json()
    assert message["stop_reason"] == "tool_use"
    use = message["content"][0]
    assert use["type"] == "tool_use"
    assert use["name"] == "get_weather"
    assert use["input"] == {"city": "Paris"}
    follow = {
        "model": "main",
        "max_tokens": 100,
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [use]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "sunny"}]},
        ],
    }
    httpx.post(gateway.url + "/v1/messages", json=follow, headers=headers(gateway)).raise_for_status()
    sent = gateway.upstream.stats.bodies[-1]["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[2] == {"role": "tool", "tool_call_id": use["id"], "content": "sunny"}


def test_streamed_tool_use_blocks(gateway: Gateway) -> None:
    body = {
        "model": "main",
        "max_tokens": 100,
        "stream": True,
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "Weather?"}],
    }
    with httpx.stream("POST", gateway.url + "/v1/messages", json=body, headers=headers(gateway)) as response:
        seen = events(response)
    start = next(data for kind, data in seen if kind == "content_block_start")
    assert start["content_block"]["type"] == "tool_use"
    assert start["content_block"]["name"] == "get_weather"
    partial = "".join(data["delta"]["partial_json"] for kind, data in seen if kind == "content_block_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert seen[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_errors_in_anthropic_shape(gateway: Gateway) -> None:
    no_max = {"model": "main", "messages": [{"role": "user", "content": "x"}]}
    response = httpx.post(gateway.url + "/v1/messages", json=no_max, headers=headers(gateway))
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: required, a positive integer (got None)"},
    }
    wrong = httpx.post(gateway.url + "/v1/messages", json=no_max, headers={"x-api-key": "mg-wrong"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"


def test_anthropic_chat_model_pointed_at_the_gateway(gateway: Gateway) -> None:
    llm = AnthropicChatModel(model="main", base_url=gateway.url, api_key=gateway.key, max_tokens=64, max_retries=0)
    answer = llm.invoke("hi from the anthropic model")
    assert answer.content == "echo: hi from the anthropic model"
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["output_tokens"] == 5
    streamed = "".join(str(c.content) for c in llm.stream("stream it"))
    assert streamed == "echo: stream it"
    called = llm.bind_tools([WEATHER]).invoke("Weather?")
    assert called.tool_calls[0]["name"] == "get_weather"
    assert called.tool_calls[0]["args"] == {"city": "Paris"}


def test_upstream_failing_mid_stream_ends_with_an_error_event(gateway: Gateway) -> None:
    body = {"model": "cut", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream("POST", gateway.url + "/v1/messages", json=body, headers=headers(gateway)) as response:
        assert response.status_code == 200
        seen = events(response)
    kinds = [kind for kind, _ in seen]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-1] == "error"
    assert "message_stop" not in kinds
    text = "".join(data["delta"]["text"] for kind, data in seen if kind == "content_block_delta")
    assert text == "0 1 2 "
    assert seen[-1][1]["error"]["type"] in ("api_error", "timeout_error")
