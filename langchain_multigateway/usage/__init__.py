"""Usage accounting: token and cost totals, prices, budgets and a call ledger.

Knows nothing of routing: it reads what chat models report (``usage_metadata``,
``response_metadata``) through LangChain callbacks, so it works with any chat
model, a ``RoutingChatModel`` included.
"""

from langchain_multigateway.usage.budgets import Budget
from langchain_multigateway.usage.callbacks import UsageCallbackHandler, UsageTotals, atrack_usage, track_usage
from langchain_multigateway.usage.ledger import Ledger, LedgerCallbackHandler
from langchain_multigateway.usage.pricing import (
    DEFAULT_PRICES,
    ModelPrice,
    PriceTable,
    cost_of_usage,
    default_price_table,
    set_price,
)
from langchain_multigateway.usage.records import CallRecord, CallRecorder

__all__ = [
    "DEFAULT_PRICES",
    "Budget",
    "CallRecord",
    "CallRecorder",
    "Ledger",
    "LedgerCallbackHandler",
    "ModelPrice",
    "PriceTable",
    "UsageCallbackHandler",
    "UsageTotals",
    "atrack_usage",
    "cost_of_usage",
    "default_price_table",
    "set_price",
    "track_usage",
]
