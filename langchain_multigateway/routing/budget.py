"""A router's budget: each deployment's worst-case cost judged before it is sent a request.

Per call, per deployment: prompt tokens counted offline for that deployment's model,
plus ``max_tokens`` (the call's, else the deployment model's own ``max_tokens``, else the
budget's ``default_output_tokens``),
priced at the deployment's ``input_price`` / ``output_price`` when it states one,
else from the budget's price table (by deployment name, then model name). The
estimate is held as in flight while the attempt runs, then replaced by the real
spend (the response's ``usage_metadata``, priced the same way).

``on_budget_exceeded="raise"``: a deployment the budget refuses stops the call with
:class:`BudgetExceededError` before that deployment is sent anything.
``"cheaper"``: refused deployments are skipped; once one was refused, the rest are
tried cheapest first; if none fits, :class:`BudgetExceededError` says what each
would have cost.

A router's budget judges every call the router routes to a deployment it covers
(``Budget(provider=..., model=...)``; others are routed without it): a tag scope
(``Budget(scope="team-a")``) applies only when the budget runs as a callback. Give
a budget to the router or to callbacks, not both, or spend is counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_multigateway.errors import BudgetExceededError
from langchain_multigateway.routing.deployment import Deployment

if TYPE_CHECKING:
    from langchain_multigateway.routing.request import Request
    from langchain_multigateway.usage.budgets import Budget

__all__ = ["OUTSIDE", "BudgetGuard", "spend_of"]

OUTSIDE = object()
"""The hold of a deployment the budget does not cover (another provider or model): nothing held."""


def _priced(dep: Deployment) -> bool:
    return bool(dep.input_price or dep.output_price)


def spend_of(budget: Budget, dep: Deployment, usage: Mapping[str, Any] | None) -> tuple[int, float]:
    """Tokens and USD of a real call on ``dep`` (cost 0 when no price is known)."""
    if not usage:
        return 0, 0.0
    input_tokens = int(usage.get("input_tokens") or 0)
    output_tokens = int(usage.get("output_tokens") or 0)
    tokens = int(usage.get("total_tokens") or input_tokens + output_tokens)
    if _priced(dep):
        return tokens, dep.estimated_cost(input_tokens, output_tokens)
    cost = budget.prices.cost(usage, dep.model_name, deployment=dep.name, warn=False)
    return tokens, cost or 0.0


class BudgetGuard:
    """What one routed call asks of the router's budget."""

    __slots__ = ("budget", "call", "estimates", "mode", "refused")

    def __init__(self, budget: Budget, mode: str, call: Request) -> None:
        self.budget = budget
        self.mode = mode
        self.call = call
        self.estimates: dict[str, tuple[int, float | None]] = {}
        self.refused: dict[str, BudgetExceededError] = {}

    def estimate(self, dep: Deployment) -> tuple[int, float | None]:
        """Worst-case ``(tokens, cost_usd)`` of this call on ``dep`` (cost None: no known price)."""
        found = self.estimates.get(dep.name)
        if found is None:
            prompt = self.call.counted(dep)
            output = self.output_tokens(dep)
            if _priced(dep):
                cost: float | None = dep.estimated_cost(prompt, output)
            else:
                price = self.budget.prices.lookup(dep.model_name, deployment=dep.name)
                cost = None if price is None else price.cost({"input_tokens": prompt, "output_tokens": output})
            found = self.estimates[dep.name] = (prompt + output, cost)
        return found

    def output_tokens(self, dep: Deployment) -> int:
        """The most ``dep`` may write for this call: the call's max_tokens, else its model's own."""
        if self.call.output_tokens:
            return self.call.output_tokens
        own = getattr(dep.model, "max_tokens", None)
        if isinstance(own, int) and own > 0:
            return own
        return self.budget.default_output_tokens

    def order(self, deps: list[Deployment], excluded: dict[str, str]) -> list[Deployment]:
        """``cheaper`` mode: drop the deployments the budget refuses; after a refusal, cheapest first."""
        if self.mode != "cheaper":
            return deps
        fits = [d for d in deps if not self.covers(d) or self.budget.allows(*self.estimate(d))]
        if len(fits) == len(deps):
            return deps
        for dep in deps:
            if dep not in fits:
                self.refused.setdefault(dep.name, self._refusal(dep))
                excluded[dep.name] = self.reason(dep)
        return sorted(fits, key=lambda d: _sort_cost(self.estimate(d)[1]))

    def hold(self, dep: Deployment) -> object | None:
        """Reserve ``dep``'s estimate; None (``cheaper``) or raise (``raise``) when it does not fit."""
        if not self.covers(dep):
            return OUTSIDE
        tokens, cost = self.estimate(dep)
        detail = f"; deployment {dep.name!r}: prompt + max_tokens={self.output_tokens(dep)}"
        try:
            return self.budget.reserve(tokens, cost, detail=detail)
        except BudgetExceededError as exc:
            if self.mode != "cheaper":
                raise
            self.refused[dep.name] = exc
            return None

    def settle(self, key: object, dep: Deployment, usage: Mapping[str, Any] | None) -> None:
        """Release the reservation; record what the call really used."""
        if key is OUTSIDE:
            return
        tokens, cost = spend_of(self.budget, dep, usage)
        self.budget.settle(key, tokens, cost)

    def covers(self, dep: Deployment) -> bool:
        return self.budget.covers(dep.provider, dep.model_name)

    def reason(self, dep: Deployment) -> str:
        tokens, cost = self.estimate(dep)
        shown = "unknown cost" if cost is None else f"${cost:.6f}"
        return f"over budget {self.budget.name!r} (~{tokens} tokens, {shown})"

    def _refusal(self, dep: Deployment) -> BudgetExceededError:
        try:
            self.budget.check(*self.estimate(dep))
        except BudgetExceededError as exc:
            return exc
        return BudgetExceededError(self.reason(dep), budget=self.budget.name)  # pragma: no cover - raced

    def exhausted(self, excluded: dict[str, str]) -> BudgetExceededError:
        """No deployment fits: the budget's error, with each deployment's estimate."""
        estimates = {name: self.estimates[name] for name in self.refused if name in self.estimates}
        first = next(iter(self.refused.values()))
        lines = "".join(
            f"\n  - {name}: ~{tokens} tokens, {'unknown cost' if cost is None else f'${cost:.6f}'}"
            for name, (tokens, cost) in estimates.items()
        )
        others = "".join(f"\n  - {n}: excluded, {why}" for n, why in excluded.items() if n not in self.refused)
        message = f"No deployment fits budget {self.budget.name!r}: {first}\nEstimates:{lines}{others}"
        return BudgetExceededError(
            message,
            kind=first.kind,
            spent=first.spent,
            limit=first.limit,
            estimate=min((c for _, c in estimates.values() if c is not None), default=None)
            if first.kind == "cost"
            else min((t for t, _ in estimates.values()), default=None),
            budget=self.budget.name,
            estimates={name: cost if first.kind == "cost" else tokens for name, (tokens, cost) in estimates.items()},
        )


def _sort_cost(cost: float | None) -> float:
    return math.inf if cost is None else cost
