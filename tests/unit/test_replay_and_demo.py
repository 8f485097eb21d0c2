"""Cassette replay without vcrpy, and the demo command built on it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from langchain_multigateway.__main__ import main
from langchain_multigateway.cassettes import CassetteMissError, Recording, httpx2_replay_client, httpx_replay_transport
from langchain_multigateway.cli.demo import CASSETTE, DEMO_PROMPT, LARGE, SMALL, STREAM_PROMPT, demo_model
from tests.conftest import CASSETTES

DEMO_DIR = Path(__file__).resolve().parents[2] / "langchain_multigateway" / "demo_cassettes"
DEMO = DEMO_DIR / "openai_invoke.yaml"
ROUTING = DEMO_DIR / CASSETTE


def _recorded() -> list[tuple[str, dict[str, object], int, str]]:
    """(uri, request body, status, response text) of each recorded routing-demo exchange."""
    data = yaml.safe_load(ROUTING.read_text())
    return [
        (
            i["request"]["uri"],
            json.loads(i["request"]["body"]),
            i["response"]["status"]["code"],
            i["response"]["body"]["string"],
        )
        for i in data["interactions"]
    ]


def _sse(text: str) -> list[dict[str, object]]:
    lines = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


def _usage_sums() -> tuple[int, int]:
    inputs = outputs = 0
    for _, body, status, text in _recorded():
        if status != 200:
            continue
        usage = (
            [e["usage"] for e in _sse(text) if e.get("usage")] if body.get("stream") else [json.loads(text)["usage"]]
        )
        inputs += sum(u["prompt_tokens"] for u in usage)
        outputs += sum(u["completion_tokens"] for u in usage)
    return inputs, outputs


def test_demo_routes_fails_over_streams_and_totals_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "replaying recorded HTTP exchanges (no key, no network)" in out
    assert f"Q: {DEMO_PROMPT}" in out
    recorded = _recorded()
    # 1. routed: the first (ordered) deployment served it, on the first attempt
    first = json.loads(recorded[0][3])["choices"][0]["message"]["content"]
    assert " ".join(first.split())[:60] in out
    step1 = out.split("2. Failover")[0]
    assert f"served by: {SMALL}  (provider: openai, attempts: 1)" in step1
    # 2. failover after the small server's real HTTP 400, then the large one served
    failed = [r for r in recorded if r[2] == 400]
    assert len(failed) == 1
    assert failed[0][0].startswith("http://127.0.0.1:8089/v1")
    assert "exceeds the available context size" in failed[0][3]
    step2 = out.split("2. Failover")[1].split("3. A streamed")[0]
    # the failure: class and status from failed_attempts, the server's own words from the attempt's callback
    server_said = json.loads(failed[0][3])["error"]["message"]
    assert f"{SMALL} failed: ContextWindowExceededError (HTTP {failed[0][2]}): {server_said}" in step2
    assert "next deployment with a larger context window" in step2
    assert "does not count against its circuit breaker" in step2
    assert f"served by: {LARGE}  (provider: openai, attempts: 2)" in step2
    # 3. streamed text is the recorded SSE deltas, joined
    stream = next(r for r in recorded if r[1].get("stream"))
    assert stream[1]["messages"][0]["content"] == STREAM_PROMPT
    pieces = [c["delta"].get("content") or "" for e in _sse(stream[3]) for c in e.get("choices", [])]
    assert "A: " + " ".join("".join(pieces).split()) in out
    # 4. structured output: the recorded JSON, parsed into the schema
    schema_reply = next(r for r in recorded if "response_format" in r[1])
    city = json.loads(json.loads(schema_reply[3])["choices"][0]["message"]["content"])
    assert f"City(name={city['name']!r}, country={city['country']!r})" in out
    # 5. usage table totals: the sum of the recorded usage; one failed attempt; cost unknown, said so
    inputs, outputs = _usage_sums()
    total = next(line for line in out.splitlines() if line.startswith("TOTAL")).split()
    assert total[1:6] == ["5", "1", str(inputs), str(outputs), total[5]]
    assert total[-1] == "n/a"
    assert "no price is known for a local llama.cpp model" in out


def test_demo_cassette_is_small_and_scrubbed() -> None:
    text = ROUTING.read_text()
    assert len(text) < 40_000
    assert "authorization" not in text.lower()
    assert {r[0] for r in _recorded()} == {
        "http://127.0.0.1:8088/v1/chat/completions",
        "http://127.0.0.1:8089/v1/chat/completions",
    }


async def test_async_replay_serves_the_same_recording() -> None:
    recording = Recording(DEMO)
    llm = demo_model().model_copy(update={"http_async_client": httpx2_replay_client(recording, asynchronous=True)})
    reply = await llm.ainvoke(DEMO_PROMPT)
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["total_tokens"] == 80


def test_a_request_not_in_the_cassette_fails_naming_it() -> None:
    llm = demo_model(http_client=httpx2_replay_client(Recording(DEMO)))
    with pytest.raises(CassetteMissError) as caught:
        llm.invoke("a question nobody recorded")
    text = str(caught.value)
    assert "POST http://127.0.0.1:8088/v1/chat/completions" in text
    assert "a question nobody recorded" in text
    assert "openai_invoke.yaml" in text


def test_tool_call_ids_do_not_break_matching() -> None:
    recording = Recording(CASSETTES / "test_openai_recorded" / "test_recorded_tool_result_round_trip.yaml")
    assert len(recording) == 2


def test_httpx_transport_replays_for_httpx_based_providers() -> None:
    client = httpx.Client(transport=httpx_replay_transport(Recording(DEMO)))
    health = Recording(CASSETTES / "test_openai_recorded" / "test_recorded_health_check.yaml")
    models = httpx.Client(transport=httpx_replay_transport(health)).get("http://127.0.0.1:8088/v1/models")
    assert models.status_code == 200
    assert models.json()["object"] == "list"
    with pytest.raises(CassetteMissError):
        client.get("http://127.0.0.1:8088/v1/models")


def test_a_file_that_is_not_a_cassette_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "x.yaml"
    bogus.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="not a cassette"):
        Recording(bogus)


@pytest.mark.parametrize("script", ["record_demo.py", "record_notebooks.py"])
def test_recording_scripts_import_against_the_current_api(script: str) -> None:
    """The recorders run only by hand against a live server; at least their imports must hold."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / script
    spec = importlib.util.spec_from_file_location(f"recorder_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # runs module-level code only: main() needs a live server
    assert callable(module.main)


def test_readme_usage_table_is_what_the_example_prints() -> None:
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("usage_table_example", root / "scripts" / "usage_table_example.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.main()
    assert table in (root / "README.md").read_text()
    total = table.splitlines()[-1].split()
    assert total[:3] == ["TOTAL", "6", "2"]  # 4 served calls + 2 failed attempts, 2 errors
