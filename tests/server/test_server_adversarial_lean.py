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
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from langchain_multigateway.server import build_app
from langchain_multigateway.server.gateway import FULL_PATH_ENV
from tests.server.conftest import MASTER_KEY, ThreadedServer, Upstream

pytestmark = pytest.mark.filterwarnings("ignore:No price known")  # the stub's models are unpriced
UPSTREAM_KEY = "sk-planted-" + "u9" * 20
PROJECT = "proj_adversarial"
ORGANIZATION = "org-adversarial"
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
        if model == "moved" and request.url.path.startswith("/v1/"):  # the API moved: a permanent redirect
            return Response(status_code=308, headers={"location": "/v2/chat/completions"})
        if model == "echo-key":  # an upstream that quotes the credential it got in a debug field
            debug = {"authorization": request.headers.get("authorization")}
            return JSONResponse(_completion(model, {"role": "assistant", "content": "fine"}, debug=debug))
        if model == "headers":  # what the upstream was told about the caller's account
            seen = {name: request.headers.get(name) for name in ("openai-project", "openai-organization")}
            return JSONResponse(_completion(model, {"role": "assistant", "content": orjson.dumps(seen).decode()}))
        if model == "refuse":
            return JSONResponse(_completion(model, {"role": "assistant", "content": None, "refusal": "I will not."}))
        if model == "tool-json":
            call = {"id": "call_1", "type": "function", "function": {"name": "count", "arguments": '{"n": 7}'}}
            return JSONResponse(_completion(model, {"role": "assistant", "content": None, "tool_calls": [call]}))
        return JSONResponse(_completion(model, {"role": "assistant", "content": '{"n": 3}'}))

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v2/chat/completions", completions, methods=["POST"]),
        ]
    )


def _config(directory: Path, url: str) -> Path:
    models = ["echo-key", "refuse", "tool-json", "answer", "headers", "moved"]
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
    mp.setenv("OPENAI_PROJECT_ID", PROJECT)  # the openai SDK sends it as OpenAI-Project
    mp.setenv("OPENAI_ORG_ID", ORGANIZATION)
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


@pytest.mark.parametrize("path", ["lean", "full"])
def test_the_upstream_is_told_the_project_and_organization_from_the_environment(
    servers: dict[str, str], path: str
) -> None:
    response = ask(servers[path], "headers")
    assert response.status_code == 200, response.text
    seen = orjson.loads(response.json()["choices"][0]["message"]["content"])
    assert seen == {"openai-project": PROJECT, "openai-organization": ORGANIZATION}


@pytest.mark.parametrize("path", ["lean", "full"])
def test_an_upstream_that_redirects_is_followed_as_the_sdk_follows_it(servers: dict[str, str], path: str) -> None:
    response = ask(servers[path], "moved")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == '{"n": 3}'


# ---------------------------------------------------------------- hang-ups at each phase
@pytest.fixture(scope="module")
def gated(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Upstream]]:
    """A lean-path server whose router ``one-at-a-time`` has one slot (max_concurrency 1) on the
    STUB's ``slow`` model (answers after 5 s unless the caller hangs up)."""
    directory = tmp_path_factory.mktemp("gated")
    base = f"{upstream.url}/v1"
    config = directory / "gateway.yaml"
    config.write_text(
        "models:\n"
        f'  slow: {{model: "openai:slow", base_url: "{base}", api_key: none}}\n'
        f'  clean: {{model: "openai:clean", base_url: "{base}", api_key: none}}\n'
        "routers:\n"
        "  one-at-a-time:\n"
        "    deployments:\n"
        "      - {model: slow, name: gated-slow, max_concurrency: 1}\n"
    )
    app = build_app(config, keys_path=directory / "keys.sqlite3", require_key=False)
    with ThreadedServer(app) as server:
        yield server.url, upstream


def _hang_up_after(url: str, body: dict[str, Any], sent: Callable[[], bool]) -> None:
    """Send ``body`` on a raw connection, wait until ``sent()`` holds, then hang up."""
    raw = orjson.dumps(body)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(raw)}\r\n\r\n".encode()
            + raw
        )
        deadline = time.monotonic() + 20
        while not sent():
            assert time.monotonic() < deadline, "the call never reached the phase under test"
            time.sleep(0.02)


def _router_health(url: str) -> dict[str, Any]:
    ready = httpx.get(url + "/health/readiness", timeout=30).json()
    return dict(ready["routers"]["one-at-a-time"]["deployments"]["gated-slow"])


def test_a_call_queued_for_a_slot_whose_client_leaves_holds_nothing(gated: tuple[str, Upstream]) -> None:
    url, upstream = gated
    body = {"model": "one-at-a-time", "messages": [{"role": "user", "content": "wait"}]}
    before = upstream.counts()
    with ThreadPoolExecutor(1) as pool:
        # The first call takes the slot (the upstream answers it after 5 s) ...
        first = pool.submit(httpx.post, url + "/v1/chat/completions", json=body, timeout=60)
        deadline = time.monotonic() + 20
        while upstream.counts()["calls_open"] <= before["calls_open"]:
            assert time.monotonic() < deadline, "the first call never reached the upstream"
            time.sleep(0.02)
        # ... the second queues for it, and its client hangs up while it waits.
        _hang_up_after(url, body, lambda: _router_health(url)["waiting"] == 1)
        deadline = time.monotonic() + 20
        while _router_health(url)["waiting"] != 0:
            assert time.monotonic() < deadline, "the abandoned call is still queued for the slot"
            time.sleep(0.05)
        assert first.result().status_code == 200
    health = _router_health(url)
    assert (health["in_flight"], health["waiting"]) == (0, 0)
    after = upstream.counts()["by_model"]
    assert after.get("slow", 0) - before["by_model"].get("slow", 0) == 1  # the abandoned call never reached it
