"""Call parameters fitted to each deployment: translated, dropped and reported, or refused (strict_params).

The router tests run real provider models against real HTTP servers on loopback. The
Anthropic one validates request bodies the way the hosted Messages API documents it
(an unknown top-level field is a 400 ``invalid_request_error``: "Extra inputs are not
permitted"; a thinking budget must be below ``max_tokens``; no temperature but 1 with
thinking), so a parameter sent where it does not belong fails the test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from langchain_multigateway.chat_models._params import fit_params
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.mistral import MistralChatModel
from langchain_multigateway.chat_models.ollama import OllamaChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.errors import InvalidRequestError
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.routing.policy import RequestPreparationError, UnsupportedParameterError
from tests.loopback import Reply, Script, _handler, chat_completion, serve

MESSAGES_API_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
}

ANTHROPIC_MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Bonjour"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 3},
}


def _invalid(message: str) -> Reply:
    return Reply(400, {"type": "error", "error": {"type": "invalid_request_error", "message": message}})


class MessagesAPIScript(Script):
    """Answers like the Messages API: 400 for what the API rejects, else a message (or its SSE stream)."""

    def next_reply(self) -> Reply:
        with self.lock:
            body = self.requests[-1]["body"]
        extra = sorted(set(body) - MESSAGES_API_FIELDS)
        if extra:
            return _invalid(f"{extra[0]}: Extra inputs are not permitted")
        thinking = body.get("thinking") or {}
        if thinking.get("type") == "enabled":
            if thinking.get("budget_tokens", 0) >= body.get("max_tokens", 0):
                return _invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
            if body.get("temperature") not in (None, 1):
                return _invalid("`temperature` may only be set to 1 when thinking is enabled")
        if body.get("stream"):
            return Reply(sse=_message_events())
        return Reply(body=ANTHROPIC_MESSAGE)


def _message_events() -> list[Any]:
    return [
        {"type": "message_start", "message": {**ANTHROPIC_MESSAGE, "content": [], "stop_reason": None}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Bonjour"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ]


@contextmanager
def messages_api() -> Iterator[tuple[str, MessagesAPIScript]]:
    script = MessagesAPIScript([])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[str, Script, str, MessagesAPIScript]]:
    with serve(Reply(503, {"error": {"message": "overloaded", "type": "server_error"}})) as (openai_url, openai):
        with messages_api() as (anthropic_url, anthropic):
            yield openai_url, openai, anthropic_url, anthropic


def router(servers: tuple[str, Script, str, MessagesAPIScript], **kwargs: Any) -> RoutingChatModel:
    openai_url, _, anthropic_url, _ = servers
    return RoutingChatModel(
        deployments=[
            Deployment(model=OpenAIChatModel(model="gpt-5", base_url=openai_url, api_key="k"), name="openai"),
            Deployment(
                model=AnthropicChatModel(model="claude-sonnet-4-5", base_url=anthropic_url, api_key="k"),
                name="claude",
                priority=1,
            ),
        ],
        **kwargs,
    )


def test_the_stub_rejects_what_the_messages_api_rejects(servers: Any) -> None:
    """Without the router fitting them, Anthropic is sent the OpenAI parameters and answers 400."""
    _, _, anthropic_url, _ = servers
    claude = AnthropicChatModel(model="claude-sonnet-4-5", base_url=anthropic_url, api_key="k", max_retries=0)
    with pytest.raises(InvalidRequestError, match="prompt_cache_key: Extra inputs are not permitted"):
        claude.invoke("hi", prompt_cache_key="conv-1")


def test_failover_to_a_deployment_that_rejects_them_drops_translates_and_reports(servers: Any) -> None:
    _, openai, _, anthropic = servers
    answer = router(servers).invoke("hi", prompt_cache_key="conv-1", reasoning_effort="low", temperature=0.3)

    assert answer.text == "Bonjour"
    meta = answer.response_metadata
    assert meta["deployment"] == "claude"
    assert [a["deployment"] for a in meta["failed_attempts"]] == ["openai", "openai"]  # 503, retried once
    sent_openai = openai.requests[0]["body"]
    assert sent_openai["prompt_cache_key"] == "conv-1"
    assert sent_openai["reasoning_effort"] == "low"
    assert "temperature" not in sent_openai  # gpt-5 takes none: dropped for it too
    sent = anthropic.requests[-1]["body"]
    assert "prompt_cache_key" not in sent
    assert "reasoning_effort" not in sent
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["max_tokens"] > 1024  # room for the answer beside the thinking budget
    assert "temperature" not in sent
    assert set(meta["dropped_params"]) == {"prompt_cache_key", "temperature"}
    assert "anthropic" in meta["dropped_params"]["prompt_cache_key"]


def test_a_stream_that_failed_over_reports_dropped_params_on_its_last_chunk(servers: Any) -> None:
    _, _, _, anthropic = servers
    chunks = list(router(servers).stream("hi", prompt_cache_key="conv-1"))
    assert "".join(c.text for c in chunks) == "Bonjour"
    last = chunks[-1]
    assert last.chunk_position == "last"
    assert last.response_metadata["deployment"] == "claude"
    assert set(last.response_metadata["dropped_params"]) == {"prompt_cache_key"}
    assert "prompt_cache_key" not in anthropic.requests[-1]["body"]


async def test_async_failover_reports_dropped_params(servers: Any) -> None:
    answer = await router(servers).ainvoke("hi", prompt_cache_key="conv-1")
    assert answer.response_metadata["dropped_params"].keys() == {"prompt_cache_key"}


def test_a_deployment_that_takes_every_parameter_reports_nothing_dropped() -> None:
    with serve(Reply(body=chat_completion("ok"))) as (url, script):
        openai = RoutingChatModel(deployments=[OpenAIChatModel(model="gpt-4.1", base_url=url, api_key="k")])
        answer = openai.invoke("hi", prompt_cache_key="conv-1", max_completion_tokens=50)
    assert "dropped_params" not in answer.response_metadata
    assert script.requests[0]["body"]["prompt_cache_key"] == "conv-1"


def test_strict_params_refuses_naming_the_parameter_and_the_deployment(servers: Any) -> None:
    _, _, _, anthropic = servers
    with pytest.raises(UnsupportedParameterError) as info:
        router(servers, strict_params=True).invoke("hi", prompt_cache_key="conv-1")
    error = info.value
    assert isinstance(error, RequestPreparationError)
    assert error.deployment == "claude"
    assert set(error.params) == {"prompt_cache_key"}
    assert "prompt_cache_key" in str(error)
    assert "'claude'" in str(error)
    assert anthropic.requests == []  # refused before anything was sent to it


def test_strict_params_passes_translations(servers: Any) -> None:
    """A translated parameter keeps its meaning: strict mode lets it through."""
    answer = router(servers, strict_params=True).invoke("hi", max_completion_tokens=2000)
    assert "dropped_params" not in answer.response_metadata
    assert servers[3].requests[-1]["body"]["max_tokens"] == 2000


def test_cache_control_markers_survive_failover_to_a_provider_that_takes_them(servers: Any) -> None:
    _, openai, _, anthropic = servers
    document = {"type": "text", "text": "A long shared document. " * 50, "cache_control": {"type": "ephemeral"}}
    message = {"role": "user", "content": [document, {"type": "text", "text": "Summarise it."}]}
    router(servers).invoke([message])
    openai_parts = openai.requests[0]["body"]["messages"][0]["content"]
    assert all("cache_control" not in part for part in openai_parts)  # OpenAI caches on its own
    sent = anthropic.requests[-1]["body"]["messages"][0]["content"]
    assert sent[0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in sent[1]


# ---------------------------------------------------------------------- the translation table itself
def test_openai_reasoning_models_get_max_completion_tokens_and_no_temperature() -> None:
    o3 = OpenAIChatModel(model="o3", api_key="k")
    fitted, dropped = fit_params(o3, {"max_tokens": 300, "temperature": 0.2, "reasoning_effort": "high"})
    assert fitted == {"max_completion_tokens": 300, "reasoning_effort": "high"}
    assert set(dropped) == {"temperature"}


def test_a_model_that_does_not_reason_is_not_sent_reasoning_effort() -> None:
    gpt4o = OpenAIChatModel(model="gpt-4o", api_key="k")
    fitted, dropped = fit_params(gpt4o, {"reasoning_effort": "low", "max_tokens": 10})
    assert fitted == {"max_tokens": 10}
    assert "reasoning_output=False" in dropped["reasoning_effort"]


def test_anthropic_thinking_translates_to_openai_effort() -> None:
    o3 = OpenAIChatModel(model="o3", api_key="k")
    for budget, effort in ((1024, "low"), (4000, "medium"), (30_000, "high")):
        fitted, _ = fit_params(o3, {"thinking": {"type": "enabled", "budget_tokens": budget}})
        assert fitted == {"reasoning_effort": effort}


def test_the_callers_own_spelling_wins_over_a_translation() -> None:
    claude = AnthropicChatModel(model="claude-sonnet-4-5", api_key="k", max_tokens=8000)
    own = {"type": "enabled", "budget_tokens": 5000}
    fitted, dropped = fit_params(claude, {"reasoning_effort": "high", "thinking": own})
    assert fitted == {"thinking": own}  # and max_tokens untouched: the model's 8000 leave room
    assert set(dropped) == {"reasoning_effort"}


def test_mistral_takes_what_its_sdk_declares() -> None:
    mistral = MistralChatModel(model="mistral-small-latest", api_key="k")
    fitted, dropped = fit_params(mistral, {"prompt_cache_key": "c", "seed": 1, "thinking": {"type": "enabled"}})
    assert fitted == {"prompt_cache_key": "c", "seed": 1}  # seed: the provider renames it random_seed
    assert set(dropped) == {"thinking"}


def test_ollama_think_from_effort_or_thinking() -> None:
    ollama = OllamaChatModel(model="qwen3")
    assert fit_params(ollama, {"reasoning_effort": "minimal"})[0] == {"think": "low"}
    assert fit_params(ollama, {"reasoning_effort": "none"})[0] == {"think": False}
    assert fit_params(ollama, {"thinking": {"type": "enabled", "budget_tokens": 2000}})[0] == {"think": True}
    assert set(fit_params(ollama, {"parallel_tool_calls": False})[1]) == {"parallel_tool_calls"}


def test_an_openai_compatible_server_keeps_sampling_parameters_beyond_openais() -> None:
    local = OpenAIChatModel(model="gemma", base_url="http://127.0.0.1:8088/v1", api_key="k")
    hosted = OpenAIChatModel(model="gpt-4.1", api_key="k")
    asked = {"min_p": 0.05, "top_k": 20, "keep_alive": "5m"}
    fitted, dropped = fit_params(local, asked)
    assert fitted == {"min_p": 0.05, "top_k": 20}  # llama.cpp and vLLM take them
    assert set(dropped) == {"keep_alive"}  # Ollama's own field
    assert set(fit_params(hosted, asked)[1]) == set(asked)  # OpenAI's API takes none of them


def test_a_model_of_another_package_gets_the_kwargs_unchanged() -> None:
    class Foreign:
        provider_name = "elsewhere"

    assert fit_params(Foreign(), {"anything": 1}) == ({"anything": 1}, {})


def test_a_responses_api_model_is_not_sent_what_that_api_lacks() -> None:
    pro = OpenAIChatModel(model="o3-pro", api_key="k")  # served only by the Responses API
    fitted, dropped = fit_params(pro, {"seed": 7, "reasoning_effort": "high", "previous_response_id": "resp_1"})
    assert fitted == {"reasoning_effort": "high", "previous_response_id": "resp_1"}
    assert set(dropped) == {"seed"}


def test_every_name_is_either_sent_or_reported() -> None:
    """A translation that adds names never hides a later parameter: each is sent, translated or reported."""
    claude = AnthropicChatModel(model="claude-sonnet-4-5", api_key="k")
    fitted, dropped = fit_params(claude, {"reasoning_effort": "low", "logit_bias": {"1": 2}, "top_k": 5})
    assert fitted["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert fitted["top_k"] == 5
    assert set(dropped) == {"logit_bias"}
