"""Turn latency of a real graph while the secondary hangs: circuit breaker on against off.

Run: python benchmarks/bench_breaker.py [--turns 8] [--timeout 1.0]

The demo's support agent runs on a DualSaver in the backfill phase (every secondary write is
synchronous, bounded by `secondary_timeout`). Old is SQLite; new is an in-memory saver whose
writes hang (tests/faulty.py), as a store that stopped answering does. Reported per
configuration: each turn's time, as a multiple of one secondary timeout. Target: with the
breaker, a turn waits at most one timeout in all (the first turn pays it, later ones skip
the secondary and journal at once); without it, every call of a turn waits its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402

from dualsaver import DualSaver, Phase  # noqa: E402
from dualsaver.demo.app import QUESTIONS, build_support_agent, say  # noqa: E402
from dualsaver.stores import open_saver  # noqa: E402
from tests.faulty import Faulty  # noqa: E402


def turns(cool_down: float | None, n: int, timeout: float, tmp: Path) -> list[float]:
    with open_saver(f"sqlite:///{tmp / f'old-{cool_down}.sqlite'}") as old:
        new = Faulty(InMemorySaver())
        new.mode = "hang"
        saver = DualSaver(old, new, Phase.BACKFILL, secondary_timeout=timeout, circuit_cool_down=cool_down,
                          journal=tmp / f"journal-{cool_down}.sqlite")
        app = build_support_agent(saver)
        times = []
        for i in range(n):
            started = time.perf_counter()
            say(app, "customer-1", QUESTIONS[i % len(QUESTIONS)])
            times.append(time.perf_counter() - started)
        new.release.set()
        saver.close()
        return times


def main() -> None:
    import logging

    import structlog

    # one warning per skipped write would bury the table
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=1.0, help="secondary_timeout, seconds")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-breaker-"))
    print(f"secondary hangs; secondary_timeout = {args.timeout}s; {args.turns} turns of the support agent\n")
    print(f"{'configuration':32} {'first':>7} {'median':>7} {'max':>7}   (turn time / one timeout)")
    for label, cool_down in (("breaker on (cool-down 60 s)", 60.0), ("breaker off", None)):
        t = [x / args.timeout for x in turns(cool_down, args.turns, args.timeout, tmp)]
        print(f"{label:32} {t[0]:7.2f} {statistics.median(t):7.2f} {max(t):7.2f}")


if __name__ == "__main__":
    main()
