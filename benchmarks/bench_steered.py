"""What a call costs in backfill and read-switch while the fleet's journal holds open entries.

In those phases every call asks what each store missed (`Recorder.stale_threads`: this
process's misses and the fleet's journal, read in the background every few seconds), so that
a thread one store missed is read from the other (`plans.steered`). During an outage of one
store in a rolling move, the journal may name thousands of threads until a repair. Here:
DualSaver in read-switch over in-memory stores (no I/O: dualsaver's own CPU), its control
store an embedded Redis whose journal holds N open entries of old naming other threads;
`get_tuple` and `put` of one thread, microseconds a call, for each N of --entries.

Before and after in one run: `--baseline DIR` names another source tree (`git archive REV
dualsaver | tar -x -C DIR`); each tree is measured in a fresh interpreter, alternately.

    python benchmarks/bench_steered.py [--entries 0 1000 10000 100000] [--calls 2000] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _trees import add_arguments, alternately, child_prints, print_table, tree_path

sys.path.insert(0, tree_path())  # a measuring child: its tree's dualsaver

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver

import dualsaver

ROUNDS = 3


class Memory(InMemorySaver):
    """LangGraph's in-memory saver under another type: its writes bounded (a thread hop) as a
    server's are, where `InMemorySaver` itself is written unbounded (`_shells.never_waits`)."""


def measure(url: str, entries: list[int], calls: int) -> dict[str, float]:
    """{"get_tuple, N open": us, "put, N open": us} for each N (the journal of `database(url, N)`)."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in entries:
            saver = dualsaver.DualSaver(Memory(), Memory(), "read-switch",
                                        control=database(url, entries.index(n)), journal=Path(tmp) / f"{n}.sqlite")
            try:
                config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
                saver.put(config, empty_checkpoint(), {}, {})
                deadline = time.monotonic() + 30  # the fleet's journal read in the background
                while n and "stale-0" not in saver.recorder.stale_threads("old"):
                    assert time.monotonic() < deadline, "the journal was not read"
                    time.sleep(0.05)
                out[f"get_tuple, {n} open"] = timed(lambda s=saver, c=config: s.get_tuple(c), calls)
                out[f"put, {n} open"] = timed(lambda s=saver, c=config: s.put(c, empty_checkpoint(), {}, {}), calls)
            finally:
                saver.close()
    return out


def timed(fn, calls: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def database(url: str, index: int) -> str:
    """The Redis URL `url` (ending in /0) on database `index + 1`: one journal per N."""
    return url.rsplit("/", 1)[0] + f"/{index + 1}"


def fill(url: str, entries: list[int]) -> None:
    """Each N's journal: N open entries of old, each naming a thread of its own."""
    from dualsaver.control.journal import JournalEntry
    from dualsaver.control.record import open_control_store

    for index, n in enumerate(entries):
        with open_control_store(database(url, index)) as record:
            for start in range(0, n, 5000):
                record.journal_add([JournalEntry("read-switch", "old", "put", f"stale-{i}", "", "c", None, "StoreDown")
                                    for i in range(start, min(n, start + 5000))], "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, nargs="+", default=[0, 1000, 10000, 100000])
    parser.add_argument("--calls", type=int, default=2000, help="calls a timed pass (the best of three counts)")
    add_arguments(parser)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tree is not None:
        child_prints(args.tree, measure(args.url, args.entries, args.calls))
        return
    from dualsaver.embedded import EmbeddedRedis

    with EmbeddedRedis() as redis:
        fill(redis.url, args.entries)
        arguments = ["--url", redis.url, "--calls", str(args.calls), "--entries", *map(str, args.entries)]
        median = alternately(__file__, arguments, args.baseline, ROUNDS)
    print(f"DualSaver in read-switch over in-memory stores, the fleet's journal holding N open entries of other"
          f" threads: us a call (best of 3 passes of {args.calls}, median of {ROUNDS} rounds)")
    print_table(median, 28)


if __name__ == "__main__":
    main()
