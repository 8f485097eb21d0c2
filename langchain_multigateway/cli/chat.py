"""``multigateway chat PROMPT``: ask one model, or route between several, live.

Examples:
    multigateway chat "Hello" --model openai:gpt-4o-mini
    multigateway chat "Hello" --model openai:gpt-4o-mini --model mistral:mistral-small-latest --stream
    multigateway chat "Hello" --config gateway.yaml --router main --strategy least_latency

Prints the answer, then one usage line (served by, tokens, cost, latency). The call
is recorded in the usage ledger (``--ledger``; ``multigateway usage`` reads it).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from langchain_multigateway.cli._common import (
    add_generation_options,
    add_ledger_option,
    add_model_options,
    build_target,
    call_config,
    format_cost,
    generation_kwargs,
    open_ledger,
    quiet_price_warnings,
)

__all__ = ["footer", "register", "run"]


def footer(message: Any, usage: Any, elapsed: float) -> str:
    """One line: who served the answer, its tokens, its cost and how long it took."""
    meta = message.response_metadata or {}
    tokens = message.usage_metadata or {}
    served = meta.get("deployment") or f"{meta.get('model_provider') or '?'}:{meta.get('model_name') or '?'}"
    parts = [f"served by {served}"]
    if meta.get("deployment"):
        parts.append(f"{meta.get('provider')}:{meta.get('model')}")
        if (meta.get("attempts") or 1) > 1:
            parts.append(f"after {meta['attempts'] - 1} failed attempt(s)")
    if tokens:
        parts.append(
            f"tokens in={tokens.get('input_tokens')} out={tokens.get('output_tokens')} "
            f"total={tokens.get('total_tokens')}"
        )
    else:
        parts.append("tokens not reported")
    parts.append(format_cost(usage))
    parts.append(f"{elapsed * 1000:.0f} ms")
    return "-- " + " | ".join(parts)


def run(args: argparse.Namespace) -> int:
    from langchain_core.messages import AIMessageChunk

    from langchain_multigateway.usage import LedgerCallbackHandler, track_usage

    kwargs = generation_kwargs(args)
    model = build_target(args)
    ledger = open_ledger(args)
    callbacks = [LedgerCallbackHandler(ledger)] if ledger is not None else []
    config = call_config(args, callbacks)
    config["tags"] = ["cli", "chat"]
    started = time.perf_counter()
    try:
        with quiet_price_warnings(), track_usage() as usage:
            if args.stream:
                message: Any = None
                for chunk in model.stream(args.prompt, config=config, **kwargs):  # type: ignore[arg-type]
                    if chunk.text:
                        sys.stdout.write(chunk.text)
                        sys.stdout.flush()
                    message = chunk if message is None else message + chunk
                message = message if message is not None else AIMessageChunk(content="")
                print()
            else:
                message = model.invoke(args.prompt, config=config, **kwargs)  # type: ignore[arg-type]
                print(message.text)
        print(footer(message, usage, time.perf_counter() - started), file=sys.stderr)
    finally:
        if ledger is not None:
            ledger.close()
    return 0


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "chat",
        parents=[common],
        help="ask a model (or a router over several) one question, live",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompt", metavar="PROMPT", help="the question")
    parser.add_argument("--stream", action="store_true", help="print the answer as it arrives")
    add_generation_options(parser)
    add_model_options(parser)
    add_ledger_option(parser)
    parser.set_defaults(handler=run)
