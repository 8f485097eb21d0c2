"""LangChain's standard integration tests for AnthropicChatModel, replayed from cassettes.

The cassettes were recorded from the Messages API (``POST /v1/messages``, JSON and
server-sent events) that llama.cpp's server speaks, running Gemma 3 270M on loopback
(``../shared/tools/local-llm start``). Capability flags say what that server really did
while recording: tool calls (``tool_use`` blocks, ``stop_reason: "tool_use"``), prompt-cache
reads (``cache_read_input_tokens``), no image input (the model has no vision projector:
the server answers HTTP 500 "image input is not supported"). Record again with
``MULTIGATEWAY_LIVE_BASE_URL=http://127.0.0.1:PORT/v1 pytest tests/integration/test_anthropic_standard.py
--record-mode=rewrite``. What only Anthropic's hosted API sends (thinking, signatures, cache
writes) is tested against its documented wire format in tests/unit/test_anthropic_wire_format.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from tests.conftest import LIVE_BASE_URL, RECORDING_API_KEY
from tests.standard import expected_failure

pytestmark = pytest.mark.vcr

REPEATED_CALLS = (
    "llama.cpp's /v1/messages ignores tool_choice.disable_parallel_tool_use (the cassette shows it sent): "
    "Gemma 3 270M repeats magic_function until max_tokens, 6 calls where the test wants exactly 1 "
    "(test_anthropic_wire_format.py holds what Anthropic does with the field)"
)
EMPTY_INPUT = (
    "llama.cpp's /v1/messages answered the forced Joke tool with input {} (the cassette shows it); "
    "the typeddict and json_schema variants of test_structured_output got both fields from the same server"
)

TOOL_ROOM = 120
PLAIN_ROOM = 32
# Standard tests whose answers are tool calls or structured output.
_NEEDS_ROOM = ("tool", "structured", "json_mode", "agent_loop", "anthropic_inputs")

# A system prompt long enough that llama.cpp's prompt cache has something to reuse.
_CACHED_PREFIX = "You are a weather assistant for travellers. " * 40


class TestAnthropicChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[AnthropicChatModel]:
        return AnthropicChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "model": "gemma-3-270m",
            "base_url": LIVE_BASE_URL,
            "api_key": RECORDING_API_KEY,
            "temperature": 0,
            # llama.cpp needs at least 120 tokens for a clean tool call (see the local-llm script);
            # the model fixture below gives plain-text tests fewer.
            "max_tokens": TOOL_ROOM,
            # One tool call per answer (disable_parallel_tool_use), as the OpenAI suite asks.
            "parallel_tool_calls": False,
            # Recording ran on two CPU cores shared with several servers (under 1 token/s at
            # times): generous limits, so a slow recording is not mistaken for a stalled server.
            "timeout": 1800,
            "first_token_timeout": 900,
            "stream_idle_timeout": 900,
        }

    @pytest.fixture
    def model(self, request: Any) -> AnthropicChatModel:
        """The standard fixture, with a short answer for tests that call no tool.

        Gemma 3 270M rarely stops on its own, so a plain answer runs to ``max_tokens``;
        tests of plain text (invoke, stream, batch, usage, stop...) check its shape, not its
        length, and were recorded with 32 tokens to keep the recording session short.
        """
        params = {
            **self.standard_chat_model_params,
            **self.chat_model_params,
            **(getattr(request, "param", None) or {}),
        }
        if not any(word in request.node.name for word in _NEEDS_ROOM):
            params["max_tokens"] = PLAIN_ROOM
        return self.chat_model_class(**params)

    @property
    def enable_vcr_tests(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_anthropic_inputs(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        # invoke(model=...) per call. llama.cpp serves one model and names it by its file
        # (".../gemma-3-270m-q4_k_m.gguf"): the override names that build, the recorded
        # /v1/messages body carries it (cassettes match on the body) and the served name contains it.
        return "gemma-3-270m-q4_k_m"

    @property
    def supported_usage_metadata_details(self) -> dict[str, Any]:
        # The server reports prompt-cache hits as cache_read_input_tokens; it writes no
        # billed cache entries, so cache_creation is never sent (hosted-only: wire-format tests).
        return {"invoke": ["cache_read_input"], "stream": ["cache_read_input"]}

    def invoke_with_cache_read_input(self, *, stream: bool = False) -> AIMessage:
        llm = self.chat_model_class(**{**self.chat_model_params, "max_tokens": PLAIN_ROOM})
        messages = [SystemMessage(_CACHED_PREFIX), HumanMessage("Is it sunny in Paris?")]
        llm.invoke(messages)  # fills the server's prompt cache
        if not stream:
            reply = llm.invoke(messages)
            assert isinstance(reply, AIMessage)
            return reply
        whole: AIMessageChunk | None = None
        for chunk in llm.stream(messages):
            whole = chunk if whole is None else whole + chunk
        assert whole is not None
        return AIMessage(content=whole.content, usage_metadata=whole.usage_metadata)

    test_structured_output_optional_param = expected_failure(
        ChatModelIntegrationTests.test_structured_output_optional_param, EMPTY_INPUT
    )
    test_tool_calling = expected_failure(ChatModelIntegrationTests.test_tool_calling, REPEATED_CALLS)
    test_tool_calling_async = expected_failure(ChatModelIntegrationTests.test_tool_calling_async, REPEATED_CALLS)

    # Only the pydantic case is expected to fail (its parameter's strict xfail). The function-level
    # mark has condition False, so it changes nothing when the tests run; it is there because
    # langchain-tests' override check looks for an xfail reason on the overriding function itself.
    @pytest.mark.xfail(False, reason=f"pydantic case only: {EMPTY_INPUT}")
    @pytest.mark.parametrize(
        "schema_type",
        [
            pytest.param("pydantic", marks=pytest.mark.xfail(reason=EMPTY_INPUT, strict=True)),
            "typeddict",
            "json_schema",
        ],
    )
    def test_structured_output(self, model: Any, schema_type: Any) -> None:
        super().test_structured_output(model, schema_type)
