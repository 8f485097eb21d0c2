"""One worker process of the multi-process shared-state proof (run by test_redis_multiprocess.py).

    python tests/integration/redis_worker.py '<json job>'

Builds a router over OpenAI-compatible deployments on the loopback stub, with a RedisState
shared through ``redis_url`` / ``namespace``, prints ``ready``, waits for a line on stdin, runs
the job's calls, and prints one JSON line: how many calls each deployment answered, the tokens
the responses reported, the admissions granted (by Redis or locally) and what the shared state
logged (scripts Redis did not answer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections import Counter
from typing import Any

from langchain_multigateway import Deployment, OpenAIChatModel, RetryPolicy, RoutingChatModel
from langchain_multigateway.state import Admission
from langchain_multigateway.state._redis_replies import Ticket
from langchain_multigateway.state.redis import RedisState

ONCE = RetryPolicy(max_attempts=1)


def deployment(job: dict[str, Any], model: str, **fields: Any) -> Deployment:
    chat = OpenAIChatModel(model=model, base_url=job["base_url"], api_key="none", max_retries=0)
    return Deployment(model=chat, name=model, retry_policy=ONCE, **fields)


def chat_model(deployment: Deployment) -> OpenAIChatModel:
    assert isinstance(deployment.model, OpenAIChatModel)
    return deployment.model


class Misses(logging.Handler):
    """Keeps what the shared state logs: each script Redis did not answer in time (a call judged
    locally) and each fallback of the whole process to local state, with why, for the test to show."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def warm_up(state: RedisState, deployments: list[Deployment], worker: int, connections: int) -> None:
    """Before the start: open this loop's Redis connections (a call holds one at a time, so
    ``connections`` = the calls running at once) and make the SDK clients (importing the SDK).

    Cold, the first calls of four processes started together on a loaded 2-core machine each
    opened a connection while the others imported the SDK: one connect took over the 1 s bound
    and its call was judged locally, outside the shared window. Warm, what the proof measures
    is sharing; a loop held up mid-read is the adversarial tests' subject."""
    for each in deployments:
        chat_model(each).async_client  # noqa: B018 - made on first use, in this loop
    warm = f"warm-up-{worker}"  # a deployment of its own: no limit, no peer count on the real ones
    for _ in range(10):  # a connect that took longer than the bound is not kept: try again
        admissions = await asyncio.gather(*(state.aadmit(warm) for _ in range(connections)))
        await asyncio.gather(*(state.arelease(warm, admission, ok=True) for admission in admissions))
        if all(isinstance(admission.reservation, Ticket) for admission in admissions):
            return


async def run(job: dict[str, Any]) -> dict[str, Any]:
    state = RedisState(job["redis_url"], namespace=job["namespace"], timeout=1.0, **job.get("breaker", {}))
    first, second = job["deployments"]
    deployments = [deployment(job, first, priority=0, rpm=job.get("rpm")), deployment(job, second, priority=1)]
    concurrency = job.get("concurrency", 8)
    await warm_up(state, deployments, job["worker"], concurrency)
    admitted: Counter[str] = Counter()  # "<deployment> <granted by: Ticket (Redis) | Local>"
    admit = state.aadmit

    async def counted(name: str, **limits: Any) -> Admission:
        admission = await admit(name, **limits)
        if admission.ok:
            admitted[f"{name} {type(admission.reservation).__name__}"] += 1
        return admission

    state.aadmit = counted  # type: ignore[method-assign]
    router = RoutingChatModel(deployments=deployments, state=state, max_wait=0)
    misses = Misses()  # from the start on
    logger = logging.getLogger("langchain_multigateway.state")
    logger.addHandler(misses)
    logger.setLevel(logging.DEBUG)
    # built and warm: wait for the test's "go", so that the four processes' calls start together
    # however slowly each started
    print("ready", flush=True)
    sys.stdin.readline()
    served: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    semaphore = asyncio.Semaphore(concurrency)

    async def call(i: int) -> None:
        async with semaphore:
            message = await router.ainvoke(f"req-{job['worker']}-{i}")
        name = message.response_metadata["deployment"]
        served[name] += 1
        tokens[name] += (message.usage_metadata or {}).get("total_tokens", 0)

    if job.get("until_open"):  # open the first deployment's breaker, one call at a time
        calls = 0
        while router.health()[first].breaker != "open":
            await call(calls)
            calls += 1
    else:
        await asyncio.gather(*(call(i) for i in range(job["calls"])))
    shared = state.health().shared
    state.close()
    return {
        "served": dict(served),
        "tokens": dict(tokens),
        "shared": shared,
        "misses": misses.messages,
        "admitted": dict(admitted),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))), flush=True)
