"""Backfill SQLite -> PostgreSQL: our copy against the careful naive loop and a plain read.

Run: python benchmarks/bench_backfill.py [--checkpoints 3000]

In one run, on the same source (a real LangGraph graph with a subgraph, parallel Send
branches, a DeltaChannel and an interrupt; its threads replicated under new ids to reach
the size), each into a fresh PostgreSQL database of one embedded server:

- read:     reading the whole source natively (every checkpoint and write), nothing written
- backfill: dualsaver.backfill (workers=1 and workers=2)
- naive:    the careful naive loop: the same records, written one checkpoint at a time
            through the public API (put, then put_writes per task with its task_path)

Targets: backfill >= 5x faster than naive, <= 1.5x the plain read. Peak traced memory
(tracemalloc) of the backfill at two store sizes shows it does not grow with the store.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualsaver.backfill import backfill  # noqa: E402
from dualsaver.embedded import EmbeddedPostgres  # noqa: E402
from dualsaver.stores import native_for, open_saver  # noqa: E402
from tests.backfill_support import run_threads  # noqa: E402


def make_source(path: Path, checkpoints: int) -> int:
    """A SQLite store of about `checkpoints` checkpoints; returns the exact count."""
    with open_saver(f"sqlite:///{path}") as saver:
        run_threads(saver, [f"seed-{i}" for i in range(8)], turns=2)
        store = native_for(saver)
        seeds = {t: list(store.read_thread(t)) for t in store.thread_ids()}
        total = sum(len(v) for v in seeds.values())
        n = 0
        while total < checkpoints:
            for t, items in seeds.items():
                store.write_checkpoints([replace(i, thread_id=f"copy-{n:05d}-{t}") for i in items])
                total += len(items)
            n += 1
        (count,) = saver.conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()
    return count


def read_all(source_url: str) -> float:
    with open_saver(source_url) as saver:
        store = native_for(saver)
        t0 = time.perf_counter()
        n = sum(1 for t in store.thread_ids() for _ in store.read_thread(t))
        elapsed = time.perf_counter() - t0
    assert n > 0
    return elapsed


def read_public(source_url: str) -> float:
    """Reading every thread through the saver's own `list` (what an application can do)."""
    with open_saver(source_url) as saver:
        ids = list(native_for(saver).thread_ids())
        t0 = time.perf_counter()
        n = sum(1 for t in ids for _ in saver.list({"configurable": {"thread_id": t}}))
        elapsed = time.perf_counter() - t0
    assert n > 0
    return elapsed


def run_backfill(source_url: str, target_url: str, workers: int, state: Path) -> tuple[float, int]:
    with open_saver(source_url) as src, open_saver(target_url, pool_size=workers) as dst:
        t0 = time.perf_counter()
        result = backfill(src, dst, workers=workers, state_path=state, resume=False)
        elapsed = time.perf_counter() - t0
    assert result.failed == 0 and result.exact
    return elapsed, result.checkpoints


def naive_loop(source_url: str, target_url: str) -> tuple[float, int]:
    """One checkpoint at a time through the public API, writes per task with task_path."""
    with open_saver(source_url) as src, open_saver(target_url) as dst:
        store = native_for(src)
        t0 = time.perf_counter()
        n = 0
        for thread_id in store.thread_ids():
            for item in store.read_thread(thread_id):
                parent = {"configurable": {"thread_id": thread_id, "checkpoint_ns": item.checkpoint_ns}}
                if item.parent_checkpoint_id:
                    parent["configurable"]["checkpoint_id"] = item.parent_checkpoint_id
                config = dst.put(parent, item.checkpoint, item.metadata, dict(item.checkpoint["channel_versions"]))
                by_task: dict[tuple[str, str], list] = {}
                for w in item.writes:
                    by_task.setdefault((w.task_id, w.task_path), []).append((w.channel, w.value))
                for (task_id, task_path), writes in by_task.items():
                    dst.put_writes(config, writes, task_id, task_path)
                n += 1
        elapsed = time.perf_counter() - t0
    return elapsed, n


def peak_memory(source_url: str, target_url: str, state: Path) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    run_backfill(source_url, target_url, 1, state)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, default=3000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    small, large = tmp / "small.sqlite", tmp / "large.sqlite"
    n = make_source(small, args.checkpoints)
    n_large = make_source(large, args.checkpoints * 4)
    src = f"sqlite:///{small}"
    with EmbeddedPostgres() as pg:
        read_s = min(read_all(src) for _ in range(3))
        public_s = min(read_public(src) for _ in range(3))
        bf1, copied = run_backfill(src, pg.create_database("bf1"), 1, tmp / "s1")
        bf2, _ = run_backfill(src, pg.create_database("bf2"), 2, tmp / "s2")
        naive_s, naive_n = naive_loop(src, pg.create_database("naive"))
        mem_small = peak_memory(src, pg.create_database("mem_small"), tmp / "s3")
        mem_large = peak_memory(f"sqlite:///{large}", pg.create_database("mem_large"), tmp / "s4")
    assert copied == n == naive_n
    best = min(bf1, bf2)
    rows = [
        ("read source (native, no writes)", read_s, n / read_s, ""),
        ("read source (saver.list per thread)", public_s, n / public_s, ""),
        ("backfill workers=1", bf1, n / bf1, f"{bf1 / read_s:.2f}x read"),
        ("backfill workers=2", bf2, n / bf2, f"{bf2 / read_s:.2f}x read"),
        ("naive loop (public API)", naive_s, n / naive_s, f"{naive_s / best:.1f}x slower than backfill"),
    ]
    print(f"\nSQLite -> PostgreSQL, {n} checkpoints of a real graph (subgraph, Send, DeltaChannel, interrupt)\n")
    print(f"{'':34} {'seconds':>8} {'ckpt/s':>8}  ratio")
    for name, s, rate, note in rows:
        print(f"{name:34} {s:8.2f} {rate:8.0f}  {note}")
    print(f"\nspeedup vs naive: {naive_s / best:.1f}x (target >= 5x)")
    print(f"backfill / read:  {best / read_s:.2f}x native read, {best / public_s:.2f}x saver.list read (target <= 1.5x)")
    print(f"peak traced memory: {mem_small:.1f} MiB at {n} checkpoints, {mem_large:.1f} MiB at {n_large}"
          f" ({n_large / n:.1f}x the store, {mem_large / mem_small:.2f}x the memory)")


if __name__ == "__main__":
    main()
