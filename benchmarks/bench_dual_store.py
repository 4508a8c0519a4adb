"""DualStore latency: put / get / search through `DualStore` in shadow-write against the old
long-term store alone, side by side in one run.

Two pairs: SQLite -> PostgreSQL and PostgreSQL -> SQLite (embedded PostgreSQL with pgvector;
both stores with the same semantic index, a deterministic embedding, no model). DualStore runs
in both of its shadow-write modes: write-behind (the default: new's copy of a put is written in
the background) and waiting (``write_behind=False``: the caller waits for old, then new). The
configurations run interleaved, turn by turn, on the same old store, so drift on a shared
machine hits them alike; after a DualStore's puts its write-behind queue is drained, untimed,
as a user's pause between requests would (otherwise its background writes, embedding
included, would land inside the reads' samples: that price at saturation is
`bench_shadow_write.py`'s sustained figure for the checkpointer). Reads go to old in
shadow-write: get and search show what the routing itself costs. A read with nothing else to
do (no fallback, no queued write to land first, nobody tracing) goes straight to the read
store (`_store_plans.answered_alone`), in the context its phase made once (`DualStore._begin`):
about 2 us of DualStore's own a get timed alone, 5-9 us beside a local SQLite read of 60-80 us
(the read's own work evicts DualStore's objects from the caches; a context and an operation
record made on every get cost 5 us more there).

With `--ttl MINUTES` both stores are configured as an application that gives its items a TTL
configures them (`ttl={"default_ttl": MINUTES, "refresh_on_read": True}`): every put has a
TTL, and every get and search renews what it returns, in old and (behind the caller, in
shadow-write) in new as well, so that new's copies do not expire first (`_store_plans`).

Target: DualStore in shadow-write at most 1.15x the old store alone at p50.

    python benchmarks/bench_dual_store.py [--turns 60] [--ops 10] [--ttl MINUTES]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualsaver import DualStore, Phase
from dualsaver.embedded import EmbeddedPostgres
from dualsaver.items import open_item_store

DIMS = 16
ALONE, BEHIND, WAITING = "old alone", "dual write-behind", "dual waiting"
OPS = ("put", "get", "search")


def embed(texts: list[str]) -> list[list[float]]:
    return [[b / 255 for b in hashlib.sha256(t.encode()).digest()[:DIMS]] for t in texts]


INDEX = {"dims": DIMS, "embed": embed, "fields": ["text"], "text_fields": ["text"]}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(samples: list[float], call: Callable[[], Any]) -> None:
    started = time.perf_counter()
    call()
    samples.append(time.perf_counter() - started)


def turn(store: Any, name: str, n: int, ops: int, samples: dict[tuple[str, str], list[float]]) -> None:
    """`ops` puts, then as many gets and searches, in one user's namespace."""
    ns = ("bench", name.replace(" ", "-"), f"u{n % 20}")
    for i in range(ops):
        value = {"text": f"user {n} likes item {i} and tea", "n": i, "tags": ["a", i % 3]}
        timed(samples[name, "put"], lambda i=i, value=value: store.put(ns, f"k{n}-{i}", value))
    if isinstance(store, DualStore):
        store.flush()  # untimed: the background copies land in a pause, not inside the reads' samples
    for i in range(ops):
        timed(samples[name, "get"], lambda i=i: store.get(ns, f"k{n}-{i}"))
    for i in range(ops):
        timed(samples[name, "search"], lambda i=i: store.search(ns, query=f"likes item {i}", limit=5))


@contextmanager
def pair(old_url: str, new_url: str, tmp: Path, ttl: float | None) -> Iterator[dict[str, Any]]:
    with ExitStack() as stack:
        old = stack.enter_context(open_item_store(old_url, index=INDEX))
        new = stack.enter_context(open_item_store(new_url, index=INDEX))
        if ttl is not None:  # what the official stores' `ttl=` argument sets
            old.ttl_config = new.ttl_config = {"default_ttl": ttl, "refresh_on_read": True}
        behind = DualStore(old, new, Phase.SHADOW_WRITE, journal=tmp / "behind.sqlite")
        waiting = DualStore(old, new, Phase.SHADOW_WRITE, journal=tmp / "waiting.sqlite", write_behind=False)
        stack.callback(behind.close)
        stack.callback(waiting.close)
        yield {ALONE: old, BEHIND: behind, WAITING: waiting}


def measure(label: str, old_url: str, new_url: str, tmp: Path, turns: int, ops: int,
            ttl: float | None = None) -> list[tuple[Any, ...]]:
    tmp.mkdir(parents=True, exist_ok=True)
    samples: dict[tuple[str, str], list[float]] = {(c, op): [] for c in (ALONE, BEHIND, WAITING) for op in OPS}
    with pair(old_url, new_url, tmp, ttl) as stores:
        for warm in range(2):  # connections, prepared statements, the index
            for name, store in stores.items():
                turn(store, name, -1 - warm, ops, {k: [] for k in samples})
        for n in range(turns):
            names = list(stores) if n % 2 == 0 else list(reversed(stores))
            for name in names:
                turn(stores[name], name, n, ops, samples)
        failures = sum(sum(s.secondary_failures.values()) for n, s in stores.items() if n != ALONE)
    rows = []
    for op in OPS:
        base = samples[ALONE, op]
        for name in (BEHIND, WAITING):
            found = samples[name, op]
            rows.append((label, op, name, statistics.median(base) * 1e3, statistics.median(found) * 1e3,
                         statistics.median(found) / statistics.median(base), percentile(base, 0.99) * 1e3,
                         percentile(found, 0.99) * 1e3, failures))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--ops", type=int, default=10, help="puts (then gets, then searches) per turn")
    parser.add_argument("--ttl", type=float, metavar="MINUTES", help="both stores give items this TTL, renewed on read")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-dual-store-"))
    rows = []
    with EmbeddedPostgres() as pg:
        rows += measure("sqlite -> postgres", f"sqlite:///{tmp}/a.sqlite", pg.create_database("new_a"),
                        tmp / "a", args.turns, args.ops, args.ttl)
        rows += measure("postgres -> sqlite", pg.create_database("old_b"), f"sqlite:///{tmp}/b.sqlite",
                        tmp / "b", args.turns, args.ops, args.ttl)
    ttl = "" if args.ttl is None else f"; items with a TTL of {args.ttl:g} min, renewed on read"
    print(f"\n{args.turns} turns x {args.ops} ops per configuration, interleaved; milliseconds{ttl}")
    print(f"{'pair':<20} {'op':<7} {'config':<18} {'alone p50':>9} {'dual p50':>9} {'ratio':>6}"
          f" {'alone p99':>9} {'dual p99':>9} {'failures':>8}")
    for label, op, name, a50, d50, ratio, a99, d99, failures in rows:
        print(f"{label:<20} {op:<7} {name:<18} {a50:>9.3f} {d50:>9.3f} {ratio:>5.2f}x {a99:>9.3f} {d99:>9.3f}"
              f" {failures:>8}")
    print("target: DualStore in shadow-write <= 1.15x the old store alone at p50 (reads go to old)")


if __name__ == "__main__":
    main()
