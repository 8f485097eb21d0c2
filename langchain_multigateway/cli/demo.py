"""``multigateway demo``: the gateway at work, replayed from recorded HTTP exchanges.

A RoutingChatModel over two OpenAIChatModel deployments, each a llama.cpp server
serving Gemma 3 270M on loopback, one with a 256-token context and one with 4096.
The demo replays what ``scripts/record_demo.py`` recorded from those servers (no
key, no network): a routed answer, a failover after the small server's real HTTP
400 "exceeds the available context size", a streamed answer, a JSON-schema
structured answer, and the usage table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from langchain_multigateway.chat_models.openai import OpenAIChatModel
    from langchain_multigateway.routing import RoutingChatModel

__all__ = [
    "CASSETTE",
    "DEMO_BASE_URL",
    "DEMO_PROMPT",
    "LARGE",
    "LONG_PROMPT",
    "SMALL",
    "SMALL_BASE_URL",
    "STREAM_PROMPT",
    "STRUCTURED_PROMPT",
    "City",
    "demo_model",
    "demo_router",
    "register",
    "run",
]

DEMO_BASE_URL = "http://127.0.0.1:8088/v1"
"""llama.cpp with a 4096-token context (``local-llm start``)."""
SMALL_BASE_URL = "http://127.0.0.1:8089/v1"
"""llama.cpp with a 256-token context (``LOCAL_LLM_CTX=256 local-llm start 8089``)."""
SMALL, LARGE = "gemma-small", "gemma-large"
CASSETTE = "routing_demo.yaml"

DEMO_PROMPT = "In one sentence, what does an API gateway do?"
STREAM_PROMPT = "Name three primary colours."
STREAM_MAX_TOKENS = 24
STRUCTURED_PROMPT = "Give a city and the country it is in."
LONG_PROMPT = "Summarise this gateway log in one sentence.\n" + "\n".join(
    f"{i:02d}:00 request {i} routed to deployment {'abc'[i % 3]}, answered in {100 + 7 * i} ms" for i in range(24)
)


class City(BaseModel):
    """A city and its country (the demo's structured-output schema)."""

    name: str = Field(max_length=40)
    country: str = Field(max_length=40)


def demo_model(*, base_url: str = DEMO_BASE_URL, http_client: Any = None) -> OpenAIChatModel:
    """One demo deployment's model: Gemma 3 270M behind llama.cpp's OpenAI-compatible API."""
    from langchain_multigateway.chat_models.openai import OpenAIChatModel

    return OpenAIChatModel(
        model="gemma-3-270m",
        base_url=base_url,
        api_key="not-needed-for-a-local-server",
        temperature=0,
        seed=7,
        max_tokens=60,
        http_client=http_client,
    )


def demo_router(
    *, small_url: str = SMALL_BASE_URL, large_url: str = DEMO_BASE_URL, http_client: Any = None
) -> RoutingChatModel:
    """The demo's router: ``gemma-small`` first (its window unstated), ``gemma-large`` (4096) next."""
    from langchain_multigateway.routing import Deployment, RoutingChatModel

    return RoutingChatModel(
        model="demo-router",
        strategy="ordered",
        deployments=[
            Deployment(model=demo_model(base_url=small_url, http_client=http_client), name=SMALL, priority=0),
            Deployment(
                model=demo_model(base_url=large_url, http_client=http_client),
                name=LARGE,
                priority=1,
                context_window=4096,
            ),
        ],
    )


@contextmanager
def _replay_client() -> Iterator[Any]:
    from langchain_multigateway.cassettes import Recording, httpx2_replay_client

    cassette = resources.files("langchain_multigateway") / "demo_cassettes" / CASSETTE
    with resources.as_file(cassette) as path:
        recording = Recording(Path(path))
    client = httpx2_replay_client(recording)
    try:
        yield client
    finally:
        client.close()


def _served(meta: dict[str, Any]) -> str:
    return f"served by: {meta.get('deployment')}  (provider: {meta.get('provider')}, attempts: {meta.get('attempts')})"


def _attempt_errors() -> Any:
    """A callback handler keeping each failed attempt's error message by deployment.

    The router runs every attempt as a child run tagged with its deployment, so an
    ordinary LangChain handler sees each failure (``failed_attempts`` in the reply's
    metadata deliberately carries no message text: it may quote the input).
    """
    from langchain_core.callbacks import BaseCallbackHandler

    class AttemptErrors(BaseCallbackHandler):
        def __init__(self) -> None:
            self.deployment_of: dict[Any, str] = {}
            self.messages: dict[str, str] = {}

        def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: Any, **kwargs: Any) -> None:
            deployment = (kwargs.get("metadata") or {}).get("deployment")
            if deployment:
                self.deployment_of[run_id] = deployment

        def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            deployment = self.deployment_of.get(run_id)
            if deployment:
                self.messages[deployment] = str(getattr(error, "message", error))

    return AttemptErrors()


def _failures(meta: dict[str, Any], messages: dict[str, str] | None = None) -> list[str]:
    """What ``meta["failed_attempts"]`` says about each failed try, and where the router went next."""
    from langchain_core.exceptions import ContextOverflowError

    from langchain_multigateway import errors

    lines: list[str] = []
    for attempt in meta.get("failed_attempts", []):
        status = attempt.get("status_code")
        said = (messages or {}).get(attempt["deployment"])
        lines.append(
            f"{attempt['deployment']} failed: {attempt['error_type']}"
            + (f" (HTTP {status})" if status else "")
            + (f": {said}" if said else "")
        )
        kind = getattr(errors, str(attempt["error_type"]), None)
        if isinstance(kind, type) and issubclass(kind, ContextOverflowError):
            lines.append(
                "router: moves on to the next deployment with a larger context window "
                "(a context overflow does not count against its circuit breaker)"
            )
        else:
            lines.append("router: moves on to the next one")
    return lines


def _short(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def run_steps(router: RoutingChatModel, out: Callable[[str], None]) -> dict[str, Any]:
    """The demo's four calls through ``router``, printed with ``out``; returns what they gave."""
    from langchain_core.messages import AIMessageChunk

    results: dict[str, Any] = {}
    out("\n1. A routed answer (strategy: ordered; gemma-small is first)")
    out(f"   Q: {DEMO_PROMPT}")
    reply = router.invoke(DEMO_PROMPT)
    results["routed"] = reply
    out(f"   A: {_short(str(reply.content))}")
    out(f"   {_served(reply.response_metadata)}")

    out("\n2. Failover after a real failure")
    out(f"   Q: {LONG_PROMPT.splitlines()[0]} (+ {len(LONG_PROMPT.splitlines()) - 1} log lines)")
    seen = _attempt_errors()
    reply = router.invoke(LONG_PROMPT, config={"callbacks": [seen]})
    results["failover"] = reply
    for line in _failures(reply.response_metadata, seen.messages):
        out(f"   {line}")
    out(f"   A: {_short(str(reply.content))}")
    out(f"   {_served(reply.response_metadata)}")

    out("\n3. A streamed answer")
    out(f"   Q: {STREAM_PROMPT}")
    chunks: list[AIMessageChunk] = []
    sys.stdout.flush()
    for chunk in router.stream(STREAM_PROMPT, max_tokens=STREAM_MAX_TOKENS):
        chunks.append(chunk)
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    results["stream"] = merged
    out(f"   A: {_short(str(merged.content))}")
    out(f"   {_served(merged.response_metadata)}; {len(chunks)} chunks, usage on the last")

    out("\n4. Structured output (json_schema, grammar-constrained by the server)")
    out(f"   Q: {STRUCTURED_PROMPT}")
    city = router.with_structured_output(City).invoke(STRUCTURED_PROMPT)
    results["structured"] = city
    out(f"   {city!r}")
    return results


def run(args: argparse.Namespace) -> int:
    """Replay the bundled recordings through a router and print what each step shows."""
    from langchain_multigateway.cli._common import quiet_price_warnings
    from langchain_multigateway.usage import track_usage

    print(
        "multigateway demo: replaying recorded HTTP exchanges (no key, no network).\n"
        "They were recorded by scripts/record_demo.py from two real llama.cpp servers serving\n"
        "Gemma 3 270M on loopback (a 270M base model: the words are real, not wise):\n"
        f"  {SMALL}  {SMALL_BASE_URL}  context 256 tokens (window not stated to the router)\n"
        f"  {LARGE}  {DEMO_BASE_URL}  context 4096 tokens"
    )
    with _replay_client() as client, quiet_price_warnings(), track_usage() as usage:
        router = demo_router(http_client=client)
        run_steps(router, print)
    print("\n5. Usage and cost (usage.track_usage)")
    print(usage.summary())
    print(
        "cost n/a: no price is known for a local llama.cpp model, and the gateway never invents one.\n"
        "For a hosted model the price table fills cost_usd; add yours with "
        "set_price('gemma-3-270m', input=..., output=...)."
    )
    return 0


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "demo",
        parents=[common],
        help="replay recorded exchanges offline: routing, failover, streaming, structured output, usage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=run)
