"""What one routed call asks for, worked out once and never changed: the immutable :class:`Request`.

Built by :func:`describe` from the router's settings and the call's kwargs. Input the
caller got wrong (text that is not valid Unicode, a message type no provider can
send) is refused here, before any deployment is admitted or sent anything.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from langchain_multigateway._content import text_parts
from langchain_multigateway.routing.affinity import SESSION_KEYS, affinity_key, named
from langchain_multigateway.routing.deployment import Deployment
from langchain_multigateway.routing.policy import RequestPreparationError
from langchain_multigateway.routing.runs import STREAM_RUN, AttemptRuns
from langchain_multigateway.routing.strategies import RequestInfo, Strategy
from langchain_multigateway.routing.structured import StructuredSpec

__all__ = [
    "ROUTER_KWARGS",
    "STREAM_RUN",
    "Overrides",
    "Request",
    "OFF_LOOP_CHARS",
    "continuation",
    "count_ahead",
    "describe",
    "estimate_tokens",
    "exact_tokens",
    "from_configurable",
    "read_overrides",
]

ROUTER_KWARGS = ("routing_strategy", "routing_tags", "routing_priority", "stream_recovery", "session_id", STREAM_RUN)
STREAM_RECOVERIES = ("error", "continue")
OUTPUT_RESERVE_CAP = 1024
"""Output tokens a tpm reservation assumes when the call sets no ``max_tokens`` (reconciled after)."""

OFF_LOOP_CHARS = 16_000
"""Prompts of this many characters or more (about 4k tokens, ~1 ms of tiktoken here) are counted
in a worker thread on the async path: a 100k-token prompt takes tiktoken 50-100 ms, which
would stall every other call on the event loop."""

_SENDABLE = (SystemMessage, HumanMessage, AIMessage, ToolMessage, FunctionMessage, ChatMessage)


def estimate_tokens(messages: Sequence[BaseMessage]) -> tuple[int, int]:
    """A quick token estimate (chars / 4) and a safe upper bound (chars), framing included."""
    chars = 0
    for message in messages:
        content = message.content
        if isinstance(content, str):
            chars += len(content)
        else:
            for block in content:
                if isinstance(block, str):
                    chars += len(block)
                elif isinstance(block, dict) and isinstance(block.get("text"), str):
                    chars += len(block["text"])
        if message.type != "ai":
            continue
        for call in getattr(message, "tool_calls", None) or ():
            chars += len(str(call.get("args"))) + len(call.get("name") or "")
    framing = 4 * len(messages) + 3
    return math.ceil(chars / 4) + framing, chars + framing


def exact_tokens(deployment: Deployment, messages: Sequence[BaseMessage]) -> int:
    """Prompt tokens counted offline (tiktoken where the encoding is on disk), chat framing included.

    The one counter behind the context-window filter, tpm reservations and budget
    estimates. Each message's count is remembered (a system prompt or an earlier turn
    is counted once, not on every call); a message is counted like the OpenAI format
    sends it.
    """
    model = deployment.model_name
    try:
        return _reply_priming(model) + sum(_message_tokens(model, m) for m in messages)
    except Exception:
        return estimate_tokens(messages)[1]


_MESSAGE_TOKENS: dict[tuple[Any, ...], int] = {}
_MEMO_CHARS = [0]
_MEMO_LIMIT = 2_000_000
"""Characters of message text the memo may hold before it starts over."""
_PRIMING: dict[str, int] = {}
"""The reply priming's tokens per model (a handful of models: never cleared)."""
_NO_TOOL_CALLS = frozenset({SystemMessage, HumanMessage, ToolMessage, FunctionMessage, ChatMessage})
"""Message classes without a ``tool_calls`` field: not looked up on them, where pydantic's
``__getattr__`` answers a missing attribute slowly (a few microseconds per message per call)."""
_WITH_ROLE = frozenset({ChatMessage, ChatMessageChunk})
"""Message classes whose ``role`` is sent and counted (looked up by class: isinstance on a
pydantic model costs ~0.1 us per message per count)."""


def _reply_priming(model: str) -> int:
    found = _PRIMING.get(model)
    if found is None:
        from langchain_multigateway.tokens import count_message_tokens

        found = _PRIMING[model] = count_message_tokens([], model)
    return found


def _message_tokens(model: str, message: BaseMessage) -> int:
    content = message.content
    cls = type(message)
    plain = isinstance(content, str) and (cls in _NO_TOOL_CALLS or not getattr(message, "tool_calls", None))
    kind: Any = message.type
    if cls in _WITH_ROLE:  # the key holds all that is counted: a custom role is its own
        kind = (kind, message.role)  # type: ignore[attr-defined]
    key = (model, kind, message.name, content) if plain else None
    if key is not None:
        found = _MESSAGE_TOKENS.get(key)
        if found is not None:
            return found
    from langchain_multigateway.chat_models._openai_format import message_to_openai
    from langchain_multigateway.tokens import count_message_tokens

    tokens = count_message_tokens([message_to_openai(message)], model) - _reply_priming(model)
    if key is not None and isinstance(content, str):
        if _MEMO_CHARS[0] + len(content) > _MEMO_LIMIT:
            _MESSAGE_TOKENS.clear()
            _MEMO_CHARS[0] = 0
        _MESSAGE_TOKENS[key] = tokens
        _MEMO_CHARS[0] += len(content)
    return tokens


def _has_images(messages: Sequence[BaseMessage]) -> bool:
    for message in messages:
        if isinstance(message.content, list):
            for block in message.content:
                if isinstance(block, dict) and block.get("type") in ("image", "image_url", "input_image"):
                    return True
    return False


def check_input(messages: Sequence[BaseMessage]) -> str | None:
    """Refuse text no provider can encode; name a message type not every provider can send.

    Returns the unsendable message type's description (refused only for deployments
    known to send standard messages only, see ``prepare``), or None.
    """
    unsendable = None
    for index, message in enumerate(messages):
        for text in text_parts(message.content):
            if text.isascii():
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                char = text[exc.start]
                msg = (
                    f"message {index} ({message.type}) contains a lone surrogate U+{ord(char):04X} at position "
                    f"{exc.start}: text sent to a model must be valid Unicode. Decode bytes with "
                    "errors='replace' (or drop the stray character) before sending."
                )
                raise RequestPreparationError(msg) from exc
        if unsendable is None and not isinstance(message, _SENDABLE):
            unsendable = (
                f"Cannot send a {type(message).__name__} (message {index}) to a chat model; "
                "use System/Human/AI/Tool messages."
            )
    return unsendable


def _parse_tags(value: Any) -> frozenset[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return frozenset(t.strip() for t in value.split(",") if t.strip())
    return frozenset(str(t) for t in value)


def from_configurable(config: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Routing keys of ``config["configurable"]`` moved into call kwargs (explicit kwargs win)."""
    configurable = config.get("configurable") if isinstance(config, Mapping) else None
    if not configurable:
        return kwargs
    for key in ROUTER_KWARGS:
        if key in configurable and key not in kwargs:
            kwargs[key] = configurable[key]
    if "session_id" not in kwargs and named(configurable.get("thread_id")):
        kwargs["session_id"] = configurable["thread_id"]  # LangGraph's name for a conversation
    return kwargs


@dataclass(frozen=True, slots=True)
class Overrides:
    """The router's own per-call settings, from call kwargs or run metadata."""

    strategy: Any
    tags: frozenset[str] | None
    priority: int
    stream_recovery: str | None


_NO_OVERRIDES = Overrides(None, None, 0, None)
_OVERRIDE_KWARGS = frozenset({"stream_recovery", "routing_strategy", "routing_tags", "routing_priority"})


def read_overrides(kwargs: dict[str, Any], metadata: Mapping[str, Any] | None) -> Overrides:
    """Pop the router's own kwargs; fall back to run metadata (``configurable`` lands there too)."""
    if not metadata and _OVERRIDE_KWARGS.isdisjoint(kwargs):
        return _NO_OVERRIDES  # the usual call: nothing to pop, nothing to read (the result is frozen, so shared)
    meta = metadata or {}
    recovery = kwargs.pop("stream_recovery", None) or meta.get("stream_recovery")
    if recovery is not None and recovery not in STREAM_RECOVERIES:
        msg = f"stream_recovery must be one of {list(STREAM_RECOVERIES)}, not {recovery!r}"
        raise RequestPreparationError(msg)
    strategy = kwargs.pop("routing_strategy", None) or meta.get("routing_strategy")
    tags = _parse_tags(kwargs.pop("routing_tags", None) or meta.get("routing_tags"))
    priority = kwargs.pop("routing_priority", None)
    if priority is None:
        priority = meta.get("routing_priority", meta.get("priority", 0))
    try:
        priority = int(priority)
    except (TypeError, ValueError):
        priority = 0
    if kwargs.get("session_id") is None:
        # The conversation's name travels with the call kwargs to ``describe`` (which pops it).
        session = next((meta[k] for k in SESSION_KEYS if named(meta.get(k))), None)
        if session is not None:
            kwargs["session_id"] = session
    return Overrides(strategy, tags, priority, recovery)


@dataclass(frozen=True, slots=True)
class Request:
    """One routed call's description: what was asked, and what that costs in tokens.

    Immutable; ``counts`` only memoises :meth:`counted` (a pure function of the messages).
    """

    messages: list[BaseMessage]
    stop: list[str] | None
    kwargs: dict[str, Any]
    """Call kwargs every deployment is sent (the router's base kwargs merged in)."""
    strategy: Strategy
    tags: frozenset[str] | None
    priority: int
    info: RequestInfo
    """What a strategy may know: estimated input tokens, max output tokens, streaming."""
    upper_tokens: int
    """A safe upper bound on prompt tokens (characters), to skip counting far below a window."""
    output_tokens: int
    """The call's ``max_tokens`` (0 when unset)."""
    tools: Sequence[Any] | None = None
    tool_kwargs: dict[str, Any] = field(default_factory=dict)
    structured: StructuredSpec | None = None
    images: bool = False
    blocks: bool = False
    """A message's content is a list of blocks (a plain-text call skips every block scan)."""
    unsendable: str | None = None
    """Why a message cannot be sent by a provider that speaks standard messages only."""
    stream_recovery: str = "error"
    """After a stream failed mid-answer: ``"error"`` (StreamInterruptedError) or ``"continue"``."""
    whole: bool = False
    """The caller is not streaming (invoke that streams underneath): a stream is read to its end
    before anything is passed on, so a failure anywhere in it fails over cleanly."""
    continuing: bool = False
    """The request resumes a cut answer: its last message is the assistant prefix delivered so far."""
    runs: AttemptRuns | None = None
    """Child runs per attempt, when the router's run has callback handlers."""
    affinity: bytes | None = None
    """The conversation's key when its strategy keeps conversations on one deployment (prompt-cache affinity)."""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def streaming(self) -> bool:
        return self.info.streaming

    def counted(self, deployment: Deployment) -> int:
        """Prompt tokens as ``deployment``'s model counts them (the context-window filter's counter)."""
        found = self.counts.get(deployment.model_name)
        if found is None:
            found = self.counts[deployment.model_name] = exact_tokens(deployment, self.messages)
        return found

    def tpm_tokens(self, deployment: Deployment) -> int:
        """Tokens a tpm window reserves for this call on ``deployment``: counted prompt + output."""
        prompt = self.counted(deployment)
        return prompt + (self.output_tokens or min(prompt, OUTPUT_RESERVE_CAP))


async def count_ahead(request: Request, deployments: Sequence[Deployment], *, budget: bool) -> None:
    """Count a large prompt in a worker thread, once per model whose deployments will need it.

    Called by the async driver before the (sync) filter: the context-window check, tpm
    reservations and budget estimates then find the count made (``request.counts``). A
    small prompt is left to be counted inline, where a thread hand-off costs more.
    """
    chars = request.upper_tokens or estimate_tokens(request.messages)[1]
    if chars < OFF_LOOP_CHARS:
        return
    needed: dict[str, Deployment] = {}
    for dep in deployments:
        if dep.model_name in request.counts:
            continue
        window = dep.context_window
        if budget or dep.tpm is not None or (window is not None and chars + request.output_tokens > window):
            needed.setdefault(dep.model_name, dep)
    loop = asyncio.get_running_loop()
    for name, dep in needed.items():
        request.counts[name] = await loop.run_in_executor(_counting_pool(), exact_tokens, dep, request.messages)


_COUNTING_WORKERS = 2
"""Threads counting large prompts: tiktoken is CPU-bound (and lets go of the GIL), so more
threads than cores only queue; their own pool keeps them from starving the loop's default
executor, and its threads are started once (the first two large counts in a process)."""
_pool: list[ThreadPoolExecutor] = []
_pool_lock = threading.Lock()


def _counting_pool() -> ThreadPoolExecutor:
    if not _pool:
        with _pool_lock:
            if not _pool:
                _pool.append(ThreadPoolExecutor(_COUNTING_WORKERS, thread_name_prefix="multigateway-count"))
    return _pool[0]


def continuation(request: Request, delivered: str) -> Request:
    """``request`` resumed after ``delivered`` text: the conversation plus that text as an assistant prefix."""
    return replace(
        request,
        messages=[*request.messages, AIMessage(content=delivered)],
        upper_tokens=request.upper_tokens + len(delivered) + 4,
        continuing=True,
        counts={},
    )


def describe(
    messages: list[BaseMessage],
    stop: list[str] | None,
    kwargs: dict[str, Any],
    *,
    strategy: Strategy,
    tags: frozenset[str] | None,
    priority: int,
    streaming: bool,
    whole: bool,
    stream_recovery: str,
    base_kwargs: Mapping[str, Any],
    estimate: bool,
    check_images: bool,
    runs: AttemptRuns | None,
) -> Request:
    """The :class:`Request` for a call; ``kwargs`` hold the call's own (router keys already popped)."""
    unsendable = check_input(messages)
    tools = kwargs.pop("tools", None)
    tool_kwargs = kwargs.pop("tool_kwargs", None) or {}
    structured = kwargs.pop("structured_output", None)
    if structured is not None and not isinstance(structured, StructuredSpec):
        structured = StructuredSpec(structured)
    session = kwargs.pop("session_id", None)
    for key in ROUTER_KWARGS:
        kwargs.pop(key, None)
    call_kwargs = {**base_kwargs, **kwargs} if base_kwargs else kwargs
    conversation = None
    if strategy.affinity:
        conversation = affinity_key(messages, session if session is not None else call_kwargs.get("prompt_cache_key"))
    approx, upper = estimate_tokens(messages) if estimate else (0, 0)
    blocks = any(not isinstance(m.content, str) for m in messages)
    max_out = call_kwargs.get("max_tokens")
    output = max_out if isinstance(max_out, int) else 0
    return Request(
        messages=messages,
        stop=stop,
        kwargs=call_kwargs,
        strategy=strategy,
        tags=tags,
        priority=priority,
        info=RequestInfo(approx, output, streaming),
        upper_tokens=upper,
        output_tokens=output,
        tools=tools,
        tool_kwargs=tool_kwargs,
        structured=structured,
        images=check_images and blocks and _has_images(messages),
        blocks=blocks,
        unsendable=unsendable,
        stream_recovery=stream_recovery,
        whole=whole,
        runs=runs,
        affinity=conversation,
    )
