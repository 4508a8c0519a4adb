"""The official LangGraph Redis saver, measured side by side in one run.

1. Latency: the official `RedisSaver` (RedisJSON documents, RediSearch) against dualsaver's
   plain-Redis `RedisSaver` (hashes and Lua), on the same Redis 8 server, the demo's support
   agent (messages, a Send fan-out, a subgraph) driven turn by turn on both, interleaved so
   drift on a shared machine hits them alike: put and get_tuple as the graph calls them, and
   a get_tuple sweep over stored checkpoints (latest and historical). Ratio: official / plain.
2. Backfill into the official saver: SQLite -> official Redis with dualsaver.backfill()
   (native documents, one Lua script per checkpoint, pipelined) against the naive loop
   through the public API (list + put + put_writes per checkpoint). Ratio: backfill / naive.

Both Redis servers persist with ``appendonly yes`` + ``appendfsync always`` unless --fast.
No thresholds: this prints figures; tests never time anything.

    python benchmarks/bench_langgraph_redis.py [--turns 120] [--reads 600] [--fast]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_redis import Timed, latency_arguments, naive_copy, print_ratios

from dualsaver.checker import check
from dualsaver.demo.app import QUESTIONS, build_support_agent, say
from dualsaver.embedded import EmbeddedRedisStack
from dualsaver.migrate import backfill
from dualsaver.stores import native_for, open_saver


def _latency(args: argparse.Namespace, durable: bool) -> tuple[Any, list[str]]:
    with EmbeddedRedisStack(appendonly=durable) as server:
        with open_saver(server.langgraph_url) as official, open_saver(server.url + "?prefix=plain") as plain:
            timed = {"official": Timed(official), "plain": Timed(plain)}
            apps = {name: build_support_agent(saver) for name, saver in timed.items()}
            threads: list[str] = []
            for turn in range(args.turns):
                thread = f"conv-{turn // len(QUESTIONS)}"
                if thread not in threads:
                    threads.append(thread)
                for app in apps.values():
                    say(app, thread, QUESTIONS[turn % len(QUESTIONS)])
            savers = {"official": official, "plain": plain}
            root = {t: {"configurable": {"thread_id": t, "checkpoint_ns": ""}} for t in threads}
            history = {  # each store's own ids, newest first: the same rank on both
                name: {t: sorted((c.config for c in saver.list(root[t]) if c.config["configurable"]["checkpoint_ns"] == ""),
                                 key=lambda c: c["configurable"]["checkpoint_id"], reverse=True) for t in threads}
                for name, saver in savers.items()
            }
            rng = random.Random(7)
            sweep: dict[str, list[float]] = {"official": [], "plain": []}
            for _ in range(args.reads):
                thread = rng.choice(threads)
                rank = rng.randrange(len(history["plain"][thread])) if rng.random() < 0.5 else None
                for name, saver in savers.items():
                    config = root[thread] if rank is None else history[name][thread][rank]
                    began = time.perf_counter()
                    assert saver.get_tuple(config) is not None
                    sweep[name].append((time.perf_counter() - began) * 1000)
            counts = {name: sum(len(native_for(s).checkpoint_keys(t)) for t in threads) for name, s in savers.items()}
            assert counts["official"] == counts["plain"], counts
            print(f"{args.turns} turns on {len(threads)} threads per saver, {counts['plain']} checkpoints each"
                  f" ({'durable' if durable else 'no fsync'}), Redis 8 + RedisJSON + RediSearch")
            print_ratios(("official", "plain"), [
                ("put (graph)", timed["official"].samples["put"], timed["plain"].samples["put"]),
                ("get_tuple (graph)", timed["official"].samples["get_tuple"], timed["plain"].samples["get_tuple"]),
                ("get_tuple (sweep)", sweep["official"], sweep["plain"]),
            ])
            return counts["plain"], threads


def _backfill(tmp: Path, args: argparse.Namespace, durable: bool) -> None:
    source_url = f"sqlite:///{tmp / 'source.sqlite'}"
    with open_saver(source_url) as source:
        app = build_support_agent(source)
        threads = sorted({f"conv-{turn // len(QUESTIONS)}" for turn in range(args.turns)})
        for turn in range(args.turns):
            say(app, f"conv-{turn // len(QUESTIONS)}", QUESTIONS[turn % len(QUESTIONS)])
        count = sum(len(native_for(source).checkpoint_keys(t)) for t in threads)
        # Two servers: the official saver's write registry keys ignore its prefix.
        with EmbeddedRedisStack(appendonly=durable) as a, EmbeddedRedisStack(appendonly=durable) as b:
            with open_saver(a.langgraph_url) as naive_target, open_saver(b.langgraph_url) as job_target:
                began = time.perf_counter()
                naive = naive_copy(source, naive_target, threads)
                naive_s = time.perf_counter() - began
                began = time.perf_counter()
                result = backfill(source, job_target, state_path=":memory:")
                job_s = time.perf_counter() - began
                assert result.checkpoints == count == naive and result.failed == 0, result.summary()
                assert check(source, job_target).clean
    naive_rate, job_rate = naive / naive_s, result.checkpoints / job_s
    print(f"backfill SQLite -> official Redis, {count} checkpoints: dualsaver {job_rate:.0f} checkpoints/s"
          f" ({'exact' if result.exact else 'approx'}, check clean), naive loop {naive_rate:.0f} checkpoints/s,"
          f" ratio {job_rate / naive_rate:.2f}x")


def main() -> None:
    args = latency_arguments(__doc__, 120, 600, "saver")
    durable = not args.fast
    _latency(args, durable)
    with tempfile.TemporaryDirectory() as tmp:
        _backfill(Path(tmp), args, durable)


if __name__ == "__main__":
    main()
