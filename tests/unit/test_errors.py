"""The error hierarchy: classification, LangChain compatibility, Retry-After parsing, pickling."""

from __future__ import annotations

import email.utils
import pickle

import pytest
from langchain_core import exceptions as lc

from langchain_multigateway import errors as e


@pytest.mark.parametrize(
    ("status", "message", "cls", "lc_cls", "retryable"),
    [
        (401, "bad key", e.AuthenticationError, lc.ModelAuthenticationError, False),
        (403, "forbidden", e.PermissionDeniedError, lc.ModelPermissionDeniedError, False),
        (403, "blocked by content policy", e.ContentPolicyError, lc.ModelInvalidRequestError, False),
        (404, "no such model", e.ModelNotFoundGatewayError, lc.ModelNotFoundError, False),
        (408, "request timeout", e.GatewayTimeoutError, lc.ModelTimeoutError, True),
        (409, "conflict", e.ProviderError, lc.ModelAPIError, True),
        (400, "bad temperature", e.InvalidRequestError, lc.ModelInvalidRequestError, False),
        (422, "unprocessable", e.InvalidRequestError, lc.ModelInvalidRequestError, False),
        (400, "maximum context length is 8192", e.ContextWindowExceededError, lc.ContextOverflowError, False),
        (413, "payload too large", e.ContextWindowExceededError, lc.ContextOverflowError, False),
        (400, "flagged by our safety system", e.ContentPolicyError, lc.ModelInvalidRequestError, False),
        (429, "slow down", e.RateLimitError, lc.ModelRateLimitError, True),
        (500, "internal", e.ProviderError, lc.ModelAPIError, True),
        (529, "overloaded", e.ProviderError, lc.ModelAPIError, True),
        (418, "teapot", e.InvalidRequestError, lc.ModelInvalidRequestError, False),
    ],
)
def test_error_from_status(status: int, message: str, cls: type, lc_cls: type, retryable: bool) -> None:
    err = e.error_from_status(status, message, provider="p", model="m", request_id="r1")
    assert type(err) is cls
    assert isinstance(err, lc_cls)
    assert isinstance(err, lc.ModelError)
    assert err.retryable is retryable
    assert err.is_retryable is retryable
    assert (err.status_code, err.provider, err.model, err.request_id) == (status, "p", "m", "r1")
    assert message in str(err)
    assert "status=" in str(err)


def test_rate_limit_keeps_retry_after() -> None:
    err = e.error_from_status(429, "slow", headers={"Retry-After": "7"})
    assert err.retry_after == 7.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "junk", "retry-after": "2"}, 2.0),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "not a date"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str] | None, expected: float | None) -> None:
    assert e.parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert e.parse_retry_after({"retry-after": header}, now=now) == pytest.approx(30, abs=1)


def test_errors_survive_pickling_with_their_fields() -> None:
    err = e.RateLimitError("slow", provider="openai", model="gpt", status_code=429, retry_after=2.0, request_id="x")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is e.RateLimitError
    assert (back.provider, back.model, back.status_code, back.retry_after, back.request_id) == (
        "openai",
        "gpt",
        429,
        2.0,
        "x",
    )


def test_all_deployments_failed_lists_every_attempt() -> None:
    attempts = [
        e.AttemptRecord("a", e.RateLimitError("slow"), 12.0),
        e.AttemptRecord("b", e.ProviderError("down"), 30.5),
    ]
    err = e.AllDeploymentsFailedError("every deployment failed", attempts)
    text = str(err)
    assert "a: RateLimitError: slow after 12 ms" in text
    assert "b: ProviderError: down after 30 ms" in text  # rounded
    assert err.retryable  # every cause was transient
    mixed = e.AllDeploymentsFailedError("x", [*attempts, e.AttemptRecord("c", e.AuthenticationError("no"), 1)])
    assert not mixed.retryable
    back = pickle.loads(pickle.dumps(err))
    assert [a.deployment for a in back.attempts] == ["a", "b"]


def test_timeout_alias_is_the_gateway_class_not_the_builtin() -> None:
    assert e.TimeoutError is e.GatewayTimeoutError
    assert e.TimeoutError is not TimeoutError
