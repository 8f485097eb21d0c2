"""Prices of Anthropic's cache writes by time to live, and of reasoning tokens."""

from __future__ import annotations

import pytest

from langchain_multigateway.usage import DEFAULT_PRICES, ModelPrice, PriceTable, cost_of_usage
from langchain_multigateway.usage.pricing import set_price

# Per million tokens: input 1, output 5, cache hits 0.10, 5-minute writes 1.25, 1-hour writes 2.
HAIKU = ModelPrice(1.00, 5.00, 0.10, 1.25, "test", "2026-11-29", 2.00)
MILLION = 1_000_000


def test_anthropic_defaults_price_1h_writes_at_twice_and_5m_writes_at_1_25x_input() -> None:
    anthropic = {name: p for name, p in DEFAULT_PRICES.items() if name.startswith("claude")}
    assert len(anthropic) >= 9
    for name, price in anthropic.items():
        # The published table rounds (Haiku 3: $0.30 for 1.25 x $0.25).
        assert price.cache_write == pytest.approx(1.25 * price.input, abs=0.015), name
        assert price.cache_write_1h == pytest.approx(2 * price.input), name
        assert price.cached_input == pytest.approx(0.1 * price.input, abs=0.006), name
        assert "1-hour" in price.source, name
        assert price.checked == "2026-11-29", name


def test_1h_and_5m_writes_are_priced_apart_in_langchain_anthropics_shape() -> None:
    # langchain-anthropic (and AnthropicChatModel): the split replaces the generic count.
    usage = {
        "input_tokens": 100 + 2 * MILLION + 3 * MILLION,
        "output_tokens": 0,
        "input_token_details": {
            "cache_read": 0,
            "cache_creation": 0,
            "ephemeral_5m_input_tokens": 2 * MILLION,
            "ephemeral_1h_input_tokens": 3 * MILLION,
        },
    }
    assert HAIKU.cost(usage) == pytest.approx(100 / MILLION + 2 * 1.25 + 3 * 2.00)


def test_a_generic_total_beside_the_split_is_not_counted_twice() -> None:
    # A producer that keeps the total in cache_creation as well as the split.
    usage = {
        "input_tokens": 5 * MILLION,
        "output_tokens": 0,
        "input_token_details": {
            "cache_creation": 5 * MILLION,
            "ephemeral_5m_input_tokens": 2 * MILLION,
            "ephemeral_1h_input_tokens": 3 * MILLION,
        },
    }
    assert HAIKU.cost(usage) == pytest.approx(2 * 1.25 + 3 * 2.00)


def test_writes_without_a_ttl_are_5_minute_writes() -> None:
    usage = {"input_tokens": 4 * MILLION, "output_tokens": 0, "input_token_details": {"cache_creation": 4 * MILLION}}
    assert HAIKU.cost(usage) == pytest.approx(4 * 1.25)


def test_only_1h_writes_cost_twice_the_input() -> None:
    usage = {
        "input_tokens": MILLION,
        "output_tokens": 0,
        "input_token_details": {"ephemeral_1h_input_tokens": MILLION},
    }
    assert HAIKU.cost(usage) == pytest.approx(2.00)
    # Before the split was priced, the same usage cost the 5-minute rate (or the input rate).
    assert HAIKU.cost(usage) != pytest.approx(1.25)


def test_unknown_1h_price_falls_back_to_the_input_price() -> None:
    plain = ModelPrice(3.00, 15.00)
    usage = {"input_tokens": MILLION, "output_tokens": 0, "input_token_details": {"ephemeral_1h_input_tokens": MILLION}}
    assert plain.cost(usage) == pytest.approx(3.00)


def test_reasoning_tokens_are_priced_as_output_once() -> None:
    # LangChain's output_tokens include the reasoning tokens (output_token_details is a
    # breakdown, not an addition): all are charged at the output price, none twice.
    usage = {
        "input_tokens": 0,
        "output_tokens": 3 * MILLION,
        "output_token_details": {"reasoning": 2 * MILLION},
    }
    assert HAIKU.cost(usage) == pytest.approx(3 * 5.00)
    without_reasoning = {"input_tokens": 0, "output_tokens": 3 * MILLION}
    assert HAIKU.cost(usage) == HAIKU.cost(without_reasoning)


def test_malformed_detail_counts_count_as_nothing() -> None:
    usage = {
        "input_tokens": MILLION,
        "output_tokens": 0,
        "input_token_details": {"ephemeral_1h_input_tokens": None, "cache_read": -5, "cache_creation": "x"},
    }
    assert HAIKU.cost(usage) == pytest.approx(1.00)


def test_cache_write_1h_from_config_set_and_set_price() -> None:
    table = PriceTable(include_defaults=False)
    table.update_from_config({"claude-x": {"input": 2, "output": 10, "cache_write": 2.5, "cache_write_1h": 4}})
    price = table.lookup("claude-x")
    assert price is not None
    assert price.cache_write_1h == 4
    assert table.to_dict()["claude-x"]["cache_write_1h"] == 4
    with pytest.raises(ValueError, match="cache_write_1h"):
        table.set("bad", input=1, output=1, cache_write_1h=-1)
    with pytest.raises(ValueError, match="unknown keys"):
        table.update_from_config({"bad": {"input": 1, "output": 1, "cache_write_2h": 3}})
    try:
        set_price("claude-test-ttl", input=1, output=5, cache_write=1.25, cache_write_1h=2)
        usage = {
            "input_tokens": MILLION,
            "output_tokens": 0,
            "input_token_details": {"ephemeral_1h_input_tokens": MILLION},
        }
        assert cost_of_usage(usage, "claude-test-ttl") == pytest.approx(2.0)
    finally:
        from langchain_multigateway.usage.pricing import default_price_table

        default_price_table().remove("claude-test-ttl")


def test_a_real_anthropic_usage_end_to_end_through_the_parser() -> None:
    from langchain_multigateway.chat_models._anthropic_format import usage_from_anthropic

    usage = usage_from_anthropic(
        {
            "input_tokens": 40,
            "cache_creation_input_tokens": 12145,
            "cache_read_input_tokens": 7276,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 12145},
            "output_tokens": 20,
        }
    )
    assert usage is not None
    price = DEFAULT_PRICES["claude-haiku-4-5"]
    expected = (40 * 1.00 + 7276 * 0.10 + 12145 * 2.00 + 20 * 5.00) / MILLION
    assert price.cost(usage) == pytest.approx(expected)


def test_usage_records_count_split_cache_writes_once() -> None:
    from langchain_multigateway.usage.records import usage_counts

    split = {"cache_creation": 0, "ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 5}
    both = {"cache_creation": 12, "ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 5}
    plain = {"cache_creation": 12}
    for details in (split, both, plain):
        usage = {"input_tokens": 20, "output_tokens": 1, "input_token_details": details}
        assert usage_counts(usage)["cache_creation_tokens"] == 12, details
