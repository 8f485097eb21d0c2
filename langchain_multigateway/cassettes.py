"""Replay recorded HTTP traffic (vcrpy-format YAML cassettes) without vcrpy.

The demo and users' offline runs replay cassettes through an HTTP transport
handed to the provider's client, so a plain install (no test extras) can
replay what the test suite recorded. Requests match on method, URL and JSON
body; client-generated tool-call ids are ignored because they are random.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from langchain_multigateway.errors import GatewayError

__all__ = ["CassetteMissError", "Recording", "httpx2_replay_client", "httpx_replay_transport", "normalised_body"]

_GENERATED_ID_KEYS = frozenset({"id", "tool_call_id"})


class CassetteMissError(GatewayError):
    """A request had no recorded response in the cassette being replayed."""


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "<id>" if k in _GENERATED_ID_KEYS and isinstance(v, str) else _normalise(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def normalised_body(body: bytes | str | None) -> Any:
    """A request body as comparable JSON (tool-call ids blanked), or its text."""
    if not body:
        return None
    text = body.decode() if isinstance(body, bytes) else body
    try:
        return _normalise(json.loads(text))
    except ValueError:
        return text


@dataclass(frozen=True)
class RecordedResponse:
    status: int
    headers: list[tuple[str, str]]
    content: bytes


class Recording:
    """The interactions of one cassette file, looked up by request."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        if not isinstance(data, Mapping) or not isinstance(data.get("interactions"), list):
            msg = f"{self.path} is not a cassette: expected a mapping with an 'interactions' list"
            raise ValueError(msg)
        self._entries: list[tuple[str, str, Any, RecordedResponse]] = []
        for item in data["interactions"]:
            request, response = item["request"], item["response"]
            body = response.get("body", {}).get("string", "")
            content = body.encode() if isinstance(body, str) else bytes(body or b"")
            headers = [
                (name, value)
                for name, values in (response.get("headers") or {}).items()
                if name.lower() not in ("content-encoding", "transfer-encoding", "content-length")
                for value in (values if isinstance(values, list) else [values])
            ]
            recorded = RecordedResponse(int(response["status"]["code"]), headers, content)
            self._entries.append(
                (request["method"].upper(), request["uri"], normalised_body(request.get("body")), recorded)
            )

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, method: str, url: str, body: bytes | None) -> RecordedResponse:
        """The recorded response for this request; CassetteMissError naming it if none."""
        key = normalised_body(body)
        for rec_method, rec_url, rec_body, response in self._entries:
            if rec_method == method.upper() and rec_url == url and rec_body == key:
                return response
        preview = (body or b"")[:200].decode(errors="replace")
        msg = (
            f"No recording in {self.path} for {method.upper()} {url} with body {preview!r}. "
            "Record it again against a live server, or replay the request the cassette holds."
        )
        raise CassetteMissError(msg)


def httpx2_replay_client(recording: Recording, *, asynchronous: bool = False) -> Any:
    """An ``httpx2`` client (what the openai and mistralai SDKs use) answering from ``recording``."""
    import httpx2

    def respond(request: httpx2.Request) -> httpx2.Response:
        found = recording.lookup(request.method, str(request.url), request.content)
        return httpx2.Response(found.status, headers=found.headers, content=found.content, request=request)

    async def arespond(request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        return respond(request)

    if asynchronous:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(arespond))
    return httpx2.Client(transport=httpx2.MockTransport(respond))


def httpx_replay_transport(recording: Recording) -> Any:
    """An ``httpx`` transport (sync and async) answering from ``recording``."""
    import httpx

    def respond(request: httpx.Request) -> httpx.Response:
        found = recording.lookup(request.method, str(request.url), request.content)
        return httpx.Response(found.status, headers=found.headers, content=found.content, request=request)

    return httpx.MockTransport(respond)
