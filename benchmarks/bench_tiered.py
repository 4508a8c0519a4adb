"""TieredSaver (PostgreSQL durable, Redis hot) against each store alone, side by side in one run.

The demo's support agent (a Send fan-out, a subgraph) runs turn by turn on three
checkpointers, interleaved so drift on a shared machine hits them alike: PostgreSQL alone,
Redis alone, and TieredSaver over a second PostgreSQL database and a second Redis prefix.
Reported, p50 and p99:

- get_tuple as the graph calls it, and a sweep of latest-checkpoint reads over the threads
  (every tiered read checks the hot answer against the durable store's newest key, at the
  same time: see dualsaver/saver/_tier_plans.py);
- invoke latency of a whole turn.

Targets: tiered reads within 1.2x of Redis alone; invoke within 1.1x of PostgreSQL alone.
Both stores are durable (PostgreSQL fsync on; Redis appendonly + appendfsync always), or
neither (--fast).

    python benchmarks/bench_tiered.py [--turns 200] [--reads 1000] [--fast]
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from langgraph.checkpoint.postgres import PostgresSaver  # noqa: E402

from bench_redis import Timed, latency_arguments, percentile  # noqa: E402
from dualsaver import TieredSaver  # noqa: E402
from dualsaver.demo.app import QUESTIONS, build_support_agent, say  # noqa: E402
from dualsaver.embedded import EmbeddedPostgres, EmbeddedRedis  # noqa: E402
from dualsaver.redis import open_redis_saver  # noqa: E402


def main() -> None:
    args = latency_arguments(__doc__, 200, 1000, "checkpointer")
    durable = not args.fast
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedPostgres(durable=durable) as pg,
        EmbeddedRedis(appendonly=durable, appendfsync="always") as redis_server,
        PostgresSaver.from_conn_string(pg.create_database("alone")) as pg_alone,
        PostgresSaver.from_conn_string(pg.create_database("tiered")) as pg_durable,
        open_redis_saver(redis_server.url, prefix="alone") as redis_alone,
        open_redis_saver(redis_server.url, prefix="tiered") as redis_hot,
    ):
        pg_alone.setup()
        pg_durable.setup()
        tiered = TieredSaver(pg_durable, redis_hot, journal=Path(tmp) / "journal.sqlite")
        savers = {"postgres": pg_alone, "redis": redis_alone, "tiered": tiered}
        timed = {name: Timed(saver) for name, saver in savers.items()}
        apps = {name: build_support_agent(saver) for name, saver in timed.items()}
        turns: dict[str, list[float]] = {name: [] for name in savers}
        threads: list[str] = []
        for turn in range(args.turns):
            thread = f"conv-{turn // len(QUESTIONS)}"
            if thread not in threads:
                threads.append(thread)
            for name, app in apps.items():
                began = time.perf_counter()
                say(app, thread, QUESTIONS[turn % len(QUESTIONS)])
                turns[name].append((time.perf_counter() - began) * 1000)

        rng = random.Random(7)
        sweep: dict[str, list[float]] = {name: [] for name in savers}
        for _ in range(args.reads):
            config = {"configurable": {"thread_id": rng.choice(threads), "checkpoint_ns": ""}}
            for name, saver in savers.items():
                began = time.perf_counter()
                assert saver.get_tuple(config) is not None
                sweep[name].append((time.perf_counter() - began) * 1000)
        stats = tiered.stats
        tiered.close()

    print(f"{args.turns} turns on {len(threads)} threads per checkpointer ({'durable' if durable else 'no fsync'})")
    print(f"tiered reads: {stats}")
    header = f"{'latency (ms)':<24}" + "".join(f"{n + ' p50':>14}{'p99':>8}" for n in savers)
    print(header + f"{'tiered/redis':>14}{'tiered/pg':>11}")
    rows = [
        ("get_tuple (graph)", {n: t.samples["get_tuple"] for n, t in timed.items()}),
        ("get_tuple (sweep)", sweep),
        ("invoke (a turn)", turns),
    ]
    for label, samples in rows:
        p50 = {n: percentile(s, 0.5) for n, s in samples.items()}
        p99 = {n: percentile(s, 0.99) for n, s in samples.items()}
        line = f"{label:<24}" + "".join(f"{p50[n]:>14.3f}{p99[n]:>8.3f}" for n in savers)
        line += f"{p50['tiered'] / p50['redis']:>11.2f}x/{p99['tiered'] / p99['redis']:.2f}x"
        line += f"{p50['tiered'] / p50['postgres']:>7.2f}x/{p99['tiered'] / p99['postgres']:.2f}x"
        print(line)
    print("targets: get_tuple within 1.2x of Redis alone; invoke within 1.1x of PostgreSQL alone (p50)")


if __name__ == "__main__":
    main()
