"""Adversarial pass on what an upstream answers ``multigateway serve``: hostile bytes on the wire.

A raw asyncio TCP server on a loopback port (below) speaks HTTP/1.1 the way a broken or
hostile OpenAI-compatible upstream would, one behaviour per model name: resets,
half-closes, wrong content-lengths, gzip and chunked bodies, informational (1xx)
answers, redirects to another host, bodies no JSON encoder can re-encode, non-JSON.
Two real gateways (uvicorn on loopback ports) serve the same config, one down the lean
path (``server/passthrough.py`` + ``server/upstream.py``), one with
``MULTIGATEWAY_SERVE_FULL_PATH=1`` (the openai SDK). For every behaviour: the client
gets the same status from both, never a 500 or a hang; every call leaves exactly one
ledger row and its key free for the next call; the planted provider key appears in no
answer, log line, ledger row or metric.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_multigateway.server import KeyStore, build_app
from langchain_multigateway.server.gateway import FULL_PATH_ENV
from tests.server.conftest import MASTER_KEY, ThreadedServer

pytestmark = pytest.mark.filterwarnings("ignore:No price known")  # the hostile models are unpriced
PLANTED = "sk-planted-" + "h4" * 20  # the deployments' provider key, also in URL userinfo and a query
USER_PASSWORD = "pw-planted-" + "z8" * 12
HEADER_KEY = "pk-planted-" + "e5" * 16  # a credential in a custom header
OWN_AUTH = "Bearer sk-own-" + "k2" * 16  # a deployment's own Authorization, in its default_headers
USAGE = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}


def completion(model: str, content: str = "fine", **extra: Any) -> bytes:
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    body = {"id": "chatcmpl-h", "object": "chat.completion", "created": 0, "model": model, "choices": [choice]}
    return json.dumps({**body, "usage": USAGE, **extra}).encode()


def head(status: int, length: int | None, extra: str = "") -> bytes:
    size = f"content-length: {length}\r\n" if length is not None else ""
    return f"HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\n{size}{extra}\r\n".encode()


class HostileUpstream:
    """A raw HTTP/1.1 server in its own thread and event loop; what it answers depends on the model asked for.

    It also listens on ``localhost`` (another host, to the client) for redirects away from the first.
    """

    def __init__(self) -> None:
        self.served: Counter[str] = Counter()
        self.abandoned: Counter[str] = Counter()  # answers the client's side cut before they ended
        self.on_request: dict[str, Callable[[], object]] = {}  # last user text -> called when that request is in
        self.heads: list[tuple[str, str, bytes]] = []  # (model, path, request head)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = self.other_port = 0

    def _run(self) -> None:
        async def main() -> None:
            first = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            other = await asyncio.start_server(self._handle, "localhost", 0)
            self.port = first.sockets[0].getsockname()[1]
            self.other_port = other.sockets[0].getsockname()[1]
            self._stop = asyncio.Event()
            self._ready.set()
            async with first, other:
                await self._stop.wait()

        self._loop.run_until_complete(main())
        pending = asyncio.all_tasks(self._loop)  # connections still being served: ended, not left pending
        for task in pending:
            task.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def __enter__(self) -> HostileUpstream:
        self._thread.start()
        assert self._ready.wait(30), "the hostile upstream did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in raw.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                path = raw.split(b" ", 2)[1].decode()
                request = json.loads(body) if body else {}
                model = str(request.get("model", ""))
                self.heads.append((model, path, raw))
                self.served[model] += 1
                marker = str((request.get("messages") or [{}])[-1].get("content"))
                callback = self.on_request.pop(marker, None)
                if callback is not None:
                    callback()
                keep = await self._answer(model, path, reader, writer)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # the server stopping: asyncio's stream callback chokes on a cancelled task
            pass
        finally:
            writer.close()

    async def _answer(self, model: str, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Write the answer for ``model``; whether the connection stays open."""
        if model.startswith("delay"):  # answers after up to 30 ms, at random
            await asyncio.sleep(random.uniform(0, 0.03))
            body = completion(model)
        elif model == "hang":  # never answers; counts the caller's side closing the connection
            if await reader.read(1) == b"":
                self.abandoned[model] += 1
            return False
        elif model == "trickle":  # headers at once, then the body a byte every 20 ms (about 6 s)
            body = completion(model)
            writer.write(head(200, len(body)))
            try:
                for byte in body:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.02)
            except ConnectionError:
                self.abandoned[model] += 1
                return False
            if writer.is_closing() or reader.at_eof():
                self.abandoned[model] += 1
            return True
        elif model == "too-deep":  # valid JSON, nested deeper than a JSON encoder re-encodes (orjson: 255)
            body = completion(model, debug=json.loads("[" * 300 + "]" * 300))
        elif model == "gzip":
            body = gzip.compress(completion(model, "unzipped"))
            writer.write(head(200, len(body), "content-encoding: gzip\r\n") + body)
            return True
        elif model == "chunked":
            body = completion(model, "in chunks")
            writer.write(head(200, None, "transfer-encoding: chunked\r\n"))
            for start in range(0, len(body), 7):
                piece = body[start : start + 7]
                writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            writer.write(b"0\r\n\r\n")
            return True
        elif model == "early-hints":  # informational answers before the real one
            writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n")
            body = completion(model, "after hints")
        elif model == "echo-escaped":  # quotes the key it got in a debug field, its letters JSON-escaped
            sent = next(line for line in self.heads[-1][2].split(b"\r\n") if line.lower().startswith(b"authorization"))
            escaped = "".join(f"\\u{ord(c):04x}" for c in sent.split(b" ", 2)[-1].decode())
            body = completion(model)[:-1] + b', "debug": "' + escaped.encode() + b'"}'
        elif model == "deep-escaped":  # nested too deep to re-encode, and a JSON escape in it
            body = completion(model)[:-1] + b', "debug": [' + b"[" * 300 + b'"caf\\u00e9"' + b"]" * 300 + b"]}"
        elif model in ("json-list", "json-null", "no-choices", "string-usage"):  # JSON, but not an answer's shape
            body = {
                "json-list": b"[]",
                "json-null": b"null",
                "no-choices": b'{"id": "x", "object": "chat.completion", "choices": []}',
                "string-usage": completion(model)[:-1] + b', "usage": "lots"}',
            }[model]
        elif model == "outage":  # a deployment that is down
            body = b'{"error": {"message": "outage", "type": "server_error"}}'
            writer.write(head(503, len(body)) + body)
            return True
        elif model == "no-location":  # a redirect status with nowhere to go
            writer.write(head(302, 0))
            return True
        elif model == "extra-bytes":  # more body than its content-length says
            body = completion(model)
            writer.write(head(200, len(body) - 5) + body)
            return True
        elif model == "bad-chunk":  # a chunk size that is not hex
            writer.write(head(200, None, "transfer-encoding: chunked\r\n") + b"zz\r\n{}\r\n0\r\n\r\n")
            return False
        elif model == "short-length":  # content-length past the end of the body, then the connection closes
            body = completion(model)
            writer.write(head(200, len(body) + 50) + body)
            return False
        elif model == "half-close":  # half the body, then end of stream from the server's side
            body = completion(model)
            writer.write(head(200, len(body)) + body[: len(body) // 2])
            await writer.drain()
            writer.write_eof()
            await asyncio.sleep(0.5)
            return False
        elif model == "reset":
            writer.transport.abort()
            return False
        elif model == "not-json":
            body = f"<html>proxy error for {PLANTED}</html>".encode()
            writer.write(head(200, len(body)) + body)
            return True
        elif model == "big":  # 8 MiB of padding in an extra field
            body = completion(model, "big", padding="x" * (8 * 1024 * 1024))
        elif model == "userinfo":  # an upstream quoting the Basic credentials it got, decoded, in a debug field
            basic = next(line for line in self.heads[-1][2].split(b"\r\n") if line.lower().startswith(b"authorization"))
            decoded = base64.b64decode(basic.split(b"Basic ", 1)[-1]).decode("utf-8", "replace")
            body = completion(model, "seen", debug={"credentials": decoded})
        elif model in ("away", "away-header") and not path.startswith("/elsewhere"):  # moved to another host
            location = f"http://localhost:{self.other_port}/elsewhere/chat/completions"
            writer.write(head(307, 0, f"location: {location}\r\n"))
            return True
        else:
            body = completion(model, f"answer from {path}")
        writer.write(head(200, len(body)) + body)
        return True


BEHAVIOURS = {
    # model: (status the client gets, on both paths)
    "too-deep": 200,
    "gzip": 200,
    "chunked": 200,
    "early-hints": 200,
    "big": 200,
    "away": 200,
    "away-header": 200,
    "plain": 200,
    "userinfo": 200,
    "own-auth": 200,
    "echo-escaped": 200,
    "deep-escaped": 200,
    "short-length": 502,
    "no-location": 502,
    "json-list": 502,
    "json-null": 502,
    "no-choices": 502,
    "string-usage": 502,
    "extra-bytes": 502,
    "bad-chunk": 502,
    "half-close": 502,
    "reset": 502,
    "not-json": 502,
}


def _config(directory: Path, upstream: HostileUpstream) -> Path:
    lines = ["models:"]
    for model in BEHAVIOURS:
        base = f"{upstream.url}/v1"
        if model == "userinfo":  # credentials in the base URL, as some proxies take them
            base = f"http://gateway-user:{USER_PASSWORD}@127.0.0.1:{upstream.port}/v1"
        settings = f'model: "openai:{model}", base_url: "{base}", api_key: "{PLANTED}", timeout: 10, max_retries: 0'
        if model in ("reset", "not-json", "extra-bytes"):  # the key in the query too, as some gateways take it
            settings += f', default_query: {{api-key: "{PLANTED}"}}'
        if model == "away-header":  # a gateway-style credential header, not Authorization
            settings += f', default_headers: {{X-Portkey-Api-Key: "{HEADER_KEY}"}}'
        if model == "own-auth":  # header names as people write them, not lower-case
            settings += f', default_headers: {{Authorization: "{OWN_AUTH}", Accept: "application/json"}}'
        lines.append(f"  {model}: {{{settings}}}")
    path = directory / "gateway.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Served:
    url: str
    keys: KeyStore
    ledger: Path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostileUpstream, dict[str, Served]]]:
    """The hostile upstream, and ``{"lean": ..., "full": ...}``: the same config served down each path."""
    directory = tmp_path_factory.mktemp("hostile-wire")
    mp = pytest.MonkeyPatch()
    mp.setenv("MULTIGATEWAY_MASTER_KEY", MASTER_KEY)
    try:
        with HostileUpstream() as upstream:
            config = _config(directory, upstream)
            apps = {}
            for path in ("lean", "full"):
                if path == "full":
                    mp.setenv(FULL_PATH_ENV, "1")  # read when the app is built
                apps[path] = build_app(
                    config, keys_path=directory / f"keys-{path}.sqlite3", ledger_path=directory / f"{path}.sqlite3"
                )
            mp.delenv(FULL_PATH_ENV)
            keys = {path: KeyStore(directory / f"keys-{path}.sqlite3") for path in apps}
            with ThreadedServer(apps["lean"]) as lean, ThreadedServer(apps["full"]) as full:
                yield (
                    upstream,
                    {
                        "lean": Served(lean.url, keys["lean"], directory / "lean.sqlite3"),
                        "full": Served(full.url, keys["full"], directory / "full.sqlite3"),
                    },
                )
            for store in keys.values():
                store.close()
    finally:
        mp.undo()


def _ask(url: str, model: str, key: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60)


def _heads_of_one_call(upstream: HostileUpstream, served: Served, model: str, key_name: str) -> list[tuple[str, bytes]]:
    """Ask ``model`` once with a new key (answered 200); the (path, raw head) of each request the upstream saw."""
    before = len(upstream.heads)
    secret, _ = served.keys.create(key_name)
    response = _ask(served.url, model, secret)
    assert response.status_code == 200, response.text
    return [(path, raw) for seen, path, raw in upstream.heads[before:] if seen == model]


def _rows(ledger: Path, key_tag: str) -> list[tuple[str, str | None]]:
    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT outcome, error_type, tags FROM calls").fetchall()
    return [(outcome, error) for outcome, error, tags in rows if key_tag in str(tags)]


def _wait_rows(ledger: Path, key_tag: str, count: int) -> list[tuple[str, str | None]]:
    """The key's ledger rows once ``count`` are there (the ledger writes in batches), or what is there after 10 s."""
    import time

    deadline = time.monotonic() + 10
    rows = _rows(ledger, key_tag)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = _rows(ledger, key_tag)
    return rows


@pytest.mark.parametrize("path", ["lean", "full"])
@pytest.mark.parametrize("model", sorted(BEHAVIOURS))
def test_a_hostile_answer_gets_the_same_status_on_both_paths_and_is_settled_once(
    hostile: tuple[HostileUpstream, dict[str, Served]], path: str, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, servers = hostile
    served = servers[path]
    # A budgeted key: a call never settled would hold its budget's reservation for ever.
    secret, key = served.keys.create(f"{model}-{path}", budget_usd=5.0)
    with caplog.at_level(logging.INFO):
        response = _ask(served.url, model, secret)
        assert response.status_code == BEHAVIOURS[model], response.text
        # The key's next call is served: the first gave back everything it held.
        after = _ask(served.url, "plain", secret)
        assert after.status_code == 200, after.text
    if response.status_code == 200:
        assert response.json()["choices"][0]["message"]["content"]
    else:
        assert response.json()["error"]["message"]
    # One ledger row per call, the failed one an error.
    rows = _wait_rows(served.ledger, key.tag, 2)
    assert sorted(r[0] for r in rows) == sorted(["ok", "ok" if response.status_code == 200 else "error"])
    text = response.text + after.text + "\n".join(r.getMessage() for r in caplog.records)
    with sqlite3.connect(served.ledger) as db:
        text += repr(db.execute("SELECT * FROM calls").fetchall())
    text += httpx.get(served.url + "/metrics").text
    for secret_text in (PLANTED, USER_PASSWORD, HEADER_KEY):
        assert secret_text not in text
        assert secret_text[-12:] not in text


def test_a_redirect_to_another_host_does_not_carry_the_provider_key(
    hostile: tuple[HostileUpstream, dict[str, Served]],
) -> None:
    upstream, servers = hostile
    for path in ("lean", "full"):
        before = len(upstream.heads)
        secret, _ = servers[path].keys.create(f"redirect-{path}")
        response = _ask(servers[path].url, "away", secret)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "answer from /elsewhere/chat/completions"
        heads = [(p, raw) for model, p, raw in upstream.heads[before:] if model == "away"]
        assert [p for p, _ in heads] == ["/v1/chat/completions", "/elsewhere/chat/completions"]
        assert PLANTED.encode() in heads[0][1]  # the deployment's own host gets its key ...
        assert PLANTED.encode() not in heads[1][1]  # ... another host never does
        assert b"authorization" not in heads[1][1].lower()


def test_credentials_in_the_base_url_are_sent_as_basic_auth_on_both_paths(
    hostile: tuple[HostileUpstream, dict[str, Served]],
) -> None:
    """The openai SDK's HTTP client sends a base URL's ``user:password@`` as Basic auth; so must the lean path."""
    upstream, servers = hostile
    expected = "Basic " + base64.b64encode(f"gateway-user:{USER_PASSWORD}".encode()).decode()
    for path in ("lean", "full"):
        ((_, raw),) = _heads_of_one_call(upstream, servers[path], "userinfo", f"userinfo-{path}")
        lines = raw.decode().split("\r\n")
        assert [line.split(": ", 1)[1] for line in lines if line.lower().startswith("authorization:")] == [expected]
        assert USER_PASSWORD not in lines[0]  # never in the request line


def test_a_deployments_own_headers_replace_the_defaults_whatever_their_case(
    hostile: tuple[HostileUpstream, dict[str, Served]],
) -> None:
    """``default_headers: {Authorization: ...}`` replaces the key's header, as the SDK does: one header, never two."""
    upstream, servers = hostile
    for path in ("lean", "full"):
        ((_, raw),) = _heads_of_one_call(upstream, servers[path], "own-auth", f"own-auth-{path}")
        lines = [line.lower() for line in raw.decode().split("\r\n")]
        assert [line for line in lines if line.startswith("authorization:")] == [f"authorization: {OWN_AUTH.lower()}"]
        assert [line for line in lines if line.startswith("accept:")] == ["accept: application/json"]


async def test_an_answer_sent_on_an_idle_connection_is_never_taken_for_the_next_requests() -> None:
    """An upstream that, after each answer, writes an unsolicited answer on the idle kept-alive connection (a
    "408 Request Timeout" some servers send before they close an idle connection; this one keeps it open): a
    pooled connection holding it must not be reused, or each call would get the previous call's answer."""
    from langchain_multigateway.server.upstream import Upstream

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                length = next(int(h.split(b":")[1]) for h in raw.split(b"\r\n") if h.lower().startswith(b"content-le"))
                body = await reader.readexactly(length)  # the request's body comes back as its answer
                writer.write(head(200, len(body)) + body)
                await writer.drain()
                await asyncio.sleep(0.05)
                stale = b'{"error": {"message": "idle connection timed out"}}'
                writer.write(head(408, len(stale)) + stale)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        upstream = Upstream(f"http://127.0.0.1:{port}/v1/chat/completions")
        timeouts = {"connect": 5.0, "read": 5.0}
        for n in range(4):
            sent = json.dumps({"call": n}).encode()
            answer = await upstream.post(sent, {"content-type": "application/json"}, None, timeouts)
            assert (answer.status, answer.body) == (200, sent)  # its own answer, never a stale or an earlier one
            await asyncio.sleep(0.2)  # the unsolicited answer arrives while the connection is idle in the pool


async def test_headers_trickling_in_forever_are_cut_after_the_read_limit() -> None:
    """The status line at once, then a header's value a byte every 0.1 s (each read well within the read limit)
    for a minute: the answer's headers never end, and the call must not wait for them past its read limit."""
    import time

    import httpx2

    from langchain_multigateway.server.upstream import Upstream

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nx-slow: ")
            for _ in range(600):  # one header's value, a byte at a time: under every limit on a header's size
                writer.write(b"y")
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        upstream = Upstream(f"http://127.0.0.1:{port}/v1/chat/completions")
        started = time.monotonic()
        with pytest.raises(httpx2.ReadTimeout):
            await upstream.post(b"{}", {}, None, {"connect": 2.0, "read": 0.5})
        assert time.monotonic() - started < 30  # the trickle would take a minute


@pytest.mark.parametrize("path", ["lean", "full"])
def test_a_redirect_to_another_host_carries_no_credential_header_down_either_path(
    hostile: tuple[HostileUpstream, dict[str, Served]], path: str
) -> None:
    """A deployment's credential in a header of its own (``X-Portkey-Api-Key``) goes to its host, never to the
    host a redirect names: on the lean path (its client's redirect hop) and on the full path (the provider's
    HTTP client; httpx alone would strip only ``Authorization``)."""
    upstream, servers = hostile
    heads = _heads_of_one_call(upstream, servers[path], "away-header", f"redirect-header-{path}")
    assert [p for p, _ in heads] == ["/v1/chat/completions", "/elsewhere/chat/completions"]
    assert HEADER_KEY.encode() in heads[0][1]  # the deployment's own host gets it ...
    assert HEADER_KEY.encode() not in heads[1][1]  # ... another host never does
    assert PLANTED.encode() not in heads[1][1]
