"""The backfill's decisions about batches and threads, shared by every copy (backfill, lazy
copy, repair): rows stream into batches, and a thread is finished once every batch holding
its rows committed or failed. No I/O here: the plans in `_copy` read and write."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dualsaver.control.throttle import Throttle
from dualsaver.errors import describe_error
from dualsaver.stores.native import StoredCheckpoint, ThreadItem, Unreadable

BATCH_CHECKPOINTS = 1000  # checkpoints per target transaction: fewer commits (each waits on a WAL flush)
BATCH_WRITES = 10_000  # ...or fewer, when they carry many writes
MAX_FAILURES_KEPT = 100  # failed threads, and bad rows, named in a result (all are counted)
UNREADABLE = "unreadable row(s)"

APPROXIMATE_NOTE = (
    "approximate copy: {side} has no native adapter, so the public API was used; writes of"
    " parallel branches may be reordered (no task_path/idx through CheckpointTuple)"
)



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
    bad_rows: list[dict[str, str]] = field(default_factory=list)  # thread, namespace, checkpoint id, error
    deleted: list[str] = field(default_factory=list)  # gone from the source once copied: deleted from the target

    @property
    def ok(self) -> bool:
        return self.error is None and self.unreadable == 0


def passthrough(source: Any, target: Any) -> bool:
    """True when stored bytes may be copied unchanged: both adapters know their serializer
    and it is the same configuration (see `dualsaver.stores.serde.serde_key`)."""
    key = getattr(source, "serde_key", None)
    return key is not None and key == getattr(target, "serde_key", None)


def read_options(source: Any, target: Any) -> dict[str, bool]:
    """How the source is read for this target: stored bytes kept where they may pass
    through (writes; channel values too, from a store of whole checkpoints into one that
    keeps each value apart, see `dualsaver.stores._msgpack_split`)."""
    if not passthrough(source, target):
        return {}
    options = {"encoded": True}
    if getattr(source, "gives_stored_values", False) and getattr(target, "takes_stored_values", False):
        options["stored_values"] = True
    return options


THREADS_PER_READ = 16  # a SQLite source read 10 to 50 threads a query reads 15% faster than one at a time (measured)


def threads_per_read(source: Any) -> int:
    """How many threads the copy reads from `source` at once: several where the store reads
    them in one stream (`read_threads`), saving a query or round trip per thread."""
    return THREADS_PER_READ if hasattr(source, "read_threads") or hasattr(source, "aread_threads") else 1



@dataclass
class Batch:
    """Checkpoints written in one target transaction, and the threads they belong to."""

    items: list[StoredCheckpoint]
    threads: list[str]
    prepared: Any = None  # the target's encoded rows (`prepare`)
    error: BaseException | None = None  # encoding failed: the batch fails, not the run


def prepare(target: Any, batch: Batch, dry_run: bool) -> Batch:
    """Encode the batch for the target (its `prepare_write`) before it is written: the
    backfill does this in its reader, so CPU-bound encoding overlaps the writers' waits."""
    if not dry_run:
        try:
            batch.prepared = target.prepare_write(batch.items)
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

    def __init__(
        self, *, read_options: dict[str, bool] | None = None, on_finished: Finished | None = None,
        throttle: Throttle | None = None, threads_per_read: int = 1,
    ) -> None:
        self.read_options = read_options or {}  # how the source is read (see `read_options`)
        self.threads_per_read = threads_per_read  # (see `threads_per_read`)
        self.on_finished = on_finished
        self.throttle = throttle  # paces the writes (see dualsaver.control.throttle)
        self.checkpoints = self.writes = self.skipped = self.read = self.unreadable = 0
        self.read_s = self.write_s = 0.0
        self.first_error: str | None = None
        self.bad_rows: list[dict[str, str]] = []  # thread, namespace, checkpoint id, what failed
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
        """Add one source item; returns a batch when one is full.

        A full batch ends where a thread ends (it is cut before the next thread's first row),
        unless one thread keeps it open to twice the size: a thread split across batches
        repeats the blob rows its checkpoints share in each batch, which the target then
        finds present and inserts the slow way (`CopyInsert`)."""
        with self._lock:
            if isinstance(item, Unreadable):
                self._bad_row(item.thread_id, item.checkpoint_ns, item.checkpoint_id, item.error)
                return None
            batch = None
            if self._items and (self._full(2) or (self._items[-1].thread_id != item.thread_id and self._full(1))):
                batch = self._cut()  # before this row: the batch it would join is full
            self.read += 1
            self._items.append(item)
            self._writes_in_batch += len(item.writes)
            if item.thread_id not in self._batch_threads:
                self._batch_threads[item.thread_id] = None
                self._refs[item.thread_id] = self._refs.get(item.thread_id, 0) + 1
            return batch

    def _full(self, times: int) -> bool:
        return len(self._items) >= times * BATCH_CHECKPOINTS or self._writes_in_batch >= times * BATCH_WRITES

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

    def split(self, batch: Batch, parts: list[list[StoredCheckpoint]], seconds: float) -> list[Batch]:
        """The batches to write apart after `batch` failed (its `seconds` are counted): each
        takes its references on its threads before the failed batch's are released, so no
        thread finishes in between."""
        with self._lock:
            self.write_s += seconds
            subs = [Batch(items, list(dict.fromkeys(i.thread_id for i in items))) for items in parts]
            for sub in subs:
                for t in sub.threads:
                    self._refs[t] += 1
            for t in batch.threads:
                self._release(t)
        return subs

    def row_failed(self, batch: Batch, exc: BaseException, seconds: float) -> None:
        """A batch of one row that cannot be written: a bad row, named with its key. Its
        thread is not marked done; every other thread goes on."""
        item = batch.items[0]
        with self._lock:
            self.write_s += seconds
            error = f"cannot be written to the target: {describe_error(exc)}"
            self._bad_row(item.thread_id, item.checkpoint_ns, item.checkpoint_id, error)
            self._release(item.thread_id)
        self._report()

    # internals (called under the lock)
    def _bad_row(self, thread_id: str, ns: str, checkpoint_id: str, error: str) -> None:
        self.unreadable += 1
        if len(self.bad_rows) < MAX_FAILURES_KEPT:
            row = {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id, "error": error}
            self.bad_rows.append(row)
        self._errors.setdefault(thread_id, UNREADABLE)

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


def dry_count(batch: Batch, keys: dict[str, set]) -> tuple[int, int]:
    new = [c for c in batch.items if (c.checkpoint_ns, c.checkpoint_id) not in keys[c.thread_id]]
    return len(new), sum(len(c.writes) for c in new)


def collector(result: CopyResult) -> Finished:
    def finished(threads: list[tuple[str, str | None]]) -> None:
        result.bad_threads.update(t for t, error in threads if error is not None)

    return finished


def copy_result(result: CopyResult, flow: Flow) -> CopyResult:
    result.checkpoints, result.writes, result.skipped = flow.checkpoints, flow.writes, flow.skipped
    result.read, result.unreadable, result.error = flow.read, flow.unreadable, flow.first_error
    result.bad_rows = list(flow.bad_rows)
    result.read_s, result.write_s = flow.read_s, flow.write_s
    return result
