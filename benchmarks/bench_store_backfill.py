"""The long-term store's backfill, SQLite -> PostgreSQL (pgvector, HNSW index), side by side in one run:

- **backfill**: `dualsaver.items.backfill_items` (native reader, one insert-if-absent statement
  per batch of 500 items, its vectors as one binary pgvector array);
- **backfill (baseline)**, with ``--baseline DIR``: the same call from another dualsaver tree
  (``git worktree add DIR <rev>``), run interleaved with this tree's, for before/after figures;
- **naive loop**: what a hand-written script does through the public API: `search` each
  namespace page by page, `put` each item into the target (which embeds it again and stamps
  the time of the copy); timed on a sample (``--naive-sample``) and given as items/s;
- **ingest**: PostgreSQL's own bulk load of the same rows into empty tables: binary COPY,
  the vectors in pgvector's binary form. The floor for any copy into PostgreSQL, and so the
  ceiling of "x the naive loop" (its column ``ingest/naive``).

Each backfill runs in a fresh process (``--worker``) against a fresh database; the rounds
(``--rounds``) interleave the configurations so drift on a shared machine hits them alike,
and the table gives each one's median. Half the items carry a vector; ``--dims`` lists the
index dimensions to run. Targets: backfill >= 20x the naive loop, <= 2x the ingest's time.

Where the time goes (cProfile, 20k items): the target's server, mostly pgvector's HNSW index
taking each vector (EXPLAIN ANALYZE of one batch of 500: 3 ms for the items, 115 ms for their
250 vectors); COPY pays the same. Reading the source ahead in a worker thread was tried and
measured slower here (the GIL, two shared cores).

    python benchmarks/bench_store_backfill.py                       # 100k items
    python benchmarks/bench_store_backfill.py --items 20000 --dims 64 --baseline /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.environ.get("DUALSAVER_BENCH_TREE", str(ROOT)))

from dualsaver.embedded import EmbeddedPostgres  # noqa: E402
from dualsaver.items import backfill_items, items_for, open_item_store  # noqa: E402
from dualsaver.items.record import StoredItem, ns_text  # noqa: E402


def embedder(dims: int) -> Any:
    def embed(texts: list[str]) -> list[list[float]]:
        return [[((hash(t) >> (i % 48)) % 1000) / 1000.0 + i for i in range(dims)] for t in texts]

    return embed


def index_for(dims: int) -> dict[str, Any]:
    return {"dims": dims, "embed": embedder(dims), "fields": ["text"], "text_fields": ["text"]}


def source_items(n: int, dims: int) -> list[StoredItem]:
    start = datetime.now(timezone.utc) - timedelta(days=7)
    found = []
    for i in range(n):
        at = start + timedelta(seconds=i, microseconds=i % 997)
        vectors = {"text": [((i * 31 + d) % 97) / 97.0 for d in range(dims)]} if i % 2 == 0 else None
        found.append(StoredItem(("users", f"u{i % 1000:04d}", "memories"), f"k{i:07d}",
                                {"text": f"fact number {i} about things", "i": i, "tags": ["a", i % 7]},
                                at, at + timedelta(seconds=5), at + timedelta(days=30) if i % 3 == 0 else None,
                                43200.0 if i % 3 == 0 else None, vectors))
    return found


def naive(source: Any, target: Any, sample: int) -> tuple[int, float]:
    """The public-API loop over the first namespaces until `sample` items are copied."""
    copied, started = 0, time.perf_counter()
    for namespace in sorted(source.list_namespaces(limit=100_000), key=".".join):
        offset = 0
        while page := source.search(namespace, limit=100, offset=offset):
            for item in page:
                target.put(tuple(item.namespace), item.key, item.value)
                copied += 1
            offset += len(page)
        if copied >= sample:
            break
    return copied, time.perf_counter() - started


def ingest(store: Any, items: list[StoredItem]) -> float:
    """Binary COPY of the same rows into empty `store` / `store_vectors` tables; seconds."""
    import orjson
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    from psycopg.rows import tuple_row

    started = time.perf_counter()
    with store.conn.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:  # a pool (open_item_store)
        vector_oid = cur.execute("SELECT 'vector'::regtype::oid").fetchone()[0]

        class VectorDumper(Dumper):  # pgvector's binary form: int16 dims, int16 unused, float4s
            format, oid = Format.BINARY, vector_oid

            def dump(self, obj: Any) -> bytes:
                return struct.pack(f">HH{len(obj)}f", len(obj), 0, *obj)

        cur.adapters.register_dumper(type("Vector", (), {}), VectorDumper)
        with cur.copy("COPY store (prefix, key, value, created_at, updated_at, expires_at, ttl_minutes)"
                      " FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "jsonb", "timestamptz", "timestamptz", "timestamptz", "int4"])
            for i in items:
                copy.write_row((ns_text(i.namespace), i.key, orjson.dumps(i.value).decode(), i.created_at,
                                i.updated_at, i.expires_at, int(i.ttl_minutes) if i.ttl_minutes else None))
        with cur.copy("COPY store_vectors (prefix, key, field_name, embedding, created_at, updated_at)"
                      " FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "text", vector_oid, "timestamptz", "timestamptz"])
            for i in items:
                for name, v in (i.vectors or {}).items():
                    copy.write_row((ns_text(i.namespace), i.key, name, v, i.created_at, i.updated_at))
    return time.perf_counter() - started


def worker(source_url: str, target_url: str, dims: int) -> None:
    """One backfill in this process (this tree or $DUALSAVER_BENCH_TREE's); prints its figures."""
    index = index_for(dims)
    with open_item_store(source_url, index=index) as source, open_item_store(target_url, index=index) as target:
        result = backfill_items(source, target, state_path=":memory:")
    assert result.bad == 0, result.summary()
    print(json.dumps({"items": result.items, "elapsed": result.elapsed_s}))


def backfill_in_process(tree: Path, source_url: str, target_url: str, dims: int) -> float:
    # the target's URL (with its password) by the environment: a failure prints the command line
    env = {**os.environ, "DUALSAVER_BENCH_TREE": str(tree), "PYTHONPATH": str(tree), "BENCH_TARGET_URL": target_url}
    done = subprocess.run([sys.executable, __file__, "--worker", source_url, str(dims)],
                          env=env, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["elapsed"])


def measure(pg: EmbeddedPostgres, tmp: Path, n: int, dims: int, sample: int, rounds: int,
            baseline: Path | None) -> dict[str, Any]:
    items = source_items(n, dims)
    index = index_for(dims)
    source_url = f"sqlite:///{tmp}/source-{dims}.sqlite"
    trees = {"after": ROOT, **({"before": baseline} if baseline else {})}
    times: dict[str, list[float]] = {"ingest": [], **{name: [] for name in trees}}
    with open_item_store(source_url, index=index) as source:
        items_for(source).write_items(items)
        for r in range(rounds):
            with open_item_store(pg.create_database(f"ingest_{dims}_{r}"), index=index) as target:
                times["ingest"].append(ingest(target, items))
            order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
            for name, tree in order:
                url = pg.create_database(f"{name}_{dims}_{r}")
                with open_item_store(url, index=index):  # the target's tables and indexes, set up
                    pass
                times[name].append(backfill_in_process(tree, source_url, url, dims))
        with open_item_store(pg.create_database(f"naive_{dims}"), index=index) as target:
            copied, t_naive = naive(source, target, sample)
    row: dict[str, Any] = {"n": n, "dims": dims, "naive": copied / t_naive, "rounds": times}
    row.update({name: statistics.median(found) for name, found in times.items()})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--naive-sample", type=int, default=3000, help="items the naive loop copies (it is slow)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another dualsaver tree to compare with (before)")
    parser.add_argument("--worker", nargs=2, metavar=("SOURCE", "DIMS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], os.environ["BENCH_TARGET_URL"], int(args.worker[1]))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    with EmbeddedPostgres() as pg:
        rows = [measure(pg, tmp, args.items, dims, args.naive_sample, args.rounds, args.baseline)
                for dims in args.dims]
    names = ["after"] + (["before"] if args.baseline else [])
    print(f"\nmedians of {args.rounds} interleaved rounds; items/s = items / seconds")
    print(f"{'items':>7} {'dims':>4} {'config':>8} {'seconds':>8} {'items/s':>8} {'x naive':>8} {'/ ingest':>9}")
    for r in rows:
        print(f"{r['n']:>7} {r['dims']:>4} {'naive':>8} {'':>8} {r['naive']:>8.0f}")
        for name in ["ingest", *names]:
            rate = r["n"] / r[name]
            rounds = " ".join(f"{t:.2f}" for t in r["rounds"][name])
            print(f"{r['n']:>7} {r['dims']:>4} {name:>8} {r[name]:>8.2f} {rate:>8.0f} {rate / r['naive']:>7.1f}x"
                  f" {r[name] / r['ingest']:>8.2f}x   rounds: {rounds}")
    print("targets: backfill >= 20x the naive loop; backfill time <= 2x the ingest's."
          " The ingest's own 'x naive' is the ceiling of any copy into this target.")


if __name__ == "__main__":
    main()
