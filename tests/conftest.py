"""Shared test setup: cassette replay (never the network unless recording is asked for)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from langchain_tests.conftest import base_vcr_config

from langchain_multigateway.registry import credential_names

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = ROOT / "cassettes"

# Cassettes are recorded against this URL and replayed against it. To record
# against a server elsewhere, set MULTIGATEWAY_LIVE_BASE_URL: requests go
# there and are stored under the canonical URL.
CANONICAL_BASE_URL = "http://127.0.0.1:8088/v1"
LIVE_BASE_URL = os.environ.get("MULTIGATEWAY_LIVE_BASE_URL", CANONICAL_BASE_URL).rstrip("/")
# A recognisable fake key: the cassette scan proves it never reaches a file.
RECORDING_API_KEY = "sk-multigateway-recording-" + "k3y" * 8

SCRUBBED_HEADERS = [
    ("authorization", "PLACEHOLDER"),
    ("x-api-key", "PLACEHOLDER"),
    ("api-key", "PLACEHOLDER"),
    ("openai-organization", "PLACEHOLDER"),
    ("openai-project", "PLACEHOLDER"),
    ("cookie", None),
    ("set-cookie", None),
]


def recording(config: pytest.Config) -> bool:
    return config.getoption("record_mode", default="none") not in (None, "none")


def _canonical_uri(request: Any) -> Any:
    if LIVE_BASE_URL != CANONICAL_BASE_URL and request.uri.startswith(LIVE_BASE_URL):
        request.uri = CANONICAL_BASE_URL + request.uri[len(LIVE_BASE_URL) :]
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers", {})
    for name in list(headers):
        if name.lower() in ("set-cookie", "openai-organization"):
            del headers[name]
    return response


@pytest.fixture(scope="session")
def vcr_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    config = base_vcr_config()
    # langchain-tests defaults to "once", which would reach for the network
    # when a cassette is missing; replay strictly unless recording was asked.
    config["record_mode"] = request.config.getoption("record_mode", default="none") or "none"
    headers, query = credential_names()
    named = {name for name, _ in SCRUBBED_HEADERS}
    config["filter_headers"] = SCRUBBED_HEADERS + [(h, "PLACEHOLDER") for h in headers if h not in named]
    config["filter_query_parameters"] = sorted({"api_key", "key", *query})
    config["before_record_request"] = _canonical_uri
    config["before_record_response"] = _scrub_response
    config["ignore_localhost"] = False
    config.pop("cassette_library_dir", None)  # per-module folders via vcr_cassette_dir
    config["match_on"] = ["method", "uri", "json_body"]
    return config


_GENERATED_ID_KEYS = {"id", "tool_call_id", "call_id", "tool_use_id"}  # call_id: Responses; tool_use_id: Anthropic


def _normalise(value: Any) -> Any:
    """JSON with client-generated tool-call ids blanked (they are random per run)."""
    if isinstance(value, dict):
        return {
            k: ("<id>" if k in _GENERATED_ID_KEYS and isinstance(v, str) else _normalise(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _json_body(r1: Any, r2: Any) -> None:
    def load(body: Any) -> Any:
        if body is None:
            return None
        text = body.decode() if isinstance(body, bytes) else body
        try:
            return _normalise(json.loads(text))
        except ValueError:
            return text

    assert load(r1.body) == load(r2.body), "request bodies differ"


def pytest_recording_configure(config: pytest.Config, vcr: Any) -> None:
    vcr.register_matcher("json_body", _json_body)


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    module = request.module.__name__.rsplit(".", 1)[-1]
    return str(CASSETTES / module)


@pytest.fixture
def live_base_url(request: pytest.FixtureRequest) -> str:
    """Where a recorded test sends its requests (the live server while recording)."""
    return LIVE_BASE_URL if recording(request.config) else CANONICAL_BASE_URL


@pytest.fixture
def gateway_vcr_config() -> dict[str, Any]:
    """The project's own tests use the shipped plugin too; recordings keep the canonical URL."""
    return {"before_record_request": _canonical_uri}
