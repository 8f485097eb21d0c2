"""Routing strategies: each ranks the deployments able to serve a request.

A strategy only orders; the router filters before and fails over after. Ties
keep the deployments' ``priority`` order (then their listed order).
"""

from __future__ import annotations

import copy
import itertools
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_multigateway.routing.deployment import Deployment
from langchain_multigateway.state.base import RouterState
from langchain_multigateway.state.learned import LOW_HEADROOM

__all__ = [
    "STRATEGIES",
    "BalancedStrategy",
    "CheapestStrategy",
    "LeastBusyStrategy",
    "LeastLatencyStrategy",
    "OrderedStrategy",
    "QualityStrategy",
    "RequestInfo",
    "RoundRobinStrategy",
    "Strategy",
    "WeightedStrategy",
    "get_strategy",
    "with_affinity",
]


@dataclass
class RequestInfo:
    """What a strategy may know of the request it ranks for."""

    input_tokens: int
    output_tokens: int
    streaming: bool = False


class Strategy(ABC):
    """Ranks candidate deployments, best first.

    ``affinity``: requests of one conversation (one ``session_id``, or one prompt prefix)
    are ranked by rendezvous hashing instead, so the provider's prompt cache keeps hitting
    (see :mod:`~langchain_multigateway.routing.affinity`). On for the strategies that spread
    requests across interchangeable deployments; off for those that already pick the same
    first choice every time (ordered, cheapest, quality), where it would only override a
    stated preference. A router's ``affinity=`` overrides it.
    """

    name: str = "strategy"
    affinity: bool = False

    @abstractmethod
    def order(self, candidates: Sequence[Deployment], request: RequestInfo, state: RouterState) -> list[Deployment]:
        """``candidates`` (already in priority order) re-ranked for ``request``."""


class OrderedStrategy(Strategy):
    """By ``priority``, lower first: a primary and its fallbacks."""

    name = "ordered"

    def order(self, candidates: Sequence[Deployment], request: RequestInfo, state: RouterState) -> list[Deployment]:
        return list(candidates)


class RoundRobinStrategy(Strategy):
    """Each request starts one deployment further along; the rest follow as fallbacks."""

    name = "round_robin"
    affinity = True

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def order(self, candidates: Sequence[Deployment], request: RequestInfo, state: RouterState) -> list[Deployment]:
        if not candidates:
            return []
        with self._lock:
            turn = next(self._counter)
        start = turn % len(candidates)
        return [*candidates[start:], *candidates[:start]]


class WeightedStrategy(Strategy):
    """Random order drawn by ``weight`` (without replacement): traffic splits by weight."""

    name = "weighted"
    affinity = True

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def order(self, candidates: Sequence[Deployment], request: RequestInfo, state: RouterState) -> list[Deployment]:
        # Drawing one by one by weight, without replacement, is the same as ranking by an
        # exponential "arrival time" of rate ``weight`` each (Efraimidis-Spirakis): one draw
        # per deployment and a sort, O(n log n), instead of a weighted draw per position.
        weighted: list[tuple[float, int]] = []
        rest: list[Deployment] = []
        with self._lock:
            for index, dep in enumerate(candidates):
                weight = dep.weight
                if weight > 0:
                    weighted.append((self._random.expovariate(weight), index))
                else:
                    rest.append(dep)
        weighted.sort()
        return [candidates[index] for _, index in weighted] + rest


class LeastLatencyStrategy(Strategy):
    """Lowest EWMA latency first (time to first token for streams); unmeasured ones first, to learn them."""

    name = "least_latency"
    affinity = True

    def order(self, candidates: Sequence[Deployment], request: RequestInfo, state: RouterState) -> list[Deployment]:
        def key(dep: Deployment) -> float:
            latency = state.latency(dep.name, streaming=request.streaming)
            return -1.0 if latency is None else latency

        return sorted(candidates, key=key)


class LeastBusyStrategy(Strategy):
    """Fewest requests in flight first (relative to ``max_concurrency`` when set); a deployment
    whose provider announced less than a tenth of its rate budget left goes after the others."""

    name = "least_busy"
    affinity = True

    def order(self, candidates: Sequence[Deployment], request: RequestInfo, state: RouterState) -> list[Deployment]:
        def key(dep: Deployment) -> tuple[bool, float]:
            busy = state.in_flight(dep.name)
            nearly_out = _scarcity(state, dep.name) > 1.0 - LOW_HEADROOM
            return nearly_out, busy / dep.max_concurrency if dep.max_concurrency else float(busy)

        return sorted(candidates, key=key)


class CheapestStrategy(Strategy):
    """Lowest estimated cost first: counted prompt tokens and ``max_tokens`` at each one's prices."""

    name = "cheapest"

    def order(self, candidates: Sequence[Deployment], request: RequestInfo, state: RouterState) -> list[Deployment]:
        return sorted(candidates, key=lambda d: d.estimated_cost(request.input_tokens, request.output_tokens))


class QualityStrategy(Strategy):
    """Highest ``quality`` first."""

    name = "quality"

    def order(self, candidates: Sequence[Deployment], request: RequestInfo, state: RouterState) -> list[Deployment]:
        return sorted(candidates, key=lambda d: -d.quality)


class BalancedStrategy(Strategy):
    """A weighted score of quality, cost, latency and load, each scaled to 0..1 across candidates,
    less the share of its rate budget the provider announced as used.

    Args:
        quality: Weight of quality (higher is better).
        cost: Weight of estimated cost (lower is better).
        latency: Weight of EWMA latency (lower is better; unmeasured counts as the best seen).
        load: Weight of requests in flight (fewer is better).
        headroom: Weight of the announced rate budget used (0..1 as is, not rescaled: 90 % used
            against 95 % is a small difference); nothing announced counts as 0.
    """

    name = "balanced"
    affinity = True

    def __init__(
        self, quality: float = 1.0, cost: float = 1.0, latency: float = 1.0, load: float = 0.5, headroom: float = 1.0
    ) -> None:
        self.weights = {"quality": quality, "cost": cost, "latency": latency, "load": load, "headroom": headroom}

    def order(self, candidates: Sequence[Deployment], request: RequestInfo, state: RouterState) -> list[Deployment]:
        if len(candidates) < 2:
            return list(candidates)
        quality = [d.quality for d in candidates]
        cost = [d.estimated_cost(request.input_tokens, request.output_tokens) for d in candidates]
        measured = [state.latency(d.name, streaming=request.streaming) for d in candidates]
        known = [m for m in measured if m is not None]
        floor = min(known) if known else 0.0
        latency = [floor if m is None else m for m in measured]
        load = [float(state.in_flight(d.name)) for d in candidates]
        w = self.weights
        q, c, lat, ld = _scale(quality), _scale(cost), _scale(latency), _scale(load)
        used = [_scarcity(state, d.name) for d in candidates]
        scores = [
            w["quality"] * q[i] - w["cost"] * c[i] - w["latency"] * lat[i] - w["load"] * ld[i] - w["headroom"] * used[i]
            for i in range(len(candidates))
        ]
        ranked = sorted(range(len(candidates)), key=lambda i: -scores[i])
        return [candidates[i] for i in ranked]


def _scarcity(state: RouterState, name: str) -> float:
    """How much of its announced rate budget ``name`` has used (0..1); 0 when nothing was announced."""
    headroom = state.learned.headroom(name)
    return 0.0 if headroom is None else 1.0 - headroom


def _scale(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    span = high - low
    return [0.0 if span == 0 else (v - low) / span for v in values]


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        OrderedStrategy,
        RoundRobinStrategy,
        WeightedStrategy,
        LeastLatencyStrategy,
        LeastBusyStrategy,
        CheapestStrategy,
        QualityStrategy,
        BalancedStrategy,
    )
}


def get_strategy(strategy: str | Strategy) -> Strategy:
    """A strategy instance from its name (or the instance itself)."""
    if isinstance(strategy, Strategy):
        return strategy
    try:
        return STRATEGIES[strategy]()
    except KeyError:
        msg = f"Unknown routing strategy {strategy!r}; choose one of {sorted(STRATEGIES)}"
        raise ValueError(msg) from None


def with_affinity(strategy: Strategy, affinity: bool | None) -> Strategy:
    """``strategy`` with prompt-cache affinity set (a copy: a caller's instance is not changed); None keeps it."""
    if affinity is None or strategy.affinity is affinity:
        return strategy
    changed = copy.copy(strategy)
    changed.affinity = affinity
    return changed
