"""Streams through the lean path (``server/passthrough_stream.py``) and the full path, side by side.

Two real servers (uvicorn on loopback ports) serve the same config in front of the
loopback STUB upstream (``upstream_stub.py``, OpenAI's Chat Completions wire format):
one by default (streams go to the router's engine directly), one with
``MULTIGATEWAY_SERVE_FULL_PATH=1`` (streams go through ``RoutingChatModel.astream``).
A client must get the same events from both, chunk for chunk (only ids and timestamps,
which are fresh per response, are set aside), the same headers and the same ledger rows;
and a client hanging up mid-stream must leave nothing held on the lean path.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from langchain_multigateway.routing import RoutingChatModel
from langchain_multigateway.server import KeyStore, build_app
from langchain_multigateway.server.gateway import FULL_PATH_ENV
from tests.server.conftest import MASTER_KEY, ThreadedServer, Upstream, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:No price known")  # the stub's models are unpriced

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


@dataclass
class Served:
    url: str
    directory: Path
    path: str
    keys: KeyStore

    def rows(self) -> list[tuple[Any, ...]]:
        """The ledger's calls, oldest first, without what differs per call (ids, times, latency)."""
        ledger = self.directory / f"usage-{self.path}.sqlite3"
        if not ledger.exists():
            return []
        with sqlite3.connect(ledger) as db:
            found = db.execute(
                "SELECT c.model, c.deployment, c.outcome, c.error_type, c.input_tokens, c.output_tokens, "
                "c.total_tokens, (SELECT group_concat(a.deployment) FROM call_attempts a WHERE a.call_id = c.id) "
                "FROM calls c ORDER BY c.id"
            ).fetchall()
        return [tuple(row) for row in found]

    def flushed(self) -> list[tuple[Any, ...]]:
        """The ledger's calls once every call made so far is in: the ledger writes from its own thread, in
        order, so once a plain call made now (with a key of its own, so its row is known) is in, so is every
        earlier row (a stream is settled before its last event is sent). The plain call's row is left out."""
        secret, key = self.keys.create(f"flush-{time.monotonic_ns()}")
        headers = {"authorization": f"Bearer {secret}"}
        plain = httpx.post(self.url + "/v1/chat/completions", json=ask("clean"), headers=headers, timeout=30)
        assert plain.status_code == 200, plain.text
        ledger = self.directory / f"usage-{self.path}.sqlite3"

        def written() -> bool:
            with sqlite3.connect(ledger) as db:
                return db.execute("SELECT 1 FROM call_tags WHERE tag = ?", (key.tag,)).fetchone() is not None

        assert wait_for(written), "the ledger never recorded the plain call"
        rows = self.rows()
        assert rows[-1][:3] == ("clean", "clean", "ok")
        return rows[:-1]

    def health(self, router: str) -> dict[str, Any]:
        ready = httpx.get(self.url + "/health/readiness", timeout=30).json()
        return dict(ready["routers"][router]["deployments"])


def _config(directory: Path, upstream_url: str) -> Path:
    base = f"{upstream_url}/v1"
    path = directory / "gateway.yaml"
    path.write_text(
        "models:\n"
        f'  clean: {{model: "openai:clean", base_url: "{base}", api_key: none}}\n'
        f'  down: {{model: "openai:down", base_url: "{base}", api_key: none}}\n'
        f'  slow: {{model: "openai:slow", base_url: "{base}", api_key: none}}\n'
        f'  cut: {{model: "openai:cut", base_url: "{base}", api_key: none}}\n'
        "routers:\n"
        "  main:\n"
        "    breaker: {failure_threshold: 100000, cooldown: 1}\n"  # every call tries `down` first, as the last did
        "    deployments:\n"
        "      - {model: down, name: down}\n"
        "      - {model: clean, name: clean}\n"
    )
    return path


@pytest.fixture(scope="module")
def servers(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    """``{"lean": ..., "full": ...}``: the same config served down each path, each with its own ledger."""
    directory = tmp_path_factory.mktemp("lean-stream")
    config = _config(directory, upstream.url)
    mp = pytest.MonkeyPatch()
    mp.setenv("MULTIGATEWAY_MASTER_KEY", MASTER_KEY)
    stores: list[KeyStore] = []
    try:
        apps = {}
        for path in ("lean", "full"):
            if path == "full":
                mp.setenv(FULL_PATH_ENV, "1")  # read when the app is built
            apps[path] = build_app(
                config, keys_path=directory / f"keys-{path}.sqlite3", ledger_path=directory / f"usage-{path}.sqlite3"
            )
        mp.delenv(FULL_PATH_ENV)
        with ThreadedServer(apps["lean"]) as lean, ThreadedServer(apps["full"]) as full:
            served = {}
            for path, server in (("lean", lean), ("full", full)):
                stores.append(KeyStore(directory / f"keys-{path}.sqlite3"))
                served[path] = Served(server.url, directory, path, stores[-1])
            yield served
    finally:
        for store in stores:
            store.close()
        mp.undo()
    assert os.environ.get(FULL_PATH_ENV) is None


@pytest.fixture
def astream_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The routers whose ``astream`` was called (the servers run in this process)."""
    called: list[str] = []
    original = RoutingChatModel.astream

    def counting(self: RoutingChatModel, *args: Any, **kwargs: Any) -> Any:
        called.append(self.model)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RoutingChatModel, "astream", counting)
    return called


# ---------------------------------------------------------------- reading a stream
@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    events: list[Any]
    """OpenAI: each ``data:`` payload (parsed, ids and timestamps dropped). Anthropic: ``(event, data)``.
    A plain (non-SSE) answer: its JSON body, alone."""


def _drop_fresh(data: Any) -> Any:
    """``data`` without what each response makes up anew: a chunk's completion id and time, a message's id,
    how long each failed try took."""
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in ("id", "created")}
        if isinstance(data.get("message"), dict):
            data["message"] = {k: v for k, v in data["message"].items() if k != "id"}
        if isinstance(data.get("error"), dict) and isinstance(data["error"].get("message"), str):
            data["error"] = {
                **data["error"],
                "message": re.sub(r"after \d+ ms", "after ? ms", data["error"]["message"]),
            }
    return data


def stream(url: str, route: str, body: dict[str, Any]) -> Answer:
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.stream("POST", url + route, json={**body, "stream": True}, headers=headers, timeout=60) as response:
        kept = {k: v for k, v in response.headers.items() if k.startswith("x-multigateway") or k == "content-type"}
        if not response.headers["content-type"].startswith("text/event-stream"):
            return Answer(response.status_code, kept, [_drop_fresh(json.loads(response.read()))])
        events: list[Any] = []
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
                parsed = data if data == "[DONE]" else _drop_fresh(json.loads(data))
                events.append(parsed if event is None else (event, parsed))
    return Answer(response.status_code, kept, events)


def both(servers: dict[str, Served], route: str, body: dict[str, Any]) -> Answer:
    """Stream ``body`` down each path; they must answer alike. The lean path's answer."""
    lean = stream(servers["lean"].url, route, body)
    full = stream(servers["full"].url, route, body)
    assert (lean.status, lean.headers) == (full.status, full.headers)
    assert lean.events == full.events
    return lean


def text_of(events: list[Any]) -> str:
    return "".join(
        (e["choices"][0]["delta"].get("content") or "") for e in events if isinstance(e, dict) and e.get("choices")
    )


def ask(model: str, content: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


# ---------------------------------------------------------------- the same answer down each path
def test_streams_take_the_lean_path_unless_the_full_path_is_forced(
    servers: dict[str, Served], astream_calls: list[str]
) -> None:
    lean = stream(servers["lean"].url, "/v1/chat/completions", ask("main"))
    assert text_of(lean.events) == "echo: hello there"
    assert astream_calls == []  # the router's engine was driven directly
    full = stream(servers["full"].url, "/v1/chat/completions", ask("main"))
    assert text_of(full.events) == "echo: hello there"
    assert astream_calls == ["main"]


def test_a_text_stream_with_usage_is_the_same_chunk_for_chunk_after_a_failover(servers: dict[str, Served]) -> None:
    answer = both(servers, "/v1/chat/completions", ask("main", stream_options={"include_usage": True}))
    assert answer.status == 200
    # The first deployment answered 503 before any chunk (tried again once, as a 503 is by default):
    # the second served, named in the headers.
    assert answer.headers["x-multigateway-deployment"] == "clean"
    assert answer.headers["x-multigateway-attempts"] == "3"
    assert text_of(answer.events) == "echo: hello there"
    assert answer.events[-1] == "[DONE]"
    finish, usage = answer.events[-3], answer.events[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"]["prompt_tokens"] == 20
    assert usage["usage"]["completion_tokens"] == 5
    assert usage["usage"]["total_tokens"] == 25


def test_a_stream_without_include_usage_sends_no_usage_chunk(servers: dict[str, Served]) -> None:
    answer = both(servers, "/v1/chat/completions", ask("clean"))
    assert not any(isinstance(e, dict) and "usage" in e for e in answer.events)
    assert answer.events[-2]["choices"][0]["finish_reason"] == "stop"


def test_tool_call_deltas_are_the_same_down_each_path(servers: dict[str, Served]) -> None:
    body = ask("main", "weather in Paris?", tools=[WEATHER], tool_choice="required")
    answer = both(servers, "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}})
    deltas = [
        call
        for e in answer.events
        if isinstance(e, dict) and e.get("choices")
        for call in e["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert deltas[0]["id"] == "call_stub1"
    assert deltas[0]["function"]["name"] == "weather"
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {"city": "Paris"}
    assert answer.events[-3]["choices"][0]["finish_reason"] == "tool_calls"


def test_structured_output_and_sampling_parameters_stream_alike(servers: dict[str, Served]) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "count", "schema": SCHEMA}}
    answer = both(
        servers,
        "/v1/chat/completions",
        ask("main", response_format=fmt, temperature=0.2, max_tokens=30, stop=["zzz"], seed=3),
    )
    assert json.loads(text_of(answer.events)) == {"n": 7}


def test_a_stream_cut_after_its_first_chunks_ends_with_the_same_error_event(servers: dict[str, Served]) -> None:
    answer = both(servers, "/v1/chat/completions", ask("cut"))
    assert answer.status == 200
    assert text_of(answer.events) == "0 1 2 "  # what was sent before the cut, once
    assert "error" in answer.events[-1]
    assert "cut" in answer.events[-1]["error"]["message"]


def test_a_stream_no_deployment_can_start_is_the_same_plain_error(servers: dict[str, Served]) -> None:
    answer = both(servers, "/v1/chat/completions", ask("down"))
    assert answer.status == 502
    assert answer.headers["content-type"] == "application/json"
    assert "stub outage" in answer.events[0]["error"]["message"]


def test_anthropic_format_streams_are_the_same_event_for_event(servers: dict[str, Served]) -> None:
    text = both(servers, "/v1/messages", ask("main", max_tokens=50))
    assert text.status == 200
    assert [e for e, _ in text.events][:2] == ["message_start", "content_block_start"]
    deltas = "".join(d["delta"]["text"] for e, d in text.events if e == "content_block_delta")
    assert deltas == "echo: hello there"
    stop = next(d for e, d in text.events if e == "message_delta")
    assert stop["delta"]["stop_reason"] == "end_turn"
    assert stop["usage"]["output_tokens"] == 5
    tools = [{"name": "weather", "description": "w", "input_schema": WEATHER["function"]["parameters"]}]
    called = both(servers, "/v1/messages", ask("main", "weather?", max_tokens=50, tools=tools))
    block = next(d for e, d in called.events if e == "content_block_start")["content_block"]
    assert (block["type"], block["name"]) == ("tool_use", "weather")
    args = "".join(d["delta"]["partial_json"] for e, d in called.events if e == "content_block_delta")
    assert json.loads(args) == {"city": "Paris"}
    assert next(d for e, d in called.events if e == "message_delta")["delta"]["stop_reason"] == "tool_use"


def test_each_stream_is_one_ledger_row_the_same_down_each_path(servers: dict[str, Served]) -> None:
    before = {path: len(served.flushed()) for path, served in servers.items()}
    for body in (ask("main", stream_options={"include_usage": True}), ask("cut"), ask("down")):
        both(servers, "/v1/chat/completions", body)
    both(servers, "/v1/messages", ask("main", max_tokens=50))
    lean, full = (servers[path].flushed()[before[path] + 1 :] for path in ("lean", "full"))  # +1: a plain call
    assert lean == full
    # (model, deployment, outcome, error, tokens in/out/total, the failed tries before the last)
    assert lean == [
        ("clean", "clean", "ok", None, 20, 5, 25, "down,down"),
        ("cut", None, "error", "StreamInterruptedError", 0, 0, 0, None),
        ("down", None, "error", "AllDeploymentsFailedError", 0, 0, 0, "down,down"),
        ("clean", "clean", "ok", None, 20, 5, 25, "down,down"),
    ]


# ---------------------------------------------------------------- a client hanging up mid-stream (lean path)
@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/messages"])
def test_a_client_hanging_up_mid_stream_cuts_the_upstream_and_leaves_nothing_held(
    servers: dict[str, Served], upstream: Upstream, route: str, astream_calls: list[str]
) -> None:
    served = servers["lean"]
    before = len(served.flushed())
    # A budgeted key: until its call is settled it holds a reservation, and a second call would be refused
    # (429 key_budget_pending) for as long as that hold is not given back.
    secret, _ = served.keys.create(f"hang-up-{route}", budget_usd=5.0, period="30d")
    abandoned = upstream.stats.streams_abandoned
    body = {**ask("slow", "a long one"), "stream": True, "max_tokens": 50}
    headers = {"authorization": f"Bearer {secret}"}
    with httpx.stream("POST", served.url + route, json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["x-multigateway-deployment"] == "slow"
        lines = response.iter_lines()
        while '"0 "' not in next(lines):  # the upstream's first piece reached the client: hang up
            pass
    # The upstream streams for 5 s; the gateway must close it as soon as the client is gone.
    assert wait_for(lambda: upstream.stats.streams_abandoned == abandoned + 1, 4)
    assert wait_for(lambda: served.health("slow")["slow"]["in_flight"] == 0, 4)
    assert served.health("slow")["slow"]["waiting"] == 0
    assert astream_calls == []  # it was the lean path that was cut
    # Exactly one ledger row for the abandoned stream, recorded as the client leaving.
    rows = served.flushed()[before + 1 :]
    assert rows == [("slow", None, "error", "ClientGoneError", 0, 0, 0, None)]
    # The key's hold was given back: its next call is served, not refused as still in flight.
    again = httpx.post(served.url + "/v1/chat/completions", json=ask("clean"), headers=headers, timeout=30)
    assert again.status_code == 200, again.text


# ---------------------------------------------------------------- the upstream connection is kept
def _port_reporting_upstream(ports: list[int], lingered: list[str] | None = None) -> Starlette:
    """Streams OpenAI chunks naming the client port each request came from (a new port: a new connection).
    With ``lingered``: after ``[DONE]`` the body is held open for 5 s; "cut" is noted when the client closes it
    first ("ended" when it was not)."""

    async def completions(request: Request) -> Response:
        assert request.client is not None
        ports.append(request.client.port)

        async def events() -> AsyncIterator[bytes]:
            base = {"id": "chatcmpl-port", "object": "chat.completion.chunk", "created": 0, "model": "port"}
            for delta, finish in (({"role": "assistant", "content": f"port {ports[-1]}"}, None), ({}, "stop")):
                chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"
            if lingered is not None:
                try:
                    await asyncio.sleep(5)
                except BaseException:
                    lingered.append("cut")
                    raise
                lingered.append("ended")

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def test_streams_reuse_the_upstream_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream read to its ``[DONE]`` used to close its connection with the body's last bytes unread, so every
    streamed call connected (and, to a real API, shook hands for TLS) again."""
    monkeypatch.setenv("MULTIGATEWAY_MASTER_KEY", MASTER_KEY)
    ports: list[int] = []
    with ThreadedServer(_port_reporting_upstream(ports)) as upstream:
        config = tmp_path / "gateway.yaml"
        config.write_text(f'models:\n  port: {{model: "openai:port", base_url: "{upstream.url}/v1", api_key: none}}\n')
        app = build_app(config, keys_path=tmp_path / "keys.sqlite3")
        with ThreadedServer(app) as gateway:
            answers = [stream(gateway.url, "/v1/chat/completions", ask("port")) for _ in range(3)]
    assert [a.status for a in answers] == [200] * 3, answers[0].events
    assert [text_of(a.events) for a in answers] == [f"port {p}" for p in ports]
    assert len(ports) == 3
    assert len(set(ports)) == 1, ports  # one connection served the three streams


def test_an_upstream_holding_its_body_open_after_done_neither_delays_nor_spoils_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a finished stream's end (for its connection) is bounded: an upstream that never ends its body
    after ``[DONE]`` has its connection closed, and the client gets the whole answer, not a timeout."""
    monkeypatch.setenv("MULTIGATEWAY_MASTER_KEY", MASTER_KEY)
    ports: list[int] = []
    lingered: list[str] = []
    with ThreadedServer(_port_reporting_upstream(ports, lingered)) as upstream:
        config = tmp_path / "gateway.yaml"
        config.write_text(f'models:\n  port: {{model: "openai:port", base_url: "{upstream.url}/v1", api_key: none}}\n')
        app = build_app(config, keys_path=tmp_path / "keys.sqlite3")
        with ThreadedServer(app) as gateway:
            answer = stream(gateway.url, "/v1/chat/completions", ask("port", stream_options={"include_usage": True}))
            assert answer.status == 200
            assert text_of(answer.events) == f"port {ports[0]}"
            assert answer.events[-1] == "[DONE]"
            assert not any(isinstance(e, dict) and "error" in e for e in answer.events)
            # The gateway closed the held-open body rather than waiting out its 5 s.
            assert wait_for(lambda: lingered == ["cut"], 4), lingered


# ---------------------------------------------------------------- hostile upstream streams, down each path
def _hostile_streams() -> Starlette:
    """Streams per model: ``length`` stops on max tokens, ``filtered`` is cut by a content filter, ``refuse``
    refuses structured output in pieces (Structured Outputs' ``delta.refusal``), ``no-done`` ends its body
    without ``[DONE]`` after its finish reason and usage."""

    async def completions(request: Request) -> Response:
        body = await request.json()
        model = body["model"]
        base = {"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": 0, "model": model}
        deltas: list[tuple[dict[str, Any], str | None]] = [({"role": "assistant", "content": ""}, None)]
        if model == "refuse":
            deltas += [({"refusal": "I will "}, None), ({"refusal": "not."}, None), ({}, "stop")]
        else:
            deltas += [({"content": "partial "}, None), ({"content": "answer"}, None)]
            deltas.append(({}, {"length": "length", "filtered": "content_filter"}.get(model, "stop")))

        async def events() -> AsyncIterator[bytes]:
            for delta, finish in deltas:
                chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode()
            if model != "no-done":
                yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    directory = tmp_path_factory.mktemp("hostile-streams")
    mp = pytest.MonkeyPatch()
    mp.setenv("MULTIGATEWAY_MASTER_KEY", MASTER_KEY)
    stores: list[KeyStore] = []
    try:
        with ThreadedServer(_hostile_streams()) as upstream:
            models = ("length", "filtered", "refuse", "no-done")
            lines = ["models:"]
            lines += [f'  {m}: {{model: "openai:{m}", base_url: "{upstream.url}/v1", api_key: none}}' for m in models]
            config = directory / "gateway.yaml"
            config.write_text("\n".join(lines) + "\n")
            apps = {}
            for path in ("lean", "full"):
                if path == "full":
                    mp.setenv(FULL_PATH_ENV, "1")
                apps[path] = build_app(config, keys_path=directory / f"keys-{path}.sqlite3")
            mp.delenv(FULL_PATH_ENV)
            with ThreadedServer(apps["lean"]) as lean, ThreadedServer(apps["full"]) as full:
                stores = [KeyStore(directory / f"keys-{path}.sqlite3") for path in ("lean", "full")]
                yield {
                    "lean": Served(lean.url, directory, "lean", stores[0]),
                    "full": Served(full.url, directory, "full", stores[1]),
                }
    finally:
        for store in stores:
            store.close()
        mp.undo()


@pytest.mark.parametrize(
    ("model", "reason", "stop_reason"), [("length", "length", "max_tokens"), ("no-done", "stop", "end_turn")]
)
def test_a_stream_s_finish_reason_reaches_the_client_the_same_down_each_path(
    hostile: dict[str, Served], model: str, reason: str, stop_reason: str
) -> None:
    answer = both(hostile, "/v1/chat/completions", ask(model, stream_options={"include_usage": True}))
    assert text_of(answer.events) == "partial answer"
    assert answer.events[-3]["choices"][0]["finish_reason"] == reason
    assert answer.events[-2]["usage"]["total_tokens"] == 13
    anthropic = both(hostile, "/v1/messages", ask(model, max_tokens=4))
    assert next(d for e, d in anthropic.events if e == "message_delta")["delta"]["stop_reason"] == stop_reason


def test_a_content_filtered_stream_is_the_same_down_each_path(hostile: dict[str, Served]) -> None:
    answer = both(hostile, "/v1/chat/completions", ask("filtered"))
    assert text_of(answer.events) == "partial answer"
    assert answer.events[-2]["choices"][0]["finish_reason"] == "content_filter"


def test_a_streamed_structured_output_refusal_is_the_same_typed_error_down_each_path(
    hostile: dict[str, Served],
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "count", "schema": SCHEMA}}
    answer = both(hostile, "/v1/chat/completions", ask("refuse", response_format=fmt))
    assert answer.status == 400  # the router's refusal watch: before any chunk went out, a plain error
    assert answer.events[0]["error"]["code"] == "model_refusal"
    assert "I will not." in answer.events[0]["error"]["message"]


def test_concurrent_streams_half_abandoned_are_each_settled_once_and_leave_nothing_held(
    servers: dict[str, Served], upstream: Upstream
) -> None:
    served = servers["lean"]
    before = len(served.flushed())
    abandoned = upstream.stats.streams_abandoned
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    body = {**ask("slow", "a long one"), "stream": True}

    def one(leave: bool) -> str:
        with httpx.stream("POST", served.url + "/v1/chat/completions", json=body, headers=headers, timeout=60) as r:
            text = ""
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    choices = json.loads(line.removeprefix("data: "))["choices"]
                    text += (choices[0]["delta"].get("content") or "") if choices else ""
                if leave and text.startswith("0 1 "):
                    return "left"  # hang up with the stream half read
        return text

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, [i % 2 == 0 for i in range(12)]))
    assert results[0::2] == ["left"] * 6
    assert results[1::2] == ["".join(f"{i} " for i in range(50))] * 6  # each whole, each piece once
    assert wait_for(lambda: upstream.stats.streams_abandoned == abandoned + 6, 10)
    assert wait_for(lambda: served.health("slow")["slow"]["in_flight"] == 0, 4)
    rows = served.flushed()[before + 1 :]
    assert sorted(row[2:4] for row in rows) == [("error", "ClientGoneError")] * 6 + [("ok", None)] * 6
