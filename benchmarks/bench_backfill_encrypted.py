"""Backfill between two encrypted stores (SQLite -> PostgreSQL, each opened with a serializer of
its own under one AES key, as `--old-serde encrypted --new-serde encrypted` opens them), and the
check of the pair, before and after in one run.

    python benchmarks/bench_backfill_encrypted.py [--checkpoints 4000] [--rounds 3] [--baseline DIR]

The source is the check's support agent (`tests/check_support.py`: messages, a set and a
datetime in its state), replicated under new ids to reach the size, in a SQLite file written
through LangGraph's `EncryptedSerializer` (pycryptodome's AES-EAX). Each tree is measured in a
fresh interpreter of its own, the trees alternately (`_trees`), medians of `--rounds`;
microseconds a checkpoint:

- read alone:  every thread read decoded (each value decrypted), a hundred threads a query;
- backfill:    `dualsaver.backfill(old, new)` into a fresh PostgreSQL database (durable
               settings), one process, exact; and its CPU a checkpoint;
- check:       `dualsaver.check(old, new)` of the copied pair.

Where the two serializers are known to decrypt each other's bytes, the writes' and values'
ciphertext can pass through as stored; otherwise every value is decrypted, decoded, encoded
and encrypted again (about 150 us for each of the two AES steps).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _trees import add_arguments, alternately, child_prints, print_table, tree_path

sys.path.insert(0, tree_path())

from _copies import timed_backfill  # noqa: E402
from dualsaver.checker import check  # noqa: E402
from dualsaver.heap import fewer_collections  # noqa: E402
from dualsaver.stores import native_for, open_saver  # noqa: E402
from tests.check_support import encrypted_serde as encrypted  # noqa: E402  (the tree's own, one AES key)

SOURCE, SERVER = "BENCH_SOURCE_URL", "BENCH_SERVER_URL"  # for the measuring children (not argv: a failure prints it)


def fresh_database(server_url: str) -> str:
    import psycopg

    name = f"enc_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def measure(source_url: str, server_url: str, tmp: Path) -> dict[str, float]:
    figures = {}
    with open_saver(source_url, serde=encrypted()) as old:
        store = native_for(old)
        ids = sorted(store.thread_ids())
        gc.collect()
        with fewer_collections():
            t0 = time.perf_counter()
            n = sum(1 for i in range(0, len(ids), 100) for _ in store.read_threads(ids[i : i + 100]))
            figures["read alone"] = time.perf_counter() - t0
        with open_saver(fresh_database(server_url), serde=encrypted()) as new:
            figures["backfill"], figures["backfill CPU"], result = timed_backfill(old, new, tmp / "state")
            assert result.checkpoints == n
            t0 = time.perf_counter()
            assert check(old, new).clean
            figures["check"] = time.perf_counter() - t0
    return {what: seconds / n * 1e6 for what, seconds in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    add_arguments(parser)
    args = parser.parse_args()
    if args.tree is not None:
        with tempfile.TemporaryDirectory() as tmp:
            child_prints(args.tree, measure(os.environ[SOURCE], os.environ[SERVER], Path(tmp)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_backfill import make_source
    from dualsaver.embedded import EmbeddedPostgres
    from dualsaver.migrate import backfill

    with EmbeddedPostgres(durable=True) as pg, tempfile.TemporaryDirectory() as tmp:
        make_source(Path(tmp) / "plain.sqlite", args.checkpoints, "support")
        source_url = f"sqlite:///{Path(tmp) / 'source.sqlite'}"
        with open_saver(f"sqlite:///{Path(tmp) / 'plain.sqlite'}") as plain, open_saver(
            source_url, serde=encrypted()
        ) as source:
            backfill(plain, source, state_path=Path(tmp) / "source-state")
        os.environ[SOURCE], os.environ[SERVER] = source_url, pg.url
        medians = alternately(__file__, [], args.baseline, args.rounds)
    print(f"\nencrypted SQLite -> encrypted PostgreSQL (one AES key, a serializer each), {args.checkpoints}"
          f" checkpoints; us a checkpoint, median of {args.rounds} rounds")
    print_table(medians, 16)
    if "baseline" in medians:
        here, base = medians["this tree"], medians["baseline"]
        for what in ("backfill", "check"):
            print(f"{what}, this tree / baseline: {here[what] / base[what]:.2f}x")


if __name__ == "__main__":
    main()
