"""The backfill: copy every checkpoint the target has not seen, exactly, resumably, beside live traffic.

The source's native rows are read thread by thread, in order, and streamed into batches that
`workers` writers insert into the target (insert-if-absent) while the next batch is read, so:

- re-running adds and changes nothing; a checkpoint live shadow-write traffic already wrote
  is left as it is (never overwritten);
- a run killed at any point (SIGKILL included) and run again finishes with an exact copy: a
  thread is recorded done in the progress file only after every batch holding its rows
  committed, and an unfinished thread is simply copied again;
- writes keep their `task_path`, `idx` and order, so parallel branches replay in the same
  order and `DeltaChannel` histories stay reconstructable;
- values are decoded with the source's serializer and encoded with the target's; when both
  serializers are the same configuration (`dualsaver.stores.serde.serde_key`), the stored
  bytes of pending writes are copied unchanged instead (the same bytes the target's
  serializer would decode to the same values). Such a write is then not decoded on the way,
  so a corrupt write value is copied byte for byte rather than reported; the check reads it.

The decisions (batching, which threads are done, tallies, dry-run accounting, progress) are
written once in `Flow` and `Job`; `backfill` / `abackfill` (one reader, `workers` writers, a
bounded queue between them) and `copy_threads` / `acopy_threads` (no overlap; the lazy copy
and repair use them) are thin sync and async shells.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from dualsaver import telemetry
from dualsaver.backfill_state import BackfillState, store_identity
from dualsaver.stores import anative_for, native_for
from dualsaver.stores.native import StoredCheckpoint, ThreadItem, Unreadable, in_shard
from dualsaver.stores.sql import describe_error

BATCH_CHECKPOINTS = 250  # checkpoints per target transaction (small enough to overlap well)
BATCH_WRITES = 2500  # ...or fewer, when they carry many writes
MAX_FAILURES_KEPT = 100
UNREADABLE = "unreadable row(s)"

APPROXIMATE_NOTE = (
    "approximate copy: {side} has no native adapter, so the public API was used; writes of"
    " parallel branches may be reordered (no task_path/idx through CheckpointTuple)"
)


class Progress(Protocol):
    """What the backfill tells a progress display."""

    def start(self, total: int | None, already_done: int) -> None: ...

    def advance(self, thread_id: str, status: str, checkpoints: int, writes: int) -> None: ...


@dataclass
class CopyResult:
    """What copying one thread, or several, did (or, in a dry run, would do)."""

    thread_id: str  # the first (or only) thread
    checkpoints: int = 0  # added to the target
    writes: int = 0  # added to the target
    skipped: int = 0  # checkpoints the target already held
    read: int = 0  # checkpoints read from the source
    unreadable: int = 0
    error: str | None = None
    read_s: float = 0.0
    write_s: float = 0.0
    thread_ids: list[str] = field(default_factory=list)
    bad_threads: set[str] = field(default_factory=set)  # threads not fully copied

    @property
    def ok(self) -> bool:
        return self.error is None and self.unreadable == 0

    def failed_threads(self) -> list[str]:
        return [t for t in self.thread_ids or [self.thread_id] if t in self.bad_threads]


@dataclass
class BackfillResult:
    threads: int = 0  # threads copied in this run
    threads_resumed: int = 0  # threads already done in an earlier run, not read again
    checkpoints: int = 0  # checkpoints added to the target
    writes: int = 0  # writes added to the target
    skipped: int = 0  # checkpoints read that the target already held
    failed: int = 0  # threads not fully copied (an error, or an unreadable row)
    unreadable: int = 0  # source rows that failed to decode
    exact: bool = True  # False when either side used the public-API adapter
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (thread id, error)
    elapsed_s: float = 0.0
    read_s: float = 0.0  # time reading (and decoding) the source
    write_s: float = 0.0  # summed over writers; overlaps read_s
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def rate(self) -> float:
        """Checkpoints read per second."""
        return (self.checkpoints + self.skipped) / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> str:
        verb = "would add" if self.dry_run else "added"
        lines = [
            f"{'dry run: ' if self.dry_run else ''}{self.threads} thread(s) copied,"
            f" {self.threads_resumed} already done; {verb} {self.checkpoints} checkpoint(s) and"
            f" {self.writes} write(s); {self.skipped} checkpoint(s) already present;"
            f" {self.failed} thread(s) failed; {self.unreadable} unreadable row(s)",
            f"{self.elapsed_s:.2f}s ({self.rate:.0f} checkpoints/s); copy is"
            f" {'exact' if self.exact else 'APPROXIMATE'}",
        ]
        lines += self.notes
        lines += [f"failed: {t}: {e}" for t, e in self.failures[:10]]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate}


def passthrough(src: Any, dst: Any) -> bool:
    """True when stored bytes may be copied unchanged: both adapters know their serializer
    and it is the same configuration (see `dualsaver.stores.serde.serde_key`)."""
    key = getattr(src, "serde_key", None)
    return key is not None and key == getattr(dst, "serde_key", None)


# --------------------------------------------------------------------------- decisions


@dataclass
class Batch:
    """Checkpoints written in one target transaction, and the threads they belong to."""

    items: list[StoredCheckpoint]
    threads: list[str]
    prepared: Any = None  # the target's encoded rows, when it can encode ahead (prepare)
    error: BaseException | None = None  # encoding failed: the batch fails, not the run


def prepare(dst: Any, batch: Batch, dry_run: bool) -> Batch:
    """Encode the batch for the target in the reader's thread, when the target can: the
    encoding is CPU work, writing mostly waits on the target, so the two overlap."""
    encode = getattr(dst, "prepare_write", None)
    if encode is not None and not dry_run:
        try:
            batch.prepared = encode(batch.items)
        except Exception as exc:
            batch.error = exc
    return batch


Finished = Callable[[list[tuple[str, "str | None"]]], None]  # [(thread id, error or None)]


class Flow:
    """Streams source items into batches and decides, as batches commit or fail, which
    threads are finished and whether fully copied. Thread-safe: one reader, many writers.

    A thread holds one reference while it is read and one per batch holding its rows, from
    the moment its first row enters the batch until that batch committed or failed; when the
    last reference goes, the thread is finished (`on_finished`, called with every thread a
    step finished, so their progress is recorded in one commit). So a thread is reported done
    only once all of its rows are committed, whatever order writers finish in."""

    def __init__(self, *, encoded: bool = False, on_finished: Finished | None = None) -> None:
        self.encoded = encoded  # read stored bytes, for a target with the same serializer
        self.on_finished = on_finished
        self.checkpoints = self.writes = self.skipped = self.read = self.unreadable = 0
        self.read_s = self.write_s = 0.0
        self.first_error: str | None = None
        self._lock = threading.Lock()
        self._items: list[StoredCheckpoint] = []
        self._batch_threads: dict[str, None] = {}
        self._writes_in_batch = 0
        self._refs: dict[str, int] = {}
        self._errors: dict[str, str] = {}
        self._finished: list[tuple[str, str | None]] = []

    # reader side
    def begin(self, thread_id: str) -> None:
        with self._lock:
            self._refs[thread_id] = self._refs.get(thread_id, 0) + 1

    def take(self, item: ThreadItem) -> Batch | None:
        """Add one source item; returns a batch when one is full."""
        with self._lock:
            if isinstance(item, Unreadable):
                self.unreadable += 1
                self._errors.setdefault(item.thread_id, UNREADABLE)
                return None
            self.read += 1
            self._items.append(item)
            self._writes_in_batch += len(item.writes)
            if item.thread_id not in self._batch_threads:
                self._batch_threads[item.thread_id] = None
                self._refs[item.thread_id] = self._refs.get(item.thread_id, 0) + 1
            if len(self._items) < BATCH_CHECKPOINTS and self._writes_in_batch < BATCH_WRITES:
                return None
            return self._cut()

    def end(self, thread_id: str, exc: BaseException | None = None) -> None:
        """The thread has been read (or reading it failed with `exc`)."""
        with self._lock:
            if exc is not None:
                self._fail(thread_id, describe_error(exc))
            self._release(thread_id)
        self._report()

    def flush(self) -> Batch | None:
        with self._lock:
            return self._cut() if self._items else None

    # writer side
    def committed(self, batch: Batch, added: tuple[int, int], seconds: float) -> None:
        with self._lock:
            self.checkpoints += added[0]
            self.writes += added[1]
            self.skipped += len(batch.items) - added[0]
            self.write_s += seconds
            for t in batch.threads:
                self._release(t)
        self._report()

    def failed(self, batch: Batch, exc: BaseException, seconds: float) -> None:
        with self._lock:
            self.write_s += seconds
            for t in batch.threads:
                self._fail(t, describe_error(exc))
                self._release(t)
        self._report()

    # internals (called under the lock)
    def _cut(self) -> Batch:
        batch = Batch(self._items, list(self._batch_threads))
        self._items, self._batch_threads, self._writes_in_batch = [], {}, 0
        return batch

    def _fail(self, thread_id: str, error: str) -> None:
        if self._errors.get(thread_id) in (None, UNREADABLE):
            self._errors[thread_id] = error
        if self.first_error is None:
            self.first_error = error

    def _release(self, thread_id: str) -> None:
        left = self._refs[thread_id] - 1
        if left:
            self._refs[thread_id] = left
            return
        del self._refs[thread_id]
        self._finished.append((thread_id, self._errors.pop(thread_id, None)))

    def _report(self) -> None:
        """Hand finished threads over outside the lock (recording them may wait on a disk
        commit; the reader should not). Each thread is handed over exactly once."""
        with self._lock:
            finished, self._finished = self._finished, []
        if finished and self.on_finished is not None:
            self.on_finished(finished)


def _read_kwargs(flow: Flow) -> dict[str, Any]:
    return {"encoded": True} if flow.encoded else {}


def _dry_count(batch: Batch, keys: dict[str, set]) -> tuple[int, int]:
    new = [c for c in batch.items if (c.checkpoint_ns, c.checkpoint_id) not in keys[c.thread_id]]
    return len(new), sum(len(c.writes) for c in new)


# --------------------------------------------------------------------------- sync shell


def _read_thread(flow: Flow, src: Any, thread_id: str) -> Iterator[Batch]:
    flow.begin(thread_id)
    t0 = time.perf_counter()
    try:
        for item in src.read_thread(thread_id, **_read_kwargs(flow)):
            if batch := flow.take(item):
                flow.read_s += time.perf_counter() - t0
                yield batch
                t0 = time.perf_counter()
    except Exception as exc:
        flow.end(thread_id, exc)
    else:
        flow.end(thread_id)
    finally:
        flow.read_s += time.perf_counter() - t0


def _write(flow: Flow, dst: Any, batch: Batch, dry_run: bool) -> None:
    """Write one batch; an error fails its threads, never the run."""
    t0 = time.perf_counter()
    try:
        if batch.error is not None:
            raise batch.error
        if dry_run:
            added = _dry_count(batch, {t: dst.checkpoint_keys(t) for t in batch.threads})
        elif batch.prepared is not None:
            added = dst.write_prepared(batch.prepared)
        else:
            added = dst.write_checkpoints(batch.items)
    except Exception as exc:
        flow.failed(batch, exc, time.perf_counter() - t0)
    else:
        flow.committed(batch, added, time.perf_counter() - t0)


def copy_thread(source: Any, target: Any, thread_id: str, *, dry_run: bool = False) -> CopyResult:
    """Copy one whole thread (every namespace) from `source` to `target`, inserting only what
    the target lacks. `source`/`target` are savers or native stores. Errors are returned in
    the result, not raised (the lazy copy and the repair decide what a failure means)."""
    return copy_threads(source, target, [thread_id], dry_run=dry_run)


def copy_threads(source: Any, target: Any, thread_ids: list[str], *, dry_run: bool = False) -> CopyResult:
    """Copy several threads, reading and writing in turn (no worker threads)."""
    src, dst = native_for(source), native_for(target)
    result = CopyResult(thread_ids[0], thread_ids=list(thread_ids))
    flow = Flow(encoded=passthrough(src, dst), on_finished=_collect(result))
    for thread_id in thread_ids:
        for batch in _read_thread(flow, src, thread_id):
            _write(flow, dst, batch, dry_run)
    if batch := flow.flush():
        _write(flow, dst, batch, dry_run)
    return _copy_result(result, flow)


def _collect(result: CopyResult) -> Finished:
    def finished(threads: list[tuple[str, str | None]]) -> None:
        result.bad_threads.update(t for t, error in threads if error is not None)

    return finished


def _copy_result(result: CopyResult, flow: Flow) -> CopyResult:
    result.checkpoints, result.writes, result.skipped = flow.checkpoints, flow.writes, flow.skipped
    result.read, result.unreadable, result.error = flow.read, flow.unreadable, flow.first_error
    result.read_s, result.write_s = flow.read_s, flow.write_s
    return result


def _pump_sync(flow: Flow, src: Any, dst: Any, thread_ids: Iterable[str], workers: int, dry_run: bool) -> None:
    """Read in this thread while `workers` threads write; at most `workers + 1` batches wait
    in between, so memory stays flat whatever the store's size."""
    batches: queue.Queue[Batch | None] = queue.Queue(maxsize=workers + 1)
    stop = threading.Event()

    def writer() -> None:
        while (batch := batches.get()) is not None:
            if not stop.is_set():
                _write(flow, dst, batch, dry_run)

    pool = [threading.Thread(target=writer, name=f"backfill-writer-{i}", daemon=True) for i in range(workers)]
    for w in pool:
        w.start()
    try:
        for thread_id in thread_ids:
            for batch in _read_thread(flow, src, thread_id):
                batches.put(prepare(dst, batch, dry_run))
        if batch := flow.flush():
            batches.put(prepare(dst, batch, dry_run))
    except BaseException:
        stop.set()  # interrupted: abandon what is queued (its threads stay not done)
        raise
    finally:
        for _ in pool:
            batches.put(None)
        for w in pool:
            w.join()


# --------------------------------------------------------------------------- async shell


async def _aread_thread(flow: Flow, src: Any, thread_id: str) -> AsyncIterator[Batch]:
    flow.begin(thread_id)
    t0 = time.perf_counter()
    try:
        async for item in src.read_thread(thread_id, **_read_kwargs(flow)):
            if batch := flow.take(item):
                flow.read_s += time.perf_counter() - t0
                yield batch
                t0 = time.perf_counter()
    except Exception as exc:
        flow.end(thread_id, exc)
    else:
        flow.end(thread_id)
    finally:
        flow.read_s += time.perf_counter() - t0


async def _awrite(flow: Flow, dst: Any, batch: Batch, dry_run: bool) -> None:
    t0 = time.perf_counter()
    try:
        if batch.error is not None:
            raise batch.error
        if dry_run:
            added = _dry_count(batch, {t: await dst.checkpoint_keys(t) for t in batch.threads})
        elif batch.prepared is not None:
            added = await dst.write_prepared(batch.prepared)
        else:
            added = await dst.write_checkpoints(batch.items)
    except Exception as exc:
        flow.failed(batch, exc, time.perf_counter() - t0)
    else:
        flow.committed(batch, added, time.perf_counter() - t0)


async def acopy_thread(source: Any, target: Any, thread_id: str, *, dry_run: bool = False) -> CopyResult:
    """The async form of `copy_thread`."""
    return await acopy_threads(source, target, [thread_id], dry_run=dry_run)


async def acopy_threads(source: Any, target: Any, thread_ids: list[str], *, dry_run: bool = False) -> CopyResult:
    """The async form of `copy_threads`."""
    src, dst = anative_for(source), anative_for(target)
    result = CopyResult(thread_ids[0], thread_ids=list(thread_ids))
    flow = Flow(encoded=passthrough(src, dst), on_finished=_collect(result))
    for thread_id in thread_ids:
        async for batch in _aread_thread(flow, src, thread_id):
            await _awrite(flow, dst, batch, dry_run)
    if batch := flow.flush():
        await _awrite(flow, dst, batch, dry_run)
    return _copy_result(result, flow)


async def _pump_async(
    flow: Flow, src: Any, dst: Any, thread_ids: AsyncIterator[str], workers: int, dry_run: bool
) -> None:
    """The async form of `_pump_sync`: one reader, `workers` writer tasks, a bounded queue."""
    batches: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=workers + 1)

    async def writer() -> None:
        while (batch := await batches.get()) is not None:
            await _awrite(flow, dst, batch, dry_run)

    pool = [asyncio.create_task(writer()) for _ in range(workers)]
    try:
        async for thread_id in thread_ids:
            async for batch in _aread_thread(flow, src, thread_id):
                await batches.put(prepare(dst, batch, dry_run))
        if batch := flow.flush():
            await batches.put(prepare(dst, batch, dry_run))
        for _ in pool:
            await batches.put(None)
        await asyncio.gather(*pool)
    finally:
        for task in pool:
            task.cancel()  # no-op once they finished; interrupted: what is queued is dropped


# --------------------------------------------------------------------------- the job


class Job:
    """The whole run's decisions: which threads, what is already done, what to record."""

    def __init__(
        self,
        src: Any,
        dst: Any,
        *,
        old_name: str,
        new_name: str,
        shard: tuple[int, int] | None,
        resume: bool,
        dry_run: bool,
        thread_ids: Iterable[str] | None,
        progress: Progress | None,
        state_path: Any,
    ) -> None:
        if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
            raise ValueError(f"bad shard {shard[0]}/{shard[1]}: need 0 <= index < count")
        self.shard = shard
        self.dry_run = dry_run
        self.thread_ids = sorted(set(thread_ids)) if thread_ids is not None else None
        self.progress = progress
        self.result = BackfillResult(dry_run=dry_run, started_at=time.time())
        self.result.exact = bool(src.exact and dst.exact)
        for side, store in (("the source", src), ("the target", dst)):
            if not store.exact:
                self.result.notes.append(APPROXIMATE_NOTE.format(side=side))
        self.state = BackfillState(state_path, old=old_name, new=new_name, shard=shard)
        if not resume and not dry_run:
            self.state.restart()
        self.flow = Flow(encoded=passthrough(src, dst), on_finished=self.threads_finished)
        self._lock = threading.Lock()
        self._reported = (0, 0)  # checkpoints and writes already shown by the progress display
        self._counted = 0  # checkpoints already added to the backfill metric
        self._t0 = time.perf_counter()

    def wanted(self, thread_id: str) -> bool:
        return in_shard(thread_id, self.shard)

    def todo(self, thread_id: str) -> bool:
        """False when an earlier run finished this thread (resume)."""
        if self.state.is_done(thread_id):
            self.result.threads_resumed += 1
            return False
        return True

    def started(self, total: int | None) -> None:
        if self.progress is not None:
            self.progress.start(total, self.state.done_count())

    def threads_finished(self, threads: list[tuple[str, str | None]]) -> None:
        """Record finished threads: the fully copied ones are marked done in one commit (after
        all their rows committed, so a kill before this line only means copying them again)."""
        with self._lock:
            r, flow = self.result, self.flow
            r.threads += len(threads)
            for thread_id, error in threads:
                if error is not None:
                    r.failed += 1
                    if len(r.failures) < MAX_FAILURES_KEPT:
                        r.failures.append((thread_id, error))
            if not self.dry_run:
                self.state.mark_done_many([t for t, error in threads if error is None])
                failed = sum(1 for _, error in threads if error is not None)
                telemetry.backfill_threads.add(len(threads) - failed, {"outcome": "ok"})
                if failed:
                    telemetry.backfill_threads.add(failed, {"outcome": "failed"})
                telemetry.backfill_checkpoints.add(flow.checkpoints - self._counted)
                self._counted = flow.checkpoints
            if self.progress is not None:  # the counts since the last report go with the first
                added = (flow.checkpoints - self._reported[0], flow.writes - self._reported[1])
                self._reported = (flow.checkpoints, flow.writes)
                for n, (thread_id, error) in enumerate(threads):
                    status = "failed" if error is not None else "ok"
                    self.progress.advance(thread_id, status, *(added if n == 0 else (0, 0)))

    def finish(self) -> BackfillResult:
        r, flow = self.result, self.flow
        r.checkpoints, r.writes, r.skipped, r.unreadable = flow.checkpoints, flow.writes, flow.skipped, flow.unreadable
        r.read_s, r.write_s = flow.read_s, flow.write_s
        self.result.elapsed_s = time.perf_counter() - self._t0
        self.result.finished_at = time.time()
        if not self.dry_run:
            self.state.finish(self.result.summary())
        self.state.close()
        return self.result


def _names(old: Any, new: Any, old_name: str | None, new_name: str | None) -> tuple[str, str]:
    return old_name or store_identity(old), new_name or store_identity(new)


def backfill(
    old: Any,
    new: Any,
    *,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    resume: bool = True,
    dry_run: bool = False,
    thread_ids: Iterable[str] | None = None,
    progress: Progress | None = None,
    state_path: Any = None,
    old_name: str | None = None,
    new_name: str | None = None,
) -> BackfillResult:
    """Copy `old`'s history into `new` (savers or native stores); see the module docstring.

    `shard=(i, n)` takes the threads whose stable hash falls in shard i of n; `thread_ids`
    limits the run to those threads; `resume=False` forgets earlier progress; `dry_run`
    writes nothing and counts what would be added. `old_name`/`new_name` name the stores in
    the progress record (default: derived from the savers, passwords redacted)."""
    src, dst = native_for(old), native_for(new)
    job = Job(
        src, dst, **_job_kwargs(old, new, old_name, new_name, shard, resume, dry_run, thread_ids, progress, state_path)
    )
    try:
        if progress is not None:
            job.started(sum(1 for _ in _threads(job, src)))
        todo = (t for t in _threads(job, src) if job.todo(t))
        _pump_sync(job.flow, src, dst, todo, max(1, workers), dry_run)
    finally:
        result = job.finish()
    return result


async def abackfill(
    old: Any,
    new: Any,
    *,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    resume: bool = True,
    dry_run: bool = False,
    thread_ids: Iterable[str] | None = None,
    progress: Progress | None = None,
    state_path: Any = None,
    old_name: str | None = None,
    new_name: str | None = None,
) -> BackfillResult:
    """The async form of `backfill`: the same `Job` and `Flow` decisions, `workers` writer tasks."""
    src, dst = anative_for(old), anative_for(new)
    job = Job(
        src, dst, **_job_kwargs(old, new, old_name, new_name, shard, resume, dry_run, thread_ids, progress, state_path)
    )
    try:
        if progress is not None:
            job.started(sum([1 async for _ in _athreads(job, src)]))
        todo = (t async for t in _athreads(job, src) if job.todo(t))
        await _pump_async(job.flow, src, dst, todo, max(1, workers), dry_run)
    finally:
        result = job.finish()
    return result


def _job_kwargs(old, new, old_name, new_name, shard, resume, dry_run, thread_ids, progress, state_path) -> dict:
    old_name, new_name = _names(old, new, old_name, new_name)
    return dict(
        old_name=old_name,
        new_name=new_name,
        shard=shard,
        resume=resume,
        dry_run=dry_run,
        thread_ids=thread_ids,
        progress=progress,
        state_path=state_path,
    )


def _threads(job: Job, src: Any) -> Iterator[str]:
    ids = job.thread_ids if job.thread_ids is not None else src.thread_ids()
    return (t for t in ids if job.wanted(t))


async def _athreads(job: Job, src: Any) -> AsyncIterator[str]:
    if job.thread_ids is not None:
        for t in job.thread_ids:
            if job.wanted(t):
                yield t
        return
    async for t in src.thread_ids():
        if job.wanted(t):
            yield t
