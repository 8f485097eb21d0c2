"""Cassette replay without vcrpy, and the demo command built on it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from langchain_multigateway.__main__ import DEMO_PROMPT, demo_model, main
from langchain_multigateway.cassettes import CassetteMissError, Recording, httpx2_replay_client, httpx_replay_transport
from tests.conftest import CASSETTES

DEMO = Path(__file__).resolve().parents[2] / "langchain_multigateway" / "demo_cassettes" / "openai_invoke.yaml"


def test_demo_prints_the_recorded_answer_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Replaying a recorded exchange" in out
    assert f"Q: {DEMO_PROMPT}" in out
    assert "provider: openai" in out
    assert "tokens: input=20 output=60 total=80" in out


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
