"""Failover policy: what the router does after an error, by error class.

=============================  ==========================  ===================
error                          action                      counts on breaker
=============================  ==========================  ===================
rate limit, connection,        retry the same deployment   yes
5xx, timeout without a named   within its RetryPolicy
limit (retryable)              (backoff with jitter),
                               then the next one
rate limit with Retry-After    cool the deployment down    yes
                               for everyone; this call
                               waits that long and retries
                               it when the wait fits its
                               time, else the next one
a time limit that fired        next deployment at once     yes
(connect, first token, stream  (a silent route stays
idle, the request's timeout)   silent: no retry)
authentication, permission,    next deployment             yes
model not found
context window exceeded        next one with a larger      no
                               window
content policy, or a model    raise (default) or next     no
refusing structured output
(ModelRefusalError)
invalid request (and input     raise at once               no
the router could not build)
any other exception            next deployment             yes
=============================  ==========================  ===================

Why these defaults: a retry helps only where the failure is transient and cheap to
repeat; a deployment that did not answer within a time limit will most likely not
answer the next time either, so the call spends its remaining time elsewhere. A
content-policy refusal is about the request, and routing around it would quietly
send the same content to another provider: the provider's reason is raised instead
(``content_policy="next"`` opts in to trying others).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAuthenticationError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelRefusalError,
)
from pydantic import BaseModel, ConfigDict, Field

from langchain_multigateway.errors import (
    AllDeploymentsFailedError,
    AttemptRecord,
    ContentPolicyError,
    GatewayError,
    GatewayTimeoutError,
    InvalidRequestError,
    RateLimitError,
)

__all__ = [
    "Action",
    "Decision",
    "FailoverPolicy",
    "NoDeploymentAvailableError",
    "RequestPreparationError",
    "UnsupportedParameterError",
]


class Action(str, Enum):
    RETRY = "retry"
    """Try the same deployment again (if its retry budget allows)."""
    NEXT = "next"
    """Move on to the next deployment."""
    RAISE = "raise"
    """Stop and raise this error to the caller."""


@dataclass(frozen=True)
class Decision:
    action: Action
    counts_against_breaker: bool
    cooldown: float | None = None
    """Seconds to keep the deployment out of rotation for every call (a provider's Retry-After)."""
    needs_larger_window: bool = False


class FailoverPolicy(BaseModel):
    """Settings of the error → action table (see the module doc).

    Attributes:
        content_policy: ``"raise"`` (default) stops at the first refusal with the
            provider's reason; ``"next"`` tries another provider (their policies differ).
        cooldown_on_retry_after: Take a deployment that answered 429 with a
            Retry-After out of rotation for that long, for every call; the call that
            got the 429 waits and retries it if the wait fits its time, else moves on.
        max_cooldown: The longest (seconds) one Retry-After keeps a deployment out of
            rotation for every call. A mistaken or hostile header (an hour, a date years
            away, ``inf``) would otherwise take it out for good; past this the next call
            tries it again, and a new 429 cools it down again.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    content_policy: Literal["next", "raise"] = "raise"
    cooldown_on_retry_after: bool = True
    max_cooldown: float = Field(default=60.0, gt=0)

    def decide(self, error: BaseException) -> Decision:
        if isinstance(error, (ContentPolicyError, ModelRefusalError)):
            action = Action.RAISE if self.content_policy == "raise" else Action.NEXT
            return Decision(action, counts_against_breaker=False)
        if isinstance(error, ContextOverflowError):
            return Decision(Action.NEXT, counts_against_breaker=False, needs_larger_window=True)
        if isinstance(error, ModelInvalidRequestError):
            return Decision(Action.RAISE, counts_against_breaker=False)
        if isinstance(error, (ModelAuthenticationError, ModelPermissionDeniedError, ModelNotFoundError)):
            return Decision(Action.NEXT, counts_against_breaker=True)
        if isinstance(error, GatewayTimeoutError) and error.limit is not None:
            return Decision(Action.NEXT, counts_against_breaker=True)  # a silent route stays silent
        retry_after = getattr(error, "retry_after", None)
        if (
            self.cooldown_on_retry_after
            and isinstance(error, (RateLimitError, ModelRateLimitError))
            and isinstance(retry_after, (int, float))
            and retry_after > 0
        ):
            cooldown = min(float(retry_after), self.max_cooldown)
            return Decision(Action.RETRY, counts_against_breaker=True, cooldown=cooldown)
        if isinstance(error, GatewayError):
            return Decision(Action.RETRY if error.retryable else Action.NEXT, counts_against_breaker=True)
        if isinstance(error, ModelError):
            return Decision(Action.RETRY if error.is_retryable else Action.NEXT, counts_against_breaker=True)
        return Decision(Action.NEXT, counts_against_breaker=True)


class RequestPreparationError(InvalidRequestError):
    """The request could not be built for a deployment (a bad schema, tool or tool_choice).

    Caused by the input, so the router raises it at once and no breaker counts it.
    """


class UnsupportedParameterError(RequestPreparationError):
    """A call parameter a deployment's API does not take, refused under ``strict_params=True``.

    ``params`` maps each such parameter to why it does not fit; ``deployment`` names where.
    Without ``strict_params`` the router drops it for that deployment instead and reports
    it in ``response_metadata["dropped_params"]``.
    """

    def __init__(self, deployment: str, params: dict[str, str], *, provider: str | None, model: str | None) -> None:
        self.deployment = deployment
        self.params = dict(params)
        listed = "; ".join(f"{name}: {why}" for name, why in self.params.items())
        msg = (
            f"deployment {deployment!r} does not take {sorted(self.params)} ({listed}). strict_params=True refuses "
            "instead of dropping them: remove them from the call, or route it (routing_tags / model=) to a "
            "deployment that takes them"
        )
        super().__init__(msg, provider=provider, model=model)

    def __reduce__(self) -> tuple[object, ...]:
        return (_unsupported, (self.deployment, self.params, self.provider, self.model))


def _unsupported(deployment: str, params: dict[str, str], provider: str | None, model: str | None) -> Exception:
    return UnsupportedParameterError(deployment, params, provider=provider, model=model)


class NoDeploymentAvailableError(AllDeploymentsFailedError):
    """No deployment could take the request; ``excluded`` says why, per deployment."""

    def __init__(self, message: str, excluded: dict[str, str], attempts: list[AttemptRecord] | None = None) -> None:
        self.excluded = dict(excluded)
        reasons = "\n".join(f"  - {name}: excluded, {why}" for name, why in self.excluded.items())
        super().__init__(f"{message}\n{reasons}" if reasons else message, attempts or [])
        self.summary = message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.summary, self.excluded, self.attempts))
