"""Usage and prices are keyed on the model as configured; the name the server answered with sits beside it.

A llama.cpp-style server answers with a model *file path*: the loopback server below
(a real HTTP server on 127.0.0.1 speaking OpenAI's chat-completions wire format) does so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_multigateway.chat_models import OpenAIChatModel
from langchain_multigateway.routing.deployment import Deployment
from langchain_multigateway.routing.router import RoutingChatModel
from langchain_multigateway.usage import Ledger, LedgerCallbackHandler, default_price_table, set_price, track_usage
from langchain_multigateway.usage.ledger import rows_by
from tests.loopback import Reply, chat_completion, chat_stream, serve

SERVED = "/models/gemma-3-270m-it-Q8_0.gguf"


@pytest.fixture
def gemma_price() -> Iterator[None]:
    set_price("gemma", input=1.0, output=2.0)
    yield
    default_price_table().remove("gemma")


def _router(url: str) -> RoutingChatModel:
    llm = OpenAIChatModel(model="gemma", base_url=url, api_key="sk-loopback", max_retries=0)
    return RoutingChatModel(deployments=[Deployment(model=llm, name="local")])


def test_a_failure_and_a_success_of_one_deployment_are_one_priced_row(tmp_path: Path, gemma_price: None) -> None:
    ledger = Ledger(tmp_path / "keys.sqlite3")
    with serve(Reply(500, {"error": {"message": "slot busy"}}), Reply(body=chat_completion("hi", model=SERVED))) as (
        url,
        script,
    ):
        router = _router(url)
        with track_usage() as usage:
            message = router.invoke("hi", config={"callbacks": [LedgerCallbackHandler(ledger)]})
    assert len(script.requests) == 2
    assert message.response_metadata["model_name"] == SERVED
    by_model = usage.by_model()
    assert list(by_model) == ["gemma"]
    assert (by_model["gemma"].requests, by_model["gemma"].errors) == (2, 1)
    assert by_model["gemma"].cost_usd == pytest.approx((5 * 1.0 + 2 * 2.0) / 1e6)
    assert by_model["gemma"].unpriced == 0
    assert "n/a" not in usage.summary()
    assert [line.split()[1] for line in usage.summary().splitlines()[2:3]] == ["gemma"]
    assert usage.usage_metadata == {SERVED: {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}}
    totals = rows_by(ledger.totals(by="model"))
    assert list(totals) == ["gemma"]
    assert (totals["gemma"]["requests"], totals["gemma"]["errors"]) == (2, 1)
    assert [(r["model"], r["served_model"], r["outcome"]) for r in ledger.records()] == [
        ("gemma", None, "error"),
        ("gemma", SERVED, "ok"),
    ]
    ledger.close()


def test_a_streamed_call_is_keyed_on_the_configured_name_too(gemma_price: None) -> None:
    with serve(Reply(sse=chat_stream(["hel", "lo"], model=SERVED))) as (url, _):
        llm = OpenAIChatModel(model="gemma", base_url=url, api_key="sk-loopback", max_retries=0)
        with track_usage() as usage:
            for _chunk in llm.stream("hi"):
                pass
    assert list(usage.by_model()) == ["gemma"]
    assert usage.totals.cost_usd > 0
    record_served = usage.usage_metadata
    assert list(record_served) == [SERVED]


def test_an_old_ledger_gains_the_served_model_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, day TEXT NOT NULL,"
        " run_id TEXT, parent_run_id TEXT, deployment TEXT, provider TEXT, model TEXT,"
        " input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,"
        " total_tokens INTEGER NOT NULL DEFAULT 0, cached_tokens INTEGER NOT NULL DEFAULT 0,"
        " reasoning_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL, latency_ms REAL, outcome TEXT NOT NULL,"
        " error_type TEXT, tags TEXT NOT NULL DEFAULT '[]')"
    )
    conn.execute("INSERT INTO calls (ts, day, model, outcome) VALUES (1.0, '1970-01-01', 'gpt-4o', 'ok')")
    conn.commit()
    conn.close()
    with Ledger(path) as ledger:
        assert [(r["model"], r["served_model"]) for r in ledger.records()] == [("gpt-4o", None)]
