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
   saturation (target: write-behind at most 1.05x the naive dual write). The turns run in
   `--rounds` blocks, the configurations in turn within each round (their order reversed
   every other round), so drift on a shared machine hits them alike; the process's CPU per
   turn (all its threads: the background writer's too) is reported beside the time.

Before and after in one run: `--baseline DIR` names another source tree (a copy of main:
`git archive main dualsaver | tar -x -C DIR`); its DualSaver runs as two more
configurations in the same process, interleaved with these.

    python benchmarks/bench_shadow_write.py [--turns 300] [--rounds 5] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
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
BEFORE = "before: "  # the prefix of the --baseline tree's configurations


@contextlib.contextmanager
def baseline_modules(tree: Path) -> Iterator[Any]:
    """The `dualsaver` package of another source tree, beside ours in this process: while the
    block runs, its modules stand under their own names (so what it imports lazily while its
    savers are built is its own); after it, ours are back and its modules live on through
    the references its objects hold. The hot path (put, put_writes, get_tuple) imports nothing."""

    def ours() -> dict[str, Any]:
        return {n: m for n, m in sys.modules.items() if n == "dualsaver" or n.startswith("dualsaver.")}

    saved = ours()
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(tree))
    try:
        package = importlib.import_module("dualsaver")
        assert Path(package.__file__).resolve().is_relative_to(tree.resolve()), package.__file__
        yield package
    finally:
        sys.path.remove(str(tree))
        for name in ours():
            del sys.modules[name]
        sys.modules.update(saved)


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
def configurations(pg: EmbeddedPostgres, tmp: Path, tag: str, baseline: Path | None = None) -> Any:
    """The five configurations (seven with a baseline), on fresh stores: name -> (app, DualSaver or None)."""
    names = ("alone", "naive", "waiting", "behind") + (("base_waiting", "base_behind") if baseline else ())
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
        configs = {
            "sqlite alone": (build_support_agent(savers["alone"][0]), None),
            "postgres alone": (build_support_agent(savers["alone"][1]), None),
            NAIVE: (build_support_agent(NaiveDualWrite(*savers["naive"])), None),
            WAITING: (build_support_agent(waiting), waiting),
            WRITE_BEHIND: (build_support_agent(behind), behind),
        }
        if baseline is not None:
            with baseline_modules(baseline) as before:
                duals = {
                    WAITING: before.DualSaver(*savers["base_waiting"], before.Phase.SHADOW_WRITE,
                                              journal=tmp / f"{tag}-base-waiting.journal", write_behind=False),
                    WRITE_BEHIND: before.DualSaver(*savers["base_behind"], before.Phase.SHADOW_WRITE,
                                                   journal=tmp / f"{tag}-base-behind.journal"),
                }
            for name, dual in duals.items():
                stack.callback(dual.close)
                configs[BEFORE + name] = (build_support_agent(dual), dual)
        yield configs


def interleaved_latency(
    configs: dict[str, Any], turns: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    samples: dict[str, list[float]] = {name: [] for name in configs}
    drains: dict[str, list[float]] = {name: [] for name, (_, dual) in configs.items() if dual and dual.write_behind}
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
                    drains[name].append((time.perf_counter() - drained) * 1000)
            if n >= warmup:
                samples[name].append(elapsed * 1000)
    return samples, drains


def sustained(configs: dict[str, Any], turns: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Per configuration, per round: (ms per turn, process CPU ms per turn) with turns back to
    back; write-behind's drain at the end of each round included."""
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    block = max(1, turns // rounds)
    for r in range(rounds):
        order = list(configs.items())
        for name, (app, dual) in order if r % 2 == 0 else reversed(order):
            cpu, started = time.process_time(), time.perf_counter()
            for n in range(r * block, (r + 1) * block):
                say(app, *turn_of(n, "load"))
            if dual is not None:
                assert dual.flush(timeout=120), "write-behind did not catch up"
            elapsed, used = time.perf_counter() - started, time.process_time() - cpu
            measured[name].append((elapsed * 1000 / block, used * 1000 / block))
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=300, help="turns per configuration")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="blocks the sustained turns run in, interleaved")
    parser.add_argument("--baseline", type=Path, help="another source tree whose DualSaver runs beside ours")
    parser.add_argument("--skip-latency", action="store_true", help="only the sustained run")
    args = parser.parse_args()

    print(f"load average at start: {os.getloadavg()}")
    samples: dict[str, list[float]] = {}
    drains: dict[str, list[float]] = {}
    held: dict[str, int] = {}
    failures = 0
    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(durable=True) as pg:
        if not args.skip_latency:
            with configurations(pg, Path(tmp), "latency", args.baseline) as configs:
                samples, drains = interleaved_latency(configs, args.turns, args.warmup)
                held = {name: sum(1 for _ in dual.new.list(None)) for name, (_, dual) in configs.items() if dual}
                failures = sum(dual.secondary_failures.total() for _, dual in configs.values() if dual)
        with configurations(pg, Path(tmp), "load", args.baseline) as configs:
            for app, dual in configs.values():  # warm-up (connections, caches), untimed
                for n in range(args.warmup):
                    say(app, *turn_of(n, "warmup"))
                if dual is not None:
                    assert dual.flush(timeout=120)
            measured = sustained(configs, args.turns, args.rounds)
    print(f"load average at end: {os.getloadavg()}")
    if samples:
        report_latency(samples, drains, held, failures, args.turns)
    report_sustained(measured, args.turns, args.rounds)


def report_latency(
    samples: dict[str, list[float]], drains: dict[str, list[float]], held: dict[str, int], failures: int, turns: int
) -> None:
    print(f"1. invoke latency over {turns} turns each (ms), interleaved in one run")
    print(f"{'configuration':<34}{'p50':>9}{'p99':>9}{'mean':>9}")
    for name, values in samples.items():
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(f"{name:<34}{p50:>9.2f}{p99:>9.2f}{statistics.mean(values):>9.2f}")
    slower = max(ALONE, key=lambda n: percentile(samples[n], 0.5))
    for name in [n for n in samples if n not in ALONE]:
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            ratio = percentile(samples[name], q) / percentile(samples[slower], q)
            target = " (target <= 1.15x)" if name.endswith((WRITE_BEHIND, WAITING)) else ""
            print(f"ratio {label}: {name} / {slower} = {ratio:.3f}x{target}")
    for name, drained in drains.items():
        print(f"{name}: slowest turns {[round(v, 1) for v in sorted(samples[name])[-5:]]}; drain after each turn"
              f" (untimed above) p50 {percentile(drained, 0.5):.2f} ms, p99 {percentile(drained, 0.99):.2f} ms")
    print(f"checkpoints new holds: {held}; secondary failures: {failures}")


def report_sustained(measured: dict[str, list[tuple[float, float]]], turns: int, rounds: int) -> None:
    print(f"\n2. sustained load: {turns} turns back to back per configuration, in {rounds} interleaved rounds")
    print(f"{'configuration':<34}{'ms/turn':>9}{'rounds min-max':>17}{'CPU ms/turn':>13}")
    mean = {name: statistics.mean(ms for ms, _ in runs) for name, runs in measured.items()}
    for name, runs in measured.items():
        walls = [ms for ms, _ in runs]
        cpu = statistics.mean(c for _, c in runs)
        print(f"{name:<34}{mean[name]:>9.2f}{min(walls):>8.2f}-{max(walls):<8.2f}{cpu:>13.2f}")
    slower = max(ALONE, key=lambda n: mean[n])
    for name in [n for n in measured if n not in ALONE]:
        print(f"ratio: {name} / {slower} = {mean[name] / mean[slower]:.3f}x")
    for prefix in ("", BEFORE):
        if prefix + WRITE_BEHIND in mean:
            per_round = [b[0] / n[0] for b, n in zip(measured[prefix + WRITE_BEHIND], measured[NAIVE])]
            print(f"ratio: {prefix}{WRITE_BEHIND} / {NAIVE} = {mean[prefix + WRITE_BEHIND] / mean[NAIVE]:.3f}x"
                  f" (target <= 1.05x; median of the rounds {statistics.median(per_round):.3f}x,"
                  f" each {[round(r, 3) for r in per_round]})")


if __name__ == "__main__":
    main()
