"""Credentials stay home on redirects, on every provider's own HTTP clients (the SDK path).

Two real loopback HTTP servers on two ports are two origins. The deployment's server answers
the chat request with a 307 whose Location names the other server (or, as the control, itself);
the test asserts what the second hop carried. The planted keys sit in ``default_headers``
(``api-key``, Azure style; ``X-Portkey-Api-Key``) and in each provider's own key header
(``Authorization`` or ``x-api-key``). httpx alone would drop only ``Authorization`` across origins;
the same-origin control shows the keys are dropped because the host changed, not always.
"""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest

from langchain_multigateway import RetryPolicy
from langchain_multigateway.chat_models._redirects import acredentials_stay_home, credentials_stay_home
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.mistral import MistralChatModel
from langchain_multigateway.chat_models.ollama import OllamaChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from tests.loopback import Reply, Script, chat_completion, chat_stream, serve
from tests.unit.test_provider_event_loops import OLLAMA_ANSWER
from tests.unit.test_provider_time_limits import anthropic_message, anthropic_stream

PROVIDER_KEY = "sk-redirect-provider-" + "q7" * 12
AZURE_STYLE_KEY = "az-redirect-header-" + "w3" * 12
PORTKEY_KEY = "pk-redirect-header-" + "m5" * 12
PLANTED = (PROVIDER_KEY, AZURE_STYLE_KEY, PORTKEY_KEY)
HEADERS = {"api-key": AZURE_STYLE_KEY, "X-Portkey-Api-Key": PORTKEY_KEY, "x-trace-id": "trace-1"}
ONE_TRY = RetryPolicy(max_attempts=1)
PROVIDERS = ["openai", "mistral", "anthropic", "ollama"]
ANSWERS: dict[str, Any] = {
    "openai": chat_completion(),
    "mistral": chat_completion(),
    "anthropic": anthropic_message(),
    "ollama": OLLAMA_ANSWER,
}

OLLAMA_LINES = [
    *({**OLLAMA_ANSWER, "message": {"role": "assistant", "content": p}, "done": False} for p in ("Hel", "lo!")),
    {**OLLAMA_ANSWER, "message": {"role": "assistant", "content": ""}},  # the closing line, with the counts
]
STREAMS: dict[str, Reply] = {
    "openai": Reply(sse=chat_stream(["Hel", "lo!"])),
    "mistral": Reply(sse=chat_stream(["Hel", "lo!"])),
    "anthropic": Reply(sse=anthropic_stream(["Hel", "lo!"])),
    "ollama": Reply(
        body="".join(json.dumps(line) + "\n" for line in OLLAMA_LINES),
        content_type="application/x-ndjson",
    ),
}


def _model(provider: str, root: str) -> Any:
    if provider == "openai":
        return OpenAIChatModel(
            model="stub-model",
            base_url=root + "/v1",
            api_key=PROVIDER_KEY,
            default_headers=HEADERS,
            retry_policy=ONE_TRY,
        )
    if provider == "mistral":
        return MistralChatModel(
            model="stub-model", server_url=root, api_key=PROVIDER_KEY, default_headers=HEADERS, retry_policy=ONE_TRY
        )
    if provider == "anthropic":
        return AnthropicChatModel(
            model="claude-x", base_url=root, api_key=PROVIDER_KEY, default_headers=HEADERS, retry_policy=ONE_TRY
        )
    return OllamaChatModel(
        model="llama3.2", base_url=root, api_key=PROVIDER_KEY, default_headers=HEADERS, retry_policy=ONE_TRY
    )


@pytest.fixture
def two_origins() -> Iterator[tuple[tuple[str, Script], tuple[str, Script]]]:
    """The deployment's server and another one: same host, another port, so another origin."""
    with serve() as (home, home_script), serve() as (away, away_script):
        yield (home.removesuffix("/v1"), home_script), (away.removesuffix("/v1"), away_script)


def _call(provider: str, root: str, asynchronous: bool) -> str:
    """One call by a new model, which is then dropped: its clients must close (no socket left to the collector)."""
    gc.collect()  # what earlier tests left behind is not this call's to report
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _model(provider, root)
        reply = asyncio.run(model.ainvoke("hi")) if asynchronous else model.invoke("hi")
        del model
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
    return str(reply.content)


def _stream(provider: str, root: str, asynchronous: bool) -> str:
    model = _model(provider, root)
    if not asynchronous:
        return "".join(str(chunk.content) for chunk in model.stream("hi"))

    async def collect() -> str:
        return "".join([str(chunk.content) async for chunk in model.astream("hi")])

    return asyncio.run(collect())


def _carries(headers: dict[str, str], secret: str) -> bool:
    return any(secret in value for value in headers.values())


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_redirect_to_another_origin_carries_no_credential_header(
    two_origins: Any, provider: str, asynchronous: bool
) -> None:
    (home, home_script), (away, away_script) = two_origins
    home_script.set(Reply(307, body="", headers={"location": f"{away}/moved"}))
    away_script.set(Reply(body=ANSWERS[provider]))

    assert _call(provider, home, asynchronous) == "Hello!"

    (first,) = home_script.requests
    (second,) = away_script.requests
    assert second["path"] == "/moved"
    assert second["method"] == "POST"
    assert all(_carries(first["headers"], secret) for secret in PLANTED)  # home gets every key ...
    assert not any(_carries(second["headers"], secret) for secret in PLANTED)  # ... another origin none
    assert "api-key" not in second["headers"]
    assert "x-portkey-api-key" not in second["headers"]
    assert second["headers"]["x-trace-id"] == "trace-1"  # headers that are no credential still go


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_streamed_call_redirected_to_another_origin_carries_no_credential_header(
    two_origins: Any, provider: str, asynchronous: bool
) -> None:
    (home, home_script), (away, away_script) = two_origins
    home_script.set(Reply(307, body="", headers={"location": f"{away}/moved"}))
    away_script.set(STREAMS[provider])

    assert _stream(provider, home, asynchronous) == "Hello!"

    (first,) = home_script.requests
    (second,) = away_script.requests
    assert all(_carries(first["headers"], secret) for secret in PLANTED)
    assert not any(_carries(second["headers"], secret) for secret in PLANTED)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_redirect_within_the_home_origin_keeps_the_credential_headers(
    two_origins: Any, provider: str, asynchronous: bool
) -> None:
    (home, home_script), _ = two_origins
    home_script.set(Reply(307, body="", headers={"location": f"{home}/moved"}), Reply(body=ANSWERS[provider]))

    assert _call(provider, home, asynchronous) == "Hello!"

    first, second = home_script.requests
    assert second["path"] == "/moved"
    assert all(_carries(first["headers"], secret) for secret in PLANTED)
    assert all(_carries(second["headers"], secret) for secret in PLANTED)


def test_an_http_to_https_upgrade_of_the_home_host_is_another_origin() -> None:
    """Stricter than httpx's rule for ``Authorization``: a key already sent in clear is not sent again."""
    hook = credentials_stay_home("http://gateway.example/v1")
    upgraded = httpx.Request("POST", "https://gateway.example/v1/chat", headers={"api-key": AZURE_STYLE_KEY})
    hook(upgraded)
    assert "api-key" not in upgraded.headers


def test_a_default_port_written_out_is_the_same_origin() -> None:
    hook = credentials_stay_home("https://gateway.example:443/v1")
    same = httpx2.Request("POST", "https://GATEWAY.example/v1/chat", headers={"api-key": AZURE_STYLE_KEY})
    hook(same)
    assert same.headers["api-key"] == AZURE_STYLE_KEY


def test_every_copy_of_a_repeated_credential_header_is_dropped() -> None:
    hook = credentials_stay_home("https://gateway.example")
    request = httpx.Request(
        "POST", "https://elsewhere.example/", headers=[("api-key", "a" * 20), ("Api-Key", "b" * 20)]
    )
    hook(request)
    assert "api-key" not in request.headers


def test_the_async_hook_drops_what_the_sync_hook_drops() -> None:
    hook = acredentials_stay_home("https://gateway.example")
    request = httpx2.Request("POST", "https://elsewhere.example/", headers={"x-api-key": PROVIDER_KEY, "accept": "*/*"})
    asyncio.run(hook(request))  # type: ignore[arg-type]
    assert dict(request.headers) == {"accept": "*/*", "host": "elsewhere.example", "content-length": "0"}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
def test_a_client_the_user_passed_is_used_as_given(two_origins: Any, provider: str) -> None:
    """The hook goes on the clients the package makes; the user's own client keeps the hooks it had."""
    (home, home_script), _ = two_origins
    home_script.set(Reply(body=ANSWERS[provider]))
    own = (httpx2.Client if provider == "openai" else httpx.Client)()
    model = _model(provider, home).model_copy(update={"http_client": own})
    assert model.invoke("hi").content == "Hello!"
    assert own.event_hooks == {"request": [], "response": []}
    own.close()
