"""What dualsaver itself costs a call: its machinery over stores that answer at once.

The composite savers run every operation as a plan (`dualsaver.sansio`) through a shell
(spans, bounds, write-behind); on LangGraph's hot path that machinery is paid per store
call. Here the stores do nothing (they answer from memory, no I/O), so what is left is
dualsaver's own CPU, which the benchmarks against real stores cannot resolve from their noise
(bench_shadow_write, bench_tiered):

- `put` and `put_writes` of a real graph's recorded calls through DualSaver in shadow-write
  (write-behind, the default: the background writer's share included, as the queue is drained
  in the timing; and waiting, `write_behind=False`, whose bounded write to new runs on a
  pool's thread while the caller waits: one thread hop a write), against the same calls on
  the two stores in turn (the naive dual write);
- the same calls through DualSaver in decommission, which writes new alone;
- the same calls through DualSaver in read-switch over two LangGraph `InMemorySaver`s (a
  migration from memory), against the naive dual write over two: old, written second,
  waits on nothing outside the process, so its writes run unbounded on the caller's
  thread (`_shells.never_waits`: no hop);
- TieredSaver `get_tuple` (a hit: the probe sent, the hot read, the probe collected, sync and
  async), against the same three calls made directly.

Before and after in one run: `--baseline DIR` names another source tree (`git archive main
dualsaver | tar -x -C DIR`); each tree is measured in a fresh interpreter of its own, the
trees alternately, three rounds.

    python benchmarks/bench_overhead.py [--repeat 5] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _trees import add_arguments, alternately, child_prints, print_table, tree_path

sys.path.insert(0, tree_path())  # a measuring child: its tree's dualsaver

from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver

import dualsaver
from dualsaver.demo.app import QUESTIONS, build_support_agent, say
from dualsaver.saver._tiered import Newest

TIERED_READS = 5000


class Nothing(BaseCheckpointSaver):
    """A store that takes every write and keeps nothing: only the caller's side is left."""

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return config

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        return None


class Recorder(InMemorySaver):
    """The graph's own saver, noting each write as LangGraph made it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple]] = []

    def put(self, config: Any, *args: Any) -> Any:
        self.calls.append(("put", (config, *args)))
        return super().put(config, *args)

    def put_writes(self, config: Any, *args: Any) -> None:
        self.calls.append(("put_writes", (config, *args)))
        super().put_writes(config, *args)


def recorded_writes(turns: int = 60) -> list[tuple[str, tuple]]:
    """The put / put_writes calls of `turns` turns of the demo agent, configs trimmed to what
    stores read (LangGraph's carry live callbacks), values copied so later turns cannot change them."""
    saver = Recorder()
    app = build_support_agent(saver)
    for n in range(turns):
        say(app, f"conv-{n // len(QUESTIONS)}", QUESTIONS[n % len(QUESTIONS)])
    kept = []
    for method, (config, *rest) in saver.calls:
        conf = {k: v for k, v in config["configurable"].items() if isinstance(v, (str, int, float))}
        kept.append((method, ({"configurable": conf}, *pickle.loads(pickle.dumps(rest)))))
    return kept


def best_us(fn: Any, count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


def writes(calls: list[tuple[str, tuple]], repeat: int, tmp: Path) -> dict[str, float]:
    """The recorded writes through each configuration; the savers are built (and warmed by one
    untimed pass) before the timing, so a pass is the writes and the drain alone."""
    old, new = Nothing(), Nothing()

    def naive() -> None:
        for method, args in calls:
            getattr(old, method)(*args)
            getattr(new, method)(*args)

    def through(saver: dualsaver.DualSaver) -> Any:
        def run() -> None:
            for method, args in calls:
                getattr(saver, method)(*args)
            assert saver.flush(timeout=60)
        run()
        return run

    behind = dualsaver.DualSaver(Nothing(), Nothing(), dualsaver.Phase.SHADOW_WRITE, journal=tmp / "behind.sqlite")
    # waiting: each write to new is bounded (`timeout`), so it hops to a thread of a pool
    waiting = dualsaver.DualSaver(Nothing(), Nothing(), dualsaver.Phase.SHADOW_WRITE,
                                  journal=tmp / "waiting.sqlite", write_behind=False)
    # decommission: new alone (against the same calls on one store, about what `naive` costs a store)
    alone = dualsaver.DualSaver(Nothing(), Nothing(), dualsaver.Phase.DECOMMISSION, journal=tmp / "alone.sqlite")
    # read-switch over LangGraph's in-memory savers (a migration from memory): old, written
    # second, waits on nothing outside the process, so its writes need no bound (no hop)
    memory_old, memory_new = InMemorySaver(), InMemorySaver()
    from_memory = dualsaver.DualSaver(InMemorySaver(), InMemorySaver(), dualsaver.Phase.READ_SWITCH,
                                      journal=tmp / "memory.sqlite")

    def naive_memory() -> None:
        for method, args in calls:
            getattr(memory_new, method)(*args)
            getattr(memory_old, method)(*args)

    try:
        return {"naive dual write": best_us(naive, len(calls), repeat),
                "DualSaver write-behind": best_us(through(behind), len(calls), repeat),
                "DualSaver waiting": best_us(through(waiting), len(calls), repeat),
                "DualSaver decommission (one store)": best_us(through(alone), len(calls), repeat),
                "naive dual write, in memory": best_us(naive_memory, len(calls), repeat),
                "DualSaver read-switch, in memory": best_us(through(from_memory), len(calls), repeat)}
    finally:
        behind.close()
        waiting.close()
        alone.close()
        from_memory.close()


def tiered_reads(repeat: int, tmp: Path) -> dict[str, float]:
    """A TieredSaver whose probe and hot store answer at once: a hit on every read."""
    durable, hot = InMemorySaver(), InMemorySaver()
    saver = dualsaver.TieredSaver(durable, hot, journal=tmp / "tiered.sqlite", write_behind=False)
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"], checkpoint["channel_versions"] = {"a": "x"}, {"a": 1}
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    saver.put(config, checkpoint, {"source": "loop", "step": 1}, {"a": 1})
    found = hot.get_tuple(config)
    newest = Newest((found.config["configurable"]["checkpoint_id"], 0))

    class Probe:
        def send(self, *args: Any) -> str:
            return "sent"

        async def asend(self, *args: Any) -> str:
            return "sent"

        def collect(self, sent: Any) -> Any:
            return newest

        async def acollect(self, sent: Any) -> Any:
            return newest

    class Hot:  # as dualsaver's Redis saver: it bounds its own reads
        def get_tuple_within(self, config: Any, timeout: float | None = None) -> Any:
            return found

        async def aget_tuple_within(self, config: Any, timeout: float | None = None) -> Any:
            return found

    probe, quick = Probe(), Hot()
    for shell in (saver._sync, saver._async):
        shell.targets.update(probe=probe, new=quick)
        shell.stores = {"old": durable, "new": quick}
    saver._hot_bounds_reads = True

    def direct() -> None:
        for _ in range(TIERED_READS):
            probe.collect(probe.send(config))
            quick.get_tuple_within(config, 1.0)

    def tiered() -> None:
        for _ in range(TIERED_READS):
            assert saver.get_tuple(config) is found

    async def adirect() -> None:
        for _ in range(TIERED_READS):
            sent = await probe.asend(config)
            await quick.aget_tuple_within(config, 1.0)
            await probe.acollect(sent)

    async def atiered() -> None:
        for _ in range(TIERED_READS):
            assert await saver.aget_tuple(config) is found

    measured = {
        "tiered get_tuple, sync: the calls alone": best_us(direct, TIERED_READS, repeat),
        "tiered get_tuple, sync: TieredSaver": best_us(tiered, TIERED_READS, repeat),
        "tiered get_tuple, async: the calls alone": best_us(lambda: asyncio.run(adirect()), TIERED_READS, repeat),
        "tiered get_tuple, async: TieredSaver": best_us(lambda: asyncio.run(atiered()), TIERED_READS, repeat),
    }
    assert saver.stats.get("hit", 0) >= 2 * repeat * TIERED_READS, saver.stats
    saver.close()
    return measured


def measure(repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return {**writes(recorded_writes(), repeat, Path(tmp)), **tiered_reads(repeat, Path(tmp))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="timed passes per measurement (the best counts)")
    add_arguments(parser)
    args = parser.parse_args()
    if args.tree is not None:
        child_prints(args.tree, measure(args.repeat))
        return
    median = alternately(__file__, ["--repeat", str(args.repeat)], args.baseline, rounds=3)
    print(f"dualsaver's own CPU a call (us; best of {args.repeat} passes, median of 3 rounds;"
          f" {TIERED_READS} tiered reads a pass)")
    print_table(median, 44)
    for name, r in median.items():
        print(f"{name}: dualsaver adds {r['DualSaver write-behind'] - r['naive dual write']:.1f} us a write"
              f" (write-behind), {r['DualSaver waiting'] - r['naive dual write']:.1f} us (waiting),"
              f" {r['tiered get_tuple, sync: TieredSaver'] - r['tiered get_tuple, sync: the calls alone']:.1f} us"
              f" a tiered read (sync),"
              f" {r['tiered get_tuple, async: TieredSaver'] - r['tiered get_tuple, async: the calls alone']:.1f} us"
              " (async)")


if __name__ == "__main__":
    main()
