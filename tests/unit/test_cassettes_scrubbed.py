"""Every committed cassette (the project's and the demo's shipped in the package) is free of keys and credentials.

Credential header and query names come from the provider registry, as the pytest plugin's
scrubbing does, so a provider added later is checked without editing this file.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

from langchain_multigateway.registry import credential_names
from tests.conftest import CASSETTES, RECORDING_API_KEY, ROOT

DEMO_CASSETTES = ROOT / "langchain_multigateway" / "demo_cassettes"
CASSETTE_FILES = sorted(CASSETTES.rglob("*.yaml")) + sorted(DEMO_CASSETTES.glob("*.yaml"))
SECRET_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"Bearer\s+[A-Za-z0-9_.-]{8,}", re.IGNORECASE),
    re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}"),
]
HEADER_NAMES, QUERY_NAMES = credential_names()
CREDENTIAL_HEADERS = {*HEADER_NAMES, "openai-organization"}


def test_there_are_cassettes_to_scan() -> None:
    assert len(CASSETTE_FILES) >= 40
    assert {"authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie", "set-cookie"} <= CREDENTIAL_HEADERS
    assert {"api_key", "api-key", "key"} <= set(QUERY_NAMES)


@pytest.mark.parametrize("path", CASSETTE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cassette_holds_no_secret(path: Path) -> None:
    text = path.read_text()
    assert RECORDING_API_KEY not in text
    for pattern in SECRET_PATTERNS:
        assert not pattern.search(text), f"{path} matches {pattern.pattern}"
    data = yaml.safe_load(text)
    for interaction in data["interactions"]:
        uri = urlsplit(interaction["request"]["uri"])
        assert "@" not in uri.netloc, f"{path}: userinfo in {uri.geturl()}"
        kept = [name for name, _ in parse_qsl(uri.query) if name.lower() in QUERY_NAMES]
        assert not kept, f"{path}: credential query parameters {kept} kept"
        for side in ("request", "response"):
            headers = {k.lower(): v for k, v in (interaction[side].get("headers") or {}).items()}
            for name in CREDENTIAL_HEADERS & headers.keys():
                assert headers[name] in (["PLACEHOLDER"], "PLACEHOLDER"), f"{path}: {side} header {name} kept"
