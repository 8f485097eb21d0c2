"""One attempt at one provider request, and a stream's run from first event to last chunk.

``Exchange`` carries what a transport, a parser and an assembler share about one try
(body, model, time limits, request id). ``StreamRun`` is the part of streaming that is
the same for every provider and for sync and async: feeding events to the assembler,
skipping a malformed chunk, deciding whether a stream that stopped is complete.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from langchain_core.outputs import ChatGenerationChunk, ChatResult

from langchain_multigateway.chat_models._limits import FIRST_TOKEN, CallClock
from langchain_multigateway.chat_models._ratelimit_headers import (
    RATE_LIMITS_KEY,
    rate_limits_from_headers,
    rate_limits_of,
)
from langchain_multigateway.chat_models._redirects import WITHHELD_FROM
from langchain_multigateway.errors import GatewayConnectionError, GatewayError, GatewayTimeoutError, ProviderError

if TYPE_CHECKING:
    from langchain_multigateway.chat_models._base import GatewayChatModel

__all__ = ["MALFORMED", "Exchange", "StreamAssembler", "StreamRun", "raise_as"]

logger = logging.getLogger("langchain_multigateway.chat_models")

# What parsing a payload of the wrong shape raises (JSON and pydantic errors are ValueErrors).
MALFORMED = (ValueError, TypeError, KeyError, AttributeError, IndexError)


def raise_as(error: BaseException, cause: BaseException) -> NoReturn:
    """Raise ``error``, chained to ``cause`` unless they are one."""
    if error is cause:
        raise error
    raise error from cause


class Exchange:
    """One try of one request: its body, model and clock, and what came back so far."""

    __slots__ = ("answered", "clock", "limits", "model", "payload", "request_id", "waiting_for", "withheld_from")

    def __init__(self, payload: Mapping[str, Any], clock: CallClock) -> None:
        self.payload = payload
        self.model: str = clock.model or ""
        self.clock = clock
        self.request_id: str | None = None
        self.answered = False  # the server answered (a failure now is in its answer, not in reaching it)
        self.waiting_for = FIRST_TOKEN  # the limit bounding the wait in progress
        self.limits: dict[str, float] | None = None  # the rate limits the response's headers announced
        # Origins a redirect sent this try to without its credentials (the hook in _redirects notes them;
        # made right before the try is sent, in the context that sends it).
        self.withheld_from: list[str] = []
        WITHHELD_FROM.set(self.withheld_from)

    def note_headers(self, headers: Mapping[str, str]) -> None:
        """The response's headers arrived: keep the rate limits they announce (success or error)."""
        self.limits = rate_limits_from_headers(headers)

    def stamped(self, result: ChatResult) -> ChatResult:
        """``result`` with the announced limits in its message's ``response_metadata["rate_limits"]``."""
        if self.limits and result.generations:
            result.generations[0].message.response_metadata[RATE_LIMITS_KEY] = self.limits
        return result

    def stamp_error(self, error: BaseException, cause: BaseException) -> None:
        """Give ``error`` the limits announced with it (a 429's headers say when the budget resets)."""
        limits = self.limits or rate_limits_of(cause)
        if limits and getattr(error, RATE_LIMITS_KEY, None) is None:
            setattr(error, RATE_LIMITS_KEY, limits)


class StreamAssembler(Protocol):
    """Turns one provider's stream events into LangChain chunks (I/O-free; fed event by event)."""

    end_marker: str
    """What ends this provider's stream, for error messages (``"finish_reason or [DONE]"``)."""

    def feed(self, event: Any) -> Iterable[ChatGenerationChunk]:
        """Chunks for one event; a malformed event raises ValueError / TypeError / KeyError."""
        ...

    @property
    def answered(self) -> bool:
        """The answer's end is known (finish or stop reason, or the end marker)."""
        ...

    @property
    def complete(self) -> bool:
        """Nothing more is expected: reading may stop."""
        ...

    def finish(self) -> ChatGenerationChunk:
        """The closing chunk: usage, model name, finish reason, ``chunk_position="last"``."""
        ...


class StreamRun:
    """Feeds one attempt's stream events to its assembler and decides how the stream ended."""

    __slots__ = ("assembler", "exchange", "owner", "skipped")

    def __init__(self, owner: GatewayChatModel, exchange: Exchange) -> None:
        self.owner = owner
        self.exchange = exchange
        self.assembler = owner._stream_assembler(exchange)
        self.skipped: list[str] = []

    @property
    def complete(self) -> bool:
        return self.assembler.complete

    def feed(self, event: Any) -> list[ChatGenerationChunk]:
        """The chunks for ``event``; a malformed one is skipped (and remembered) rather than fatal."""
        self.exchange.answered = True
        try:
            chunks = list(self.assembler.feed(event))
        except GatewayError:
            raise  # the server reported an error in its stream
        except MALFORMED as exc:
            shown = f"{type(exc).__name__}: {exc}"[:200]
            self.skipped.append(shown)
            provider, model = self.owner.provider_name, self.exchange.model
            logger.warning("%s stream from %s: skipped a malformed chunk (%s)", provider, model, shown)
            return []
        self.exchange.clock.saw(content=bool(chunks))
        return chunks

    def check_overdue(self) -> None:
        """Raise if the first-token or whole-request deadline passed (between sync reads)."""
        name = self.exchange.clock.overdue()
        if name is not None:
            raise self.exchange.clock.error(name)

    def failed(self, error: GatewayError, cause: BaseException) -> None:
        """The stream broke: raise ``error`` unless the answer was already complete."""
        if self.assembler.answered and isinstance(error, (GatewayTimeoutError, GatewayConnectionError)):
            # finish_reason came but the server never closed (or sent its final marker):
            # the answer is whole, so finish it instead of failing it.
            logger.debug("%s stream ended after a complete answer: %s", self.owner.provider_name, error)
            return
        raise_as(error, cause)

    def finish(self) -> ChatGenerationChunk:
        """The closing chunk, or the typed error for a stream that stopped short."""
        only_malformed = bool(self.skipped) and not self.exchange.clock.content_seen
        if not self.assembler.answered or only_malformed:
            if self.assembler.answered:
                msg = "the stream carried no answer, only malformed chunks"
            else:
                msg = f"the stream ended before {self.assembler.end_marker}: the answer is incomplete"
            if self.skipped:
                msg += f"; {len(self.skipped)} malformed chunk(s) skipped, the first: {self.skipped[0]}"
            error = ProviderError(
                msg,
                provider=self.owner.provider_name,
                model=self.exchange.model,
                request_id=self.exchange.request_id,
                retryable=True,
            )
            raise self.owner._locate(error)
        try:
            last = self.assembler.finish()
        except MALFORMED as exc:  # the closing event's fields of the wrong type (usage counts as text)
            error = ProviderError(
                f"the stream's closing event is malformed: {type(exc).__name__}: {exc}"[:300],
                provider=self.owner.provider_name,
                model=self.exchange.model,
                request_id=self.exchange.request_id,
                retryable=True,
            )
            raise self.owner._locate(error) from exc
        if self.exchange.limits:
            last.message.response_metadata[RATE_LIMITS_KEY] = self.exchange.limits
        return last
