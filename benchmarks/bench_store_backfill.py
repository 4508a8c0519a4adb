"""The long-term store's backfill, SQLite -> PostgreSQL (pgvector), side by side in one run:

- **backfill**: `dualsaver.items.backfill_items` (native reader, one insert-if-absent
  statement per batch of 500 items and their vectors);
- **naive loop**: what a hand-written script does through the public API: `search` each
  namespace page by page, `put` each item into the target (which embeds it again and stamps
  the time of the copy); timed on a sample (`--naive-sample`) and given as items/s;
- **ingest**: PostgreSQL's own bulk load of the same rows: COPY (binary for `store`, text for
  `store_vectors`: psycopg has no binary dumper for pgvector's type without the pgvector
  package) into empty tables. The floor for any copy into PostgreSQL.

Half the items carry a vector; `--dims` lists the index dimensions to run (default 8 and 64).
Targets: backfill >= 20x the naive loop, <= 2x the ingest.

    python benchmarks/bench_store_backfill.py               # 100k items
    python benchmarks/bench_store_backfill.py --items 10000 --dims 32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualsaver.embedded import EmbeddedPostgres  # noqa: E402
from dualsaver.items import backfill_items, items_for, open_item_store  # noqa: E402
from dualsaver.items.record import StoredItem, ns_text  # noqa: E402


def embedder(dims: int):
    def embed(texts: list[str]) -> list[list[float]]:
        return [[((hash(t) >> (i % 48)) % 1000) / 1000.0 + i for i in range(dims)] for t in texts]

    return embed


def index_for(dims: int) -> dict:
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


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def naive(source, target, sample: int) -> tuple[int, float]:
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


def ingest(store, items: list[StoredItem], dims: int) -> None:
    """COPY the same rows into empty `store` / `store_vectors` tables."""
    import orjson

    with store.conn.cursor() as cur:
        with cur.copy("COPY store (prefix, key, value, created_at, updated_at, expires_at, ttl_minutes)"
                      " FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "jsonb", "timestamptz", "timestamptz", "timestamptz", "int4"])
            for i in items:
                copy.write_row((ns_text(i.namespace), i.key, orjson.dumps(i.value).decode(), i.created_at,
                                i.updated_at, i.expires_at, int(i.ttl_minutes) if i.ttl_minutes else None))
        with cur.copy("COPY store_vectors (prefix, key, field_name, embedding, created_at, updated_at)"
                      " FROM STDIN") as copy:
            for i in items:
                for name, v in (i.vectors or {}).items():
                    copy.write_row((ns_text(i.namespace), i.key, name, "[" + ",".join(map(repr, v)) + "]",
                                    i.created_at, i.updated_at))


def measure(pg: EmbeddedPostgres, tmp: Path, n: int, dims: int, sample: int) -> dict:
    items = source_items(n, dims)
    index = index_for(dims)
    with open_item_store(f"sqlite:///{tmp}/source-{dims}.sqlite", index=index) as source:
        items_for(source).write_items(items)
        with open_item_store(pg.create_database(f"ingest_{dims}"), index=index) as target:
            t_ingest = timed(lambda: ingest(target, items, dims))
        with open_item_store(pg.create_database(f"backfill_{dims}"), index=index) as target:
            result = backfill_items(source, target, state_path=":memory:")
            assert result.items == n and result.bad == 0, result.summary()
            t_backfill = result.elapsed_s
        with open_item_store(pg.create_database(f"naive_{dims}"), index=index) as target:
            copied, t_naive = naive(source, target, sample)
    return {"n": n, "dims": dims, "backfill": n / t_backfill, "naive": copied / t_naive, "ingest": n / t_ingest,
            "t_backfill": t_backfill, "t_ingest": t_ingest, "naive_sample": copied}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--naive-sample", type=int, default=3000, help="items the naive loop copies (it is slow)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    with EmbeddedPostgres() as pg:
        rows = [measure(pg, tmp, args.items, dims, args.naive_sample) for dims in args.dims]
    print(f"\n{'items':>8} {'dims':>5} {'backfill/s':>11} {'naive/s':>9} {'ingest/s':>9}"
          f" {'vs naive':>9} {'ingest time ratio':>18}")
    for r in rows:
        print(f"{r['n']:>8} {r['dims']:>5} {r['backfill']:>11.0f} {r['naive']:>9.0f} {r['ingest']:>9.0f}"
              f" {r['backfill'] / r['naive']:>8.1f}x {r['t_backfill'] / r['t_ingest']:>17.2f}x")
    print("targets: backfill >= 20x the naive loop; backfill time <= 2x the ingest's")


if __name__ == "__main__":
    main()
