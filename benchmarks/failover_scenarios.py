"""Issue 12's fault scenarios through the router (defaults) and through ``ChatOpenAI.with_fallbacks``.

Starts the fake provider (``tests/integration/fault_provider.py``) in its own process,
runs every scenario of ``tests/integration/fault_scenarios.py`` through both clients and
prints a markdown table: whether the scenario passed its checks (what the caller got,
how many requests the fake saw and when, a healthy call afterwards, the router idle),
with a short note and the wall time of the call.

Run by hand from the repository root (not a test; the realistic profile takes ~15 min)::

    .venv/bin/python -m benchmarks.failover_scenarios --profile fast
    .venv/bin/python -m benchmarks.failover_scenarios --profile realistic --only router
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.fault_harness import (  # noqa: E402 - after the path set-up
    Case,
    FakeProvider,
    fast_limits,
    judge,
    run_case,
    start_fake,
    warm_up,
)
from tests.integration.fault_scenarios import CASES, ERROR_MODE_CASES  # noqa: E402

CLIENTS = {"router": "router, defaults", "with_fallbacks": "`ChatOpenAI.with_fallbacks`"}


def verdict(case: Case, client: str, fake: FakeProvider) -> str:
    started = time.time()
    try:
        run = run_case(case, client, fake)
        note = judge(run)
        mark = "✓"
    except AssertionError as exc:
        mark, note = "✗", str(exc).splitlines()[0]
    except Exception as exc:  # a client that cannot even be built for this scenario
        mark, note = "✗", f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
    took = time.time() - started
    return f"{mark} {note} ({took:.1f} s)".replace("|", "\\|")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("fast", "realistic"), default="fast")
    parser.add_argument("--only", choices=sorted(CLIENTS), help="run one client only")
    parser.add_argument("--case", action="append", help="run only these scenario ids")
    args = parser.parse_args(argv)
    clients = [args.only] if args.only else list(CLIENTS)
    cases = [c for c in (*CASES, *ERROR_MODE_CASES) if not args.case or c.id in args.case]
    rows: list[str] = []
    with start_fake(args.profile) as fake:
        warm_up(fake)
        for case in cases:
            cells = [verdict(case, client, fake) for client in clients]
            row = f"| {case.fault} | " + " | ".join(cells) + " |"
            print(row, file=sys.stderr, flush=True)
            rows.append(row)
    print(f"Profile: {args.profile}; fake waits: {fake.waits}")
    if args.profile == "fast":
        print(f"Router limits (defaults x 1/20): {fast_limits()}")
    print()
    print("| fault | " + " | ".join(CLIENTS[c] for c in clients) + " |")
    print("|---|" + "---|" * len(clients))
    print("\n".join(rows))
    for client in clients:
        passed = sum(1 for row in rows if row.split(" | ")[1 + clients.index(client)].startswith("✓"))
        print(f"\n{CLIENTS[client]}: {passed} of {len(rows)} scenarios pass", end="")
    print()


if __name__ == "__main__":
    main()
