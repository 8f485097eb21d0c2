"""One exception hierarchy for every provider and the router.

Each class also subclasses LangChain's standard ``ModelError`` family, so code
(and LangChain's own retry / fallback helpers) that catch
``langchain_core.exceptions.ModelRateLimitError`` and friends keep working.
"""

from __future__ import annotations

import email.utils
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)

from langchain_multigateway._redact import redact, redact_value, scrub_exception

__all__ = [
    "AllDeploymentsFailedError",
    "AttemptRecord",
    "AuthenticationError",
    "ContentPolicyError",
    "ContextWindowExceededError",
    "GatewayConnectionError",
    "GatewayError",
    "GatewayTimeoutError",
    "InvalidRequestError",
    "MissingAPIKeyError",
    "ModelNotFoundGatewayError",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitError",
    "StreamInterruptedError",
    "TimeoutError",
    "error_from_status",
    "parse_retry_after",
]

_CONTEXT_MARKERS = (
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "exceed_context_size",
    "exceeds the available context",
    "too many tokens",
    "prompt is too long",
    "input is too long",
)
_CONTENT_POLICY_MARKERS = ("content_policy", "content policy", "content management policy", "safety")


class GatewayError(ModelError):
    """Base of every error the gateway raises.

    Attributes:
        message: What went wrong, in the provider's words where there were any.
        provider: Provider name (``"openai"``, ``"mistral"``, ...), if known.
        model: Model name the request was for, if known.
        status_code: HTTP status the provider answered with, if any.
        request_id: The provider's request id, for support tickets.
        retryable: Whether the same request may succeed if tried again.
        retry_after: Seconds the provider asked us to wait, if it said.
    """

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        # Built while handling the SDK/transport error it will chain: scrub that one too,
        # so a traceback or a span's exception.stacktrace quotes no credential.
        scrub_exception(sys.exc_info()[1])
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.request_id = request_id
        self.retryable = self.default_retryable if retryable is None else retryable
        # LangChain's ModelError reads this name.
        self.is_retryable = self.retryable
        self.retry_after = retry_after
        self.body = redact_value(body)

    @property
    def message(self) -> str:
        """What went wrong; credentials the process knows are masked, however it was set."""
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        self._message = redact(value) if isinstance(value, str) else value
        self.args = (self._message,)

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                f"provider={self.provider}" if self.provider else "",
                f"model={self.model}" if self.model else "",
                f"status={self.status_code}" if self.status_code is not None else "",
                f"request_id={self.request_id}" if self.request_id else "",
            )
            if part
        )
        return f"{self.message} ({where})" if where else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep keyword-only fields across pickling (multiprocessing, caches).
        return (_rebuild, (type(self), self.message, self._fields()))

    def _fields(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "status_code": self.status_code,
            "request_id": self.request_id,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
        }


def _rebuild(cls: type[GatewayError], message: str, fields: dict[str, Any]) -> GatewayError:
    return cls(message, **fields)


class MissingAPIKeyError(GatewayError, ValueError):
    """No API key was given and the environment variable holding it is unset."""


class AuthenticationError(GatewayError, ModelAuthenticationError):
    """The provider rejected the credentials (HTTP 401)."""


class PermissionDeniedError(GatewayError, ModelPermissionDeniedError):
    """The credentials are valid but may not do this (HTTP 403)."""


class InvalidRequestError(GatewayError, ModelInvalidRequestError):
    """The provider rejected the request as malformed (HTTP 400 / 422)."""


class ModelNotFoundGatewayError(GatewayError, ModelNotFoundError):
    """The model (or endpoint) does not exist for these credentials (HTTP 404)."""


class ContextWindowExceededError(InvalidRequestError, ContextOverflowError):
    """The prompt (plus requested output) does not fit the model's context window."""


class ContentPolicyError(InvalidRequestError):
    """The provider refused the input or output under its content policy."""


class RateLimitError(GatewayError, ModelRateLimitError):
    """Too many requests or tokens (HTTP 429); ``retry_after`` says how long to wait."""

    default_retryable = True


class GatewayTimeoutError(GatewayError, ModelTimeoutError):
    """The request took longer than one of its time limits.

    Attributes:
        limit: Which limit fired: ``"connect_timeout"``, ``"first_token_timeout"``,
            ``"stream_idle_timeout"`` or ``"timeout"`` (the whole request); None if unknown.
        seconds: That limit's value in seconds, if known.
    """

    default_retryable = True

    def __init__(self, message: str, *, limit: str | None = None, seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.limit = limit
        self.seconds = seconds

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "limit": self.limit, "seconds": self.seconds}


# The design names it TimeoutError; the longer name avoids shadowing the builtin.
TimeoutError = GatewayTimeoutError


class GatewayConnectionError(GatewayError, ModelConnectionError):
    """The provider could not be reached (refused, reset, DNS, TLS)."""

    default_retryable = True


class ProviderError(GatewayError, ModelAPIError):
    """The provider failed on its side (HTTP 5xx, overloaded, malformed answer)."""

    default_retryable = True


@dataclass(frozen=True)
class AttemptRecord:
    """One try at one deployment, kept by the router for its final error."""

    deployment: str
    error: BaseException | None
    latency_ms: float

    def describe(self) -> str:
        what = "ok" if self.error is None else f"{type(self.error).__name__}: {self.error}"
        return f"{self.deployment}: {what} after {self.latency_ms:.0f} ms"

    def as_metadata(self) -> dict[str, Any]:
        """JSON-safe summary for ``response_metadata["failed_attempts"]`` (no message text: it may quote input)."""
        return {
            "deployment": self.deployment,
            "error_type": None if self.error is None else type(self.error).__name__,
            "status_code": getattr(self.error, "status_code", None),
            "latency_ms": round(self.latency_ms, 3),
        }


class AllDeploymentsFailedError(GatewayError):
    """Every deployment the router tried failed; ``attempts`` holds each try."""

    def __init__(self, message: str, attempts: Sequence[AttemptRecord], **kwargs: Any) -> None:
        self.attempts = list(attempts)
        for attempt in self.attempts:
            scrub_exception(attempt.error)  # a deployment's own model may raise anything
        lines = "\n".join(f"  - {a.describe()}" for a in self.attempts)
        super().__init__(f"{message}\n{lines}" if lines else message, **kwargs)
        # Retryable only if every cause was.
        self.retryable = bool(self.attempts) and all(
            isinstance(a.error, GatewayError) and a.error.retryable for a in self.attempts
        )
        self.is_retryable = self.retryable

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.attempts))


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_status(
    status_code: int,
    message: str,
    *,
    provider: str | None = None,
    model: str | None = None,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
) -> GatewayError:
    """Map an HTTP failure to the matching class of the hierarchy."""
    lowered = message.lower()
    kwargs: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "status_code": status_code,
        "request_id": request_id,
        "body": body,
    }
    cls: type[GatewayError]
    if status_code == 401:
        cls = AuthenticationError
    elif status_code == 403:
        cls = ContentPolicyError if _mentions(lowered, _CONTENT_POLICY_MARKERS) else PermissionDeniedError
    elif status_code == 404:
        cls = ModelNotFoundGatewayError
    elif status_code == 408:
        cls = GatewayTimeoutError
    elif status_code == 429:
        cls = RateLimitError
        kwargs["retry_after"] = parse_retry_after(headers)
    elif status_code in (400, 413, 422):
        if status_code == 413 or _mentions(lowered, _CONTEXT_MARKERS):
            cls = ContextWindowExceededError
        elif _mentions(lowered, _CONTENT_POLICY_MARKERS):
            cls = ContentPolicyError
        else:
            cls = InvalidRequestError
    elif status_code >= 500 or status_code == 409:
        # 529 is Anthropic's "overloaded"; 409 a transient conflict some APIs send.
        cls = ProviderError
        kwargs["retry_after"] = parse_retry_after(headers)
    else:
        cls = InvalidRequestError if 400 <= status_code < 500 else ProviderError
    return cls(message or f"HTTP {status_code}", **kwargs)


def _mentions(text: str, markers: tuple[str, ...]) -> bool:
    return any(marker in text for marker in markers)


class ConfigurationError(GatewayError, ValueError):
    """A model name, provider, environment default or configuration file is wrong.

    The message says where (file, line, key path such as ``models.fast.temperature``)
    and what was expected. Never retryable: the same input fails the same way.

    Attributes:
        source: The file name, ``"<dict>"``, or the environment variable at fault.
        key_path: Dotted path of the first offending key, if there is one.
        line: 1-based line of the first problem in a YAML file, if known.
        problems: Every problem found, one ``"where: what"`` line each.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        key_path: str | None = None,
        line: int | None = None,
        problems: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retryable", False)
        super().__init__(message, **kwargs)
        self.source = source
        self.key_path = key_path
        self.line = line
        self.problems = list(problems) if problems is not None else [message]

    def _fields(self) -> dict[str, Any]:
        return {
            **super()._fields(),
            "source": self.source,
            "key_path": self.key_path,
            "line": self.line,
            "problems": self.problems,
        }


__all__ += ["ConfigurationError"]


class BudgetExceededError(GatewayError):
    """A call would pass a spending limit, so it was refused before it was sent.

    Never retryable: the same call fails the same way until the limit is raised
    or spend is reset. Raised by :class:`langchain_multigateway.usage.Budget`.

    Attributes:
        kind: ``"cost"`` (USD) or ``"tokens"``.
        spent: What was spent already (USD or tokens), reserved in-flight calls included.
        limit: The limit that would be passed.
        estimate: What this call was estimated to add (prompt tokens + ``max_tokens``,
            or their price); None when it could not be estimated.
        budget: The budget's name.
        estimates: From a router that found no deployment within the budget: per
            deployment, what the call was estimated to cost there (USD, or tokens
            for a token limit; None when unknown). Empty otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "cost",
        spent: float = 0.0,
        limit: float = 0.0,
        estimate: float | None = None,
        budget: str | None = None,
        estimates: Mapping[str, float | None] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs["retryable"] = False
        super().__init__(message, **kwargs)
        self.kind = kind
        self.spent = spent
        self.limit = limit
        self.estimate = estimate
        self.budget = budget
        self.estimates: dict[str, float | None] = dict(estimates or {})

    def _fields(self) -> dict[str, Any]:
        fields = super()._fields()
        fields.pop("retryable", None)
        return {
            **fields,
            "kind": self.kind,
            "spent": self.spent,
            "limit": self.limit,
            "estimate": self.estimate,
            "budget": self.budget,
            "estimates": self.estimates,
        }


__all__ += ["BudgetExceededError"]


class StreamInterruptedError(GatewayError):
    """A stream failed after part of the answer had reached the caller.

    The caller never gets a truncated answer presented as success: the stream ends
    in this error instead. Retrying the whole request would repeat the delivered text.

    Attributes:
        delivered: The text the caller had received before the failure.
        deployment: The deployment (or model) that was streaming, if known.
        cause: The failure that cut the stream (also chained as ``__cause__``).
    """

    def __init__(
        self,
        message: str,
        *,
        delivered: str = "",
        deployment: str | None = None,
        cause: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retryable", False)
        super().__init__(message, **kwargs)
        self.delivered = delivered
        self.deployment = deployment
        self.cause = cause

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "delivered": self.delivered, "deployment": self.deployment}
