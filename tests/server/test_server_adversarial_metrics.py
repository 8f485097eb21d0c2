"""Adversarial pass on the server's metrics: children looked up once per label set, fed from many threads.

``LabelledChildren`` caches each metric's child per label tuple without a lock. Many
threads recording calls at once, on label sets each of them sees first, must still
count every call once in what ``/metrics`` renders: a child made twice, or a cached
child that is not the registry's, would lose counts.
"""

from __future__ import annotations

import sys
import threading

from prometheus_client.parser import text_string_to_metric_families

from langchain_multigateway.server.metrics import ServerMetrics
from langchain_multigateway.usage.records import CallRecord


def _record(deployment: str, outcome: str) -> CallRecord:
    return CallRecord(
        run_id="r",
        started_at=0.0,
        ended_at=0.01,
        latency_ms=10.0,
        provider="openai",
        model="m",
        deployment=deployment,
        outcome=outcome,
        error_type="Boom" if outcome == "error" else None,
        input_tokens=3,
        output_tokens=2,
        total_tokens=5,
        has_usage=True,
    )


def _samples(metrics: ServerMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_threads_recording_on_new_label_sets_at_once_lose_no_count() -> None:
    metrics = ServerMetrics()
    threads_count, calls = 16, 400
    barrier = threading.Barrier(threads_count)

    def work(index: int) -> None:
        barrier.wait()  # all start together: each label set is first seen by several threads at once
        for i in range(calls):
            deployment = f"d{i % 20}"  # 20 label sets, new to every thread in its first 20 calls
            metrics.calls([_record(deployment, "ok" if (i + index) % 3 else "error")])
            metrics.key_call(f"k{i % 5}", "ok", {"input": 3, "output": 2}, 0.5)
            metrics.response("chat_completions", 200)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between nearly every bytecode: check-then-set races show
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    total = threads_count * calls
    assert sum(_samples(metrics, "multigateway_requests_total").values()) == total
    assert sum(_samples(metrics, "multigateway_key_requests_total").values()) == total
    assert sum(_samples(metrics, "multigateway_key_cost_usd_total").values()) == total * 0.5
    assert sum(_samples(metrics, "multigateway_http_responses_total").values()) == total
    tokens = _samples(metrics, "multigateway_key_tokens_total")
    assert sum(tokens.values()) == total * 5
    assert len(_samples(metrics, "multigateway_key_requests_total")) == 5  # one child per label set
