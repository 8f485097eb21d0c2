"""Fixtures for the shared-state tests: ``redis_server`` (one real redis-server per session,
on a free loopback port, no persistence) and ``namespace`` (one per test, so tests never
see each other's keys). Test modules load them with ``pytest_plugins = ["tests.redis_fixtures"]``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def namespace() -> str:
    """A namespace of its own per test, so tests never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:12]}"
