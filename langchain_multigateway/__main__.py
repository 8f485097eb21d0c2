"""The ``multigateway`` command.

``multigateway demo`` replays a recorded answer from the bundled cassette
through OpenAIChatModel (no key, no network) and prints it with its usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any

DEMO_BASE_URL = "http://127.0.0.1:8088/v1"
DEMO_PROMPT = "In one sentence, what does an API gateway do?"


def demo_model(*, base_url: str = DEMO_BASE_URL, http_client: Any = None) -> Any:
    """The model the demo cassette was recorded with (llama.cpp serving Gemma 3 270M)."""
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


def run_demo() -> int:
    from langchain_multigateway.cassettes import Recording, httpx2_replay_client

    cassette = resources.files("langchain_multigateway") / "demo_cassettes" / "openai_invoke.yaml"
    with resources.as_file(cassette) as path:
        recording = Recording(path)
    print(
        "Replaying a recorded exchange: llama.cpp serving Gemma 3 270M on loopback, recorded by "
        "scripts/record_demo.py. No key, no network. (A 270M base model: the words are real, not wise.)"
    )
    model = demo_model(http_client=httpx2_replay_client(recording))
    reply = model.invoke(DEMO_PROMPT)
    usage = reply.usage_metadata or {}
    print(f"\nQ: {DEMO_PROMPT}")
    print(f"A: {str(reply.content).strip()}")
    meta = reply.response_metadata
    print(f"\nmodel: {meta.get('model_name')}  provider: {meta.get('model_provider')}")
    print(
        f"tokens: input={usage.get('input_tokens')} output={usage.get('output_tokens')} "
        f"total={usage.get('total_tokens')}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="multigateway", description="Many LLM providers behind one gateway.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="replay a recorded answer offline and print it with its token usage")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo()
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse rejects it first
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
