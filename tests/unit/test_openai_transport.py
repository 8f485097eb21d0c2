"""OpenAIChatModel's real transport (openai SDK over HTTP) against a scripted loopback server.

Covers what a healthy recording cannot show: each failure class, retries
counted at the server, Retry-After honoured, streams failing before and after
their first chunk, and the exact request bodies sent.
"""

from __future__ import annotations

import time

import pytest
from langchain_core.exceptions import ModelRateLimitError
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel

from langchain_multigateway import (
    AuthenticationError,
    ContextWindowExceededError,
    GatewayConnectionError,
    GatewayTimeoutError,
    InvalidRequestError,
    ModelNotFoundGatewayError,
    OpenAIChatModel,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RetryPolicy,
)
from tests.loopback import Reply, chat_completion, chat_stream, serve

SECRET = "sk-transport-test-secret-value-123456"
FAST = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05, jitter=0)


def _model(base_url: str, **kwargs: object) -> OpenAIChatModel:
    params: dict[str, object] = {"model": "stub-model", "base_url": base_url, "api_key": SECRET, "retry_policy": FAST}
    params.update(kwargs)
    return OpenAIChatModel(**params)  # type: ignore[arg-type]


def _error(status: int, message: str, **headers: str) -> Reply:
    return Reply(status=status, body={"error": {"message": message, "type": "x"}}, headers=headers)


@pytest.mark.parametrize(
    ("status", "message", "cls"),
    [
        (401, "Incorrect API key provided", AuthenticationError),
        (403, "You may not use this model", PermissionDeniedError),
        (404, "The model `nope` does not exist", ModelNotFoundGatewayError),
        (400, "Invalid value for 'temperature'", InvalidRequestError),
        (400, "This model's maximum context length is 8192 tokens", ContextWindowExceededError),
    ],
)
def test_client_errors_map_to_their_class_and_are_not_retried(status: int, message: str, cls: type) -> None:
    with serve(_error(status, message, **{"x-request-id": "req_abc"})) as (url, script):
        with pytest.raises(cls) as caught:
            _model(url).invoke("hi")
    err = caught.value
    assert type(err) is cls
    assert err.status_code == status
    assert err.request_id == "req_abc"
    assert message in err.message
    assert err.provider == "openai"
    assert err.model == "stub-model"
    assert err.retryable is False
    assert err.__cause__ is not None  # the SDK's exception is chained
    assert len(script.requests) == 1


def test_rate_limit_honours_retry_after_then_succeeds() -> None:
    limited = _error(429, "Rate limit reached", **{"retry-after": "0.2"})
    with serve(limited, limited, Reply(body=chat_completion("done"))) as (url, script):
        start = time.perf_counter()
        reply = _model(url).invoke("hi")
        elapsed = time.perf_counter() - start
    assert reply.content == "done"
    assert len(script.requests) == 3
    assert elapsed >= 0.4  # two waits of the 0.2 s the server asked for


def test_rate_limit_exhausted_raises_typed_error_and_sdk_does_not_retry() -> None:
    with serve(_error(429, "slow down", **{"retry-after": "0"})) as (url, script):
        with pytest.raises(RateLimitError) as caught:
            _model(url).invoke("hi")
    assert isinstance(caught.value, ModelRateLimitError)  # LangChain's own class
    assert caught.value.retry_after == 0.0
    assert caught.value.retryable
    # Exactly our policy's attempts: the SDK's own retry loop is off.
    assert len(script.requests) == FAST.max_attempts


def test_retry_after_longer_than_policy_accepts_is_not_waited_on() -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay=0.01, max_retry_after=1.0)
    with serve(_error(429, "come back in an hour", **{"retry-after": "3600"})) as (url, script):
        start = time.perf_counter()
        with pytest.raises(RateLimitError) as caught:
            _model(url, retry_policy=policy).invoke("hi")
    assert time.perf_counter() - start < 1.0
    assert caught.value.retry_after == 3600.0
    assert len(script.requests) == 1


def test_server_errors_are_retried() -> None:
    with serve(_error(503, "overloaded"), Reply(body=chat_completion("ok"))) as (url, script):
        assert _model(url).invoke("hi").content == "ok"
    assert len(script.requests) == 2


def test_server_error_after_budget_is_provider_error() -> None:
    with serve(_error(500, "boom")) as (url, script), pytest.raises(ProviderError) as caught:
        _model(url).invoke("hi")
    assert caught.value.status_code == 500
    assert len(script.requests) == 3


def test_timeout_maps_to_timeout_error() -> None:
    with serve(Reply(body=chat_completion(), delay=0.5)) as (url, _), pytest.raises(GatewayTimeoutError):
        _model(url, timeout=0.1, max_retries=0, retry_policy=None).invoke("hi")


def test_connection_reset_maps_to_connection_error() -> None:
    with serve(Reply(reset=True)) as (url, script), pytest.raises(GatewayConnectionError) as caught:
        _model(url).invoke("hi")
    assert caught.value.retryable
    assert len(script.requests) == 3


def test_unreachable_server_maps_to_connection_error() -> None:
    with pytest.raises(GatewayConnectionError):
        _model("http://127.0.0.1:9/v1", max_retries=0, retry_policy=None).invoke("hi")


def test_malformed_json_is_provider_error() -> None:
    with serve(Reply(body=b"{not json")) as (url, _), pytest.raises(ProviderError):
        _model(url, max_retries=0, retry_policy=None).invoke("hi")


def test_empty_choices_is_an_error_not_an_empty_answer() -> None:
    body = chat_completion()
    body["choices"] = []
    with serve(Reply(body=body)) as (url, _), pytest.raises(ProviderError, match="no choices"):
        _model(url, max_retries=0, retry_policy=None).invoke("hi")


async def test_async_retries_then_succeeds() -> None:
    with serve(_error(502, "bad gateway"), Reply(body=chat_completion("async ok"))) as (url, script):
        reply = await _model(url).ainvoke("hi")
    assert reply.content == "async ok"
    assert len(script.requests) == 2


def test_stream_retried_before_first_chunk() -> None:
    with serve(_error(503, "warming up"), Reply(sse=chat_stream(["Hel", "lo"]))) as (url, script):
        chunks = list(_model(url).stream("hi"))
    assert "".join(str(c.content) for c in chunks) == "Hello"
    assert len(script.requests) == 2
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].usage_metadata == {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}


def test_stream_cut_after_first_chunk_raises_and_repeats_nothing() -> None:
    cut = Reply(sse=chat_stream(["one ", "two ", "three"]), cut_after=1)
    with serve(cut, Reply(sse=chat_stream(["never"]))) as (url, script):
        seen: list[str] = []
        with pytest.raises((GatewayConnectionError, ProviderError)):
            for chunk in _model(url).stream("hi"):
                seen.append(str(chunk.content))
    assert seen == ["one "]
    assert len(script.requests) == 1  # no retry once text reached the caller


async def test_astream_retried_before_first_chunk() -> None:
    with serve(Reply(reset=True), Reply(sse=chat_stream(["a", "b"]))) as (url, script):
        text = "".join([str(c.content) async for c in _model(url).astream("hi")])
    assert text == "ab"
    assert len(script.requests) == 2


def test_request_body_shape() -> None:
    class Lookup(BaseModel):
        """Look something up."""

        query: str

    with serve(Reply(body=chat_completion()), Reply(sse=chat_stream(["x"]))) as (url, script):
        llm = _model(url, temperature=0.3, max_tokens=50, parallel_tool_calls=False, stop=["END"])
        llm.bind_tools([Lookup], tool_choice="Lookup").invoke(
            [
                SystemMessage("be brief"),
                HumanMessage("find cats"),
                AIMessage("", tool_calls=[{"name": "Lookup", "args": {"query": "cats"}, "id": "call_1"}]),
                ToolMessage("3 cats", tool_call_id="call_1"),
            ]
        )
        list(llm.stream("plain"))
    tool_body = script.requests[0]["body"]
    assert tool_body["model"] == "stub-model"
    assert tool_body["temperature"] == 0.3
    assert tool_body["max_tokens"] == 50
    assert tool_body["stop"] == ["END"]
    assert tool_body["tool_choice"] == {"type": "function", "function": {"name": "Lookup"}}
    assert tool_body["parallel_tool_calls"] is False
    assert [m["role"] for m in tool_body["messages"]] == ["system", "user", "assistant", "tool"]
    assert tool_body["messages"][2]["tool_calls"][0]["function"] == {"name": "Lookup", "arguments": '{"query": "cats"}'}
    assert tool_body["messages"][3] == {"role": "tool", "content": "3 cats", "tool_call_id": "call_1"}
    stream_body = script.requests[1]["body"]
    assert stream_body["stream"] is True
    assert stream_body["stream_options"] == {"include_usage": True}
    assert "parallel_tool_calls" not in stream_body  # only sent with tools
    assert {k.lower(): v for k, v in script.requests[0]["headers"].items()}["authorization"] == f"Bearer {SECRET}"


def test_secret_never_in_repr_or_errors() -> None:
    with serve(_error(401, "bad key")) as (url, _):
        llm = _model(url)
        assert SECRET not in repr(llm)
        assert SECRET not in str(llm.model_dump())
        with pytest.raises(AuthenticationError) as caught:
            llm.invoke("hi")
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def test_health_check_reports_failure_without_raising() -> None:
    with serve(_error(401, "bad key")) as (url, _):
        status = _model(url).health_check()
    assert status.ok is False
    assert status.error is not None
    assert "AuthenticationError" in status.error
    assert status.latency_ms > 0


async def test_async_health_check() -> None:
    with serve(Reply(body={"object": "list", "data": []})) as (url, script):
        status = await _model(url).ahealth_check()
    assert status.ok
    assert script.requests[0]["path"] == "/v1/models"


def test_profiles_of_known_models_and_none_for_unknown() -> None:
    dated = OpenAIChatModel(model="gpt-4o-2024-08-06", api_key="x").profile
    assert dated is not None
    assert dated["max_input_tokens"] == 128_000
    assert dated["tool_calling"] is True
    assert OpenAIChatModel(model="gpt-4.1-mini", api_key="x").profile["max_input_tokens"] == 1_047_576  # type: ignore[index]
    assert OpenAIChatModel(model="gemma-3-270m", api_key="x").profile is None


def test_token_count_of_messages_and_tools() -> None:
    class Lookup(BaseModel):
        """Look something up."""

        query: str

    llm = OpenAIChatModel(model="gpt-4", api_key="x")
    plain = llm.get_num_tokens_from_messages([HumanMessage("hello world")])
    assert plain == 9
    assert llm.get_num_tokens_from_messages([HumanMessage("hello world")], tools=[Lookup]) > plain + 10


def test_missing_key_fails_at_construction_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_multigateway import MissingAPIKeyError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY") as caught:
        OpenAIChatModel(model="gpt-4o-mini")
    assert caught.value.provider == "openai"
    monkeypatch.setenv("OPENAI_API_KEY", "")
    with pytest.raises(MissingAPIKeyError):
        OpenAIChatModel(model="gpt-4o-mini")


def test_get_num_tokens_is_offline_tiktoken_on_every_provider() -> None:
    from langchain_multigateway import AnthropicChatModel, MistralChatModel, OllamaChatModel, RoutingChatModel

    models = [
        OpenAIChatModel(model="gpt-4", api_key="x"),
        MistralChatModel(model="mistral-small-latest", api_key="x"),
        AnthropicChatModel(model="claude-3-5-haiku-latest", api_key="x"),
        OllamaChatModel(model="llama3.2"),
    ]
    for llm in models:
        assert llm.get_num_tokens("hello world") == 2, type(llm).__name__  # cl100k, no transformers needed
    router = RoutingChatModel(deployments=models)
    assert router.get_num_tokens("hello world") == 2
    assert router.get_num_tokens_from_messages([HumanMessage("hello world")]) == models[0].get_num_tokens_from_messages(
        [HumanMessage("hello world")]
    )


def test_credential_headers_are_masked_in_repr_and_left_out_of_serialization() -> None:
    from langchain_core.load import dumps

    from langchain_multigateway import OllamaChatModel, RoutingChatModel

    llm = _model("http://127.0.0.1:9/v1", default_headers={"api-key": SECRET, "X-Trace": "kept"})
    ollama = OllamaChatModel(model="llama3.2", default_headers={"Authorization": f"Bearer {SECRET}"})
    router = RoutingChatModel(deployments=[llm, ollama])
    for obj in (llm, ollama, router):
        assert SECRET not in repr(obj)
        assert SECRET not in str(obj)
        assert SECRET not in dumps(obj)
    assert "'api-key': '**********'" in repr(llm)
    assert '"X-Trace": "kept"' in dumps(llm)
    assert llm.default_headers == {"api-key": SECRET, "X-Trace": "kept"}  # still sent as given


def test_errors_about_reaching_the_server_name_it() -> None:
    with pytest.raises(GatewayConnectionError) as refused:
        _model("http://127.0.0.1:9/v1", max_retries=0, retry_policy=None).invoke("hi")
    assert "[server http://127.0.0.1:9/v1]" in str(refused.value)
    with serve(Reply(body=chat_completion(), delay=0.5)) as (url, _):
        with pytest.raises(GatewayTimeoutError) as slow:
            _model(url, timeout=0.1, max_retries=0, retry_policy=None).invoke("hi")
    assert f"within 0.1 s (timeout) from {url}" in str(slow.value)
    assert (slow.value.limit, slow.value.seconds) == ("timeout", 0.1)
    with serve(_error(404, "File Not Found")) as (url, _):
        with pytest.raises(ModelNotFoundGatewayError) as missing:
            _model(url.removesuffix("/v1") + "/wrong", max_retries=0, retry_policy=None).invoke("hi")
    assert "check the model name and the base URL" in str(missing.value)
