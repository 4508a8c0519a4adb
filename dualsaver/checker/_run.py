"""The check: a streaming diff of two stores, re-checked before it reports.

    report = check(old_saver, new_saver, workers=4)
    report.clean            # the verdict on switching reads
    report.divergences      # [Divergence(kind, thread_id, checkpoint_ns, checkpoint_id, detail)]

How it works, and why:

- **Streams.** Both stores list their thread ids in ascending order; the two streams are
  merged, and each thread is read from both stores and diffed on its own, so memory holds
  one thread's fingerprints per worker (digests, not values) however large the stores.
  A thread id that only one stream yields is still read from both stores, so even stores
  that disagree on ordering cannot hide a thread from the diff.
- **Read order.** The primary (the store written first; `old` until read-switch) is read
  last: whatever the secondary already holds was in the primary before, so in-flight
  shadow writes can only look like "missing in the secondary", never the other way round.
- **Bytes first.** When both stores use the same serializer configuration, each thread is
  first compared by the hashes of its stored bytes (`_bytes`), nothing decoded; only a
  thread whose bytes differ (or that did not read) is read again decoded and diffed by
  meaning, which alone decides what is reported (values shown are read decoded).
- **Re-check.** A thread with any divergence is a suspect. After the pass, suspects are read
  again from both stores, immediately and then after short backoffs; a divergence is
  reported only if the same (kind, checkpoint) is found in every round. Writes that landed
  while the check ran complete in the meantime and drop out.
- **One implementation.** Every decision lives once: what to read and in what order in the
  plans below, the rounds, what persists and the summary in `CheckRun` (`_bookkeeping`), the
  diff in `_diff`. `check` and `acheck` only run the plans, with threads or with tasks.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar

from dualsaver.checker._bookkeeping import CheckProgress, CheckRun, ProgressFn, describe_store, merge_step, outages
from dualsaver.checker._bytes import READ_OPTIONS, ByteSide, agreed
from dualsaver.checker._diff import ThreadDiff, ThreadSide
from dualsaver.checker._processes import check_in_processes
from dualsaver.checker.findings import SIDES, DivergenceReport
from dualsaver.control.throttle import Throttle
from dualsaver.errors import describe_error, is_outage
from dualsaver.heap import fewer_collections
from dualsaver import sansio
from dualsaver.sansio import END, AsyncTargets, Call, Emit, Next, Plan, Targets
from dualsaver.stores import anative_for, native_for, refuse_same_store
from dualsaver.stores.serde import check_serde_names, plaintexts_forgotten

if TYPE_CHECKING:  # annotations only: no runtime need of typing_extensions on Python 3.10
    from typing_extensions import Unpack

__all__ = ["CheckOptions", "CheckProgress", "acheck", "check"]

DEFAULT_BACKOFF = (0.0, 0.2, 0.5, 1.0)  # seconds before each re-check round
BATCH = 100  # threads a worker reads at once from a store with `read_threads`...
BATCH_CHECKPOINTS = 20_000  # ...until this many checkpoints are read (see `_read_many`)
T = TypeVar("T")
R = TypeVar("R")


# --------------------------------------------------------------------------- plans


def _merged_ids(run: CheckRun) -> Plan[None]:
    """Emit the wanted thread ids: both stores' ascending id streams merged, each id once."""
    if run.thread_ids is not None:
        yield Emit([t for t in run.thread_ids if run.wanted(t)])
        return
    streams, heads = {}, {}
    for side in SIDES:
        streams[side] = yield Call(side, "thread_ids", stream=True)
        heads[side] = _head((yield Next(streams[side])))
    while heads["old"] is not None or heads["new"] is not None:
        thread_id, from_old, from_new = merge_step(heads["old"], heads["new"])
        for side, took in (("old", from_old), ("new", from_new)):
            if took:
                run.note_id(side, thread_id)
                heads[side] = _head((yield Next(streams[side])))
        if run.wanted(thread_id):
            yield Emit((thread_id,))


def _head(item: Any) -> str | None:
    return None if item is END else item


def _read_side(
    side: str, thread_id: str, found: ThreadSide, capture: bool, throttle: Throttle | None
) -> Plan[ThreadSide]:
    """One store's view of one thread, decoded, folded into `found`. A thread that fails to
    load is reported; a store that cannot be reached stops the check (no verdict without it)."""
    started = time.perf_counter()
    try:
        items = yield Call(side, "read_thread", (thread_id,), stream=True)
        while (item := (yield Next(items))) is not END:
            found.add(item, capture)
    except Exception as exc:
        if is_outage(exc):
            raise
        found.thread_error = describe_error(exc)
    if throttle is not None:
        throttle.observe(time.perf_counter() - started)
    return found


def _read_many(
    side: str, thread_ids: list[str], make: type[ByteSide | ThreadSide], throttle: Throttle | None
) -> Plan[dict[str, ByteSide | ThreadSide] | None]:
    """One store's view of a batch of threads, read at once (`read_threads`): as digests of
    their bytes (`ByteSide`) or decoded (`ThreadSide`). The read stops at the first thread
    that begins past `BATCH_CHECKPOINTS` (memory holds a batch's fingerprints): the threads
    it did not reach are left out, and so are all of them (None) when the batch did not read;
    each such thread is read on its own (which also says which one failed)."""
    found = {t: make() for t in thread_ids}
    options = READ_OPTIONS if isinstance(found[thread_ids[0]], ByteSide) else {}
    seen: set[str] = set()
    read = 0
    started = time.perf_counter()
    try:
        items = yield Call(side, "read_threads", (thread_ids,), options, stream=True)
        while (item := (yield Next(items))) is not END:
            if item.thread_id not in seen:
                if read >= BATCH_CHECKPOINTS:
                    return {t: found[t] for t in seen}
                seen.add(item.thread_id)
            found[item.thread_id].add(item)
            read += 1
    except Exception as exc:
        if is_outage(exc):
            raise
        return None
    finally:
        if throttle is not None:
            throttle.observe(time.perf_counter() - started)
    return found


def _read_batch(run: CheckRun, thread_ids: list[str], *, capture: bool) -> Plan[list[ThreadDiff]]:
    """The diffs of a batch of threads, in order. Where both stores read several threads at
    once, the batch is read from each in one go (the primary last, see the module docstring):
    as digests of their bytes where those compare, decoded otherwise. A thread the batch
    does not settle (its digests differ, or the batch did not read) and a round that captures
    values are read decoded one thread at a time."""
    results: dict[str, ThreadDiff | None] = dict.fromkeys(thread_ids)
    if run.reads_many and not capture:
        make: type[ByteSide | ThreadSide] = ByteSide if run.compares_bytes else ThreadSide
        sides = {}
        for side in run.read_order():
            sides[side] = yield from _read_many(side, thread_ids, make, run.throttle)
        old, new = sides["old"] or {}, sides["new"] or {}
        for t in thread_ids:
            if t in old and t in new:
                results[t] = _settle(run, t, old[t], new[t])
        settled = sum(r.checkpoints_compared for r in results.values() if r is not None)
        if run.throttle is not None and (delay := run.throttle.after(settled)):
            yield Call("clock", "sleep", (delay,))
    for t, result in results.items():
        if result is None:
            results[t] = yield from _read_decoded(run, t, capture)
    return [r for r in results.values() if r is not None]


def _settle(run: CheckRun, thread_id: str, old: Any, new: Any) -> ThreadDiff | None:
    """A thread's diff from a batch's views: clean where its digests agree (None where they
    differ: decide it decoded), or the diff of its decoded views."""
    if isinstance(old, ByteSide) and isinstance(new, ByteSide):
        return agreed(thread_id, old, new)
    return run.diff(thread_id, {"old": old, "new": new})


def _read_decoded(run: CheckRun, thread_id: str, capture: bool) -> Plan[ThreadDiff]:
    sides = {}
    for side in run.read_order():
        sides[side] = yield from _read_side(side, thread_id, ThreadSide(), capture, run.throttle)
    result = run.diff(thread_id, sides)
    if run.throttle is not None and (delay := run.throttle.after(result.checkpoints_compared)):
        yield Call("clock", "sleep", (delay,))
    return result


# --------------------------------------------------------------------------- the shells


class CheckOptions(TypedDict, total=False):
    """How a check runs: the keywords `check` and `acheck` both take (defaults: `_DEFAULTS`).

    `workers` threads (tasks) read threads side by side; `shard=(i, n)` checks only the threads
    of shard i of n, `thread_ids` only those threads; `recheck=False` reports first sightings;
    `progress` is called with a `CheckProgress` now and then; `show_values` puts values in the
    report (digests otherwise); `primary` is the store written first in the current phase
    (read last); `backoff` gives the delay before each re-check round (its length bounds the
    rounds); `old_name` / `new_name` name the stores in the report (derived from them
    otherwise); `throttle` paces the reads (`dualsaver.control.throttle`); `compare="auto"`
    compares stored bytes first where both stores use the same serializer configuration
    (`_bytes`; the verdict is the same), "decoded" always decodes.
    """

    workers: int
    shard: tuple[int, int] | None
    thread_ids: Sequence[str] | None
    recheck: bool
    progress: ProgressFn | None
    show_values: bool
    primary: Literal["old", "new"]
    backoff: Sequence[float]
    old_name: str | None
    new_name: str | None
    throttle: Throttle | None
    compare: Literal["auto", "decoded"]


_DEFAULTS: CheckOptions = {
    "workers": 1, "shard": None, "thread_ids": None, "recheck": True, "progress": None, "show_values": False,
    "primary": "old", "backoff": DEFAULT_BACKOFF, "old_name": None, "new_name": None, "throttle": None,
    "compare": "auto",
}


def _known(options: CheckOptions) -> None:
    unknown = set(options) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"check() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")


def _begin(stores: dict[str, Any], old: Any, new: Any, options: CheckOptions, read_many: str) -> CheckRun:
    """The bookkeeping of one check over these native stores, `check` and `acheck` alike;
    `read_many` names the method that reads several threads at once (`read_threads`)."""
    _known(options)
    refuse_same_store(old, new, "a check")  # it would find a store clean against itself
    chosen: dict[str, Any] = {**_DEFAULTS, **options}
    names = (chosen.pop("old_name") or describe_store(old), chosen.pop("new_name") or describe_store(new))
    run = CheckRun.of(stores, *names, **chosen)
    run.reads_many = all(hasattr(stores[side], read_many) for side in SIDES)
    return run


def _batches(threads: Iterable[str]) -> Iterator[list[str]]:
    """Thread ids in batches of `BATCH`, in order."""
    it = iter(threads)
    while batch := list(itertools.islice(it, BATCH)):
        yield batch


async def _abatches(threads: AsyncIterator[str]) -> AsyncIterator[list[str]]:
    batch: list[str] = []
    async for t in threads:
        batch.append(t)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def check(
    old: Any, new: Any, *, processes: int | None = None, serdes: tuple[str, str] = ("default", "default"),
    **options: Unpack[CheckOptions],
) -> DivergenceReport:
    """Diff two stores (savers or `NativeStore`s) and return what persists; `CheckOptions`
    says what the keywords do. Raises `CheckError` if a store cannot be reached.

    `processes=N` runs the check in N processes, one report (`dualsaver.checker._processes`):
    `old` and `new` are then store URLs, which each process opens with the serializers named
    in `serdes` ("default" or "encrypted"); `workers` is per process, a throttle's rate the
    whole check's (its changes while the check runs reach every process); `shard` is split
    among them."""
    check_serde_names(serdes)
    if processes is not None:
        _known(options)
        return check_in_processes(check, old, new, processes=processes, serdes=serdes, options=dict(options))
    io = Targets(old=native_for(old), new=native_for(new))
    run = _begin(io.targets, old, new, options, "read_threads")
    with outages(), fewer_collections(), plaintexts_forgotten():
        for r in run.rounds():
            time.sleep(r.delay)
            threads = sansio.stream(_merged_ids(run), io) if r.threads is None else r.threads
            read = functools.partial(_read_batch, run, capture=r.capture)
            for results in _map_bounded(lambda b: sansio.run(read(b), io), _batches(threads), run.workers):  # noqa: B023
                for result in results:
                    r.record(result)
    return run.report()


async def acheck(
    old: Any, new: Any, *, processes: int | None = None, serdes: tuple[str, str] = ("default", "default"),
    **options: Unpack[CheckOptions],
) -> DivergenceReport:
    """The async form of `check` (async savers or `AsyncNativeStore`s): the same plans and
    options, `workers` tasks instead of threads. With `processes`, `check`'s processes (store
    URLs), waited for in a thread (the work is theirs; `progress` is called from that thread)."""
    check_serde_names(serdes)
    if processes is not None:
        return await asyncio.to_thread(check, old, new, processes=processes, serdes=serdes, **options)
    io = AsyncTargets(old=anative_for(old), new=anative_for(new))
    run = _begin(io.targets, old, new, options, "aread_threads")
    with outages(), fewer_collections(), plaintexts_forgotten():
        for r in run.rounds():
            await asyncio.sleep(r.delay)
            threads = sansio.astream(_merged_ids(run), io) if r.threads is None else _alist(r.threads)
            read = functools.partial(_read_batch, run, capture=r.capture)
            batches = _abatches(threads)
            async for results in _amap_bounded(lambda b: sansio.arun(read(b), io), batches, run.workers):  # noqa: B023
                for result in results:
                    r.record(result)
    return run.report()


def _map_bounded(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`map` over a thread pool with at most 2*workers items in flight, results in order."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dualsaver-check") as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


async def _amap_bounded(fn: Callable[[T], Any], items: AsyncIterator[T], workers: int) -> AsyncIterator[Any]:
    """Async `map` with at most 2*workers coroutines in flight, results in order."""
    pending: deque[asyncio.Future[Any]] = deque()
    try:
        async for item in items:
            pending.append(asyncio.ensure_future(fn(item)))
            if len(pending) >= 2 * max(1, workers) or workers <= 1:
                yield await pending.popleft()
        while pending:
            yield await pending.popleft()
    finally:
        for task in pending:
            task.cancel()


async def _alist(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item
