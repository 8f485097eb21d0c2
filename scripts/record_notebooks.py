"""Record the cassettes the notebooks replay, by running each notebook against the live server.

    ../shared/tools/local-llm start                  # llama.cpp + Gemma 3 270M on 127.0.0.1:8088
    python scripts/record_notebooks.py               # every notebook that has a cassette
    python scripts/record_notebooks.py 03 05         # only notebooks whose name starts so

Each notebook replays ``notebooks/cassettes/<notebook>.yaml`` through
``langchain_multigateway.cassettes.Recording`` and ``httpx2_replay_client``. To record,
this script executes the notebook with nbclient (kernel ``python3``) after one
injected cell that

- swaps those two names for live stand-ins (no replay client, so ``OpenAIChatModel``
  talks to the real server at the canonical URL http://127.0.0.1:8088/v1), and
- opens a vcrpy cassette (``record_mode="all"``) that captures every HTTP exchange,
  with authorization, API-key and cookie headers scrubbed and request and response
  headers cut to the few that matter (content type, server);

and one final injected cell that writes the cassette. So the recorded requests
are exactly the ones the notebook sends on replay (same prompts, same parameters).
The executed notebook is not saved: committed notebooks carry no outputs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CASSETTES = NOTEBOOKS / "cassettes"
CANONICAL_BASE_URL = "http://127.0.0.1:8088/v1"

# Which notebooks talk to the server (the others are scripted throughout).
RECORDED = (
    "01_quickstart",
    "02_routing_and_failover",
    "03_structured_output_and_tools",
    "04_usage_and_cost",
    "05_agent",
)

START_RECORDING = '''
import vcr as _vcr
import langchain_multigateway.cassettes as _cassettes


class _LiveRecording:
    """Stands in for Recording while recording: the cassette is written, not read."""

    def __init__(self, path):
        self.path = path

    def __len__(self):
        return 0


def _live_client(recording, *, asynchronous=False):
    return None  # None: OpenAIChatModel builds its normal client, which vcrpy records


def _trim_request(request):
    for name in list(request.headers):
        if name.lower() not in ("content-type", "authorization"):
            del request.headers[name]
    return request


def _trim(response):
    headers = response.get("headers") or {{}}
    response["headers"] = {{k: v for k, v in headers.items() if k.lower() in ("content-type", "server")}}
    return response


_cassettes.Recording = _LiveRecording
_cassettes.httpx2_replay_client = _live_client
_recorder = _vcr.VCR(
    record_mode="all",
    match_on=["method", "uri", "body"],
    filter_headers=[
        ("authorization", "PLACEHOLDER"),
        ("x-api-key", "PLACEHOLDER"),
        ("api-key", "PLACEHOLDER"),
        ("openai-organization", "PLACEHOLDER"),
        ("openai-project", "PLACEHOLDER"),
        ("cookie", None),
        ("set-cookie", None),
    ],
    decode_compressed_response=True,
    before_record_request=_trim_request,
    before_record_response=_trim,
)
_recording_cassette = _recorder.use_cassette({path!r})
_recording_cassette.__enter__()
'''

STOP_RECORDING = "_recording_cassette.__exit__(None, None, None)"


def record(name: str) -> Path:
    notebook = NOTEBOOKS / f"{name}.ipynb"
    cassette = CASSETTES / f"{name}.yaml"
    cassette.parent.mkdir(parents=True, exist_ok=True)
    cassette.unlink(missing_ok=True)  # vcrpy would otherwise load and keep the old interactions
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(START_RECORDING.format(path=str(cassette))))
    nb.cells.append(nbformat.v4.new_code_cell(STOP_RECORDING))
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    if not cassette.exists():
        msg = f"{name}: no HTTP exchange was recorded"
        raise SystemExit(msg)
    text = cassette.read_text(encoding="utf-8")
    if "127.0.0.1:8088/v1" not in text:
        msg = f"{name}: the cassette holds no request to {CANONICAL_BASE_URL}"
        raise SystemExit(msg)
    return cassette


def main(argv: list[str]) -> None:
    wanted = [n for n in RECORDED if not argv or any(n.startswith(prefix) for prefix in argv)]
    if not wanted:
        msg = f"no notebook matches {argv}; recorded ones: {', '.join(RECORDED)}"
        raise SystemExit(msg)
    for name in wanted:
        started = time.monotonic()
        path = record(name)
        count = path.read_text(encoding="utf-8").count("- request:")
        print(f"{name}: {count} exchanges -> {path.relative_to(ROOT)} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
