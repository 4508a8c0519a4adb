"""Backfill SQLite -> dualsaver's Redis saver, against Redis's own ingest of the same keys and
against reading the source alone, before and after in one run; with `--reverse`, Redis ->
SQLite (a rollback's direction).

    python benchmarks/bench_backfill_redis.py [--checkpoints 20000] [--rounds 3] [--graph backfill|support]
                                              [--reverse] [--baseline DIR]

The source is bench_backfill's (a real graph with a subgraph, parallel Send branches, a
DeltaChannel and an interrupt, replicated under new ids; `--graph support`: the check's
support agent, short threads with messages, a set and a datetime). The target is an embedded
Redis server with durable settings (appendonly, appendfsync always). Each tree is measured in
a fresh interpreter of its own, the trees alternately (`_trees`), medians of `--rounds`;
microseconds a checkpoint:

- read alone:    every thread read as that tree's copy reads it for this target (stored bytes
                 kept where they pass through), sixteen threads a query;
- Redis ingest:  the keys the backfill wrote, each `DUMP`ed beforehand (untimed) and put back
                 with `RESTORE`, pipelined a thousand at a time, into the emptied server: Redis
                 taking the same data in its own serialized form, the store's side of the limit;
- backfill:      `dualsaver.backfill(old, new)` into the emptied server (one process, exact,
                 resumable), its wall time and CPU (this process's; the server's apart).

The copy reads, encodes and writes under one GIL while the server runs its scripts on the
other core, so read alone + Redis ingest is about what it can approach.

With `--reverse` the source's history is copied into Redis first (untimed, by this tree), and
each tree copies it from there into a fresh SQLite file: read alone (Redis read as that tree's
copy reads it for SQLite) and backfill, its wall time and CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _trees import add_arguments, alternately, child_prints, print_table, tree_path

sys.path.insert(0, tree_path())

from _copies import read_alone, timed_backfill  # noqa: E402
from dualsaver.migrate import backfill  # noqa: E402
from dualsaver.stores import open_saver  # noqa: E402

SOURCE, TARGET, SERVER_PID = "BENCH_SOURCE_URL", "BENCH_TARGET_URL", "BENCH_SERVER_PID"  # not argv: see bench_check


def server_cpu() -> float:
    """CPU seconds the Redis server has used (its utime + stime)."""
    fields = Path(f"/proc/{os.environ[SERVER_PID]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_ingest(client, n: int) -> float:
    """Seconds Redis takes to RESTORE every key the backfill wrote (DUMPed first, untimed)."""
    keys = list(client.scan_iter(count=1000))
    dumps = []
    for i in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[i : i + 1000]:
            pipe.dump(key)
        dumps += pipe.execute()
    client.flushall()
    t0 = time.perf_counter()
    for i in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key, dumped in zip(keys[i : i + 1000], dumps[i : i + 1000]):
            pipe.restore(key, 0, dumped)
        pipe.execute()
    return time.perf_counter() - t0


def measure(source_url: str, target_url: str, tmp: Path) -> dict[str, float]:
    import redis

    client = redis.Redis.from_url(target_url)
    figures = {}
    with open_saver(source_url) as old, open_saver(target_url) as new:
        figures["read alone"], n = read_alone(old, new)
        client.flushall()
        server0 = server_cpu()
        figures["backfill"], figures["backfill CPU"], result = timed_backfill(old, new, tmp / "state")
        figures["server CPU"] = server_cpu() - server0
        assert result.checkpoints == n
        figures["Redis ingest"] = redis_ingest(client, n)
    client.flushall()
    return {what: seconds / n * 1e6 for what, seconds in figures.items()}


def measure_reverse(source_url: str, tmp: Path) -> dict[str, float]:
    """Redis (`source_url`) -> a fresh SQLite file."""
    figures = {}
    with open_saver(source_url) as old, open_saver(f"sqlite:///{tmp / 'copy.sqlite'}") as new:
        figures["read alone"], n = read_alone(old, new)
        figures["backfill"], figures["backfill CPU"], result = timed_backfill(old, new, tmp / "state")
        assert result.checkpoints == n
    return {what: seconds / n * 1e6 for what, seconds in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--graph", choices=("backfill", "support"), default="backfill")
    parser.add_argument("--reverse", action="store_true", help="Redis -> SQLite instead")
    add_arguments(parser)
    args = parser.parse_args()
    if args.tree is not None:
        with tempfile.TemporaryDirectory() as tmp:
            if args.reverse:
                child_prints(args.tree, measure_reverse(os.environ[TARGET], Path(tmp)))
            else:
                child_prints(args.tree, measure(os.environ[SOURCE], os.environ[TARGET], Path(tmp)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_backfill import make_source

    from dualsaver.embedded import EmbeddedRedis

    with EmbeddedRedis(appendonly=True) as server, tempfile.TemporaryDirectory() as tmp:
        count = make_source(Path(tmp) / "source.sqlite", args.checkpoints, args.graph)
        os.environ.update({SOURCE: f"sqlite:///{Path(tmp) / 'source.sqlite'}", TARGET: server.url,
                           SERVER_PID: str(server._proc.pid)})
        if args.reverse:
            with open_saver(os.environ[SOURCE]) as old, open_saver(server.url) as new:
                backfill(old, new, state_path=Path(tmp) / "fill", resume=False)
        medians = alternately(__file__, ["--reverse"] if args.reverse else [], args.baseline, args.rounds)
    direction = "Redis (durable) -> SQLite" if args.reverse else "SQLite -> Redis (durable)"
    print(f"\n{direction}, {count} checkpoints ({args.graph} graph); us a checkpoint, median of {args.rounds} rounds")
    print_table(medians, 14)
    if args.reverse:
        here = medians["this tree"]
        if "baseline" in medians:
            print(f"\nbackfill, this tree / baseline: {here['backfill'] / medians['baseline']['backfill']:.2f}x")
        return
    here = medians["this tree"]
    limit = here["read alone"] + here["Redis ingest"]
    print(f"\nbackfill / (read alone + Redis ingest): {here['backfill'] / limit:.2f}x; / Redis ingest:"
          f" {here['backfill'] / here['Redis ingest']:.2f}x (this tree)")
    if "baseline" in medians:
        print(f"backfill, this tree / baseline: {here['backfill'] / medians['baseline']['backfill']:.2f}x")


if __name__ == "__main__":
    main()
