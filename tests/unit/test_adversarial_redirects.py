"""Hostile upstreams and harsh runtimes against the providers' own HTTP clients (redirect hook, client lifecycle).

Real loopback HTTP servers (two ports: two origins); nothing of the code under test is mocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.loopback import Reply, Script, serve
from tests.unit.test_redirect_credentials import ANSWERS, PLANTED, PROVIDERS, _carries, _model


@pytest.fixture
def two_origins() -> Iterator[tuple[tuple[str, Script], tuple[str, Script]]]:
    with serve() as (home, home_script), serve() as (away, away_script):
        yield (home.removesuffix("/v1"), home_script), (away.removesuffix("/v1"), away_script)


def _base_field(provider: str, root: str) -> dict[str, str]:
    if provider == "mistral":
        return {"server_url": root}
    return {"base_url": root + "/v1" if provider == "openai" else root}


@pytest.mark.parametrize("how", ["model_copy", "assignment"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_used_model_pointed_at_another_server_sends_there_with_its_keys(
    two_origins: Any, provider: str, how: str
) -> None:
    """A model copied (or re-pointed) after its first call must not keep clients made for the old server:
    those send to the old server (the SDKs bake the URL in) or strip the keys as bound for a foreign origin."""
    (first_root, first_script), (second_root, second_script) = two_origins
    first_script.set(Reply(body=ANSWERS[provider]))
    second_script.set(Reply(body=ANSWERS[provider]))
    model = _model(provider, first_root)
    assert model.invoke("hi").content == "Hello!"  # its clients now exist, made for the first server

    if how == "model_copy":
        moved = model.model_copy(update=_base_field(provider, second_root))
    else:
        moved = model
        for name, value in _base_field(provider, second_root).items():
            setattr(moved, name, value)
    assert moved.invoke("hi").content == "Hello!"

    assert len(first_script.requests) == 1
    (request,) = second_script.requests
    assert all(_carries(request["headers"], secret) for secret in PLANTED)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_copy_changing_no_client_field_shares_the_clients(two_origins: Any, provider: str) -> None:
    """The router's per-deployment copies (retries off) keep using the model's connection pool."""
    (root, script), _ = two_origins
    script.set(Reply(body=ANSWERS[provider]))
    model = _model(provider, root)
    model.invoke("hi")
    copy = model.model_copy(update={"max_retries": 0, "temperature": 0.5})
    assert copy.client is model.client
