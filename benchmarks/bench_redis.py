"""The Redis checkpointer against PostgresSaver, side by side in one run, on the same real graph.

Both stores are durable (Redis: appendonly yes + appendfsync always; PostgreSQL: fsync on),
or both are not (--fast). The demo's support agent (a Send fan-out, a subgraph) runs turn
by turn on both, interleaved, so drift on a shared machine hits them alike. Reported:

- put and get_tuple latency (p50/p99) as the graph calls them, plus a get_tuple sweep over
  stored checkpoints (latest and historical, interleaved);
- memory per checkpoint: Redis ``INFO memory`` used_memory delta, PostgreSQL table sizes,
  each divided by the checkpoints stored;
- backfill throughput from the PostgreSQL store into Redis: dualsaver.backfill() (native,
  pipelined) against the naive loop through the public API (list + put + put_writes).

Ratios are Redis / PostgreSQL (latency, memory) and backfill / naive (throughput).

    python benchmarks/bench_redis.py [--turns 200] [--reads 1000] [--fast]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres import PostgresSaver

from dualsaver.demo.app import QUESTIONS, build_support_agent, say
from dualsaver.embedded import EmbeddedPostgres, EmbeddedRedis
from dualsaver.redis import RedisSaver, open_redis_saver
from dualsaver.stores import native_for

PG_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_arguments(doc: str | None, turns: int, reads: int, per: str) -> argparse.Namespace:
    """The options every latency benchmark here takes: graph turns and reads per `per`, --fast."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=turns, help=f"graph turns per {per}")
    parser.add_argument("--reads", type=int, default=reads, help=f"get_tuple sweep size per {per}")
    parser.add_argument("--fast", action="store_true", help="no fsync on either store")
    return parser.parse_args()


def print_ratios(names: tuple[str, str], rows: Sequence[tuple[str, Sequence[float], Sequence[float]]]) -> None:
    """p50 and p99 of two stores' latency samples side by side, and their ratios (first / second)."""
    a, b = names
    print(f"{'latency (ms)':<28}{a + ' p50':>14}{'p99':>8}{b + ' p50':>14}{'p99':>8}{'ratio p50':>11}{'p99':>7}")
    for label, first, second in rows:
        p50a, p99a, p50b, p99b = (percentile(s, q) for s in (first, second) for q in (0.5, 0.99))
        print(f"{label:<28}{p50a:>14.3f}{p99a:>8.3f}{p50b:>14.3f}{p99b:>8.3f}{p50a / p50b:>10.2f}x{p99a / p99b:>6.2f}x")


class Timed(BaseCheckpointSaver):
    """Delegates to a saver and times the calls the graph makes."""

    def __init__(self, inner: BaseCheckpointSaver) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.samples: dict[str, list[float]] = {"put": [], "get_tuple": []}

    def _timed(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.samples[name].append((time.perf_counter() - started) * 1000)

    def get_tuple(self, config: Any) -> Any:
        return self._timed("get_tuple", self.inner.get_tuple, config)

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return self._timed("put", self.inner.put, config, checkpoint, metadata, new_versions)

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        self.inner.put_writes(config, writes, task_id, task_path)

    def list(self, config: Any, **kwargs: Any) -> Iterator[Any]:
        return self.inner.list(config, **kwargs)

    def get_next_version(self, current: Any, channel: Any) -> Any:
        return self.inner.get_next_version(current, channel)

    def get_delta_channel_history(self, **kwargs: Any) -> Any:
        return self.inner.get_delta_channel_history(**kwargs)


def pg_bytes(saver: PostgresSaver) -> int:
    with saver._cursor() as cur:
        cur.execute("SELECT " + " + ".join(f"pg_total_relation_size('{t}')" for t in PG_TABLES) + " AS n")
        return int(cur.fetchone()["n"])


def pg_count(saver: PostgresSaver) -> int:
    with saver._cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM checkpoints")
        return int(cur.fetchone()["n"])


def redis_bytes(saver: RedisSaver) -> int:
    return int(saver.client.info("memory")["used_memory"])


def naive_copy(source: BaseCheckpointSaver, target: BaseCheckpointSaver, threads: Sequence[str]) -> int:
    """What a team writes without dualsaver: replay the public API, oldest first."""
    copied = 0
    for thread in threads:
        tuples = sorted(source.list({"configurable": {"thread_id": thread}}), key=lambda t: t.checkpoint["id"])
        for tup in tuples:
            conf = tup.config["configurable"]
            parent = tup.parent_config["configurable"]["checkpoint_id"] if tup.parent_config else None
            config = {"configurable": {"thread_id": thread, "checkpoint_ns": conf["checkpoint_ns"]}}
            if parent:
                config["configurable"]["checkpoint_id"] = parent
            stored = target.put(config, tup.checkpoint, tup.metadata, tup.checkpoint["channel_versions"])
            by_task: dict[str, list[tuple[str, Any]]] = {}
            for task_id, channel, value in tup.pending_writes or []:
                by_task.setdefault(task_id, []).append((channel, value))
            for task_id, writes in by_task.items():
                target.put_writes(stored, writes, task_id)
            copied += 1
    return copied


def main() -> None:
    args = latency_arguments(__doc__, 200, 1000, "store")
    durable = not args.fast

    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedPostgres(durable=durable) as pg,
        EmbeddedRedis(appendonly=durable, appendfsync="always") as redis_server,
    ):
        with (
            PostgresSaver.from_conn_string(pg.create_database("bench")) as pg_saver,
            open_redis_saver(redis_server.url, prefix="bench") as redis_saver,
        ):
            pg_saver.setup()
            base = {"redis": redis_bytes(redis_saver), "postgres": pg_bytes(pg_saver)}
            timed = {"redis": Timed(redis_saver), "postgres": Timed(pg_saver)}
            apps = {name: build_support_agent(saver) for name, saver in timed.items()}
            threads: list[str] = []
            started = time.perf_counter()
            for turn in range(args.turns):
                thread = f"conv-{turn // len(QUESTIONS)}"
                if thread not in threads:
                    threads.append(thread)
                for app in apps.values():
                    say(app, thread, QUESTIONS[turn % len(QUESTIONS)])
            graph_s = time.perf_counter() - started

            # A get_tuple sweep: the same (thread, rank) on both stores, latest half the time.
            savers = {"redis": redis_saver, "postgres": pg_saver}
            history = {
                name: {t: [c.config for c in s.list({"configurable": {"thread_id": t, "checkpoint_ns": ""}})] for t in threads}
                for name, s in savers.items()
            }
            rng = random.Random(7)
            sweep: dict[str, list[float]] = {"redis": [], "postgres": []}
            for _ in range(args.reads):
                thread = rng.choice(threads)
                rank = rng.randrange(len(history["postgres"][thread])) if rng.random() < 0.5 else None
                for name, saver in savers.items():
                    config = history[name][thread][rank] if rank is not None else {
                        "configurable": {"thread_id": thread, "checkpoint_ns": ""}
                    }
                    began = time.perf_counter()
                    assert saver.get_tuple(config) is not None
                    sweep[name].append((time.perf_counter() - began) * 1000)

            count = pg_count(pg_saver)
            redis_count = sum(len(native_for(redis_saver).checkpoint_keys(t)) for t in threads)
            assert redis_count == count, (redis_count, count)
            per_cp = {
                "redis": (redis_bytes(redis_saver) - base["redis"]) / count,
                "postgres": (pg_bytes(pg_saver) - base["postgres"]) / count,
            }

            print(f"{args.turns} turns on {len(threads)} threads per store, {count} checkpoints each "
                  f"({'durable' if durable else 'no fsync'}; graph phase {graph_s:.1f}s)")
            print_ratios(("redis", "pg"), [
                ("put (graph)", timed["redis"].samples["put"], timed["postgres"].samples["put"]),
                ("get_tuple (graph)", timed["redis"].samples["get_tuple"], timed["postgres"].samples["get_tuple"]),
                ("get_tuple (sweep)", sweep["redis"], sweep["postgres"]),
            ])
            print(f"memory per checkpoint: redis {per_cp['redis']:.0f} B, postgres {per_cp['postgres']:.0f} B, "
                  f"ratio {per_cp['redis'] / per_cp['postgres']:.2f}x")

            # Backfill PostgreSQL -> Redis: the native job against the naive public-API loop.
            try:
                from dualsaver.migrate import backfill
            except ImportError:
                print("backfill: dualsaver.backfill() not available; skipped")
                return
            with (
                open_redis_saver(redis_server.url, prefix="naive") as naive_target,
                open_redis_saver(redis_server.url, prefix="backfill") as job_target,
            ):
                began = time.perf_counter()
                naive = naive_copy(pg_saver, naive_target, threads)
                naive_s = time.perf_counter() - began
                began = time.perf_counter()
                result = backfill(pg_saver, job_target, state_path=Path(tmp) / "state.json")
                job_s = time.perf_counter() - began
                assert result.checkpoints == count and result.failed == 0, result.summary()
            naive_rate, job_rate = naive / naive_s, result.checkpoints / job_s
            print(f"backfill into redis: dualsaver {job_rate:.0f} checkpoints/s ({'exact' if result.exact else 'approx'}),"
                  f" naive loop {naive_rate:.0f} checkpoints/s, ratio {job_rate / naive_rate:.2f}x")


if __name__ == "__main__":
    main()
