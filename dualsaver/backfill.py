"""The backfill: copy every checkpoint the target has not seen, exactly, resumably, beside live traffic.

One thread at a time (or `workers` at once), the source's native rows are read in order and
written to the target in batches with insert-if-absent semantics, so:

- re-running adds and changes nothing; a checkpoint live shadow-write traffic already wrote
  is left as it is (never overwritten);
- a run killed at any point (SIGKILL included) and run again finishes with an exact copy: a
  thread is recorded done in the progress file only after its last batch committed, and an
  unfinished thread is simply copied again;
- writes keep their `task_path`, `idx` and order, so parallel branches replay in the same
  order and `DeltaChannel` histories stay reconstructable;
- values are decoded with the source's serializer and encoded with the target's.

The decisions (which threads, batching, tallies, dry-run accounting, progress) are written
once in `ThreadCopy` and `Job`; `backfill` and `abackfill` are thin sync and async shells.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from dualsaver.backfill_state import BackfillState, store_identity
from dualsaver.stores import anative_for, native_for
from dualsaver.stores.native import StoredCheckpoint, ThreadItem, Unreadable, in_shard
from dualsaver.stores.sql import describe_error

BATCH_CHECKPOINTS = 500  # checkpoints per target transaction
BATCH_WRITES = 5000  # ...or fewer, when they carry many writes
MAX_FAILURES_KEPT = 100
GROUP_THREADS = 16  # consecutive threads sharing batches (one commit for many small threads)

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
    """What copying one thread, or a group of small threads sharing batches, did (or, in a
    dry run, would do)."""

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
    bad_threads: set[str] = field(default_factory=set)  # threads with unreadable rows

    @property
    def ok(self) -> bool:
        return self.error is None and self.unreadable == 0

    def failed_threads(self) -> list[str]:
        ids = self.thread_ids or [self.thread_id]
        return list(ids) if self.error else [t for t in ids if t in self.bad_threads]


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
    read_s: float = 0.0  # summed over workers
    write_s: float = 0.0  # summed over workers
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def rate(self) -> float:
        """Checkpoints read per second."""
        return (self.checkpoints + self.skipped) / self.elapsed_s if self.elapsed_s else 0.0

    def add(self, r: CopyResult) -> None:
        self.threads += len(r.thread_ids or [r.thread_id])
        self.checkpoints += r.checkpoints
        self.writes += r.writes
        self.skipped += r.skipped
        self.unreadable += r.unreadable
        self.read_s += r.read_s
        self.write_s += r.write_s
        for thread_id in r.failed_threads():
            self.failed += 1
            if len(self.failures) < MAX_FAILURES_KEPT:
                self.failures.append((thread_id, r.error or "unreadable row(s)"))

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


class ThreadCopy:
    """The decisions for one thread, fed by either shell: batch the source's items, count
    what the target took, and in a dry run count against the target's keys instead."""

    def __init__(self, thread_id: str, *, dry_run: bool = False, existing: set | None = None) -> None:
        self.result = CopyResult(thread_id)
        self.dry_run = dry_run
        self.existing = existing or set()
        self._batch: list[StoredCheckpoint] = []
        self._writes_in_batch = 0

    def take(self, item: ThreadItem) -> list[StoredCheckpoint] | None:
        """Add one source item; returns a batch when one is full."""
        if isinstance(item, Unreadable):
            self.result.unreadable += 1
            self.result.bad_threads.add(item.thread_id)
            return None
        self.result.read += 1
        self._batch.append(item)
        self._writes_in_batch += len(item.writes)
        if len(self._batch) >= BATCH_CHECKPOINTS or self._writes_in_batch >= BATCH_WRITES:
            return self.rest()
        return None

    def rest(self) -> list[StoredCheckpoint] | None:
        batch, self._batch, self._writes_in_batch = self._batch, [], 0
        return batch or None

    def dry_count(self, batch: list[StoredCheckpoint]) -> tuple[int, int]:
        new = [c for c in batch if c.key not in self.existing]
        return len(new), sum(len(c.writes) for c in new)

    def wrote(self, batch: list[StoredCheckpoint], added: tuple[int, int], seconds: float) -> None:
        self.result.checkpoints += added[0]
        self.result.writes += added[1]
        self.result.skipped += len(batch) - added[0]
        self.result.write_s += seconds

    def existing_in(self, thread_id: str, keys: set) -> None:
        self.existing |= {(thread_id, *k) for k in keys}

    def failed(self, exc: BaseException) -> CopyResult:
        self.result.error = describe_error(exc)
        return self.result


# --------------------------------------------------------------------------- one thread


def copy_thread(source: Any, target: Any, thread_id: str, *, dry_run: bool = False) -> CopyResult:
    """Copy one whole thread (every namespace) from `source` to `target`, inserting only what
    the target lacks. `source`/`target` are savers or native stores. Errors are returned in
    the result, not raised (the lazy copy and the repair decide what a failure means)."""
    return copy_threads(source, target, [thread_id], dry_run=dry_run)


def copy_threads(source: Any, target: Any, thread_ids: list[str], *, dry_run: bool = False) -> CopyResult:
    """Copy several threads through shared batches (small threads then cost one target
    transaction per batch, not one each); all of them, or none, are then reported done."""
    src, dst = native_for(source), native_for(target)
    started = time.perf_counter()
    copy = ThreadCopy(thread_ids[0], dry_run=dry_run)
    copy.result.thread_ids = list(thread_ids)
    try:
        for thread_id in thread_ids:
            if dry_run:
                copy.existing_in(thread_id, dst.checkpoint_keys(thread_id))
            for batch in _batches(copy, src.read_thread(thread_id), last=False):
                _write(copy, dst, batch)
        if batch := copy.rest():
            _write(copy, dst, batch)
    except Exception as exc:
        copy.failed(exc)
    copy.result.read_s = time.perf_counter() - started - copy.result.write_s
    return copy.result


def _write(copy: ThreadCopy, dst: Any, batch: list[StoredCheckpoint]) -> None:
    t0 = time.perf_counter()
    added = copy.dry_count(batch) if copy.dry_run else dst.write_checkpoints(batch)
    copy.wrote(batch, added, time.perf_counter() - t0)


async def _awrite(copy: ThreadCopy, dst: Any, batch: list[StoredCheckpoint]) -> None:
    t0 = time.perf_counter()
    added = copy.dry_count(batch) if copy.dry_run else await dst.write_checkpoints(batch)
    copy.wrote(batch, added, time.perf_counter() - t0)


async def acopy_thread(source: Any, target: Any, thread_id: str, *, dry_run: bool = False) -> CopyResult:
    """The async form of `copy_thread`."""
    return await acopy_threads(source, target, [thread_id], dry_run=dry_run)


async def acopy_threads(source: Any, target: Any, thread_ids: list[str], *, dry_run: bool = False) -> CopyResult:
    """The async form of `copy_threads`."""
    src, dst = anative_for(source), anative_for(target)
    started = time.perf_counter()
    copy = ThreadCopy(thread_ids[0], dry_run=dry_run)
    copy.result.thread_ids = list(thread_ids)
    try:
        for thread_id in thread_ids:
            if dry_run:
                copy.existing_in(thread_id, await dst.checkpoint_keys(thread_id))
            async for batch in _abatches(copy, src.read_thread(thread_id)):
                await _awrite(copy, dst, batch)
        if batch := copy.rest():
            await _awrite(copy, dst, batch)
    except Exception as exc:
        copy.failed(exc)
    copy.result.read_s = time.perf_counter() - started - copy.result.write_s
    return copy.result


def _batches(copy: ThreadCopy, items: Iterable[ThreadItem], last: bool = False) -> Iterator[list[StoredCheckpoint]]:
    """Full batches as they fill; the partial rest stays for the next thread of the group."""
    for item in items:
        if batch := copy.take(item):
            yield batch


async def _abatches(copy: ThreadCopy, items: AsyncIterator[ThreadItem]) -> AsyncIterator[list[StoredCheckpoint]]:
    async for item in items:
        if batch := copy.take(item):
            yield batch


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

    def finished_thread(self, r: CopyResult) -> None:
        """Record a copied thread, or group: each fully copied thread is marked done (after
        its last batch committed, so a kill before this line only means copying it again)."""
        self.result.add(r)
        failed = set(r.failed_threads())
        ids = r.thread_ids or [r.thread_id]
        if not self.dry_run:
            self.state.mark_done_many([t for t in ids if t not in failed])
        if self.progress is not None:
            for n, t in enumerate(ids):  # the group's counts go with its first thread
                status = "failed" if t in failed else "ok"
                self.progress.advance(t, status, r.checkpoints if n == 0 else 0, r.writes if n == 0 else 0)

    def finish(self) -> BackfillResult:
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
        pending: set[Future[CopyResult]] = set()
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="backfill") as pool:
            for group in _groups(t for t in _threads(job, src) if job.todo(t)):
                if workers <= 1:
                    job.finished_thread(copy_threads(src, dst, group, dry_run=dry_run))
                    continue
                pending.add(pool.submit(copy_threads, src, dst, group, dry_run=dry_run))
                if len(pending) >= 2 * workers:  # bounded: memory does not grow with the store
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        job.finished_thread(f.result())
            for f in pending:
                job.finished_thread(f.result())
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
    """The async form of `backfill`: the same `Job` decisions, run with `workers` tasks."""
    src, dst = anative_for(old), anative_for(new)
    job = Job(
        src, dst, **_job_kwargs(old, new, old_name, new_name, shard, resume, dry_run, thread_ids, progress, state_path)
    )
    try:
        if progress is not None:
            job.started(sum([1 async for _ in _athreads(job, src)]))
        pending: set[asyncio.Task[CopyResult]] = set()
        group: list[str] = []
        async for thread_id in _athreads(job, src):
            if not job.todo(thread_id):
                continue
            group.append(thread_id)
            if len(group) < GROUP_THREADS:
                continue
            pending.add(asyncio.create_task(acopy_threads(src, dst, group, dry_run=dry_run)))
            group = []
            if len(pending) >= max(1, workers):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    job.finished_thread(t.result())
        if group:
            pending.add(asyncio.create_task(acopy_threads(src, dst, group, dry_run=dry_run)))
        for t in asyncio.as_completed(pending):
            job.finished_thread(await t)
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


def _groups(thread_ids: Iterable[str]) -> Iterator[list[str]]:
    group: list[str] = []
    for thread_id in thread_ids:
        group.append(thread_id)
        if len(group) >= GROUP_THREADS:
            yield group
            group = []
    if group:
        yield group


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
