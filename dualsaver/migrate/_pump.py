"""Running a copy's plans: one reader and `workers` writers with a bounded queue between
them, as threads (`pump`) or as tasks (`apump`). The backfill runs them in its own process,
and in each process of `--processes`, the cyclic collector held back meanwhile
(`dualsaver.heap`)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from dualsaver import sansio
from dualsaver.migrate._copy import read_batches, write_batch
from dualsaver.migrate._flow import Batch, Flow, prepare
from dualsaver.sansio import AsyncTargets, Targets


def pump(flow: Flow, io: Targets, target: Any, thread_ids: Iterator[str], workers: int, dry_run: bool) -> None:
    """Read in this thread while `workers` threads write; at most `workers + 1` batches wait
    in between, so memory stays flat whatever the store's size."""
    batches: queue.Queue[Batch | None] = queue.Queue(maxsize=workers + 1)
    stop = threading.Event()

    def writer() -> None:
        while (batch := batches.get()) is not None:
            if not stop.is_set():
                sansio.run(write_batch(flow, batch, dry_run, target), io)

    pool = [threading.Thread(target=writer, name=f"backfill-writer-{i}", daemon=True) for i in range(workers)]
    for w in pool:
        w.start()
    try:
        for batch in sansio.stream(read_batches(flow, thread_ids), io):
            batches.put(prepare(target, batch, dry_run))
    except BaseException:
        stop.set()  # interrupted: abandon what is queued (its threads stay not done)
        raise
    finally:
        for _ in pool:
            batches.put(None)
        for w in pool:
            w.join()


async def apump(
    flow: Flow, io: AsyncTargets, target: Any, thread_ids: AsyncIterator[str], workers: int, dry_run: bool
) -> None:
    """The async form of `pump`: one reader, `workers` writer tasks, a bounded queue."""
    batches: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=workers + 1)

    async def writer() -> None:
        while (batch := await batches.get()) is not None:
            await sansio.arun(write_batch(flow, batch, dry_run, target), io)

    pool = [asyncio.create_task(writer()) for _ in range(workers)]
    try:
        async for batch in sansio.astream(read_batches(flow, thread_ids), io):
            await batches.put(prepare(target, batch, dry_run))
        for _ in pool:
            await batches.put(None)
        await asyncio.gather(*pool)
    finally:
        for task in pool:
            task.cancel()  # no-op once they finished; interrupted: what is queued is dropped
