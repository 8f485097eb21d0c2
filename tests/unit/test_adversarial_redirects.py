"""Hostile upstreams and harsh runtimes against the providers' own HTTP clients (redirect hook, client lifecycle).

Real loopback HTTP servers (two ports: two origins); nothing of the code under test is mocked.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from langchain_multigateway import RetryPolicy
from langchain_multigateway.errors import AuthenticationError, ProviderError
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


def _ask(model: Any, how: str) -> str:
    if how == "invoke":
        return str(model.invoke("hi").content)
    if how == "ainvoke":
        return str(asyncio.run(model.ainvoke("hi")).content)
    return "".join(str(chunk.content) for chunk in model.stream("hi"))


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream"])
@pytest.mark.parametrize("status", [301, 302, 303])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_redirect_that_would_resend_the_post_as_a_get_is_a_clear_error_and_not_followed(
    two_origins: Any, provider: str, status: int, how: str
) -> None:
    """httpx follows a 301/302/303 to a POST with a bodiless GET: whatever page answers it came back as
    "malformed JSON" (retryable, so retried into the same redirect). The call stops at the redirect instead."""
    (root, script), _ = two_origins
    script.set(
        Reply(status, body="", headers={"location": "/login"}),
        Reply(body="<html>sign in</html>", content_type="text/html"),
    )
    model = _model(provider, root)

    with pytest.raises(ProviderError) as caught:
        _ask(model, how)

    assert [request["method"] for request in script.requests] == ["POST"]  # the GET never went out
    error = caught.value
    assert error.retryable is False
    assert error.status_code == status
    assert f"HTTP {status}" in error.message
    assert f"{root}/login" in error.message  # where it was sent, resolved against the request's URL
    assert "base URL" in error.message


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_redirect_307_keeps_the_post_and_is_followed(two_origins: Any, provider: str) -> None:
    (root, script), _ = two_origins
    script.set(Reply(307, body="", headers={"location": "/moved"}), Reply(body=ANSWERS[provider]))
    assert _model(provider, root).invoke("hi").content == "Hello!"
    assert [(request["method"], request["path"]) for request in script.requests][1] == ("POST", "/moved")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_redirect_loop_is_one_clear_error_not_retried_and_shows_no_key(two_origins: Any, provider: str) -> None:
    """The openai SDK reported a redirect loop as "Connection error." (retryable): every retry looped again."""
    (root, script), _ = two_origins
    script.set(Reply(307, body="", headers={"location": f"/again?api-key={PLANTED[1]}"}))
    model = _model(provider, root).model_copy(update={"retry_policy": RetryPolicy(max_attempts=3)})

    with pytest.raises(ProviderError) as caught:
        model.invoke("hi")

    error = caught.value
    assert error.retryable is False
    assert "keeps redirecting" in error.message
    assert len(script.requests) == 21  # httpx's 20 redirects after the first try, once: no retry
    assert not any(secret in str(error) or secret in repr(error) for secret in PLANTED)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_chain_home_then_away_then_home_never_shows_the_away_server_a_key(two_origins: Any, provider: str) -> None:
    """The keys are dropped from the request once it heads elsewhere; they do not come back on the way home
    (as httpx does for Authorization): the other server never sees one, the home server's last hop has none."""
    (home, home_script), (away, away_script) = two_origins
    home_script.set(Reply(307, body="", headers={"location": f"{away}/hop"}), Reply(body=ANSWERS[provider]))
    away_script.set(Reply(307, body="", headers={"location": f"{home}/back"}))

    assert _model(provider, home).invoke("hi").content == "Hello!"

    first, back = home_script.requests
    (hop,) = away_script.requests
    assert all(_carries(first["headers"], secret) for secret in PLANTED)
    assert not any(_carries(hop["headers"], secret) for secret in PLANTED)
    assert back["path"] == "/back"
    assert not any(_carries(back["headers"], secret) for secret in PLANTED)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_key_under_a_harmless_header_name_stays_home(two_origins: Any, provider: str, asynchronous: bool) -> None:
    """``default_headers={"x-tenant": <the key>}``: the name says nothing, the value is a credential the
    process knows (the model's own key), so the other origin must not get it either."""
    (home, home_script), (away, away_script) = two_origins
    home_script.set(Reply(307, body="", headers={"location": f"{away}/moved"}))
    away_script.set(Reply(body=ANSWERS[provider]))
    model = _model(provider, home)
    model = model.model_copy(update={"default_headers": {**model.default_headers, "x-tenant": PLANTED[0]}})

    reply = asyncio.run(model.ainvoke("hi")) if asynchronous else model.invoke("hi")

    assert reply.content == "Hello!"
    (first,) = home_script.requests
    (second,) = away_script.requests
    assert first["headers"]["x-tenant"] == PLANTED[0]
    assert "x-tenant" not in second["headers"]
    assert second["headers"]["x-trace-id"] == "trace-1"


@pytest.mark.parametrize("how", ["deepcopy", "model_copy_deep", "pickle"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_used_model_can_be_deep_copied_or_pickled_and_the_copy_makes_its_own_clients(
    two_origins: Any, provider: str, how: str
) -> None:
    """Once a model had made its clients, deepcopy / model_copy(deep=True) / pickle failed with
    "cannot pickle '_thread.RLock' object" (a client's pool and locks cannot be copied)."""
    (root, script), _ = two_origins
    script.set(Reply(body=ANSWERS[provider]))
    model = _model(provider, root)
    assert model.invoke("hi").content == "Hello!"

    if how == "deepcopy":
        twin = copy.deepcopy(model)
    elif how == "model_copy_deep":
        twin = model.model_copy(deep=True)
    else:
        twin = pickle.loads(pickle.dumps(model))

    assert twin.invoke("hi").content == "Hello!"
    assert asyncio.run(twin.ainvoke("hi")).content == "Hello!"
    assert twin.client is not model.client
    assert model.invoke("hi").content == "Hello!"  # the original's clients are untouched
    request = script.requests[-2]  # the copy's sync call carried the keys like the original's
    assert all(_carries(request["headers"], secret) for secret in PLANTED)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refused_redirect_with_an_unparsable_location_still_says_what_happened(
    two_origins: Any, provider: str
) -> None:
    """Resolving the Location for the message must not turn into its own error ("InvalidURL: Invalid port")."""
    (root, script), _ = two_origins
    script.set(Reply(302, body="", headers={"location": "http://[::1"}))

    with pytest.raises(ProviderError) as caught:
        _model(provider, root).invoke("hi")

    assert "HTTP 302" in caught.value.message
    assert "http://[::1" in caught.value.message
    assert caught.value.retryable is False


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_401_from_the_host_a_redirect_named_says_the_keys_were_withheld(
    two_origins: Any, provider: str, how: str
) -> None:
    """The other origin is sent no key, so it answers 401: the error must say why, not read as a bad key."""
    (home, home_script), (away, away_script) = two_origins
    home_script.set(Reply(307, body="", headers={"location": f"{away}/moved"}))
    away_script.set(Reply(401, body={"error": {"message": "missing API key", "type": "authentication_error"}}))

    with pytest.raises(AuthenticationError) as caught:
        _ask(_model(provider, home), how)

    message = caught.value.message
    assert "missing API key" in message  # the server's own words stay
    assert f"answered by {away} after a redirect" in message
    assert "set the base URL" in message


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_401_from_the_home_server_itself_says_nothing_of_redirects(two_origins: Any, provider: str) -> None:
    """The note belongs to the call that was redirected, not to the next one in the same thread."""
    (home, home_script), (away, away_script) = two_origins
    model = _model(provider, home)
    home_script.set(Reply(307, body="", headers={"location": f"{away}/moved"}))
    away_script.set(Reply(401, body={"error": {"message": "missing API key"}}))
    with pytest.raises(AuthenticationError):
        model.invoke("hi")

    home_script.set(Reply(401, body={"error": {"message": "invalid API key"}}))
    with pytest.raises(AuthenticationError) as caught:
        model.invoke("hi")
    assert "redirect" not in caught.value.message
