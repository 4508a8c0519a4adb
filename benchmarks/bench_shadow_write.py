"""Invoke latency of a real graph: DualSaver in shadow-write against each store alone.

Old is SQLite, new is an embedded PostgreSQL (durable settings, as in production).
DualSaver runs in both of its shadow-write modes: write-behind (the default: new's copy
is written in the background, in order, in the application's pauses) and waiting
(`write_behind=False`: the caller waits for old, then new). A naive dual write (old then
new, inline, with none of DualSaver's guarantees) is the baseline.

Two measurements, in one process and one run:

1. Latency. The configurations run interleaved, turn by turn, so drift on a shared
   machine hits them alike. After each write-behind turn its queue is drained, untimed
   but reported, as a user's think time between turns would: otherwise its background
   writes would land inside the next configuration's samples. p50/p99 and the ratio to
   the slower store alone (target: at most 1.15x).
2. Sustained load. Each configuration runs its turns back to back with no pause at all,
   write-behind's drain at the end included: time per turn, and the ratio to the slower
   store alone. Here the background writer cannot hide in pauses; this is the price at
   saturation.

    python benchmarks/bench_shadow_write.py [--turns 300]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver

from dualsaver import DualSaver, Phase
from dualsaver.demo.app import QUESTIONS, build_support_agent, say
from dualsaver.embedded import EmbeddedPostgres

ALONE = ("sqlite alone", "postgres alone")
WRITE_BEHIND = "dualsaver write-behind"
WAITING = "dualsaver waiting"
NAIVE = "naive dual write"


class NaiveDualWrite(BaseCheckpointSaver):
    """The naive approach, as a baseline: write old, then new, in the caller's thread; no
    snapshot, no bound on new, no journal, no phases. Reads come from old."""

    def __init__(self, old: BaseCheckpointSaver, new: BaseCheckpointSaver) -> None:
        super().__init__(serde=old.serde)
        self.old, self.new = old, new

    def get_tuple(self, config: Any) -> Any:
        return self.old.get_tuple(config)

    def list(self, config: Any, **kwargs: Any) -> Any:
        return self.old.list(config, **kwargs)

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        saved = self.old.put(config, checkpoint, metadata, new_versions)
        self.new.put(config, checkpoint, metadata, new_versions)
        return saved

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        self.old.put_writes(config, writes, task_id, task_path)
        self.new.put_writes(config, writes, task_id, task_path)

    def get_next_version(self, current: Any, channel: Any = None) -> Any:
        return self.new.get_next_version(current, channel)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def turn_of(n: int, prefix: str) -> tuple[str, str]:
    return f"{prefix}-{n // len(QUESTIONS)}", QUESTIONS[n % len(QUESTIONS)]


@contextlib.contextmanager
def configurations(pg: EmbeddedPostgres, tmp: Path, tag: str) -> Any:
    """The five configurations, on fresh stores: name -> (app, DualSaver or None)."""
    names = ("alone", "naive", "waiting", "behind")
    urls = {name: pg.create_database(f"{tag}_{name}") for name in names}
    with contextlib.ExitStack() as stack:
        def sqlite(name: str) -> SqliteSaver:
            return stack.enter_context(SqliteSaver.from_conn_string(str(tmp / f"{tag}-{name}.sqlite")))

        def postgres(name: str) -> PostgresSaver:
            return stack.enter_context(PostgresSaver.from_conn_string(urls[name]))

        savers = {name: (sqlite(name), postgres(name)) for name in names}
        for pair in savers.values():
            for saver in pair:
                saver.setup()
        behind = DualSaver(*savers["behind"], Phase.SHADOW_WRITE, journal=tmp / f"{tag}-behind.journal")
        waiting = DualSaver(
            *savers["waiting"], Phase.SHADOW_WRITE, journal=tmp / f"{tag}-waiting.journal", write_behind=False
        )
        yield {
            "sqlite alone": (build_support_agent(savers["alone"][0]), None),
            "postgres alone": (build_support_agent(savers["alone"][1]), None),
            NAIVE: (build_support_agent(NaiveDualWrite(*savers["naive"])), None),
            WAITING: (build_support_agent(waiting), waiting),
            WRITE_BEHIND: (build_support_agent(behind), behind),
        }


def interleaved_latency(configs: dict[str, Any], turns: int, warmup: int) -> tuple[dict[str, list[float]], list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in configs}
    drains: list[float] = []
    for n in range(warmup + turns):
        thread, text = turn_of(n, "conv")
        for name, (app, dual) in configs.items():
            started = time.perf_counter()
            say(app, thread, text)
            elapsed = time.perf_counter() - started
            if dual is not None and dual.write_behind:
                drained = time.perf_counter()
                assert dual.flush(timeout=120), "write-behind did not catch up"
                if n >= warmup:
                    drains.append((time.perf_counter() - drained) * 1000)
            if n >= warmup:
                samples[name].append(elapsed * 1000)
    return samples, drains


def sustained(configs: dict[str, Any], turns: int) -> dict[str, float]:
    """Milliseconds per turn with turns back to back; write-behind's final drain included."""
    per_turn: dict[str, float] = {}
    for name, (app, dual) in configs.items():
        started = time.perf_counter()
        for n in range(turns):
            say(app, *turn_of(n, "load"))
        if dual is not None:
            assert dual.flush(timeout=120), "write-behind did not catch up"
        per_turn[name] = (time.perf_counter() - started) * 1000 / turns
    return per_turn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=300, help="turns per configuration")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(durable=True) as pg:
        with configurations(pg, Path(tmp), "latency") as configs:
            samples, drains = interleaved_latency(configs, args.turns, args.warmup)
            held = {name: sum(1 for _ in dual.new.list(None)) for name, (_, dual) in configs.items() if dual}
            failures = sum(dual.secondary_failures.total() for _, dual in configs.values() if dual)
        with configurations(pg, Path(tmp), "load") as configs:
            loaded = sustained(configs, args.turns)

    print(f"1. invoke latency over {args.turns} turns each (ms), interleaved in one run")
    print(f"{'configuration':<26}{'p50':>9}{'p99':>9}{'mean':>9}")
    for name, values in samples.items():
        print(f"{name:<26}{percentile(values, 0.5):>9.2f}{percentile(values, 0.99):>9.2f}{statistics.mean(values):>9.2f}")
    slower = max(ALONE, key=lambda n: percentile(samples[n], 0.5))
    for name in (WRITE_BEHIND, WAITING, NAIVE):
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            ratio = percentile(samples[name], q) / percentile(samples[slower], q)
            target = " (target <= 1.15x)" if name != NAIVE else ""
            print(f"ratio {label}: {name} / {slower} = {ratio:.3f}x{target}")
    print("slowest write-behind turns:", [round(v, 1) for v in sorted(samples[WRITE_BEHIND])[-5:]])
    print(f"write-behind drain after each turn (untimed above): p50 {percentile(drains, 0.5):.2f} ms,"
          f" p99 {percentile(drains, 0.99):.2f} ms")
    print(f"checkpoints new holds: {held}; secondary failures: {failures}")

    print(f"\n2. sustained load: {args.turns} turns back to back per configuration (ms per turn)")
    for name, value in loaded.items():
        print(f"{name:<26}{value:>9.2f}")
    slower = max(ALONE, key=lambda n: loaded[n])
    for name in (WRITE_BEHIND, WAITING, NAIVE):
        print(f"ratio: {name} / {slower} = {loaded[name] / loaded[slower]:.3f}x")


if __name__ == "__main__":
    main()
