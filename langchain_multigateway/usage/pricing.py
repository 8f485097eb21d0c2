"""USD prices per million tokens, and the cost of one call's usage.

The built-in table holds only figures checked against a published source; each
entry names its source and the date it was checked. Prices change: override or
extend them from code or from configuration::

    from langchain_multigateway.usage import set_price, default_price_table

    set_price("gpt-4o-mini", input=0.15, output=0.60, cached_input=0.075)
    set_price("my-azure-deployment", input=0.30, output=1.20)   # a deployment name works too
    default_price_table().update_from_config({"llama-local": {"input": 0, "output": 0}})

Lookups tolerate provider prefixes (``openai/``, ``openai:``, ``anthropic.``) and
dated suffixes (``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``,
``claude-3-5-haiku-20241022`` → ``claude-3-5-haiku``). A model that is not in the
table costs ``None`` (with one warning per model), never an invented number.

Cost of a call (token counts as LangChain's ``UsageMetadata`` reports them, where
``input_tokens`` includes cache reads and cache writes)::

    (input - cache_read - writes) * input
    + cache_read * cached_input          (input price when no cached price is known)
    + writes_5m * cache_write            (input price when no cache-write price is known)
    + writes_1h * cache_write_1h         (input price when no 1-hour price is known)
    + output * output                    (reasoning tokens are part of output, priced as output)

Anthropic bills cache writes by their time to live: 5-minute writes at 1.25x the input
price, 1-hour writes at 2x. Its usage splits them as ``cache_creation.ephemeral_5m_input_tokens``
and ``ephemeral_1h_input_tokens``; LangChain (langchain-anthropic, and AnthropicChatModel here)
carries them under those names in ``input_token_details`` and then sets the generic
``cache_creation`` to 0 so the details do not count a write twice. So ``writes_1h`` is
``ephemeral_1h_input_tokens`` and ``writes_5m`` is ``ephemeral_5m_input_tokens`` plus whatever
part of ``cache_creation`` is not already split out (a producer that keeps the total there,
or usage without the split, which Anthropic bills at the 5-minute rate by default).
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "DEFAULT_PRICES",
    "ModelPrice",
    "PriceTable",
    "cache_write_tokens",
    "cost_of_usage",
    "default_price_table",
    "set_price",
]


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens for one model (or one deployment).

    Attributes:
        input: Uncached input tokens.
        output: Output tokens (reasoning tokens included).
        cached_input: Input tokens read from the provider's prompt cache.
        cache_write: Input tokens written to the prompt cache (Anthropic's 5-minute writes,
            and writes whose time to live is not reported).
        cache_write_1h: Input tokens written to the prompt cache for one hour (Anthropic).
        source: Where the figures come from.
        checked: When they were checked (ISO date).
    """

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    source: str = ""
    checked: str = ""
    cache_write_1h: float | None = None

    def cost(self, usage: Mapping[str, Any]) -> float:
        """USD for one call's usage (a ``UsageMetadata``-shaped mapping)."""
        input_tokens = int(usage.get("input_tokens") or 0)
        output_tokens = int(usage.get("output_tokens") or 0)  # reasoning included: priced as output
        details = usage.get("input_token_details") or {}
        cache_read = _count(details, "cache_read")
        writes_5m, writes_1h = cache_write_tokens(details)
        uncached = max(0, input_tokens - cache_read - writes_5m - writes_1h)
        cached_price = self.input if self.cached_input is None else self.cached_input
        write_price = self.input if self.cache_write is None else self.cache_write
        write_1h_price = self.input if self.cache_write_1h is None else self.cache_write_1h
        total = (
            uncached * self.input
            + cache_read * cached_price
            + writes_5m * write_price
            + writes_1h * write_1h_price
            + output_tokens * self.output
        )
        return total / 1_000_000


def cache_write_tokens(details: Mapping[str, Any]) -> tuple[int, int]:
    """Prompt-cache writes in ``input_token_details`` as ``(5-minute, 1-hour)`` token counts.

    The generic ``cache_creation`` is either the total of all writes or 0 once
    langchain-anthropic's convention split them out by time to live; writes with no time
    to live reported count as 5-minute writes (Anthropic's default).
    """
    writes_1h = _count(details, "ephemeral_1h_input_tokens")
    split_5m = _count(details, "ephemeral_5m_input_tokens")
    return split_5m + max(0, _count(details, "cache_creation") - split_5m - writes_1h), writes_1h


def _count(details: Mapping[str, Any], key: str) -> int:
    """A token count from usage details; absent, null, negative or non-numeric counts are 0."""
    value = details.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(0, int(value))


_OPENAI = "OpenAI API pricing page, https://platform.openai.com/docs/pricing (standard tier)"
_ANTHROPIC = (
    "Anthropic pricing page, https://docs.anthropic.com/en/docs/about-claude/pricing "
    "(cache_write: 5-minute writes, 1.25x input; cache_write_1h: 1-hour writes, 2x input)"
)
_MISTRAL = "Mistral pricing page, https://mistral.ai/pricing (La Plateforme, pay-as-you-go)"


def _p(
    input: float,
    output: float,
    cached: float | None,
    write: float | None,
    source: str,
    checked: str,
    write_1h: float | None = None,
) -> ModelPrice:
    return ModelPrice(input, output, cached, write, source, checked, write_1h)


# Every figure below was read on the day given as "checked", from the provider's page or
# from a copy of it quoted with its date (named in the comment). Figures that sources
# disagreed on were left out. Aliases that providers re-point to newer models
# ("mistral-large-latest", "mistral-medium-latest") are left out on purpose: their price
# changes with the model behind them.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    # OpenAI. gpt-4o, gpt-4o-mini with cached input: OpenAI's page as quoted by
    # developers.openai.com copies of 2026 (chatgptpricing, CommitBrief wiki 2026-05-27).
    "gpt-4o": _p(2.50, 10.00, 1.25, None, _OPENAI, "2026-05-27"),
    "gpt-4o-mini": _p(0.15, 0.60, 0.075, None, _OPENAI, "2026-05-27"),
    # gpt-4.1 family: input/output "verified, OpenAI model pricing, checked 2026-06-21"
    # (tokenmath.io); cached input at 25 % of input (adk-model's table, March 2026; the
    # nano figure also in Roo-Code's table of 2025-04).
    "gpt-4.1": _p(2.00, 8.00, 0.50, None, _OPENAI, "2026-06-21"),
    "gpt-4.1-mini": _p(0.40, 1.60, 0.10, None, _OPENAI, "2026-06-21"),
    "gpt-4.1-nano": _p(0.10, 0.40, 0.025, None, _OPENAI, "2026-03-01"),
    # o4-mini: Roo-Code's table from OpenAI's model page (2025-04-17); same input/output in
    # deploybase's copy of OpenAI's page (March 2026).
    "o4-mini": _p(1.10, 4.40, 0.275, None, _OPENAI, "2026-03-01"),
    # gpt-5 family: input/output from OpenAI's page as copied by deploybase (March 2026).
    # Cached-input figures were quoted inconsistently, so they are left unset: cached
    # tokens are then charged at the input price (an upper bound, never a guess below it).
    "gpt-5": _p(1.25, 10.00, None, None, _OPENAI, "2026-03-01"),
    "gpt-5-mini": _p(0.25, 2.00, None, None, _OPENAI, "2026-03-01"),
    "gpt-5-nano": _p(0.05, 0.40, None, None, _OPENAI, "2026-03-01"),
    # Anthropic: base input, 5-minute cache writes, 1-hour cache writes, cache hits, output,
    # from the pricing table on Anthropic's page ("Base Input Tokens | 5m Cache Writes | 1h Cache
    # Writes | Cache Hits & Refreshes | Output Tokens"; Opus 4.5 from its platform.claude.com
    # successor page). Input/output/hits/5m writes checked 2026-11-23; the 1h column read from a
    # stored copy of the same page on 2026-11-29 (checked then, so those rows carry that date).
    "claude-opus-4-1": _p(15.00, 75.00, 1.50, 18.75, _ANTHROPIC, "2026-11-29", 30.00),
    "claude-opus-4": _p(15.00, 75.00, 1.50, 18.75, _ANTHROPIC, "2026-11-29", 30.00),
    "claude-sonnet-4": _p(3.00, 15.00, 0.30, 3.75, _ANTHROPIC, "2026-11-29", 6.00),
    "claude-3-7-sonnet": _p(3.00, 15.00, 0.30, 3.75, _ANTHROPIC, "2026-11-29", 6.00),
    "claude-3-5-haiku": _p(0.80, 4.00, 0.08, 1.00, _ANTHROPIC, "2026-11-29", 1.60),
    "claude-3-haiku": _p(0.25, 1.25, 0.03, 0.30, _ANTHROPIC, "2026-11-29", 0.50),
    # Opus 4.5 ($5/$25), Sonnet 4.5 ($3/$15) and Haiku 4.5 ($1/$5) with all five columns:
    # Anthropic's table as copied in Electron Hub's prompt-caching guide (read 2026-11-29);
    # Haiku 4.5's $2 1h write and $0.10 hit also in TokenMix's copy (data checked 2026-04-30).
    "claude-opus-4-5": _p(5.00, 25.00, 0.50, 6.25, _ANTHROPIC, "2026-11-29", 10.00),
    "claude-sonnet-4-5": _p(3.00, 15.00, 0.30, 3.75, _ANTHROPIC, "2026-11-29", 6.00),
    "claude-haiku-4-5": _p(1.00, 5.00, 0.10, 1.25, _ANTHROPIC, "2026-11-29", 2.00),
    # Mistral, dated model ids only; Mistral publishes no cached-input price. Large 2
    # (2411) and Small 3.1/3.2 from margindash's copy of Mistral's docs (2026); Medium 3 /
    # 3.1 as cited from Mistral's pricing page in braintrust-proxy issues #505/#802 (2026-05).
    "mistral-large-2411": _p(2.00, 6.00, None, None, _MISTRAL, "2026-05-22"),
    "mistral-medium-2505": _p(0.40, 2.00, None, None, _MISTRAL, "2026-05-22"),
    "mistral-medium-2508": _p(0.40, 2.00, None, None, _MISTRAL, "2026-05-22"),
    "mistral-small-2503": _p(0.10, 0.30, None, None, _MISTRAL, "2026-05-22"),
    "mistral-small-2506": _p(0.10, 0.30, None, None, _MISTRAL, "2026-05-22"),
}

_PREFIXES = (
    "openai",
    "azure",
    "azure_openai",
    "anthropic",
    "mistral",
    "mistralai",
    "bedrock",
    "vertex_ai",
    "models",
)
_DATED = (
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),  # gpt-4o-mini-2024-07-18
    re.compile(r"[-@]\d{8}$"),  # claude-3-5-haiku-20241022, vertex's @20241022
)
_BEDROCK_VERSION = re.compile(r"-v\d+(:\d+)?$")  # anthropic.claude-3-haiku-20240307-v1:0


def _candidates(name: str) -> list[str]:
    """Names to try for ``name``, most specific first."""
    found: list[str] = []

    def add(value: str) -> None:
        if value and value not in found:
            found.append(value)

    current = name.strip().lower()
    add(current)
    if "/" in current:  # openai/gpt-4o-mini, azure/my-deployment
        current = current.rsplit("/", 1)[-1]
        add(current)
    head, sep, tail = current.partition(":")
    if sep and head in _PREFIXES:  # openai:gpt-4o-mini
        current = tail
        add(current)
    for prefix in _PREFIXES:  # anthropic.claude-3-haiku-20240307-v1:0 (Bedrock)
        if current.startswith(prefix + "."):
            current = current[len(prefix) + 1 :]
            add(current)
    current = _BEDROCK_VERSION.sub("", current)
    add(current)
    for pattern in _DATED:
        current = pattern.sub("", current)
    add(current)
    return found


_RESOLVED_LIMIT = 4096
_CONFIG_KEYS = {"input", "output", "cached_input", "cache_write", "cache_write_1h", "source", "checked"}


class PriceTable:
    """Prices by model (or deployment) name; thread-safe; the lookup is tolerant.

    Key init args:
        prices: Initial entries (``{name: ModelPrice | {"input":…, "output":…}}``).
        include_defaults: Start from :data:`DEFAULT_PRICES` (default True).
    """

    def __init__(
        self,
        prices: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None,
        *,
        include_defaults: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._prices: dict[str, ModelPrice] = dict(DEFAULT_PRICES) if include_defaults else {}
        self._warned: set[str] = set()
        # Resolved lookups by (deployment, model, served): every call's record asks again, and
        # walking the tolerant candidates is the costly part. Emptied whenever a price changes.
        self._resolved: dict[tuple[str | None, str | None, str | None], ModelPrice | None] = {}
        if prices:
            self.update_from_config(prices)

    def set(
        self,
        name: str,
        *,
        input: float,
        output: float,
        cached_input: float | None = None,
        cache_write: float | None = None,
        source: str = "user",
        checked: str = "",
        cache_write_1h: float | None = None,
    ) -> ModelPrice:
        """Add or replace the price of ``name`` (a model or a deployment name)."""
        for label, value in (
            ("input", input),
            ("output", output),
            ("cached_input", cached_input),
            ("cache_write", cache_write),
            ("cache_write_1h", cache_write_1h),
        ):
            if value is not None and value < 0:
                msg = f"{label} price for {name!r} must be >= 0, got {value}"
                raise ValueError(msg)
        price = ModelPrice(float(input), float(output), cached_input, cache_write, source, checked, cache_write_1h)
        with self._lock:
            self._prices[name.strip().lower()] = price
            self._warned.discard(name.strip().lower())
            self._resolved.clear()
        return price

    def update_from_config(self, config: Mapping[str, ModelPrice | Mapping[str, Any]]) -> None:
        """Add entries from a config dict: ``{name: {"input": .., "output": .., "cached_input": ..}}``
        (also ``cache_write``, ``cache_write_1h``, ``source``, ``checked``)."""
        for name, entry in config.items():
            if isinstance(entry, ModelPrice):
                with self._lock:
                    self._prices[name.strip().lower()] = entry
                    self._resolved.clear()
                continue
            if not isinstance(entry, Mapping) or "input" not in entry or "output" not in entry:
                msg = f"price for {name!r} needs 'input' and 'output' (USD per million tokens), got {entry!r}"
                raise ValueError(msg)
            unknown = set(entry) - _CONFIG_KEYS
            if unknown:
                msg = f"price for {name!r} has unknown keys {sorted(unknown)}"
                raise ValueError(msg)
            self.set(name, **dict(entry))

    def remove(self, name: str) -> None:
        """Forget the price of ``name`` (no error when absent)."""
        with self._lock:
            self._prices.pop(name.strip().lower(), None)
            self._resolved.clear()

    def lookup(
        self, model: str | None, *, deployment: str | None = None, served: str | None = None
    ) -> ModelPrice | None:
        """The price for a deployment name (first), the model as configured, or the
        model name the server answered with (last); None when unknown."""
        key = (deployment, model, served)
        with self._lock:
            if key in self._resolved:
                return self._resolved[key]
            found = self._find(key)
            if len(self._resolved) >= _RESOLVED_LIMIT:
                self._resolved.clear()
            self._resolved[key] = found
            return found

    def _find(self, names: tuple[str | None, ...]) -> ModelPrice | None:
        for name in names:
            if not name:
                continue
            for candidate in _candidates(name):
                found = self._prices.get(candidate)
                if found is not None:
                    return found
        return None

    def cost(
        self,
        usage: Mapping[str, Any] | None,
        model: str | None,
        *,
        deployment: str | None = None,
        served: str | None = None,
        warn: bool = True,
    ) -> float | None:
        """USD for ``usage`` on ``model``; None (one warning per model) when the price is unknown."""
        if not usage:
            return 0.0
        price = self.lookup(model, deployment=deployment, served=served)
        if price is None:
            if warn:
                self._warn_unknown(model or deployment or "<unnamed>")
            return None
        return price.cost(usage)

    def _warn_unknown(self, name: str) -> None:
        key = name.lower()
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        warnings.warn(
            f"No price known for model {name!r}: its cost is reported as None. "
            f"Add one with set_price({name!r}, input=..., output=...) (USD per million tokens).",
            RuntimeWarning,
            stacklevel=4,
        )

    def names(self) -> list[str]:
        """Every name with a price, sorted."""
        with self._lock:
            return sorted(self._prices)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The table as plain dicts (loadable with :meth:`update_from_config`)."""
        with self._lock:
            return {name: asdict(price) for name, price in sorted(self._prices.items())}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.lookup(name) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._prices)


_default_table = PriceTable()


def default_price_table() -> PriceTable:
    """The process-wide table used when a handler is given no ``prices=``."""
    return _default_table


def set_price(
    name: str,
    *,
    input: float,
    output: float,
    cached_input: float | None = None,
    cache_write: float | None = None,
    cache_write_1h: float | None = None,
) -> ModelPrice:
    """Set a price (USD per million tokens) in the default table; ``name`` may be a deployment."""
    return _default_table.set(
        name,
        input=input,
        output=output,
        cached_input=cached_input,
        cache_write=cache_write,
        cache_write_1h=cache_write_1h,
    )


def cost_of_usage(
    usage: Mapping[str, Any] | None,
    model: str | None,
    *,
    deployment: str | None = None,
    prices: PriceTable | None = None,
) -> float | None:
    """USD for one call's usage, from ``prices`` (the default table when None)."""
    return (prices or _default_table).cost(usage, model, deployment=deployment)


def as_price_table(prices: PriceTable | Mapping[str, Any] | Iterable[Any] | None) -> PriceTable:
    """A :class:`PriceTable` from a table, a config dict, or None (the default table)."""
    if prices is None:
        return _default_table
    if isinstance(prices, PriceTable):
        return prices
    if isinstance(prices, Mapping):
        return PriceTable(prices)
    msg = f"prices must be a PriceTable or a dict, not {type(prices).__name__}"
    raise TypeError(msg)
