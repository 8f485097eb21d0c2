"""Live tier: the gateway in front of the real llama.cpp server (``local-llm start``).

Runs when ``MULTIGATEWAY_SERVER_LIVE_URL`` names a running llama.cpp server's ``/v1``
URL (for example ``http://127.0.0.1:8088/v1``); otherwise skipped, saying why. A router
fails over from a dead port to the real server; the openai SDK and httpx (Anthropic's
format) call the gateway; answers are real model output (checked for shape, not sense).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from langchain_multigateway.server import KeyStore, build_app
from tests.server.conftest import ThreadedServer, free_port

LIVE_URL = os.environ.get("MULTIGATEWAY_SERVER_LIVE_URL", "").rstrip("/")


def _skip_reason() -> str | None:
    if not LIVE_URL:
        return "MULTIGATEWAY_SERVER_LIVE_URL is not set: no llama.cpp server to put the gateway in front of"
    try:
        httpx.get(LIVE_URL + "/models", timeout=5)
    except httpx.HTTPError as exc:
        return f"{LIVE_URL} is not reachable: {type(exc).__name__}"
    return None


SKIP_REASON = _skip_reason()
pytestmark = [pytest.mark.live, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    directory: Path = tmp_path_factory.mktemp("live")
    dead = f"http://127.0.0.1:{free_port()}/v1"
    (directory / "gateway.yaml").write_text(
        f"""
models:
  dead: {{model: "openai:gemma", base_url: "{dead}", api_key: none}}
  gemma: {{model: "openai:gemma", base_url: "{LIVE_URL}", api_key: none, temperature: 0}}
routers:
  main:
    deployments: [{{model: dead}}, {{model: gemma}}]
"""
    )
    app = build_app(directory / "gateway.yaml", keys_path=directory / "keys.sqlite3", ledger_path=None)
    store = KeyStore(directory / "keys.sqlite3")
    secret, _ = store.create("live")
    store.close()
    with ThreadedServer(app) as server:
        yield server.url, secret


def test_chat_stream_and_tools_through_the_gateway(live: tuple[str, str]) -> None:
    url, key = live
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="main", messages=[{"role": "user", "content": "Say hello."}], max_tokens=20
    )
    answer = raw.parse()
    assert answer.choices[0].message.content
    assert raw.headers["x-multigateway-deployment"] == "gemma"
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="main",
            messages=[{"role": "user", "content": "Count to three."}],
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    called = client.chat.completions.create(
        model="main",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[tool],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=150,
    )
    call = called.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)


def test_anthropic_format_through_the_gateway(live: tuple[str, str]) -> None:
    url, key = live
    body = {"model": "main", "max_tokens": 20, "messages": [{"role": "user", "content": "Say hi."}]}
    message = httpx.post(url + "/v1/messages", json=body, headers={"x-api-key": key}, timeout=60).json()
    assert message["content"][0]["type"] == "text"
    assert message["usage"]["output_tokens"] > 0
