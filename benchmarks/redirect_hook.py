"""What the credentials-stay-home request hook costs a request (``chat_models/_redirects.py``).

The providers' own HTTP clients run it on every request and every redirect hop. On a request to
the deployment's own origin (every request but a redirect elsewhere) it compares three URL parts
and returns; on a hop to another origin it also drops the credential headers.

Run by hand (timings depend on the machine)::

    .venv/bin/python benchmarks/redirect_hook.py
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx2

from langchain_multigateway.chat_models._redirects import acredentials_stay_home, credentials_stay_home

HOME = "https://api.openai.com/v1"
HEADERS = {
    "authorization": "Bearer sk-benchmark-key-0000-abcdefghijkl",
    "api-key": "az-benchmark-key-0000-abcdefghijkl",
    "content-type": "application/json",
    "accept": "application/json",
    "user-agent": "OpenAI/Python",
    "x-stainless-lang": "python",
}


def per_call_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    hook = credentials_stay_home(HOME)
    home = httpx2.Request("POST", HOME + "/chat/completions", headers=HEADERS)
    print(f"sync hook, same origin:    {per_call_us(lambda: hook(home), args.number):.3f} us a request")

    def away() -> object:  # a fresh request each time: the hook empties the one it is given
        request = httpx2.Request("POST", "https://elsewhere.example/chat/completions", headers=HEADERS)
        hook(request)
        return request

    build = per_call_us(
        lambda: httpx2.Request("POST", "https://elsewhere.example/chat/completions", headers=HEADERS),
        args.number // 10,
    )
    hop = per_call_us(away, args.number // 10) - build
    print(f"sync hook, other origin:   {hop:.3f} us a hop (building the request taken off)")

    ahook = acredentials_stay_home(HOME)
    coroutine_step = per_call_us(lambda: _drive(ahook(home)), args.number)
    print(f"async hook, same origin:   {coroutine_step:.3f} us a request (creating and driving the coroutine included)")


def _drive(coroutine: Awaitable[None]) -> None:
    """Run a coroutine that never suspends, as an event loop's task step would (no loop's own cost)."""
    with contextlib.suppress(StopIteration):
        coroutine.send(None)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
