"""Benchmark: `check` of SQLite against PostgreSQL (or Redis) vs reading both stores, in one run.

    python benchmarks/bench_check.py [--checkpoints 52000] [--serde same different] [--repeat 2] [--processes 1 2]
                                     [--target postgres redis]

For each size (checkpoints per store), target and serializer pairing, the same history sits
in a SQLite file (default serializer) and the target (an embedded server on 127.0.0.1: a
PostgreSQL database, or dualsaver's Redis saver on a Redis server), with the default
serializer for "same", an encrypted one for "different". Measured side by side, alternating,
best of `--repeat`:

- **raw rows**: every row of both stores read undecoded by the fastest means each offers
  (SQLite: a plain SELECT of every row of its two tables; PostgreSQL: `COPY ... TO STDOUT
  (FORMAT binary)` of its three tables; Redis: each thread's three hashes, HGETALL,
  pipelined a hundred threads at a time);
- **read decoded**: every thread read natively from both stores, decoded, a hundred threads a
  query (`read_threads`; `read_thread` before this round);
- **check, decoded**: `check(old, new, compare="decoded")`, every value decoded and digested
  (what the check did before it compared bytes);
- **check**: `dualsaver.check(old, new)` (bytes first where the serializers match);
- **start-up**: a check of one absent thread (fixed cost, reported apart and subtracted);
- **in N processes**: `check(old_url, new_url, processes=N)` for each N of `--processes`
  (the stores opened by each process from their URLs), its own start-up (a check of one
  absent thread in N processes) reported apart and subtracted.

Targets: same serializer, check / raw rows <= 2; different serializers, check / read decoded
<= 1.25. Peak memory (tracemalloc) of one check is measured in a separate pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualsaver.checker import check
from dualsaver.embedded import EmbeddedPostgres, EmbeddedRedis
from dualsaver.heap import fewer_collections
from dualsaver.stores import native_for, open_saver
from tests import check_support as cs

BASE_THREADS = 12  # threads produced by the real graph; the rest are copies under new ids


def build(old, new, checkpoints: int) -> int:
    """Fill both stores with about `checkpoints` checkpoints; returns the exact count."""
    cs.populate(old, [f"base-{i}" for i in range(BASE_THREADS)])
    src = native_for(old)
    base = {t: list(src.read_thread(t)) for t in src.thread_ids()}
    per_copy = sum(len(v) for v in base.values())
    copies = max(1, round(checkpoints / per_copy))
    old_native, new_native = native_for(old), native_for(new)
    new_native.write_checkpoints([row for rows in base.values() for row in rows])
    for k in range(1, copies):
        rows = [
            dataclasses.replace(row, thread_id=f"{t}-copy{k:04d}")
            for t, items in base.items()
            for row in items
        ]
        old_native.write_checkpoints(rows)
        new_native.write_checkpoints(rows)
    return per_copy * copies


def read_both(old, new) -> int:
    """Every checkpoint of both stores read decoded, by the fastest means each offers: a
    hundred threads a query where the store reads several at once (`read_threads`)."""
    n = 0
    for store in (native_for(old), native_for(new)):
        ids = list(store.thread_ids())
        for i in range(0, len(ids), 100):
            batch = ids[i : i + 100]
            items = store.read_threads(batch) if hasattr(store, "read_threads") else (
                item for t in batch for item in store.read_thread(t)
            )
            for _ in items:
                n += 1
    return n


def read_raw(old, new) -> int:
    """Every row of both stores, undecoded: SQLite's SELECT, PostgreSQL's binary COPY, or
    Redis's hashes."""
    n = 0
    for table in ("checkpoints", "writes"):
        for _ in old.conn.execute(f"SELECT * FROM {table}"):
            n += 1
    if hasattr(new, "client"):  # dualsaver's Redis saver: each thread's checkpoints, blobs, writes
        ids = list(native_for(new).thread_ids())
        for i in range(0, len(ids), 100):
            pipe = new.client.pipeline(transaction=False)
            for t in ids[i : i + 100]:
                for key in new._keys(t)[1:]:
                    pipe.hgetall(key)
            n += sum(len(reply) for reply in pipe.execute())
        return n
    with native_for(new)._connection() as conn, conn.cursor() as cur:
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            with cur.copy(f"COPY {table} TO STDOUT (FORMAT binary)") as copy:
                for block in copy:
                    n += len(block)
    return n


def timed(fn) -> float:
    """Seconds `fn` takes, the collector held back as the check holds it (`dualsaver.heap`),
    so that the readings it is compared with run under the same collector."""
    gc.collect()
    with fewer_collections():
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def peak_mb(fn) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


BASELINE = """
import os, sys, time
from dualsaver.checker import check
from dualsaver.stores import open_saver
from tests import check_support as cs
old_url, new_url = os.environ["BENCH_OLD_URL"], os.environ["BENCH_NEW_URL"]  # not argv: a failure prints it
with open_saver(old_url) as old, open_saver(new_url, serde=cs.encrypted_serde() if sys.argv[1] == "different" else None) as new:
    assert check(old, new).clean  # warm, as this process's check is: imports, prepared statements, scripts
    t0 = time.perf_counter(); assert check(old, new).clean; print(time.perf_counter() - t0)
"""


def baseline(tree: str, old_url: str, new_url: str, pairing: str) -> float:
    """The check of another source tree (`--baseline`, say a copy of main) on the same stores,
    in a process of its own: its second check, as ours is timed after warm runs (a first
    check in a fresh process read 14% slower on unchanged code)."""
    out = subprocess.run(
        [sys.executable, "-c", BASELINE, pairing], cwd=tree, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": tree, "BENCH_OLD_URL": old_url, "BENCH_NEW_URL": new_url},
    )
    return float(out.stdout.split()[-1])


def startup(old, new) -> float:
    return timed(lambda: check(old, new, thread_ids=["absent-thread"]))


def in_processes(old_url: str, new_url: str, pairing: str, processes: int, **options) -> float:
    serdes = ("default", "encrypted" if pairing == "different" else "default")
    return timed(lambda: check(old_url, new_url, processes=processes, serdes=serdes, **options))


def print_processes(rows: list, processes: list[int], repeat: int) -> None:
    """The check in this process ("-") and in N processes, each against the same readings."""
    print(f"\nthe check in N processes (--processes), best of {repeat}; seconds, start-up apart and subtracted")
    header = (f"{'serde':>15} {'ckpts':>6} {'N':>2} {'raw':>6} {'read':>6} {'check':>6} {'start':>5}"
              f" {'chk/raw':>7} {'chk/read':>8} {'vs in-process':>13}")
    print(header)
    print("-" * len(header))
    for pairing, count, _, _, b, _ in rows:
        here = b["check"] - b["start"]
        for n in ["-", *processes]:
            took, start = (here, b["start"]) if n == "-" else (b[f"p{n}"] - b[f"p{n} start"], b[f"p{n} start"])
            print(f"{pairing:>15} {count:>6} {n:>2} {b['raw']:>6.2f} {b['read']:>6.2f} {took:>6.2f} {start:>5.2f}"
                  f" {took / b['raw']:>7.2f} {took / b['read']:>8.2f} {took / here:>13.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", "--sizes", type=int, nargs="+", default=[52000], dest="sizes")
    parser.add_argument("--serde", nargs="+", choices=("same", "different"), default=["same", "different"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--baseline", help="another source tree whose check runs beside ours (before/after)")
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2],
                        help="also measure the check in N processes, for each N (none: skip)")
    parser.add_argument("--target", nargs="+", choices=("postgres", "redis"), default=["postgres"],
                        help="the store SQLite is checked against (dualsaver's Redis saver for redis)")
    args = parser.parse_args()
    os.environ.setdefault("LANGGRAPH_AES_KEY", cs.AES_KEY.decode())  # the processes' encrypted serializer
    rows = []
    with EmbeddedPostgres() as pg, EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        for size_index, size in enumerate(args.sizes):
            for target, pairing in [(t, p) for t in args.target for p in args.serde]:
                name = f"bench_check_{size_index}_{pairing}_{target}"  # a SQLite file of its own per target
                if target == "redis":
                    redis.flushall()
                url = redis.url if target == "redis" else pg.create_database(name)
                serde = cs.encrypted_serde() if pairing == "different" else None
                old_url = f"sqlite:///{Path(tmp) / f'{name}.sqlite'}"
                with open_saver(old_url) as old, open_saver(
                    url, serde=serde
                ) as new:
                    count = build(old, new, size)
                    report = check(old, new)
                    assert report.clean, report.to_json()[:2000]
                    threads = report.summary["threads_compared"]
                    by_bytes = report.summary["compared"]["by_bytes"]
                    times: dict[str, list[float]] = {k: [] for k in ("raw", "read", "decoded", "check", "start", "base")}
                    for n in args.processes:  # the fork server starts once, before anything is timed
                        in_processes(old_url, url, pairing, n, thread_ids=["absent-thread"])
                        times[f"p{n}"], times[f"p{n} start"] = [], []
                    for _ in range(args.repeat):  # alternate, so drift hits all alike
                        times["raw"].append(timed(lambda: read_raw(old, new)))
                        times["read"].append(timed(lambda: read_both(old, new)))
                        times["decoded"].append(timed(lambda: check(old, new, compare="decoded")))
                        times["check"].append(timed(lambda: check(old, new)))
                        times["start"].append(startup(old, new))
                        if args.baseline:
                            times["base"].append(baseline(args.baseline, old_url, url, pairing))
                        for n in args.processes:
                            times[f"p{n}"].append(in_processes(old_url, url, pairing, n))
                            absent = in_processes(old_url, url, pairing, n, thread_ids=["absent-thread"])
                            times[f"p{n} start"].append(absent)
                    mem = peak_mb(lambda: check(old, new))
                    best = {k: min(v) if v else float("nan") for k, v in times.items()}
                    rows.append((f"{pairing}{'/redis' if target == 'redis' else ''}", count, threads, by_bytes, best, mem))
                if target == "postgres":
                    pg.drop_database(name)

    print()
    print(f"check vs reading both stores (SQLite vs PostgreSQL, or Redis: /redis), best of {args.repeat}; seconds")
    header = (
        f"{'serde':>15} {'ckpts':>6} {'threads':>7} {'by bytes':>8} {'raw':>6} {'decoded':>7} "
        f"{'before':>6} {'chk dec':>7} {'check':>6} {'start':>5} {'chk/raw':>7} {'chk/read':>8} {'dec/read':>8} {'MB':>5}"
    )
    print(header)
    print("-" * len(header))
    for pairing, count, threads, by_bytes, b, mem in rows:
        check_s = b["check"] - b["start"]
        print(
            f"{pairing:>15} {count:>6} {threads:>7} {by_bytes:>8} {b['raw']:>6.2f} {b['read']:>7.2f} "
            f"{b['base'] - b['start']:>6.2f} {b['decoded'] - b['start']:>7.2f} {check_s:>6.2f} {b['start']:>5.2f} {check_s / b['raw']:>7.2f} "
            f"{check_s / b['read']:>8.2f} {(b['decoded'] - b['start']) / b['read']:>8.2f} {mem:>5.1f}"
        )
    if args.processes:
        print_processes(rows, args.processes, args.repeat)
    print("\ntargets: same serializer check/raw <= 2; different serializers check/read-decoded <= 1.25")
    print("(check times exclude the start-up: a check of one absent thread; 'before': --baseline's check)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
