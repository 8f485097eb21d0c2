"""Spending limits in USD or tokens, judged before each call is sent.

A :class:`Budget` is a callback handler. Before a chat-model call starts it
counts the prompt's tokens (:func:`langchain_multigateway.tokens.count_message_tokens`),
adds ``max_tokens`` as the worst-case output, prices that, and raises
:class:`~langchain_multigateway.errors.BudgetExceededError` when spend so far, plus
calls still in flight, plus this estimate would pass a limit. Nothing is sent then.

Scopes:

* everything the handler sees (default): pass it in ``callbacks`` or attach it;
* one model (a router or any chat model): ``budget.attach(model)`` returns a copy
  of the model with the budget among its callbacks (still a ``BaseChatModel``);
* a tag: ``Budget(max_cost_usd=5, scope="team-a")`` judges and counts only runs
  tagged ``team-a`` (``config={"tags": ["team-a"]}``);
* a key: ``Budget(max_cost_usd=5, key="team-a")`` judges and counts only runs whose
  metadata names that virtual key (``config={"metadata": {"virtual_key": "team-a"}}``,
  as ``multigateway serve`` sets for each of its keys);
* a provider or a model: ``Budget(max_cost_usd=5, provider="openai")`` (or
  ``model="gpt-4o"``, or both) judges and counts only calls to it; in a router, other
  deployments are routed without it (a cheaper provider stays usable once it is spent);
* a period, shared: ``Budget(max_cost_usd=5, period="1d")`` counts today's spend (UTC;
  also ``"30d"``, ``"1mo"``) in a :class:`~langchain_multigateway.state.spend.SpendStore`:
  the usage ledger's SQLite file by default (shared by a host's processes, kept across
  restarts), or Redis (``store=RedisSpendStore(url)``, shared across hosts). Judging and
  holding a call's estimate is one atomic step in the store, so processes cannot all pass
  on the same remaining spend: spend never passes the limit by more than what calls in
  flight reserved beyond their real cost.
* a tracker: ``Budget(max_cost_usd=5, scope=usage_handler)`` reads spend from a
  :class:`~langchain_multigateway.usage.UsageCallbackHandler` (e.g. the one
  ``track_usage()`` yields) and only enforces. Its in-flight reservations are
  released when the call ends, which may be a moment before the tracker adds the
  call's spend; with its own tally (the other scopes) both happen at once.

LangChain swallows exceptions from callback handlers unless the handler sets
``raise_error = True``; a ``Budget`` does, so its refusal reaches the caller, from
sync and async runs alike. LangChain also logs every handler exception as
"Error in ... callback" before re-raising it; a refusal is an answer, not a fault,
so that one line is filtered out (the refusal itself still reaches the caller).

For routers: :meth:`Budget.check` raises and :meth:`Budget.allows` answers
True/False for an estimate, so a router can skip a deployment that would pass
the limit and move to a cheaper one instead of failing the call;
:meth:`Budget.estimate` prices messages for a given model or deployment;
:meth:`Budget.reserve` / :meth:`Budget.settle` hold an estimate while a call runs,
then record its real spend. ``RoutingChatModel(budget=...)`` does all of this per
deployment (give the budget to the router *or* to callbacks, not both, or spend
is counted twice).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, convert_to_openai_messages

from langchain_multigateway.errors import BudgetExceededError
from langchain_multigateway.state.spend import SpendStore, SpendTotals, check_period
from langchain_multigateway.tokens import count_message_tokens
from langchain_multigateway.usage.callbacks import UsageCallbackHandler
from langchain_multigateway.usage.pricing import PriceTable
from langchain_multigateway.usage.records import CallRecord, CallRecorder, _Run

__all__ = ["Budget"]

M = TypeVar("M", bound=BaseChatModel)


class _RefusalLogFilter(logging.Filter):
    """Drops LangChain's "Error in Budget.on_chat_model_start callback" line for a refusal
    a Budget raises on purpose; any other handler error is still logged."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._pending: deque[str] = deque(maxlen=256)

    def expect(self, error: BaseException) -> None:
        with self._lock:
            self._pending.append(repr(error))

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg != "Error in %s.%s callback: %s" or not isinstance(args, tuple) or len(args) != 3:
            return True
        shown = args[2]
        with self._lock:
            if isinstance(shown, str) and shown in self._pending:
                self._pending.remove(shown)
                return False
        return True


_refusals = _RefusalLogFilter()
logging.getLogger("langchain_core.callbacks.manager").addFilter(_refusals)
KEY_METADATA = "virtual_key"
"""The run metadata naming the caller's key, which ``Budget(key=...)`` matches."""
_MAX_TOKEN_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict")


class Budget(CallRecorder):
    """A limit on USD and/or tokens, enforced before each call.

    Key init args:
        max_cost_usd: Limit in USD (None: no cost limit).
        max_tokens: Limit in tokens, input plus output (None: no token limit).
        scope: None (every run the handler sees), a tag (str), or a
            ``UsageCallbackHandler`` whose totals are the spend.
        provider: Only calls to this provider (``"openai"``, a deployment's ``provider``).
        model: Only calls to this model (a deployment's ``model_name``).
        key: Only runs whose metadata's ``virtual_key`` is this (one caller's key).
        name: Shown in error messages.
        prices: Price table for estimates and spend (the default table when None).
        default_output_tokens: Output assumed for a call that sets no ``max_tokens``
            (default 0: then only the prompt is estimated).
        period: ``None`` (spend since creation, in this process, unless ``store`` is given),
            ``"1d"``, ``"<n>d"`` or ``"1mo"`` (UTC; kept in ``store``).
        store: Where spend and reservations live, keyed by ``name``: a
            ``SQLiteSpendStore`` (the default when ``period`` is set) or a ``RedisSpendStore``.

    Instantiate:
        .. code-block:: python

            from langchain_multigateway.usage import Budget

            budget = Budget(max_cost_usd=1.00, max_tokens=200_000, name="nightly-eval")
            guarded = budget.attach(router)          # still a chat model
            guarded.invoke("Hello")                  # BudgetExceededError once the limit would pass
            budget.spent_cost_usd, budget.remaining_cost_usd

    Routers:
        .. code-block:: python

            tokens, cost = budget.estimate(messages, model="gpt-4o-mini", max_tokens=256)
            if not budget.allows(tokens, cost):
                ...  # try a cheaper deployment, or budget.check(tokens, cost) to raise
    """

    raise_error = True
    keep_messages = True

    def __init__(
        self,
        max_cost_usd: float | None = None,
        max_tokens: int | None = None,
        *,
        scope: str | UsageCallbackHandler | None = None,
        name: str = "budget",
        prices: PriceTable | Mapping[str, Any] | None = None,
        default_output_tokens: int = 0,
        period: str | None = None,
        store: SpendStore | None = None,
        provider: str | None = None,
        model: str | None = None,
        key: str | None = None,
    ) -> None:
        if max_cost_usd is None and max_tokens is None:
            msg = "A Budget needs max_cost_usd, max_tokens, or both"
            raise ValueError(msg)
        self.period = check_period(period)
        if store is None and period is not None:
            from langchain_multigateway.state.spend_sqlite import SQLiteSpendStore

            store = SQLiteSpendStore()
        if store is not None and isinstance(scope, UsageCallbackHandler):
            msg = "A Budget reads spend from its store or from a tracker scope, not both"
            raise ValueError(msg)
        self.store = store
        super().__init__(prices=prices)
        self.max_cost_usd = max_cost_usd
        self.max_tokens = max_tokens
        self.scope = scope
        self.provider = provider
        self.model = model
        self.key = key
        self.name = name
        self.default_output_tokens = default_output_tokens
        self._lock = threading.Lock()
        self._judge_lock = threading.Lock()
        self._spent_cost = 0.0
        self._spent_tokens = 0
        self._reserved: dict[Any, tuple[int, float]] = {}

    # ------------------------------------------------------------------ spend
    def _shared(self) -> SpendTotals | None:
        """The store's totals for this period, when spend lives in a store."""
        return None if self.store is None else self.store.totals(self.name, self.period)

    @property
    def spent_cost_usd(self) -> float:
        """USD spent in this budget's scope (calls in flight not included)."""
        shared = self._shared()
        if shared is not None:
            return shared.spent_cost_usd
        if isinstance(self.scope, UsageCallbackHandler):
            return self.scope.total_cost_usd
        with self._lock:
            return self._spent_cost

    @property
    def spent_tokens(self) -> int:
        """Tokens spent in this budget's scope."""
        shared = self._shared()
        if shared is not None:
            return shared.spent_tokens
        if isinstance(self.scope, UsageCallbackHandler):
            return self.scope.total_tokens
        with self._lock:
            return self._spent_tokens

    @property
    def remaining_cost_usd(self) -> float | None:
        """USD left (in-flight estimates deducted); None without a cost limit."""
        if self.max_cost_usd is None:
            return None
        reserved = self._reserved_sum()[1]
        return self.max_cost_usd - self.spent_cost_usd - reserved

    @property
    def remaining_tokens(self) -> int | None:
        """Tokens left (in-flight estimates deducted); None without a token limit."""
        if self.max_tokens is None:
            return None
        reserved = self._reserved_sum()[0]
        return self.max_tokens - self.spent_tokens - reserved

    def _reserved_sum(self) -> tuple[int, float]:
        shared = self._shared()
        if shared is not None:
            return shared.reserved_tokens, shared.reserved_cost_usd
        with self._lock:
            values = list(self._reserved.values())
        return sum(t for t, _ in values), sum(c for _, c in values)

    def record_spend(self, tokens: int = 0, cost_usd: float = 0.0) -> None:
        """Add spend by hand (calls made outside callbacks)."""
        if self.store is not None:
            self.store.settle(self.name, self.period, uuid.uuid4().hex, tokens, cost_usd)
            return
        with self._lock:
            self._spent_tokens += tokens
            self._spent_cost += cost_usd

    def reset(self) -> None:
        """Spend back to zero (in-flight reservations are kept); with a period, this period's."""
        if self.store is not None:
            self.store.reset(self.name, self.period)
            return
        with self._lock:
            self._spent_tokens = 0
            self._spent_cost = 0.0

    # ------------------------------------------------------------------ judging
    def estimate(
        self,
        messages: Sequence[BaseMessage] | Sequence[dict[str, Any]],
        model: str | None = None,
        *,
        max_tokens: int | None = None,
        deployment: str | None = None,
    ) -> tuple[int, float | None]:
        """Worst-case ``(tokens, cost_usd)`` of a call: counted prompt plus ``max_tokens``.

        The cost is None when ``model`` (or ``deployment``) has no known price.
        """
        converted = convert_to_openai_messages(list(messages))
        listed = converted if isinstance(converted, list) else [converted]
        prompt = count_message_tokens(listed, model or "gpt-4o-mini")
        output = self.default_output_tokens if max_tokens is None else max_tokens
        price = self.prices.lookup(model, deployment=deployment)
        cost = None if price is None else price.cost({"input_tokens": prompt, "output_tokens": output})
        return prompt + output, cost

    def reserve(self, estimated_tokens: int = 0, estimated_cost: float | None = None, *, detail: str = "") -> object:
        """Judge a call and, if it fits, hold its estimate as in flight; returns the key for :meth:`settle`.

        Judging and holding happen at once, so concurrent callers cannot all pass on
        the same spend. Raises :class:`BudgetExceededError` when the call does not fit.
        """
        key = uuid.uuid4().hex
        problem = self._hold(key, estimated_tokens, estimated_cost, detail)
        if problem is not None:
            raise problem
        return key

    def _hold(self, key: Any, tokens: int, cost: float | None, detail: str) -> BudgetExceededError | None:
        """Judge a call and, if it fits, hold its estimate under ``key``; the refusal otherwise."""
        if self.store is not None:  # judged and held by the store, atomically across processes
            over, totals = self.store.reserve(
                self.name, self.period, str(key), tokens, cost, self.max_tokens, self.max_cost_usd
            )
            if over == "tokens":
                held = totals.spent_tokens + totals.reserved_tokens
                return self._error("tokens", held, self.max_tokens or 0, tokens, detail)
            if over == "cost":
                held_cost = totals.spent_cost_usd + totals.reserved_cost_usd
                return self._error("cost", held_cost, self.max_cost_usd or 0.0, cost, detail)
            return None
        with self._judge_lock:
            # Judge and reserve at once, so concurrent calls cannot all pass on the same spend.
            problem = self._problem(tokens, cost, detail=detail)
            if problem is None:
                with self._lock:
                    self._reserved[key] = (tokens, cost or 0.0)
        return problem

    def settle(self, key: object, tokens: int = 0, cost_usd: float = 0.0) -> None:
        """Drop the reservation ``key`` and record what the call really spent.

        With a tracker scope (a ``UsageCallbackHandler``) spend is the tracker's, so
        only the reservation is dropped.
        """
        if self.store is not None:
            self.store.settle(self.name, self.period, str(key), tokens, cost_usd)
            return
        own = not isinstance(self.scope, UsageCallbackHandler)
        with self._lock:
            self._reserved.pop(key, None)
            if own:
                self._spent_tokens += tokens
                self._spent_cost += cost_usd

    def check(self, estimated_tokens: int = 0, estimated_cost: float | None = None) -> None:
        """Raise :class:`BudgetExceededError` if a call of this size would pass a limit."""
        problem = self._problem(estimated_tokens, estimated_cost)
        if problem is not None:
            raise problem

    def allows(self, estimated_tokens: int = 0, estimated_cost: float | None = None) -> bool:
        """Whether a call of this size fits (a router may then pick a cheaper deployment)."""
        return self._problem(estimated_tokens, estimated_cost) is None

    def _problem(self, tokens: int, cost: float | None, *, detail: str = "") -> BudgetExceededError | None:
        # Reservations are read before spend: a call ending in between is counted twice
        # (too cautious for a moment), never missed.
        reserved_tokens, reserved_cost = self._reserved_sum()
        if self.max_tokens is not None:
            spent = self.spent_tokens + reserved_tokens
            if spent + tokens > self.max_tokens:
                return self._error("tokens", spent, self.max_tokens, tokens, detail)
        if self.max_cost_usd is not None:
            spent_cost = self.spent_cost_usd + reserved_cost
            over = spent_cost >= self.max_cost_usd if cost is None else spent_cost + cost > self.max_cost_usd
            if over:
                return self._error("cost", spent_cost, self.max_cost_usd, cost, detail)
        return None

    def _error(
        self, kind: Literal["tokens", "cost"], spent: float, limit: float, estimate: float | None, detail: str
    ) -> BudgetExceededError:
        if kind == "tokens":
            what = f"token limit of {int(limit):,}"
            amounts = f"{int(spent):,} tokens spent or in flight + {int(estimate or 0):,} estimated for this call"
            how = f"Budget(max_tokens=...) or budget.max_tokens = {int(limit) * 2}"
        else:
            what = f"cost limit of ${limit:.4f}"
            est = "an unknown cost (no price for this model)" if estimate is None else f"${estimate:.6f}"
            amounts = f"${spent:.6f} spent or in flight + {est} estimated for this call"
            how = f"Budget(max_cost_usd=...) or budget.max_cost_usd = {limit * 2:g}"
        message = (
            f"Budget {self.name!r}: this call would pass the {what} ({amounts}{detail}). "
            f"Raise the limit with {how}, lower max_tokens, or call budget.reset()."
        )
        return BudgetExceededError(message, kind=kind, spent=spent, limit=limit, estimate=estimate, budget=self.name)

    # ------------------------------------------------------------------ callbacks
    def covers(self, provider: str | None, model: str | None) -> bool:
        """Whether calls to ``provider`` / ``model`` count against this budget."""
        return (self.provider is None or provider == self.provider) and (self.model is None or model == self.model)

    def _in_scope(self, tags: Sequence[str], provider: str | None = None, model: str | None = None) -> bool:
        return (not isinstance(self.scope, str) or self.scope in tags) and self.covers(provider, model)

    def _key_in_scope(self, run: _Run) -> bool:
        return self.key is None or run.metadata.get(KEY_METADATA) == self.key

    def _run_in_scope(self, run: _Run) -> bool:
        """Whether a call's run is judged by this budget (its key, tags, provider and model)."""
        if not self._key_in_scope(run):
            return False
        model = run.metadata.get("ls_model_name") or run.params.get("model") or run.params.get("model_name")
        provider = run.metadata.get("ls_provider")
        return self._in_scope(
            run.tags, None if provider is None else str(provider), None if model is None else str(model)
        )

    def _on_start(self, run: _Run) -> None:
        messages, run.messages = run.messages, []
        if run.chat_parent is not None:
            return
        if not self._run_in_scope(run):
            return
        model = run.metadata.get("ls_model_name") or run.params.get("model") or run.params.get("model_name")
        max_out = next((run.params[k] for k in _MAX_TOKEN_KEYS if isinstance(run.params.get(k), int)), None)
        if max_out is None and isinstance(run.metadata.get("ls_max_tokens"), int):
            max_out = run.metadata["ls_max_tokens"]
        tokens, cost = self.estimate(messages, str(model) if model else None, max_tokens=max_out)
        shown = max_out if max_out is not None else self.default_output_tokens
        detail = f"; prompt + max_tokens={shown}"
        problem = self._hold(run.run_id, tokens, cost, detail)
        if problem is not None:
            _refusals.expect(problem)
            raise problem

    def _emit_run(self, run: _Run, records: list[CallRecord]) -> None:
        if not self._key_in_scope(run):
            return  # another caller's run: nothing held, nothing of it counts here
        if self.store is not None:
            mine = [r for r in records if self._in_scope(r.tags, r.provider, r.model)]
            if not mine and not self._run_in_scope(run):
                return  # nothing held, nothing spent: spare the store a write
            cost = sum(r.cost_usd or 0.0 for r in mine)
            self.store.settle(self.name, self.period, str(run.run_id), sum(r.total_tokens for r in mine), cost)
            return
        own = not isinstance(self.scope, UsageCallbackHandler)
        with self._lock:
            self._reserved.pop(run.run_id, None)
            if own:
                for record in records:
                    if self._in_scope(record.tags, record.provider, record.model):
                        self._spent_tokens += record.total_tokens
                        self._spent_cost += record.cost_usd or 0.0

    def attach(self, model: M) -> M:
        """A copy of ``model`` with this budget among its callbacks (still the same class)."""
        callbacks = model.callbacks
        if callbacks is None:
            handlers: Any = [self]
        elif isinstance(callbacks, list):
            handlers = [*callbacks, self]
        else:
            handlers = callbacks.copy()
            handlers.add_handler(self, inherit=True)
        return model.model_copy(update={"callbacks": handlers})
