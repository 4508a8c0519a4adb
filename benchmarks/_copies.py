"""What the copy benchmarks' measuring children time (`_trees`: each child has imported its
tree's `dualsaver` first, so these are imported after that)."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any


def read_alone(old: Any, new: Any, threads_per_read: int = 16) -> tuple[float, int]:
    """(seconds, checkpoints) to read every thread of `old` as this tree's copy reads it for
    `new` (its `read_options`), `threads_per_read` threads a query, the collector held back
    as the copy holds it."""
    from dualsaver.heap import fewer_collections
    from dualsaver.migrate._flow import read_options
    from dualsaver.stores import native_for

    store = native_for(old)
    ids = sorted(store.thread_ids())
    options = read_options(store, native_for(new))
    gc.collect()
    with fewer_collections():
        t0 = time.perf_counter()
        n = sum(1 for i in range(0, len(ids), threads_per_read)
                for _ in store.read_threads(ids[i : i + threads_per_read], **options))
        return time.perf_counter() - t0, n


def timed_backfill(old: Any, new: Any, state: Path) -> tuple[float, float, Any]:
    """(seconds, this process's CPU seconds, result) of `dualsaver.backfill(old, new)`, one
    process, from scratch; the result checked exact and without failures."""
    from dualsaver.migrate import backfill

    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    result = backfill(old, new, state_path=state, resume=False)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert result.failed == 0 and result.exact, result
    return elapsed, cpu, result
