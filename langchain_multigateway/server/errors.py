"""What went wrong, as an HTTP status and an error body in OpenAI's or Anthropic's shape.

Every failure the server answers with is a :class:`ApiError`: a status, a kind that
both wire formats name their own way, a message saying what was wrong and how to fix
it, and ``Retry-After`` when waiting helps. :func:`api_error_from` maps the package's
typed errors (``langchain_multigateway.errors``) to one:

======================================  ======  ===============================
error                                   status  why
======================================  ======  ===============================
InvalidRequestError (context, policy)   400     the request itself is at fault
ModelRefusalError                       400     the model declined the structured output asked
                                                for (code ``model_refusal``, its reason quoted)
RateLimitError                          429     ``Retry-After`` from the provider
BudgetExceededError (router budget)     429     no ``Retry-After``: waiting alone will not help
GatewayTimeoutError                     504
AuthenticationError, PermissionDenied,  502     the *gateway's* upstream credentials or model
ModelNotFound, Connection, ProviderError        name are wrong, or the upstream failed:
                                                a gateway problem, not the client's
AllDeploymentsFailedError               the status every attempt agrees on, else 502
NoDeploymentAvailableError              503     every deployment excluded (breakers open, ...)
anything else                           500     logged; the body says only "internal error"
======================================  ======  ===============================
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from langchain_core.exceptions import ModelRefusalError

from langchain_multigateway.errors import (
    AllDeploymentsFailedError,
    BudgetExceededError,
    ContentPolicyError,
    ContextWindowExceededError,
    GatewayError,
    GatewayTimeoutError,
    InvalidRequestError,
    RateLimitError,
)

__all__ = ["ApiError", "anthropic_error_body", "api_error_from", "openai_error_body"]

logger = logging.getLogger("langchain_multigateway.server")

# kind -> (OpenAI error type, Anthropic error type)
_TYPES: dict[str, tuple[str, str]] = {
    "invalid_request": ("invalid_request_error", "invalid_request_error"),
    "authentication": ("authentication_error", "authentication_error"),
    "permission": ("permission_error", "permission_error"),
    "not_found": ("not_found_error", "not_found_error"),
    "too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit": ("rate_limit_error", "rate_limit_error"),
    "upstream": ("upstream_error", "api_error"),
    "unavailable": ("service_unavailable", "overloaded_error"),
    "timeout": ("timeout_error", "timeout_error"),
    "internal": ("server_error", "api_error"),
}


@dataclass
class ApiError(Exception):
    """An error answer: status, kind, a message saying what to fix, and optional details."""

    status: int
    kind: str
    message: str
    param: str | None = None
    code: str | None = None
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.kind}: {self.message}"

    def headers(self) -> dict[str, str]:
        """``Retry-After`` (whole seconds, rounded up) when the failure says how long to wait."""
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, math.ceil(self.retry_after)))}


def openai_error_body(failure: ApiError) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` as OpenAI's API answers errors."""
    return {
        "error": {
            "message": failure.message,
            "type": _TYPES[failure.kind][0],
            "param": failure.param,
            "code": failure.code,
        }
    }


def anthropic_error_body(failure: ApiError) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}`` as Anthropic's API answers errors."""
    return {"type": "error", "error": {"type": _TYPES[failure.kind][1], "message": failure.message}}


def api_error_from(exc: BaseException) -> ApiError:
    """The answer for an exception raised while serving a call."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, AllDeploymentsFailedError):
        return _all_failed(exc)
    if isinstance(exc, (GatewayError, ModelRefusalError)):
        return _cause(exc)
    if isinstance(exc, (ValueError, TypeError)):
        # Raised while binding tools or a schema the client sent (bad tool_choice, schema).
        return ApiError(400, "invalid_request", str(exc))
    logger.exception("internal error while serving a call")
    return ApiError(500, "internal", "internal error in the gateway (see its log)")


def _cause(exc: GatewayError | ModelRefusalError) -> ApiError:
    if isinstance(exc, ModelRefusalError):
        # A 200 with a refusal upstream; the router made it an error (its content policy), so it is the call's answer.
        return ApiError(400, "invalid_request", str(exc), code="model_refusal")
    return _one(exc, exc.message)


def _one(exc: GatewayError, message: str) -> ApiError:
    where = f" (upstream {exc.provider}/{exc.model})" if exc.provider or exc.model else ""
    if isinstance(exc, BudgetExceededError):
        return ApiError(429, "rate_limit", message, code="budget_exceeded")
    if isinstance(exc, RateLimitError):
        return ApiError(429, "rate_limit", message + where, code="rate_limit_exceeded", retry_after=exc.retry_after)
    if isinstance(exc, GatewayTimeoutError):
        return ApiError(504, "timeout", message + where, code="upstream_timeout")
    if isinstance(exc, ContextWindowExceededError):
        return ApiError(400, "invalid_request", message, code="context_length_exceeded")
    if isinstance(exc, ContentPolicyError):
        return ApiError(400, "invalid_request", message, code="content_policy_violation")
    if isinstance(exc, InvalidRequestError):
        return ApiError(400, "invalid_request", message)
    if exc.__class__.__name__ == "ConfigurationError":
        logger.error("gateway configuration error: %s", exc)
        return ApiError(500, "internal", "the gateway is misconfigured (see its log)")
    # Upstream credentials, model name, connection or server failures: the gateway's side.
    return ApiError(502, "upstream", message + where, code="upstream_error", retry_after=exc.retry_after)


def _all_failed(exc: AllDeploymentsFailedError) -> ApiError:
    causes = [a.error for a in exc.attempts if isinstance(a.error, (GatewayError, ModelRefusalError))]
    if not causes:
        # Nothing was tried: every deployment was excluded (open breakers, capabilities).
        return ApiError(503, "unavailable", exc.message, code="no_deployment_available")
    answers = [_cause(cause) for cause in causes]
    statuses = {a.status for a in answers}
    status = statuses.pop() if len(statuses) == 1 else 502
    waits = [a.retry_after for a in answers if a.retry_after is not None]
    kind = answers[0].kind if status == answers[0].status else "upstream"
    code = answers[0].code if status == answers[0].status else "all_deployments_failed"
    return ApiError(status, kind, exc.message, code=code, retry_after=min(waits) if waits else None)
