"""MistralChatModel's error mapping, driven through the real mistralai SDK.

A real HTTP server on 127.0.0.1 answers from a script; the SDK's own retry loop is
off, so the number of requests the server saw is exactly what the gateway's
retry policy decided.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.exceptions import ContextOverflowError, ModelRateLimitError

from langchain_multigateway import RetryPolicy
from langchain_multigateway.chat_models.mistral import MistralChatModel, translate_mistral_error
from langchain_multigateway.errors import (
    AuthenticationError,
    ContextWindowExceededError,
    GatewayConnectionError,
    GatewayTimeoutError,
    InvalidRequestError,
    MissingAPIKeyError,
    ModelNotFoundGatewayError,
    ProviderError,
    RateLimitError,
)
from tests.loopback import Reply, Script, serve, sse

FAST = RetryPolicy(max_attempts=3, initial_delay=0.01, multiplier=1, max_delay=0.02, jitter=0, deadline=10)

OK = Reply(
    200,
    {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": "mistral-small-2503",
        "created": 1,
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
    },
)
LLAMA_CONTEXT = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 40000,
        "n_ctx": 32768,
    }
}
MISTRAL_CONTEXT = {
    "object": "error",
    "message": "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length",
    "type": "invalid_request_error",
    "param": None,
    "code": None,
}


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[str, Script]]:
    with serve() as (base_url, script):
        yield base_url.removesuffix("/v1"), script  # the SDK adds /v1 itself


@pytest.fixture
def url(loopback: tuple[str, Script]) -> str:
    return loopback[0]


@pytest.fixture
def script(loopback: tuple[str, Script]) -> Script:
    return loopback[1]


def make(url: str, **kwargs: Any) -> MistralChatModel:
    params: dict[str, Any] = {"server_url": url, "api_key": "test-key", "retry_policy": FAST, "timeout": 5}
    params.update(kwargs)
    return MistralChatModel(**params)


def chat_hits(script: Script) -> int:
    return sum(hit["path"] == "/v1/chat/completions" for hit in script.requests)


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    # The gateway's own error, not pydantic's wrapper around it.
    with pytest.raises(MissingAPIKeyError, match="MISTRAL_API_KEY") as info:
        MistralChatModel()
    assert info.value.provider == "mistral"
    assert isinstance(info.value, ValueError)


def test_key_is_read_from_env_and_sent_as_bearer(url: str, script: Script, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "env-key")
    monkeypatch.setenv("MISTRAL_SERVER_URL", url + "/v1/")
    script.set(OK)
    model = MistralChatModel(retry_policy=FAST)
    assert "env-key" not in repr(model)
    assert model.invoke("hello").content == "hi"
    assert script.requests[0]["headers"]["authorization"] == "Bearer env-key"
    assert script.requests[0]["path"] == "/v1/chat/completions"  # trailing /v1 dropped, not doubled


def test_401_is_authentication_error_not_retried(url: str, script: Script) -> None:
    script.set(Reply(401, {"message": "Unauthorized", "request_id": "x"}, headers={"x-request-id": "req-401"}))
    with pytest.raises(AuthenticationError) as info:
        make(url).invoke("hello")
    err = info.value
    assert err.status_code == 401
    assert err.request_id == "req-401"
    assert err.message == "Unauthorized"
    assert err.provider == "mistral"
    assert not err.retryable
    assert type(err.__cause__).__name__ == "SDKError"
    assert chat_hits(script) == 1


def test_404_is_model_not_found(url: str, script: Script) -> None:
    script.set(Reply(404, {"object": "error", "message": "Invalid model: nope", "type": "invalid_model"}))
    with pytest.raises(ModelNotFoundGatewayError, match="Invalid model: nope") as info:
        make(url, model="nope").invoke("hello")
    assert info.value.status_code == 404
    assert info.value.model == "nope"
    assert chat_hits(script) == 1


@pytest.mark.parametrize("body", [LLAMA_CONTEXT, MISTRAL_CONTEXT], ids=["llama.cpp", "mistral"])
def test_400_context_length(url: str, script: Script, body: dict[str, Any]) -> None:
    script.set(Reply(400, body, headers={"mistral-correlation-id": "corr-1"}))
    with pytest.raises(ContextWindowExceededError) as info:
        make(url).invoke("hello")
    assert isinstance(info.value, ContextOverflowError)
    assert info.value.status_code == 400
    assert info.value.request_id == "corr-1"
    assert info.value.body == body
    assert chat_hits(script) == 1


def test_400_other_is_invalid_request(url: str, script: Script) -> None:
    script.set(Reply(400, {"error": {"message": "Invalid tool_choice: any", "type": "invalid_request_error"}}))
    with pytest.raises(InvalidRequestError, match="Invalid tool_choice") as info:
        make(url).invoke("hello")
    assert not isinstance(info.value, ContextWindowExceededError)
    assert chat_hits(script) == 1


def test_422_validation_error(url: str, script: Script) -> None:
    detail = {"detail": [{"loc": ["body", "temperature"], "msg": "too high", "type": "value_error"}]}
    script.set(Reply(422, detail))
    with pytest.raises(InvalidRequestError, match="too high") as info:
        make(url).invoke("hello")
    assert info.value.status_code == 422
    assert type(info.value.__cause__).__name__ == "HTTPValidationError"
    assert chat_hits(script) == 1


def test_429_retried_per_policy_then_raised_with_retry_after(url: str, script: Script) -> None:
    script.set(Reply(429, {"message": "Requests rate limit exceeded"}, headers={"retry-after": "0.05"}))
    with pytest.raises(RateLimitError) as info:
        make(url).invoke("hello")
    err = info.value
    assert isinstance(err, ModelRateLimitError)
    assert err.retry_after == pytest.approx(0.05)
    assert err.retryable
    # 3 = our policy's attempts; the SDK would retry 429 on its own if its loop were on.
    assert chat_hits(script) == 3


def test_429_then_success(url: str, script: Script) -> None:
    script.set(Reply(429, {"message": "slow down"}, headers={"retry-after": "0.01"}), OK)
    assert make(url).invoke("hello").content == "hi"
    assert chat_hits(script) == 2


def test_429_asking_too_long_a_wait_is_not_waited_on(url: str, script: Script) -> None:
    script.set(Reply(429, {"message": "slow down"}, headers={"retry-after": "120"}))
    with pytest.raises(RateLimitError) as info:
        make(url).invoke("hello")
    assert info.value.retry_after == 120
    assert chat_hits(script) == 1


def test_max_retries_zero_means_one_try(url: str, script: Script) -> None:
    script.set(Reply(503, "upstream down", content_type="text/plain"))
    with pytest.raises(ProviderError):
        make(url, retry_policy=None, max_retries=0).invoke("hello")
    assert chat_hits(script) == 1


def test_503_retried_then_raised(url: str, script: Script) -> None:
    script.set(Reply(503, "upstream connect error", content_type="text/plain"))
    with pytest.raises(ProviderError, match="upstream connect error") as info:
        make(url).invoke("hello")
    assert info.value.status_code == 503
    assert info.value.retryable
    assert chat_hits(script) == 3


def test_503_then_success(url: str, script: Script) -> None:
    script.set(Reply(503, {"message": "overloaded"}), OK)
    result = make(url).invoke("hello")
    assert result.content == "hi"
    assert result.usage_metadata == {"input_tokens": 4, "output_tokens": 2, "total_tokens": 6}
    assert chat_hits(script) == 2


def test_malformed_json_is_provider_error(url: str, script: Script) -> None:
    script.set(Reply(200, b'{"id": "cmpl-1", "choices": [', headers={"x-request-id": "req-bad"}))
    with pytest.raises(ProviderError, match="malformed response") as info:
        make(url, retry_policy=RetryPolicy(max_attempts=2, initial_delay=0)).invoke("hello")
    assert info.value.request_id == "req-bad"
    assert type(info.value.__cause__).__name__ == "ResponseValidationError"
    assert chat_hits(script) == 2


def test_empty_choices_is_provider_error(url: str, script: Script) -> None:
    body = {"id": "c", "object": "chat.completion", "model": "m", "created": 1, "usage": {}, "choices": []}
    script.set(Reply(200, body))
    with pytest.raises(ProviderError, match="no choices"):
        make(url, retry_policy=RetryPolicy(max_attempts=1)).invoke("hello")


def test_timeout(url: str, script: Script) -> None:
    script.set(Reply(200, OK.body, delay=0.6))
    with pytest.raises(GatewayTimeoutError) as info:
        make(url, timeout=0.2, retry_policy=RetryPolicy(max_attempts=2, initial_delay=0)).invoke("hello")
    assert info.value.retryable
    assert chat_hits(script) == 2


def test_connection_refused() -> None:
    with serve() as (url, _):
        pass  # closed again: nothing listens on its port now
    model = MistralChatModel(server_url=url, api_key="k", retry_policy=RetryPolicy(max_attempts=1))
    with pytest.raises(GatewayConnectionError) as info:
        model.invoke("hello")
    assert info.value.__cause__ is not None


def test_unknown_sdk_keyword_is_invalid_request(url: str, script: Script) -> None:
    script.set(OK)
    with pytest.raises(InvalidRequestError, match="refused the request"):
        make(url).invoke("hello", no_such_option=1)
    assert chat_hits(script) == 0


# ---------------------------------------------------------------- streaming and async
def test_stream_401(url: str, script: Script) -> None:
    script.set(Reply(401, {"message": "Unauthorized"}, headers={"x-request-id": "req-s"}))
    with pytest.raises(AuthenticationError) as info:
        list(make(url).stream("hello"))
    assert info.value.request_id == "req-s"
    assert chat_hits(script) == 1


def test_stream_503_retried_before_first_chunk(url: str, script: Script) -> None:
    event = {"id": "s1", "model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
    script.set(Reply(503, {"message": "overloaded"}), sse(event))
    chunks = list(make(url).stream("hello"))
    assert "".join(str(c.content) for c in chunks) == "hi"
    assert chat_hits(script) == 2
    assert script.requests[-1]["body"]["stream"] is True


def test_stream_error_event(url: str, script: Script) -> None:
    script.set(sse({"object": "error", "message": "model crashed", "type": "internal_error"}))
    with pytest.raises(ProviderError, match="model crashed"):
        list(make(url, retry_policy=RetryPolicy(max_attempts=1)).stream("hello"))


def test_stream_non_json_event(url: str, script: Script) -> None:
    script.set(sse("this is not json"))
    with pytest.raises(ProviderError, match="malformed"):
        list(make(url, retry_policy=RetryPolicy(max_attempts=1)).stream("hello"))


async def test_ainvoke_429(url: str, script: Script) -> None:
    script.set(Reply(429, {"message": "rate"}, headers={"retry-after": "0.02"}))
    with pytest.raises(RateLimitError) as info:
        await make(url).ainvoke("hello")
    assert info.value.retry_after == pytest.approx(0.02)
    assert chat_hits(script) == 3


async def test_ainvoke_404(url: str, script: Script) -> None:
    script.set(Reply(404, {"message": "no such model"}))
    with pytest.raises(ModelNotFoundGatewayError):
        await make(url).ainvoke("hello")
    assert chat_hits(script) == 1


async def test_astream_503_then_success(url: str, script: Script) -> None:
    event = {"id": "s1", "model": "m", "choices": [{"index": 0, "delta": {"content": "yo"}, "finish_reason": "stop"}]}
    script.set(Reply(503, "down", content_type="text/plain"), sse(event))
    chunks = [c async for c in make(url).astream("hello")]
    assert "".join(str(c.content) for c in chunks) == "yo"
    assert chunks[-1].chunk_position == "last"
    assert chat_hits(script) == 2


async def test_astream_400_context(url: str, script: Script) -> None:
    script.set(Reply(400, LLAMA_CONTEXT))
    with pytest.raises(ContextWindowExceededError):
        _ = [c async for c in make(url).astream("hello")]
    assert chat_hits(script) == 1


# ---------------------------------------------------------------- health
def test_health_ok_against_openai_shaped_model_list(url: str, script: Script) -> None:
    # llama.cpp's list is not in Mistral's schema; a 200 still means it serves.
    script.set(Reply(200, {"object": "list", "data": [{"id": "gemma", "object": "model", "owned_by": "me"}]}))
    status = make(url).health_check()
    assert status.ok, status.error
    assert status.provider == "mistral"
    assert script.requests[0]["path"] == "/v1/models"


def test_health_reports_401(url: str, script: Script) -> None:
    script.set(Reply(401, {"message": "Unauthorized"}))
    status = make(url).health_check()
    assert not status.ok
    assert status.error is not None
    assert status.error.startswith("AuthenticationError")


async def test_ahealth(url: str, script: Script) -> None:
    script.set(Reply(200, {"object": "list", "data": []}))
    assert (await make(url).ahealth_check()).ok
    script.set(Reply(503, "down", content_type="text/plain"))
    status = await make(url).ahealth_check()
    assert not status.ok
    assert status.error is not None
    assert "ProviderError" in status.error


def test_translate_passes_gateway_errors_and_wraps_unknown() -> None:
    err = RateLimitError("x")
    assert translate_mistral_error(err) is err
    wrapped = translate_mistral_error(RuntimeError("boom"), model="m")
    assert isinstance(wrapped, ProviderError)
    assert not wrapped.retryable
    assert isinstance(translate_mistral_error(ValueError("bad")), ProviderError)
