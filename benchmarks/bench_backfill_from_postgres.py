"""Backfill PostgreSQL -> SQLite (a rollback's direction) of many short threads, against reading
the source and writing the target alone, before and after in one run.

    python benchmarks/bench_backfill_from_postgres.py [--checkpoints 20000] [--rounds 3] [--baseline DIR]

The source is the check's support agent (`tests/check_support.py`: about 10 checkpoints a
thread, messages, a set and a datetime in its state), replicated under new ids to reach the
size, in a PostgreSQL database of an embedded server (durable settings). Each tree is measured
in a fresh interpreter of its own, the trees alternately (`_trees`), medians of `--rounds`;
microseconds a checkpoint:

- read alone:  every thread read as that tree's copy reads it (stored bytes kept: the writes',
               and, where SQLite takes them, the blobs'), a hundred threads a query: the source's
               side of the limit;
- write alone: the same rows, read and encoded beforehand (untimed), written into a fresh SQLite
               file by our batches: the target's side;
- backfill:    `dualsaver.backfill(old, new)` into a fresh SQLite file (one process, exact,
               resumable), and its CPU a checkpoint.

The copy reads and writes in turn under one GIL, so the sum of the two sides is about what it
can approach; the threads are short, so what a copy pays per thread (a query or round trip per
thread, before this round) shows here.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

from _trees import add_arguments, alternately, child_prints, print_table, tree_path

sys.path.insert(0, tree_path())

from _copies import timed_backfill  # noqa: E402
from dualsaver.heap import fewer_collections  # noqa: E402
from dualsaver.migrate import backfill  # noqa: E402
from dualsaver.migrate._flow import read_options  # noqa: E402
from dualsaver.stores import native_for, open_saver  # noqa: E402


SOURCE = "BENCH_SOURCE_URL"  # the source's URL, for the measuring children


def measure(source_url: str, tmp: Path) -> dict[str, float]:
    figures = {}
    with open_saver(source_url) as old, open_saver(f"sqlite:///{tmp / 'options.sqlite'}") as probe:
        store = native_for(old)
        ids = sorted(store.thread_ids())
        options = read_options(store, native_for(probe))  # as this tree's copy reads the source
        gc.collect()
        with fewer_collections():
            t0 = time.perf_counter()
            items = [item for i in range(0, len(ids), 100) for item in store.read_threads(ids[i : i + 100], **options)]
            figures["read alone"] = time.perf_counter() - t0
        n = len(items)
        with open_saver(f"sqlite:///{tmp / 'alone.sqlite'}") as new:
            target = native_for(new)
            batches = [target.prepare_write(items[i : i + 1000]) for i in range(0, n, 1000)]
            t0 = time.perf_counter()
            for batch in batches:
                target.write_prepared(batch)
            figures["write alone"] = time.perf_counter() - t0
        del items, batches
        with open_saver(f"sqlite:///{tmp / 'copy.sqlite'}") as new:
            figures["backfill"], figures["backfill CPU"], result = timed_backfill(old, new, tmp / "state")
        assert result.checkpoints == n
    return {what: seconds / n * 1e6 for what, seconds in figures.items()}


def source(pg, tmp: Path, checkpoints: int) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_backfill import make_source

    make_source(tmp / "source.sqlite", checkpoints, "support")
    url = pg.create_database("bench_from_postgres")
    with open_saver(f"sqlite:///{tmp / 'source.sqlite'}") as sqlite, open_saver(url) as postgres:
        backfill(sqlite, postgres, state_path=tmp / "source-state")
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    add_arguments(parser)
    args = parser.parse_args()
    if args.tree is not None:
        with tempfile.TemporaryDirectory() as tmp:
            child_prints(args.tree, measure(os.environ[SOURCE], Path(tmp)))
        return
    from dualsaver.embedded import EmbeddedPostgres

    with EmbeddedPostgres(durable=True) as pg, tempfile.TemporaryDirectory() as tmp:
        url = source(pg, Path(tmp), args.checkpoints)
        os.environ[SOURCE] = url  # the children's (not in their command line: a failure prints that)
        medians = alternately(__file__, [], args.baseline, args.rounds)
    print(f"\nPostgreSQL -> SQLite, {args.checkpoints} checkpoints of short threads; us a checkpoint, median of"
          f" {args.rounds} rounds")
    print_table(medians, 16)
    here = medians["this tree"]
    limit = here["read alone"] + here["write alone"]
    print(f"\nbackfill / (read alone + write alone): {here['backfill'] / limit:.2f}x (this tree)")
    if "baseline" in medians:
        print(f"backfill, this tree / baseline: {here['backfill'] / medians['baseline']['backfill']:.2f}x")


if __name__ == "__main__":
    main()
