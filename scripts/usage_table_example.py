"""Print the usage table README.md shows: a router over scripted deployments, with a failover.

The primary (priced as gpt-4o-mini) is rate-limited twice on the second call, and
the router fails over to the backup (priced as claude-haiku-4-5). The replies are
scripted; the accounting, prices and table are the real ones.

    python scripts/usage_table_example.py
"""

from __future__ import annotations

from langchain_multigateway import Deployment, RateLimitError, RetryPolicy, RoutingChatModel
from langchain_multigateway.testing import ScriptedChatModel, Step
from langchain_multigateway.usage import Budget, Ledger, LedgerCallbackHandler, track_usage


def build_router() -> RoutingChatModel:
    served = Step(
        reply="Paris.",
        usage={
            "input_tokens": 1200,
            "output_tokens": 40,
            "total_tokens": 1240,
            "input_token_details": {"cache_read": 1024},
        },
    )
    limited = RateLimitError("429 Too Many Requests", provider="openai")
    primary = ScriptedChatModel(
        model="gpt-4o-mini",
        model_provider="openai",
        steps=[served, limited, limited, served, served],
        exhausted="cycle",
    )
    backup = ScriptedChatModel(
        model="claude-haiku-4-5-20251001",
        model_provider="anthropic",
        steps=[Step(reply="Paris.", usage={"input_tokens": 900, "output_tokens": 60, "total_tokens": 960})],
        exhausted="cycle",
    )
    return RoutingChatModel(
        deployments=[
            Deployment(model=primary, name="primary", retry_policy=RetryPolicy(max_attempts=2, initial_delay=0)),
            Deployment(model=backup, name="backup", priority=1),
        ]
    )


def main() -> str:
    router = build_router()
    ledger = Ledger(":memory:")
    with track_usage() as usage:
        guarded = Budget(max_cost_usd=5.00, scope=usage, name="demo").attach(router)
        for q in ["Capital of France?", "Again?", "Once more?"]:
            guarded.invoke(q, config={"callbacks": [LedgerCallbackHandler(ledger)], "tags": ["demo"]})
        list(guarded.stream("Stream it", config={"tags": ["demo"]}))
    table = usage.summary()
    print(table)
    return table


if __name__ == "__main__":
    main()
