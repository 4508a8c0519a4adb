"""Benchmark: `check` of SQLite against PostgreSQL vs reading both stores in full, in one run.

    python benchmarks/bench_check.py [--sizes 2000 8000] [--repeat 3]

For each size (checkpoints per store), the same history sits in a SQLite file (default
serializer) and a PostgreSQL database (an embedded server on 127.0.0.1, encrypted
serializer). Measured side by side, alternating, best of `--repeat`:

- **read both**: every thread read natively from both stores (`read_thread`, decoded), the
  least any diff must do;
- **check**: `dualsaver.check(old, new)` on the same pair (clean: no re-check rounds).

Target: check / read-both <= 1.5. Peak memory (tracemalloc, Python allocations) is measured
in a separate pass so its overhead does not skew the timings; it should stay flat as the
stores grow (one thread's fingerprints per worker, not the store).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualsaver.checker import check  # noqa: E402
from dualsaver.embedded import EmbeddedPostgres  # noqa: E402
from dualsaver.stores import native_for, open_saver  # noqa: E402
from tests import check_support as cs  # noqa: E402

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
    n = 0
    for store in (native_for(old), native_for(new)):
        for t in store.thread_ids():
            for _ in store.read_thread(t):
                n += 1
    return n


def timed(fn) -> float:
    gc.collect()
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with EmbeddedPostgres() as pg, tempfile.TemporaryDirectory() as tmp:
        for n, size in enumerate(args.sizes):
            url = pg.create_database(f"bench_check_{n}")
            with open_saver(f"sqlite:///{Path(tmp) / f'old{n}.sqlite'}") as old, open_saver(
                url, serde=cs.encrypted_serde()
            ) as new:
                count = build(old, new, size)
                report = check(old, new)
                assert report.clean, report.to_json()[:2000]
                threads = report.summary["threads_compared"]
                reads, checks = [], []
                for _ in range(args.repeat):  # alternate, so drift hits both alike
                    reads.append(timed(lambda: read_both(old, new)))
                    checks.append(timed(lambda: check(old, new)))
                mem_read = peak_mb(lambda: read_both(old, new))
                mem_check = peak_mb(lambda: check(old, new))
                rows.append((count, threads, min(reads), min(checks), mem_read, mem_check))
            pg.drop_database(f"bench_check_{n}")

    print()
    print(f"check vs read-both (SQLite plain vs PostgreSQL encrypted), best of {args.repeat}")
    header = (
        f"{'checkpoints':>11} {'threads':>7} {'read both s':>11} {'check s':>8} "
        f"{'ratio':>6} {'ckpt/s':>7} {'peak MB read':>12} {'peak MB check':>13}"
    )
    print(header)
    print("-" * len(header))
    for count, threads, r, c, mr, mc in rows:
        print(
            f"{count:>11} {threads:>7} {r:>11.2f} {c:>8.2f} {c / r:>6.2f} "
            f"{2 * count / c:>7.0f} {mr:>12.1f} {mc:>13.1f}"
        )
    worst = max(c / r for _, _, r, c, _, _ in rows)
    print(f"\ntarget check/read-both <= 1.5: {'met' if worst <= 1.5 else 'NOT met'} (worst {worst:.2f})")
    if len(rows) > 1:
        growth = rows[-1][0] / rows[0][0]
        print(
            f"store grew {growth:.1f}x; check peak memory grew"
            f" {rows[-1][5] / max(rows[0][5], 1e-9):.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
