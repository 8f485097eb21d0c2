"""The one reader of an HTTP error body's human message (``chat_models/_error_body.py``), and
Mistral's own shapes read before it. Bodies are the providers' documented error formats."""

from __future__ import annotations

from typing import Any

import pytest

from langchain_multigateway.chat_models._error_body import error_message_of
from langchain_multigateway.chat_models._mistral_format import _error_message as mistral_error_message

OPENAI = {"error": {"message": "Invalid tool_choice: any", "type": "invalid_request_error", "code": None}}
ANTHROPIC = {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-x"}}
OLLAMA = {"error": 'model "llama9" not found, try pulling it first'}
FLAT = {"object": "error", "message": "Requests rate limit exceeded", "type": "rate_limited"}
VALIDATION = {"detail": [{"loc": ["body", "temperature"], "msg": "too high", "type": "value_error"}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (OPENAI, "Invalid tool_choice: any"),
        (ANTHROPIC, "model: claude-x"),
        (OLLAMA, 'model "llama9" not found, try pulling it first'),
        (FLAT, "Requests rate limit exceeded"),
        ("<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>"),
        # A string "error" beside a top-level "message": the error, as the OpenAI SDK reads it.
        ({"error": "Not Found", "message": "No message available"}, "Not Found"),
        (VALIDATION, None),  # FastAPI's detail is Mistral's shape, not a common one
        ({"error": {"code": 500}}, None),
        ([1, 2], None),
        (None, None),
    ],
)
def test_the_common_reader_finds_the_message_in_each_providers_error_body(body: Any, message: str | None) -> None:
    assert error_message_of(body) == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (VALIDATION, '[{"loc": ["body", "temperature"], "msg": "too high", "type": "value_error"}]'),
        ({"object": "error", "message": {"detail": "bad"}}, '{"detail": "bad"}'),
        ({"message": "", "detail": "second"}, "second"),
        ("  plain text  ", "plain text"),
        ("x" * 3000, "x" * 2000),
        ("   ", None),
        # Then the common shapes, as every provider reads them.
        (FLAT, "Requests rate limit exceeded"),
        (OPENAI, "Invalid tool_choice: any"),
        (OLLAMA, 'model "llama9" not found, try pulling it first'),
        ({"error": None, "message": "flat beside an empty error"}, "flat beside an empty error"),
    ],
)
def test_mistral_reads_its_own_shapes_then_the_common_ones(body: Any, message: str | None) -> None:
    assert mistral_error_message(body) == message
