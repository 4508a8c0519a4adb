"""Copying threads from a source store to a target store, as plans: read a thread's rows
into batches, write each batch insert-if-absent. The backfill, the lazy copy of read-switch
and the repair all copy through these plans; `copy_threads` / `acopy_threads` run them one
batch after another (the backfill's pump in `_backfill` overlaps reading and writing).

The plans' targets are "source" and "target", two native stores (`dualsaver.stores`).
"""

from __future__ import annotations

import time
from typing import Any

from dualsaver import sansio
from dualsaver.migrate._flow import (
    Batch, CopyResult, Flow, collector, copy_result, dry_count, prepare, read_options, threads_per_read,
)
from dualsaver.control.throttle import Throttle
from dualsaver.errors import is_outage
from dualsaver.sansio import END, AsyncTargets, Call, Emit, Next, Plan, Targets
from dualsaver.stores.native import StoredCheckpoint
from dualsaver.stores import anative_for, native_for


def read_batches(flow: Flow, thread_ids: Any) -> Plan[None]:
    """Emit the rows of each thread `thread_ids` yields, cut into batches, then the last
    partial batch. `thread_ids` is an iterator (async iterator under the async driver); its
    threads are read `flow.threads_per_read` at a time."""
    group: list[str] = []
    while (thread_id := (yield Next(thread_ids))) is not END:
        group.append(thread_id)
        if len(group) == flow.threads_per_read:
            yield from _read_threads(flow, group)
            group = []
    if group:
        yield from _read_threads(flow, group)
    if batch := flow.flush():
        yield Emit((batch,))


def _read_threads(flow: Flow, thread_ids: list[str]) -> Plan[None]:
    """Emit every full batch while these threads are read, in one stream (`read_threads`,
    which yields each thread's rows together) when there are several. A thread that fails to
    read fails alone, its rows read so far still written: the thread being read when a stream
    of several failed fails, and those it had not reached are read again one by one."""
    unfinished = dict.fromkeys(thread_ids)  # begun, not yet ended
    for thread_id in thread_ids:
        flow.begin(thread_id)

    def finish(thread_id: str, exc: BaseException | None = None) -> None:
        del unfinished[thread_id]
        flow.end(thread_id, exc)

    reading: str | None = None  # the thread whose rows are coming
    started = time.perf_counter()
    try:
        if len(thread_ids) == 1:
            rows = yield Call("source", "read_thread", (thread_ids[0],), flow.read_options, stream=True)
        else:
            rows = yield Call("source", "read_threads", (thread_ids,), flow.read_options, stream=True)
        while (item := (yield Next(rows))) is not END:
            if item.thread_id != reading:
                if reading in unfinished:
                    finish(reading)  # its rows have all come
                reading = item.thread_id
            if batch := flow.take(item):
                seconds = time.perf_counter() - started
                flow.read_s += seconds
                if flow.throttle is not None:
                    flow.throttle.observe(seconds)
                yield Emit((batch,))
                started = time.perf_counter()
    except Exception as exc:
        flow.read_s += time.perf_counter() - started
        failed = thread_ids[0] if len(thread_ids) == 1 else reading  # alone: it fails even before its first row
        if failed in unfinished:
            finish(failed, exc)
        for thread_id in list(unfinished):  # not reached: each read alone, under this read's hold
            yield from _read_threads(flow, [thread_id])
            finish(thread_id)
    else:
        flow.read_s += time.perf_counter() - started
        for thread_id in list(unfinished):  # the last one read, and any with no rows
            finish(thread_id)


def write_batch(flow: Flow, batch: Batch, dry_run: bool, target: Any) -> Plan[None]:
    """Write one prepared batch (a dry run counts what would be added instead).

    A bad row is its own thread's problem: a batch that fails is written again thread by
    thread, and a thread's rows one by one, so healthy threads that shared the batch are
    copied and the row that cannot be written is named. An unreachable target fails the
    batch's threads as they are (they are copied on the next run). `target` encodes the
    parts again (`prepare_write`)."""
    started = time.perf_counter()
    try:
        if batch.error is not None:
            raise batch.error
        if dry_run:
            keys = {}
            for thread_id in batch.threads:
                keys[thread_id] = yield Call("target", "checkpoint_keys", (thread_id,))
            added = dry_count(batch, keys)
        else:
            added = yield Call("target", "write_prepared", (batch.prepared,))
    except Exception as exc:
        seconds = time.perf_counter() - started
        if dry_run or is_outage(exc):
            flow.failed(batch, exc, seconds)
        elif len(batch.items) == 1:
            flow.row_failed(batch, exc, seconds)
        else:
            for part in flow.split(batch, _parts(batch), seconds):
                yield from write_batch(flow, prepare(target, part, dry_run), dry_run, target)
    else:
        seconds = time.perf_counter() - started
        flow.committed(batch, added, seconds)
        yield from _pace(flow, len(batch.items), seconds)


def _pace(flow: Flow, checkpoints: int, seconds: float) -> Plan[None]:
    """Tell the throttle how long the write took, and wait as long as it says."""
    if flow.throttle is None:
        return
    flow.throttle.observe(seconds)
    if delay := flow.throttle.after(checkpoints):
        yield Call("clock", "sleep", (delay,))


def asks_many(source: Any) -> bool:
    """Whether `deleted_meanwhile` asks the source about many threads in one query (SQL stores)."""
    return hasattr(source, "threads_held") or hasattr(source, "athreads_held")


def deleted_meanwhile(thread_ids: list[str], many: bool) -> Plan[list[str]]:
    """Delete from the target those of `thread_ids`, whose copies committed, that the source
    no longer holds; returns them.

    The application may delete a thread while it is copied: DualSaver deletes it in the
    primary, then in the secondary, and rows read from the primary before that delete and
    written to the secondary after it bring the thread back there (a conversation a user
    asked to forget, and a divergence the check would report). So once the copy committed,
    the source (the primary) is asked whether it still holds the thread. The delete reaches
    the source before the target, so a thread the source still holds was not deleted before
    its copy was written (a later delete removes the copy too), and one it no longer holds
    was: the copy is deleted. `many` (`asks_many`): one query for many threads, else a
    thread at a time. Left to the check: a thread deleted and written again before the
    question (the source holds it: the old rows stay in the target), or written again
    between the question and the delete (the target loses that write; a backfill run again
    copies it)."""
    if not thread_ids:
        return []
    if many:
        held = yield Call("source", "threads_held", (thread_ids,))
    else:
        held = set()
        for thread_id in thread_ids:
            if (yield Call("source", "checkpoint_keys", (thread_id,))):
                held.add(thread_id)
    gone = [thread_id for thread_id in thread_ids if thread_id not in held]
    for thread_id in gone:
        yield Call("target", "delete_thread", (thread_id,))
    return gone


def _parts(batch: Batch) -> list[list[StoredCheckpoint]]:
    """How a failed batch is written again: thread by thread; a single thread's, row by row."""
    by_thread: dict[str, list[StoredCheckpoint]] = {}
    for item in batch.items:
        by_thread.setdefault(item.thread_id, []).append(item)
    if len(by_thread) > 1:
        return list(by_thread.values())
    return [[item] for item in batch.items]


def copy_plan(
    target: Any, thread_ids: list[str], dry_run: bool, *, options: dict[str, bool] | None = None,
    throttle: Throttle | None = None, threads_per_read: int = 1,
) -> Plan[CopyResult]:
    """Copy these threads one batch after another. `target` is the target store itself,
    which encodes each batch (`prepare_write`) before it is written; `options` say how the
    source is read (`read_options`: what stored bytes pass through)."""
    result = CopyResult(thread_ids[0], thread_ids=list(thread_ids))
    flow = Flow(
        read_options=options, on_finished=collector(result), throttle=throttle, threads_per_read=threads_per_read
    )

    def write(batch: Batch) -> Plan[None]:
        return write_batch(flow, prepare(target, batch, dry_run), dry_run, target)

    yield from sansio.for_each(read_batches(flow, iter(thread_ids)), write)
    return copy_result(result, flow)


def copy_thread(
    source: Any, target: Any, thread_id: str, *, dry_run: bool = False, forget_deleted: bool = False
) -> CopyResult:
    """Copy one whole thread (every namespace) from `source` to `target`, inserting only what
    the target lacks. `source`/`target` are savers or native stores. Errors are returned in
    the result, not raised (the lazy copy and the repair decide what a failure means).
    `forget_deleted`: see `copy_threads`."""
    return copy_threads(source, target, [thread_id], dry_run=dry_run, forget_deleted=forget_deleted)


def copy_threads(
    source: Any, target: Any, thread_ids: list[str], *, dry_run: bool = False, forget_deleted: bool = False
) -> CopyResult:
    """Copy several threads, reading and writing in turn (no worker threads). With
    `forget_deleted`, the source is then asked whether it still holds each thread copied, and
    one it no longer holds is deleted from the target (`deleted_meanwhile`; the result's
    `deleted`). Read-switch's lazy copy asks so: there the application's delete reaches new
    (the target) before old, so the question does not close the window as it does for the
    backfill, but narrows it from the whole copy to one delete call of old."""
    source_store, target_store = native_for(source), native_for(target)
    plan = copy_then_ask(source_store, target_store, thread_ids, dry_run, forget_deleted)
    return sansio.run(plan, Targets(source=source_store, target=target_store))


async def acopy_thread(
    source: Any, target: Any, thread_id: str, *, dry_run: bool = False, forget_deleted: bool = False
) -> CopyResult:
    """The async form of `copy_thread`."""
    return await acopy_threads(source, target, [thread_id], dry_run=dry_run, forget_deleted=forget_deleted)


async def acopy_threads(
    source: Any, target: Any, thread_ids: list[str], *, dry_run: bool = False, forget_deleted: bool = False
) -> CopyResult:
    """The async form of `copy_threads`."""
    source_store, target_store = anative_for(source), anative_for(target)
    plan = copy_then_ask(source_store, target_store, thread_ids, dry_run, forget_deleted)
    return await sansio.arun(plan, AsyncTargets(source=source_store, target=target_store))


def copy_then_ask(
    source: Any, target: Any, thread_ids: list[str], dry_run: bool, forget_deleted: bool,
    throttle: Throttle | None = None,
) -> Plan[CopyResult]:
    """`copy_plan` between these native stores; with `forget_deleted`, then
    `deleted_meanwhile` of the threads it read rows of (the result's `deleted`): the lazy
    copy's and the repair's."""
    result = yield from copy_plan(target, thread_ids, dry_run, options=read_options(source, target), throttle=throttle,
                                  threads_per_read=threads_per_read(source))
    if forget_deleted and result.read and not dry_run:
        result.deleted = yield from deleted_meanwhile(thread_ids, asks_many(source))
    return result

