"""Passing a deployment's stream through the router, and small result helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from langchain_multigateway.errors import AttemptRecord
from langchain_multigateway.routing._engine import RoutingEngine, Served, _now
from langchain_multigateway.routing._request import RoutedCall

__all__ = ["Relay", "empty", "first", "raw_result"]


class Relay:
    """Passes a deployment's stream through, adding the router's metadata once, at the end."""

    def __init__(self, router: RoutingEngine, served: Served, call: RoutedCall, first_at: float) -> None:
        self.router, self.served, self.call = router, served, call
        self.dep = served.dep
        self.ttft = first_at - served.started
        self.saw_model = False
        self.saw_last = False
        self.usage: Any = None
        self.done = False
        attempt = served.attempt
        self.chunks: list[ChatGenerationChunk] | None = (
            attempt.chunks if attempt is not None and attempt.run is not None else None
        )

    def _meta(self) -> dict[str, Any]:
        elapsed = _now() - self.served.started
        meta = {
            "deployment": self.dep.name,
            "provider": self.dep.provider,
            "model": self.dep.model_name,
            "attempts": len(self.served.attempts) + 1,
            "latency_ms": round(elapsed * 1000, 3),
            "ttft_ms": round(self.ttft * 1000, 3),
            "cached": False,
        }
        if self.served.attempts:
            meta["failed_attempts"] = [a.as_metadata() for a in self.served.attempts]
        return meta

    def pass_on(self, chunk: ChatGenerationChunk) -> ChatGenerationChunk:
        message = chunk.message
        meta = message.response_metadata
        if meta.get("model_name"):
            self.saw_model = True
        usage = getattr(message, "usage_metadata", None)
        if usage:
            self.usage = usage
        if self.chunks is not None:
            self.chunks.append(chunk)
        if isinstance(message, AIMessageChunk) and message.chunk_position == "last" and not self.saw_last:
            self.saw_last = True
            extra = self._meta()
            extra["provider"] = meta.get("model_provider") or self.dep.provider
            extra["model"] = meta.get("model_name") or self.dep.model_name
            if not self.saw_model:
                extra["model_name"] = self.dep.model_name
                extra["model_provider"] = self.dep.provider
                self.saw_model = True
            message.response_metadata = {**meta, **extra}
        return chunk

    def finish(self, error: Exception | None) -> ChatGenerationChunk | None:
        """Record the outcome; a closing chunk carrying the metadata if none was marked last."""
        if self.done:
            return None
        self.done = True
        served, dep, router = self.served, self.dep, self.router
        elapsed = _now() - served.started
        guard = self.call.guard
        if served.hold is not None and guard is not None:
            guard.settle(served.hold, dep, self.usage)
        if error is not None:
            served.attempts.append(AttemptRecord(dep.name, error, elapsed * 1000))
            decision = router.failover.decide(error)
            router._release(
                dep, served.admission, ok=False, latency=elapsed, counts_against_breaker=decision.counts_against_breaker
            )
            return None
        tokens = self.usage.get("total_tokens") if self.usage else None
        router._release(dep, served.admission, ok=True, latency=elapsed, ttft=self.ttft, tokens=tokens)
        if self.saw_last:
            return None
        meta = self._meta()
        if not self.saw_model:
            meta["model_name"] = dep.model_name
            meta["model_provider"] = dep.provider
        return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta, chunk_position="last"))


def first(iterator: Iterator[ChatGenerationChunk]) -> Iterator[ChatGenerationChunk]:
    for chunk in iterator:
        yield chunk
        return


async def empty() -> AsyncIterator[ChatGenerationChunk]:
    return
    yield  # pragma: no cover


def raw_result(output: Any, raw_key: str | None) -> ChatResult:
    message = output[raw_key] if raw_key is not None and isinstance(output, dict) else output
    if not isinstance(message, BaseMessage):
        msg = f"Expected a message from the deployment, got {type(message).__name__}"
        raise TypeError(msg)
    return ChatResult(generations=[ChatGeneration(message=message)])
