"""Hostile upstream answers through the lean non-streamed path and the full path, side by side.

A loopback STUB upstream (below; OpenAI's Chat Completions wire format) answers each
model its own hostile way. Two real servers (uvicorn on loopback ports) run the same
config: one with the lean path (``server/passthrough.py``), one with
``MULTIGATEWAY_SERVE_FULL_PATH=1``. What a client gets must not depend on the path:

* ``echo-key``: a 200 whose extra field quotes the ``Authorization`` header it got
  (the lean path passed the upstream's JSON on verbatim: the key reached the client);
* ``refuse``: structured output refused (``message.refusal``): the lean path passed a
  200 on and skipped the router's content policy; the full path answered 500;
* ``tool-json``: structured output answered with a tool call (as a deployment that does
  structured output by function calling): the lean path passed ``tool_calls`` on where
  the client asked for JSON content.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from langchain_multigateway.server import build_app
from langchain_multigateway.server.gateway import FULL_PATH_ENV
from tests.server.conftest import MASTER_KEY, ThreadedServer

pytestmark = pytest.mark.filterwarnings("ignore:No price known")  # the stub's models are unpriced
UPSTREAM_KEY = "sk-planted-" + "u9" * 20
USAGE = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "count", "schema": SCHEMA}}


def _completion(model: str, message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": USAGE,
        **extra,
    }


def hostile_upstream() -> Starlette:
    async def completions(request: Request) -> Response:
        body = await request.json()
        model = body["model"]
        if model == "echo-key":  # an upstream that quotes the credential it got in a debug field
            debug = {"authorization": request.headers.get("authorization")}
            return JSONResponse(_completion(model, {"role": "assistant", "content": "fine"}, debug=debug))
        if model == "refuse":
            return JSONResponse(_completion(model, {"role": "assistant", "content": None, "refusal": "I will not."}))
        if model == "tool-json":
            call = {"id": "call_1", "type": "function", "function": {"name": "count", "arguments": '{"n": 7}'}}
            return JSONResponse(_completion(model, {"role": "assistant", "content": None, "tool_calls": [call]}))
        return JSONResponse(_completion(model, {"role": "assistant", "content": '{"n": 3}'}))

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def _config(directory: Path, url: str) -> Path:
    models = ["echo-key", "refuse", "tool-json", "answer"]
    lines = ["models:"]
    lines += [f'  {m}: {{model: "openai:{m}", base_url: "{url}/v1", api_key: "{UPSTREAM_KEY}"}}' for m in models]
    lines += [
        "routers:",
        "  polite:",  # a refusal goes to the next deployment
        "    failover: {content_policy: next}",
        "    deployments:",
        "      - {model: refuse, name: refuser}",
        "      - {model: answer, name: answerer}",
    ]
    path = directory / "gateway.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``{"lean": url, "full": url}``: the same config served down each path."""
    directory = tmp_path_factory.mktemp("hostile")
    mp = pytest.MonkeyPatch()
    mp.setenv("MULTIGATEWAY_MASTER_KEY", MASTER_KEY)
    try:
        with ThreadedServer(hostile_upstream()) as upstream:
            config = _config(directory, upstream.url)
            apps = {}
            for path in ("lean", "full"):
                if path == "full":
                    mp.setenv(FULL_PATH_ENV, "1")  # read when the app is built
                apps[path] = build_app(config, keys_path=directory / f"keys-{path}.sqlite3")
            mp.delenv(FULL_PATH_ENV)
            with ThreadedServer(apps["lean"]) as lean, ThreadedServer(apps["full"]) as full:
                yield {"lean": lean.url, "full": full.url}
    finally:
        mp.undo()
    assert os.environ.get(FULL_PATH_ENV) is None


def ask(url: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "count"}], **extra}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=60)


@pytest.mark.parametrize("path", ["lean", "full"])
def test_an_upstream_quoting_its_key_in_an_extra_field_never_passes_it_to_the_client(
    servers: dict[str, str], path: str
) -> None:
    response = ask(servers[path], "echo-key")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "fine"
    assert UPSTREAM_KEY not in response.text
    assert UPSTREAM_KEY[-12:] not in response.text


@pytest.mark.parametrize("path", ["lean", "full"])
def test_a_structured_output_refusal_is_a_typed_400_naming_the_refusal(servers: dict[str, str], path: str) -> None:
    response = ask(servers[path], "refuse", response_format=JSON_SCHEMA)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "model_refusal"
    assert "I will not." in error["message"]
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("path", ["lean", "full"])
def test_a_refusal_goes_to_the_next_deployment_when_the_router_says_so(servers: dict[str, str], path: str) -> None:
    response = ask(servers[path], "polite", response_format=JSON_SCHEMA)
    assert response.status_code == 200, response.text
    assert response.headers["x-multigateway-deployment"] == "answerer"
    assert response.headers["x-multigateway-attempts"] == "2"
    assert response.json()["choices"][0]["message"]["content"] == '{"n": 3}'


@pytest.mark.parametrize("path", ["lean", "full"])
def test_structured_output_answered_with_a_tool_call_reaches_the_client_as_json_content(
    servers: dict[str, str], path: str
) -> None:
    response = ask(servers[path], "tool-json", response_format=JSON_SCHEMA)
    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    assert message.get("tool_calls") in (None, [])
    assert message["content"] == '{"n": 7}'
