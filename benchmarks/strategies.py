"""Time one ``order()`` call of each routing strategy over many deployments.

The strategies rank the candidates of every routed call, so their cost grows with
the number of deployments; this prints milliseconds per call at each size.
Run by hand (not a test; timings depend on the machine)::

    .venv/bin/python benchmarks/strategies.py --sizes 100 1000 10000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_multigateway.routing.deployment import Deployment
from langchain_multigateway.routing.strategies import RequestInfo, get_strategy
from langchain_multigateway.state.memory import MemoryState
from langchain_multigateway.testing import ScriptedChatModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--strategies", nargs="+", default=["ordered", "round_robin", "weighted", "cheapest"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    model = ScriptedChatModel(model="gpt-4o-mini", model_provider="openai", steps=[])
    state = MemoryState()
    request = RequestInfo(input_tokens=100, output_tokens=100)
    print(f"{'strategy':<14}" + "".join(f"{n:>12}" for n in args.sizes) + "   (ms per order() call)")
    for name in args.strategies:
        strategy = get_strategy(name)
        cells = []
        for size in args.sizes:
            deployments = [Deployment(model=model, name=f"d{i}", weight=1 + i % 7) for i in range(size)]
            best = float("inf")
            for _ in range(args.repeat):
                started = time.perf_counter()
                strategy.order(deployments, request, state)
                best = min(best, time.perf_counter() - started)
            cells.append(f"{best * 1000:>12.2f}")
        print(f"{name:<14}" + "".join(cells))


if __name__ == "__main__":
    main()
