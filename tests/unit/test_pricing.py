"""Price table: lookups tolerant of prefixes and dates, overrides, unknown models."""

from __future__ import annotations

import warnings

import pytest

from langchain_multigateway.usage import DEFAULT_PRICES, ModelPrice, PriceTable, cost_of_usage, set_price
from langchain_multigateway.usage.pricing import as_price_table, default_price_table


def test_every_default_price_names_source_and_date() -> None:
    assert len(DEFAULT_PRICES) >= 20
    for name, price in DEFAULT_PRICES.items():
        assert price.source.startswith(("OpenAI", "Anthropic", "Mistral")), name
        assert price.checked[:2] == "20", name
        assert len(price.checked) == 10, name
        assert price.input > 0
        assert price.output > 0
    # no alias whose target moves over time
    assert not any(name.endswith("-latest") for name in DEFAULT_PRICES)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("openai:gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("GPT-4o", "gpt-4o"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("mistral:mistral-small-2503", "mistral-small-2503"),
    ],
)
def test_lookup_tolerates_prefixes_and_dates(name: str, expected: str) -> None:
    table = PriceTable()
    assert table.lookup(name) == DEFAULT_PRICES[expected]
    assert name in table


def test_lookup_does_not_invent_prices() -> None:
    table = PriceTable()
    for name in ("mistral-small-latest", "gpt-4o-mini-tts", "llama3", "gemma-3-270m", ""):
        assert table.lookup(name) is None
    assert 42 not in table


def test_lookups_are_remembered_until_a_price_changes() -> None:
    # Each call's record looks its price up again, so resolved names are kept; a price
    # set, replaced, loaded or removed afterwards must still apply to the next lookup.
    table = PriceTable(include_defaults=False)
    assert table.lookup("openai/my-model-2024-07-18", deployment="dep") is None
    table.set("my-model", input=1.0, output=2.0)
    assert table.lookup("openai/my-model-2024-07-18", deployment="dep") == ModelPrice(1.0, 2.0, source="user")
    table.update_from_config({"dep": ModelPrice(input=3.0, output=4.0)})
    assert table.lookup("openai/my-model-2024-07-18", deployment="dep") == ModelPrice(3.0, 4.0)
    table.remove("dep")
    assert table.lookup("openai/my-model-2024-07-18", deployment="dep") == ModelPrice(1.0, 2.0, source="user")
    table.remove("my-model")
    assert table.lookup("openai/my-model-2024-07-18", deployment="dep") is None


def test_cost_counts_cached_and_cache_writes() -> None:
    price = ModelPrice(input=1.0, output=2.0, cached_input=0.1, cache_write=1.25)
    usage = {
        "input_tokens": 1_000_000,
        "output_tokens": 500_000,
        "input_token_details": {"cache_read": 400_000, "cache_creation": 100_000},
    }
    # 500k uncached * 1 + 400k * 0.1 + 100k * 1.25 + 500k * 2, per million
    assert price.cost(usage) == pytest.approx(0.5 + 0.04 + 0.125 + 1.0)
    # without cached prices, cached tokens are charged as input (upper bound)
    assert ModelPrice(input=1.0, output=2.0).cost(usage) == pytest.approx(1.0 + 1.0)


def test_gpt_4o_mini_cost() -> None:
    usage = {"input_tokens": 1000, "output_tokens": 500, "input_token_details": {"cache_read": 200}}
    expected = (800 * 0.15 + 200 * 0.075 + 500 * 0.60) / 1_000_000
    assert cost_of_usage(usage, "gpt-4o-mini-2024-07-18") == pytest.approx(expected)


def test_unknown_model_costs_none_and_warns_once() -> None:
    table = PriceTable()
    usage = {"input_tokens": 10, "output_tokens": 2}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert table.cost(usage, "my-private-model") is None
        assert table.cost(usage, "my-private-model") is None
        assert table.cost(usage, "another-one") is None
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "set_price('my-private-model'" in messages[0]
    assert table.cost(None, "my-private-model") == 0.0  # no usage, no cost


def test_overrides_from_code_and_config() -> None:
    table = PriceTable(include_defaults=False)
    assert len(table) == 0
    table.set("my-deployment", input=1.0, output=3.0)
    table.update_from_config(
        {"local-llama": {"input": 0, "output": 0}, "gpt-4o-mini": ModelPrice(0.2, 0.8, source="contract")}
    )
    assert table.names() == ["gpt-4o-mini", "local-llama", "my-deployment"]
    # a deployment's own price wins over its model's
    usage = {"input_tokens": 1_000_000, "output_tokens": 0}
    assert table.cost(usage, "gpt-4o-mini", deployment="my-deployment") == pytest.approx(1.0)
    assert table.cost(usage, "gpt-4o-mini", deployment="other") == pytest.approx(0.2)
    assert table.to_dict()["local-llama"]["output"] == 0
    table.remove("local-llama")
    assert "local-llama" not in table
    with pytest.raises(ValueError, match="needs 'input' and 'output'"):
        table.update_from_config({"x": {"input": 1}})
    with pytest.raises(ValueError, match="unknown keys"):
        table.update_from_config({"x": {"input": 1, "output": 1, "per": "token"}})
    with pytest.raises(ValueError, match=">= 0"):
        table.set("x", input=-1, output=1)


def test_set_price_on_default_table() -> None:
    try:
        set_price("unit-test-model", input=2.0, output=4.0, cached_input=0.5)
        assert default_price_table().lookup("unit-test-model-2030-01-01") == ModelPrice(2.0, 4.0, 0.5, None, "user")
    finally:
        default_price_table().remove("unit-test-model")


def test_as_price_table() -> None:
    assert as_price_table(None) is default_price_table()
    table = PriceTable()
    assert as_price_table(table) is table
    assert as_price_table({"m": {"input": 1, "output": 1}}).lookup("m") is not None
    with pytest.raises(TypeError):
        as_price_table([1, 2])
