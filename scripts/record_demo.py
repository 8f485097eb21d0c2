"""Record the cassettes the demo replays, against a live OpenAI-compatible server.

    ../shared/tools/local-llm start            # llama.cpp + Gemma 3 270M on 127.0.0.1:8088
    python scripts/record_demo.py [BASE_URL]

Keys and cookies are scrubbed; the recorded base URL is the canonical
http://127.0.0.1:8088/v1 whatever server was used.
"""

from __future__ import annotations

import sys
from pathlib import Path

import vcr

from langchain_multigateway.__main__ import DEMO_BASE_URL, DEMO_PROMPT, demo_model

OUT = Path(__file__).resolve().parent.parent / "langchain_multigateway" / "demo_cassettes"


def main() -> None:
    live = (sys.argv[1] if len(sys.argv) > 1 else DEMO_BASE_URL).rstrip("/")

    def canonical(request: vcr.request.Request) -> vcr.request.Request:
        request.uri = request.uri.replace(live, DEMO_BASE_URL)
        return request

    recorder = vcr.VCR(
        record_mode="all",
        filter_headers=[("authorization", "PLACEHOLDER"), ("cookie", None), ("set-cookie", None)],
        decode_compressed_response=True,
        before_record_request=canonical,
    )
    with recorder.use_cassette(str(OUT / "openai_invoke.yaml")):
        print(demo_model(base_url=live).invoke(DEMO_PROMPT))


if __name__ == "__main__":
    main()
