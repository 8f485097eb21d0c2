"""Every committed cassette is free of keys and credentials."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import CASSETTES, RECORDING_API_KEY

CASSETTE_FILES = sorted(CASSETTES.rglob("*.yaml"))
SECRET_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"Bearer\s+[A-Za-z0-9_.-]{8,}", re.IGNORECASE),
    re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}"),
]
CREDENTIAL_HEADERS = {"authorization", "x-api-key", "api-key", "openai-organization", "cookie", "set-cookie"}


def test_there_are_cassettes_to_scan() -> None:
    assert len(CASSETTE_FILES) >= 40


@pytest.mark.parametrize("path", CASSETTE_FILES, ids=lambda p: str(p.relative_to(CASSETTES)))
def test_cassette_holds_no_secret(path: Path) -> None:
    text = path.read_text()
    assert RECORDING_API_KEY not in text
    for pattern in SECRET_PATTERNS:
        assert not pattern.search(text), f"{path} matches {pattern.pattern}"
    data = yaml.safe_load(text)
    for interaction in data["interactions"]:
        for side in ("request", "response"):
            headers = {k.lower(): v for k, v in (interaction[side].get("headers") or {}).items()}
            for name in CREDENTIAL_HEADERS & headers.keys():
                assert headers[name] in (["PLACEHOLDER"], "PLACEHOLDER"), f"{path}: {side} header {name} kept"
