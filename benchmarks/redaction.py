"""What secret redaction costs, where it runs: error construction, log records, metric labels.

Redaction never runs on a call's success path (the router_overhead benchmark's profile
shows no call into ``_redact`` per request); this measures the places it does run.

Run by hand (timings depend on the machine)::

    .venv/bin/python benchmarks/redaction.py --keys 10
"""

from __future__ import annotations

import argparse
import logging
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_multigateway import _redact
from langchain_multigateway.errors import AuthenticationError

ECHO = "Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."
CLEAN = "could not reach the server: Connection refused [server http://127.0.0.1:8088/v1]"


def per_call_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10, help="credentials registered (models built)")
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    keys = [f"sk-benchmark-key-{i:04d}-abcdefghijkl" for i in range(args.keys)]
    for key in keys:
        _redact.register_secret(key)
    echo = ECHO.format(key=keys[-1])
    n = args.number
    print(f"{args.keys} keys registered")
    print(f"  redact a 401 message echoing a key   {per_call_us(lambda: _redact.redact(echo), n):7.2f} us")
    print(f"  redact a clean error message          {per_call_us(lambda: _redact.redact(CLEAN), n):7.2f} us")
    label = per_call_us(lambda: _redact.redact_label("gpt-4o-mini"), n)
    print(f"  metric label (cached)                 {label:7.2f} us")
    error = per_call_us(lambda: AuthenticationError(echo, provider="openai", status_code=401), n)
    print(f"  build an AuthenticationError          {error:7.2f} us")

    logger = logging.getLogger("httpx")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(logging.NullHandler())
    url = "http://127.0.0.1:8088/v1/chat/completions"
    line = ('HTTP Request: %s %s "%s %d %s"', "POST", url, "HTTP/1.1", 200, "OK")
    plain = per_call_us(lambda: logger.info(*line), n)
    _redact.install_log_redaction()
    redacted = per_call_us(lambda: logger.info(*line), n)
    print(f"  httpx INFO record (when INFO is on)   {plain:7.2f} us plain, {redacted:7.2f} us redacted")
    logger.setLevel(logging.WARNING)
    off = per_call_us(lambda: logger.info(*line), n)
    print(f"  the same at the default WARNING level {off:7.2f} us (no record is made)")


if __name__ == "__main__":
    main()
