"""Record the cassettes ``multigateway demo`` replays, against live OpenAI-compatible servers.

    ../shared/tools/local-llm start                          # Gemma 3 270M, 4096-token context, :8088
    LOCAL_LLM_CTX=256 ../shared/tools/local-llm start 8089   # the same model, 256-token context, :8089
    python scripts/record_demo.py [LARGE_URL [SMALL_URL]]
    ../shared/tools/local-llm stop 8089

Writes two cassettes under langchain_multigateway/demo_cassettes/:

- ``openai_invoke.yaml``: one plain call of one model, for the replay tests (recorded when missing);
- ``routing_demo.yaml``: the router demo: a routed answer, the small server's real
  HTTP 400 "exceeds the available context size" and the large server's answer after
  failover, a streamed answer (SSE with usage), a json_schema structured answer.

Keys and cookies are scrubbed; recorded URLs are the canonical
http://127.0.0.1:8088/v1 (large) and http://127.0.0.1:8089/v1 (small), whatever
servers were used. Headers are cut to the few a client reads (replay matches on
method, URL and body), which also keeps every credential header out.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import vcr

from langchain_multigateway.cli.demo import (
    CASSETTE,
    DEMO_BASE_URL,
    DEMO_PROMPT,
    SMALL_BASE_URL,
    demo_model,
    demo_router,
    run_steps,
)

OUT = Path(__file__).resolve().parent.parent / "langchain_multigateway" / "demo_cassettes"
KEEP_RESPONSE_HEADERS = {"content-type", "server"}
KEEP_REQUEST_HEADERS = {"content-type"}  # replay matches on method, URL and body only


def main() -> None:
    large = (sys.argv[1] if len(sys.argv) > 1 else DEMO_BASE_URL).rstrip("/")
    small = (sys.argv[2] if len(sys.argv) > 2 else SMALL_BASE_URL).rstrip("/")

    def canonical(request: Any) -> Any:
        request.uri = request.uri.replace(large, DEMO_BASE_URL).replace(small, SMALL_BASE_URL)
        request.headers = {k: v for k, v in request.headers.items() if k.lower() in KEEP_REQUEST_HEADERS}
        return request

    def trim(response: dict[str, Any]) -> dict[str, Any]:
        headers = response.get("headers") or {}
        response["headers"] = {k: v for k, v in headers.items() if k.lower() in KEEP_RESPONSE_HEADERS}
        return response

    recorder = vcr.VCR(
        record_mode="all",
        filter_headers=[("authorization", "PLACEHOLDER"), ("cookie", None), ("set-cookie", None)],
        decode_compressed_response=True,
        before_record_request=canonical,
        before_record_response=trim,
    )
    if not (OUT / "openai_invoke.yaml").exists():  # the replay tests' cassette: recorded once
        with recorder.use_cassette(str(OUT / "openai_invoke.yaml")):
            print(demo_model(base_url=large).invoke(DEMO_PROMPT))
    with recorder.use_cassette(str(OUT / CASSETTE)):
        router = demo_router(small_url=small, large_url=large)
        run_steps(router, print)


if __name__ == "__main__":
    main()
