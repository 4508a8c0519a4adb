"""Backfill SQLite -> PostgreSQL: our copy against PostgreSQL's own ingest, the careful
naive loop and plain reads.

Run: python benchmarks/bench_backfill.py [--checkpoints 12000 52000] [--repeat 3] [--processes 1 2] [--no-naive]
     [--baseline DIR] [--graph backfill|support]

In one run, at each store size, on the same source (a real LangGraph graph with a subgraph,
parallel Send branches, a DeltaChannel and an interrupt; its threads replicated under new ids
to reach the size; with `--graph support`, the check's support agent instead: shorter threads,
messages, a set and a datetime in its state), each copy into a fresh PostgreSQL database of
one embedded server:

- read, raw rows:       every thread's checkpoint and write rows fetched page by page as the
                        SQLite adapter fetches them; nothing decoded, nothing written
- read, as backfill:    dualsaver's native read as the backfill does it when both stores use
                        the same serializer: checkpoints and metadata decoded, write values
                        kept as stored bytes
- read, all decoded:    dualsaver's native read decoding everything (what the check reads)
- read, saver.list:     the saver's own `list` per thread (what an application can do)
- PostgreSQL's ingest:  the store's own ingest of exactly the rows the backfill wrote: the
                        three tables exported with binary COPY TO from a backfilled
                        database, then loaded with binary COPY FROM, one transaction per
                        table, into a fresh database (only the load is timed): the physical
                        floor of any copy into this store
- write alone:          our own statements and batches writing exactly the backfill's rows,
                        read and encoded beforehand (untimed), with nothing else running
- backfill:             dualsaver.backfill() (workers=1 and workers=2), exact, resumable
- backfill, processes:  dualsaver.backfill(processes=N) for each N of --processes (default 1 2):
                        the copy in N spawned processes under one job (start-up included)
- before/after:         with --baseline DIR (a checkout of another revision, e.g.
                        `git archive REV | tar -x -C DIR`): backfill(processes=N) of that
                        revision and of this one, each run in its own interpreter, alternately,
                        on the same source into fresh databases of the same server (each
                        interpreter's fork server warmed first, as for the copies above)
- naive:                the careful naive loop: the same records, written one checkpoint at a
                        time through the public API (put, then put_writes per task keeping its
                        task_path); values decoded and re-encoded

PostgreSQL runs with durable settings (fsync, synchronous commit), as in production;
--no-durable turns them off. Times are the best of --repeat runs (the naive loop: of two).
Targets: backfill >= 5x faster than naive, <= 1.25x PostgreSQL's ingest. The backfill's
process CPU per checkpoint is shown beside it (on two cores, the copy's own CPU and the
server's ingest run side by side, so the larger of the two bounds the copy). Peak traced memory
(tracemalloc, all threads) of one backfill at each size shows it does not grow with the
store.

The CPU floor: the copy's own CPU a checkpoint (workers=1, one process) plus the server's CPU
a checkpoint during that same backfill (PostgreSQL's processes, read from /proc), over the
cores: no copy on this machine can take less wall time than that.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualsaver.migrate import BATCH_CHECKPOINTS, backfill, read_options
from dualsaver.embedded import EmbeddedPostgres
from dualsaver.stores import native_for, open_saver


def make_source(path: Path, checkpoints: int, graph: str = "backfill") -> int:
    """A SQLite store of about `checkpoints` checkpoints of `graph`'s threads (see --graph);
    returns the exact count."""
    # imported here: each copy process runs this module again
    from tests.backfill_support import run_threads
    from tests.check_support import populate

    with open_saver(f"sqlite:///{path}") as saver:
        if graph == "support":
            populate(saver, [f"seed-{i}" for i in range(12)])
        else:
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


AS_BACKFILL = {"encoded": True, "stored_values": True}  # how the backfill reads SQLite for PostgreSQL


def read_all(source_url: str, options: dict | None = None) -> float:
    """dualsaver's native read of every thread (`AS_BACKFILL`: as the backfill reads)."""
    with open_saver(source_url) as saver:
        store = native_for(saver)
        t0 = time.perf_counter()
        n = sum(1 for t in store.thread_ids() for _ in store.read_thread(t, **(options or {})))
        elapsed = time.perf_counter() - t0
    assert n > 0
    return elapsed


def read_raw(source_url: str) -> float:
    """The same SQL pages the SQLite adapter runs, rows fetched and not decoded."""
    from dualsaver.stores._sql import CHECKPOINT_PAGE
    from dualsaver.stores._sqlite import checkpoints_sql, writes_range_sql

    first_sql, next_sql = checkpoints_sql(1, after=False), checkpoints_sql(1, after=True)
    with open_saver(source_url) as saver:
        store = native_for(saver)
        conn, writes_sql = saver.conn, writes_range_sql(True, 1)
        t0 = time.perf_counter()
        n = 0
        for t in store.thread_ids():
            rows = conn.execute(first_sql, (t, CHECKPOINT_PAGE)).fetchall()
            while rows:
                conn.execute(writes_sql, (t, *rows[0][:3], *rows[-1][:3])).fetchall()
                n += len(rows)
                if len(rows) < CHECKPOINT_PAGE:
                    break
                rows = conn.execute(next_sql, (t, *rows[-1][:3], CHECKPOINT_PAGE)).fetchall()
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


SERVER_PID: int | None = None  # the PostgreSQL postmaster, whose CPU the floor counts


def server_cpu() -> float:
    """CPU seconds PostgreSQL's processes have used so far: the postmaster with its reaped
    backends, plus the live ones (Linux /proc; 0 elsewhere)."""
    if SERVER_PID is None or not os.path.exists(f"/proc/{SERVER_PID}"):
        return 0.0
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == SERVER_PID:
            total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
        elif int(fields[1]) == SERVER_PID:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def own_cpu() -> float:
    """CPU seconds of this process (the copy processes report theirs in the result)."""
    return time.process_time()


def run_backfill(
    source_url: str, target_url: str, workers: int, state: Path, processes: int | None = None
) -> tuple[float, int, float, float]:
    """(seconds, checkpoints copied, CPU seconds of the copy, CPU seconds of the server)."""
    with open_saver(source_url) as src, open_saver(target_url, pool_size=workers) as dst:
        cpu0, server0, t0 = own_cpu(), server_cpu(), time.perf_counter()
        if processes is None:
            result = backfill(src, dst, workers=workers, state_path=state, resume=False)
        else:
            result = backfill(source_url, target_url, processes=processes, workers=workers, state_path=state,
                              resume=False)
        elapsed = time.perf_counter() - t0
        cpu, server = own_cpu() - cpu0 + result.processes_cpu_s, server_cpu() - server0
    assert result.failed == 0 and result.exact
    return elapsed, result.checkpoints, cpu, server


def write_floor(source_url: str, target_url: str) -> float:
    """PostgreSQL's own ingest of exactly the rows the backfill sends, with nothing else
    running: read and encoded beforehand (untimed), then written in the backfill's batches
    through the same statements. A pipelined backfill cannot beat max(read, this)."""
    with open_saver(source_url) as src, open_saver(target_url) as dst:
        store, target = native_for(src), native_for(dst)
        options = read_options(store, target)
        items = [i for t in store.thread_ids() for i in store.read_thread(t, **options)]
        step = BATCH_CHECKPOINTS
        prepared = [target.prepare_write(items[i : i + step]) for i in range(0, len(items), step)]
        t0 = time.perf_counter()
        added = sum(target.write_prepared(p)[0] for p in prepared)
        elapsed = time.perf_counter() - t0
    assert added == len(items)
    return elapsed


TABLES = {
    "checkpoint_blobs": "thread_id, checkpoint_ns, channel, version, type, blob",
    "checkpoint_writes": "thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob",
    "checkpoints": "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata",
}


def export_tables(url: str) -> dict[str, bytes]:
    """The three tables of a PostgreSQL store, in COPY's binary format."""
    import psycopg

    data = {}
    with psycopg.connect(url) as conn:
        for table, columns in TABLES.items():
            with conn.cursor().copy(f"COPY (SELECT {columns} FROM {table}) TO STDOUT (FORMAT BINARY)") as copy:
                data[table] = b"".join(bytes(chunk) for chunk in copy)
    return data


def ingest_floor(url: str, data: dict[str, bytes]) -> float:
    """PostgreSQL loading `data` into a fresh store (tables and indexes made by the saver's
    setup): binary COPY FROM, one transaction per table, 1 MiB writes."""
    import psycopg

    with open_saver(url):
        pass
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        for table, columns in TABLES.items():
            with conn.transaction(), conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                view = memoryview(data[table])
                for i in range(0, len(view), 1 << 20):
                    copy.write(view[i : i + (1 << 20)])
        return time.perf_counter() - t0


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


RUNNER = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from dualsaver.migrate import backfill


def main():
    source, target = os.environ["BENCH_SOURCE_URL"], os.environ["BENCH_TARGET_URL"]  # not argv: a failure prints it
    state, processes = sys.argv[2:4]
    # warm, as the copies of the main table are: the fork server started, its imports done
    backfill(source, target, processes=int(processes), state_path=Path(state + "-warm"), thread_ids=["absent"],
             resume=False)
    cpu0, t0 = time.process_time(), time.perf_counter()
    r = backfill(source, target, processes=int(processes), state_path=Path(state), resume=False)
    print(json.dumps({"seconds": time.perf_counter() - t0, "checkpoints": r.checkpoints, "failed": r.failed,
                      "cpu": time.process_time() - cpu0 + r.processes_cpu_s}))


if __name__ == "__main__":
    main()
"""


def run_tree(
    tree: Path, source_url: str, target_url: str, state: Path, processes: int
) -> tuple[float, int, float, float]:
    """backfill(processes=N) as the dualsaver in `tree` does it, in a fresh interpreter:
    (seconds, checkpoints copied, CPU seconds of the copy, CPU seconds of the server)."""
    import json
    import subprocess

    server0 = server_cpu()
    # The copy processes start from a fork server, a fresh interpreter: PYTHONPATH (not sys.path) makes them
    # import the same tree, and the working directory too (an installed dualsaver would win otherwise).
    out = subprocess.run([sys.executable, "-c", RUNNER, str(tree), str(state), str(processes)],
                         check=True, capture_output=True, text=True, cwd=tree,
                         env={**os.environ, "PYTHONPATH": str(tree), "BENCH_SOURCE_URL": source_url,
                              "BENCH_TARGET_URL": target_url}).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["failed"] == 0
    return figures["seconds"], figures["checkpoints"], figures["cpu"], server_cpu() - server0


def peak_memory(source_url: str, target_url: str, state: Path) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    run_backfill(source_url, target_url, 1, state)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def compare(figures: dict, baseline: Path | None, processes: list[int], repeat: int, src: str, fresh: Any) -> None:
    """Before (`baseline`) and after (this tree), alternately, so both see the same load."""
    if baseline is None:
        return
    trees = {"after": Path(__file__).resolve().parents[1], "before": baseline}
    for p in processes:
        for _ in range(repeat):
            for name, tree in trees.items():
                seconds, copied, used, server = run_tree(tree, src, *fresh(), p)
                assert copied == figures["n"]
                run = {"seconds": seconds, "cpu": used, "server": server, "load": os.getloadavg()[0]}
                figures[f"{name}_p{p}"] = min(figures.get(f"{name}_p{p}", run), run, key=lambda r: r["seconds"])
    figures["baseline"] = str(baseline)


def measure(
    pg: EmbeddedPostgres, tmp: Path, size: int, repeat: int, processes: list[int], naive_runs: bool,
    baseline: Path | None = None, compare_only: bool = False, graph: str = "backfill",
) -> dict:
    path = tmp / f"source-{size}.sqlite"
    n = make_source(path, size, graph)
    src = f"sqlite:///{path}"
    best = lambda f, k=repeat: min(f() for _ in range(k))  # noqa: E731
    runs = iter(range(10**6))

    def fresh() -> tuple[str, Path]:
        i = next(runs)
        return pg.create_database(f"s{size}_{i}"), tmp / f"state-{size}-{i}"

    cpu: dict[tuple[int, int | None], tuple[float, float]] = {}  # (workers, processes): (copy, server) CPU

    def copy(workers: int, processes: int | None = None) -> float:
        target, state = fresh()
        elapsed, copied, used, server = run_backfill(src, target, workers, state, processes)
        assert copied == n
        cpu[workers, processes] = min(cpu.get((workers, processes), (used, server)), (used, server))
        return elapsed

    reference = fresh()[0]
    run_backfill(src, reference, 1, tmp / f"reference-{size}")
    exported = export_tables(reference)

    def naive() -> float:
        elapsed, copied = naive_loop(src, fresh()[0])
        assert copied == n
        return elapsed

    if compare_only:
        figures: dict = {"n": n, "ingest": best(lambda: ingest_floor(fresh()[0], exported)), "processes": processes}
        compare(figures, baseline, processes, repeat, src, fresh)
        return figures
    figures = {
        "n": n,
        "raw": best(lambda: read_raw(src)),
        "as_backfill": best(lambda: read_all(src, AS_BACKFILL)),
        "decoded": best(lambda: read_all(src)),
        "public": best(lambda: read_public(src)),
        "ingest": best(lambda: ingest_floor(fresh()[0], exported)),
        "floor": best(lambda: write_floor(src, fresh()[0])),
        "bf1": best(lambda: copy(1)),
        "bf2": best(lambda: copy(2)),
        "bytes": sum(len(v) for v in exported.values()),
        "naive": best(naive, min(repeat, 2)) if naive_runs else None,
    }
    for p in processes:
        figures[f"p{p}"] = best(partial(copy, 1, p))
        figures[f"cpu_p{p}"] = cpu[1, p][0]
    compare(figures, baseline, processes, repeat, src, fresh)
    target, state = fresh()
    figures["memory"] = peak_memory(src, target, state)
    figures["cpu1"], figures["server1"] = cpu[1, None]
    figures["processes"] = list(processes)
    return figures


def report(f: dict) -> None:
    if "bf1" not in f:
        return report_compare(f)
    n, best = f["n"], min(f["bf1"], f["bf2"])
    ingest = f["ingest"]
    rows = [
        ("read: raw rows, no decoding", f["raw"], ""),
        ("read: as backfill (stored bytes kept)", f["as_backfill"], ""),
        ("read: everything decoded", f["decoded"], ""),
        ("read: saver.list per thread", f["public"], ""),
        ("PostgreSQL's ingest (binary COPY)", ingest, "the floor"),
        ("write alone: our batches, pre-encoded", f["floor"], f"{f['floor'] / ingest:.2f}x ingest"),
        ("backfill workers=1", f["bf1"], f"{f['bf1'] / ingest:.2f}x ingest"),
        ("backfill workers=2", f["bf2"], f"{f['bf2'] / ingest:.2f}x ingest"),
        *[(f"backfill processes={p}", f[f"p{p}"], f"{f[f'p{p}'] / ingest:.2f}x ingest") for p in f["processes"]],
        *([("naive loop (public API)", f["naive"], f"{f['naive'] / best:.1f}x slower than backfill")]
          if f["naive"] else []),
    ]
    print(f"\nSQLite -> PostgreSQL, {n} checkpoints of a real graph (subgraph, Send, DeltaChannel, interrupt),"
          f" {f['bytes'] / 2**20:.0f} MiB of rows\n")
    print(f"{'':40} {'seconds':>8} {'ckpt/s':>8}  ratio")
    for name, s, note in rows:
        print(f"{name:40} {s:8.3f} {n / s:8.0f}  {note}")
    print(f"\nbackfill (one process) / PostgreSQL's ingest: {best / ingest:.2f}x (target <= 1.25x)")
    for p in f["processes"]:
        print(f"backfill processes={p} / PostgreSQL's ingest: {f[f'p{p}'] / ingest:.2f}x (target <= 1.6x at N=2),"
              f" {best / f[f'p{p}']:.2f}x the speed of one process")
    if f["naive"]:
        print(f"speedup vs naive: {f['naive'] / best:.1f}x (target >= 5x)")
    print(f"backfill / read as backfill: {best / f['as_backfill']:.2f}x")
    cores = os.cpu_count() or 1
    floor = (f["cpu1"] + f["server1"]) / cores
    print(f"CPU a checkpoint (workers=1): the copy's {f['cpu1'] / n * 1e6:.0f} us + the server's"
          f" {f['server1'] / n * 1e6:.0f} us, over {cores} cores: a floor of {floor:.3f} s"
          f" ({floor / ingest:.2f}x ingest); PostgreSQL's ingest {ingest / n * 1e6:.0f} us wall")
    for p in f["processes"]:
        print(f"processes={p}: {f[f'p{p}'] / floor:.2f}x the CPU floor; the copy's CPU"
              f" {f[f'cpu_p{p}'] / n * 1e6:.0f} us a checkpoint (this process and the copy processes)")
    report_compare(f)
    print(f"peak traced memory of one backfill: {f['memory']:.1f} MiB")


def report_compare(f: dict) -> None:
    if "baseline" not in f:
        return
    n, ingest = f["n"], f["ingest"]
    print(f"\n{n} checkpoints: PostgreSQL's ingest {ingest:.3f} s ({ingest / n * 1e6:.0f} us a checkpoint);"
          f" before ({f['baseline']}) and after (this tree), alternately, each in its own interpreter:")
    for p in f["processes"]:
        for name in ("before", "after"):
            run = f[f"{name}_p{p}"]
            print(f"  processes={p} {name:6}: {run['seconds']:7.3f} s  {run['seconds'] / ingest:.2f}x ingest;"
                  f" CPU a checkpoint: the copy's {run['cpu'] / n * 1e6:.0f} us, the server's"
                  f" {run['server'] / n * 1e6:.0f} us (load {run['load']:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[12000, 52000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--durable", action=argparse.BooleanOptionalAction, default=True,
        help="PostgreSQL with fsync and synchronous commit on, as in production (default)",
    )
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2], help="backfill(processes=N) for each N")
    parser.add_argument("--no-naive", action="store_true", help="leave out the (slow) naive loop")
    parser.add_argument("--baseline", type=Path, help="a checkout of another revision, measured side by side")
    parser.add_argument("--compare-only", action="store_true", help="with --baseline: only the ingest and the two")
    parser.add_argument("--graph", choices=("backfill", "support"), default="backfill",
                        help="the source's threads: the backfill tests' graph (about 20 checkpoints a thread), or"
                             " the check's support agent (10 a thread, messages, a set and a datetime in its state)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    print(f"PostgreSQL settings: {'durable (fsync, synchronous commit)' if args.durable else 'fsync off'};"
          f" load average at the start: {os.getloadavg()[0]:.2f}")
    global SERVER_PID
    with EmbeddedPostgres(durable=args.durable) as pg:
        SERVER_PID = pg._proc.pid if pg._proc is not None else None
        results = [measure(pg, tmp, size, args.repeat, args.processes, not args.no_naive, args.baseline,
                           args.compare_only, args.graph) for size in args.checkpoints]
    for f in results:
        report(f)
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(
            f"\npeak memory: {a['memory']:.1f} MiB at {a['n']} checkpoints, {b['memory']:.1f} MiB at"
            f" {b['n']} ({b['n'] / a['n']:.1f}x the store, {b['memory'] / a['memory']:.2f}x the memory)"
        )


if __name__ == "__main__":
    main()
