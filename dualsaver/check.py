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
- **Re-check.** A thread with any divergence is a suspect. After the pass, suspects are read
  again from both stores, immediately and then after short backoffs; a divergence is
  reported only if the same (kind, checkpoint) is found in every round. Writes that landed
  while the check ran complete in the meantime and drop out.
- **One implementation.** Every decision (merge order, diffing, what persists, the summary)
  lives in `_CheckRun` and `dualsaver.divergence`; `check` and `acheck` only do the I/O.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from dualsaver.divergence import (
    KINDS,
    Divergence,
    DivergenceReport,
    ThreadDiff,
    ThreadSide,
    diff_thread,
)
from dualsaver import telemetry
from dualsaver.stores.native import AsyncNativeStore, NativeStore, in_shard

__all__ = [
    "CheckError",
    "CheckProgress",
    "Divergence",
    "DivergenceReport",
    "KINDS",
    "acheck",
    "check",
]

DEFAULT_BACKOFF = (0.0, 0.2, 0.5, 1.0)  # seconds before each re-check round
T = TypeVar("T")
R = TypeVar("R")


class CheckError(Exception):
    """The check could not run (a store unreachable mid-check): no verdict."""


@dataclass(frozen=True, slots=True)
class CheckProgress:
    """Handed to the `progress` callback after each thread."""

    phase: Literal["scan", "recheck"]
    threads: int  # threads diffed in this phase so far
    checkpoints: int  # checkpoints compared in the scan
    suspects: int  # threads with a divergence still unconfirmed or confirmed
    elapsed: float
    round: int = 0  # re-check round (1-based) during "recheck"


ProgressFn = Callable[[CheckProgress], None]


# --------------------------------------------------------------------------- shared logic


def _is_outage(exc: BaseException) -> bool:
    """A store that cannot be reached: no verdict is possible, so the check stops."""
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {"OperationalError", "InterfaceError", "PoolTimeout", "PoolClosed", "ConnectionError"}
    )


def _describe(store: Any, name: str | None) -> str:
    if name:
        return name
    saver = getattr(store, "saver", None)
    return type(saver if saver is not None else store).__name__


class _CheckRun:
    """Bookkeeping of one check: counts, suspects, the re-check rule, the report."""

    def __init__(
        self,
        *,
        old_desc: str,
        new_desc: str,
        old_exact: bool,
        new_exact: bool,
        shard: tuple[int, int] | None,
        thread_ids: Sequence[str] | None,
        recheck: bool,
        backoff: Sequence[float],
        show_values: bool,
        primary: str,
        workers: int,
        progress: ProgressFn | None,
    ) -> None:
        if primary not in ("old", "new"):
            raise ValueError("primary must be 'old' or 'new'")
        if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
            raise ValueError(f"bad shard {shard!r}: expected (index, count), 0 <= index < count")
        self.old_desc, self.new_desc = old_desc, new_desc
        self.old_exact, self.new_exact = old_exact, new_exact
        self.shard = shard
        self.thread_ids = None if thread_ids is None else sorted(set(thread_ids))
        self.recheck = recheck
        self.backoff = tuple(backoff) if recheck else ()
        self.show_values = show_values
        self.primary = primary
        self.workers = max(1, int(workers))
        self.progress = progress
        self.started = time.monotonic()
        self.started_at = dt.datetime.now(dt.timezone.utc)
        self.threads = self.checkpoints = 0
        self.totals = {"checkpoints_old": 0, "checkpoints_new": 0, "writes_old": 0, "writes_new": 0}
        self.suspects: dict[str, dict[tuple, Divergence]] = {}
        self.first_pass_suspects = 0
        self.rounds_run = 0
        self.warnings: list[str] = []
        self._last_id: dict[str, str | None] = {"old": None, "new": None}

    # -- what to read, in what order
    def read_order(self) -> tuple[str, str]:
        """Secondary first, primary last (see the module docstring)."""
        return ("new", "old") if self.primary == "old" else ("old", "new")

    def wanted(self, thread_id: str) -> bool:
        return in_shard(thread_id, self.shard)

    def note_id(self, side: str, thread_id: str) -> None:
        last = self._last_id[side]
        if last is not None and thread_id <= last and not self.warnings:
            self.warnings.append(
                f"the {side} store listed thread ids out of ascending order; every thread was"
                " still diffed, but thread counts may include repeats"
            )
        self._last_id[side] = thread_id

    # -- the diff of one thread, from what the drivers read
    def diff(self, thread_id: str, sides: dict[str, ThreadSide]) -> ThreadDiff:
        return diff_thread(
            thread_id,
            sides["old"],
            sides["new"],
            old_exact=self.old_exact,
            new_exact=self.new_exact,
        )

    def capture(self, rechecking: bool) -> bool:
        # Values are canonicalised only for suspects (re-check rounds), never in the scan.
        return self.show_values and rechecking

    # -- results
    def scanned(self, result: ThreadDiff) -> None:
        self.threads += 1
        self.checkpoints += result.checkpoints_compared
        self.totals["checkpoints_old"] += result.checkpoints_old
        self.totals["checkpoints_new"] += result.checkpoints_new
        self.totals["writes_old"] += result.writes_old
        self.totals["writes_new"] += result.writes_new
        if result.divergences:
            self.suspects[result.thread_id] = {d.identity: d for d in result.divergences}
        self._report_progress("scan", self.threads)

    def rechecked(self, result: ThreadDiff, round_no: int, done: int, keep_all: bool) -> None:
        """Keep what persists: a divergence survives only if found again, same kind and key."""
        previous = self.suspects.get(result.thread_id, {})
        now = {d.identity: d for d in result.divergences}
        if keep_all:  # values fill-in without re-check: keep the scan's verdict
            kept = {i: now.get(i, d) for i, d in previous.items()}
        else:
            kept = {i: now[i] for i in previous if i in now}
        if kept:
            self.suspects[result.thread_id] = kept
        else:
            self.suspects.pop(result.thread_id, None)
        self._report_progress("recheck", done, round_no)

    def recheck_rounds(self) -> Iterator[tuple[int, float, list[str], bool]]:
        """(round, delay, threads, keep_all) for each round the drivers must run."""
        self.first_pass_suspects = len(self.suspects)
        for n, delay in enumerate(self.backoff, start=1):
            if not self.suspects:
                return
            self.rounds_run = n
            yield n, delay, sorted(self.suspects), False
        if not self.recheck and self.show_values and self.suspects:
            yield 0, 0.0, sorted(self.suspects), True

    def _report_progress(self, phase: str, done: int, round_no: int = 0) -> None:
        if self.progress is not None:
            self.progress(
                CheckProgress(
                    phase=phase,  # type: ignore[arg-type]
                    threads=done,
                    checkpoints=self.checkpoints,
                    suspects=len(self.suspects),
                    elapsed=time.monotonic() - self.started,
                    round=round_no,
                )
            )

    def report(self) -> DivergenceReport:
        divergences = [
            d
            for thread_id in sorted(self.suspects)
            for d in sorted(
                self.suspects[thread_id].values(),
                key=lambda d: (d.checkpoint_ns, d.checkpoint_id, KINDS.index(d.kind)),
            )
        ]
        counts = dict.fromkeys(KINDS, 0)
        for d in divergences:
            counts[d.kind] += 1
        for kind, n in counts.items():
            if n:
                telemetry.divergences.add(n, {"kind": kind})
        finished = dt.datetime.now(dt.timezone.utc)
        summary = {
            "threads_compared": self.threads,
            "checkpoints_compared": self.checkpoints,
            **self.totals,
            "divergences": len(divergences),
            "counts": counts,
            "affected_threads": len(self.suspects),
            "duration_seconds": round(time.monotonic() - self.started, 3),
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": finished.isoformat(timespec="seconds"),
            "stores": {"old": self.old_desc, "new": self.new_desc},
            "exact": {"old": self.old_exact, "new": self.new_exact},
            "shard": None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
            "thread_filter": None if self.thread_ids is None else len(self.thread_ids),
            "workers": self.workers,
            "primary": self.primary,
            "recheck": {
                "enabled": self.recheck,
                "rounds": self.rounds_run,
                "suspect_threads": self.first_pass_suspects,
                "cleared_threads": self.first_pass_suspects - len(self.suspects),
            },
            "values_shown": self.show_values,
            "warnings": list(self.warnings),
        }
        return DivergenceReport(clean=not divergences, divergences=divergences, summary=summary)


def _merge_step(a: str | None, b: str | None) -> tuple[str, bool, bool]:
    """The next id of two ascending streams, and which streams it came from."""
    if b is None or (a is not None and a < b):
        return a, True, False  # type: ignore[return-value]
    if a is None or b < a:
        return b, False, True
    return a, True, True


# --------------------------------------------------------------------------- sync driver


def _native(store: Any) -> NativeStore:
    from dualsaver.stores import native_for  # passes a native store through unchanged

    return native_for(store)


def _anative(store: Any) -> AsyncNativeStore:
    from dualsaver.stores import anative_for  # wraps a sync native store in threads

    return anative_for(store)


def _merged_ids(run: _CheckRun, old: NativeStore, new: NativeStore) -> Iterator[str]:
    if run.thread_ids is not None:
        yield from (t for t in run.thread_ids if run.wanted(t))
        return
    streams = {"old": iter(old.thread_ids()), "new": iter(new.thread_ids())}
    heads = {side: next(it, None) for side, it in streams.items()}
    while heads["old"] is not None or heads["new"] is not None:
        thread_id, from_old, from_new = _merge_step(heads["old"], heads["new"])
        for side, took in (("old", from_old), ("new", from_new)):
            if took:
                run.note_id(side, thread_id)
                heads[side] = next(streams[side], None)
        if run.wanted(thread_id):
            yield thread_id


def _read_side(store: NativeStore, thread_id: str, capture: bool) -> ThreadSide:
    side = ThreadSide()
    try:
        for item in store.read_thread(thread_id):
            side.add(item, capture)
    except Exception as exc:
        if _is_outage(exc):
            raise
        side.thread_error = f"{type(exc).__name__}: {exc}"
    return side


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


def _new_run(stores: dict[str, Any], old: Any, new: Any, old_name: str | None,
             new_name: str | None, **options: Any) -> _CheckRun:
    """The run's state, the same for `check` and `acheck`."""
    return _CheckRun(
        old_desc=_describe(old, old_name),
        new_desc=_describe(new, new_name),
        old_exact=bool(getattr(stores["old"], "exact", False)),
        new_exact=bool(getattr(stores["new"], "exact", False)),
        **options,
    )


def check(
    old: Any,
    new: Any,
    *,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    thread_ids: Sequence[str] | None = None,
    recheck: bool = True,
    progress: ProgressFn | None = None,
    show_values: bool = False,
    primary: Literal["old", "new"] = "old",
    backoff: Sequence[float] = DEFAULT_BACKOFF,
    old_name: str | None = None,
    new_name: str | None = None,
) -> DivergenceReport:
    """Diff two stores (savers or `NativeStore`s) and return what persists.

    `shard=(i, n)` checks only the threads of shard i of n; `thread_ids` only those threads.
    `primary` is the store written first in the current phase (read last). `backoff` gives
    the delay before each re-check round (its length bounds the rounds).
    Raises `CheckError` if a store cannot be reached.
    """
    stores = {"old": _native(old), "new": _native(new)}
    run = _new_run(stores, old, new, old_name, new_name, shard=shard, thread_ids=thread_ids,
                   recheck=recheck, backoff=backoff, show_values=show_values, primary=primary,
                   workers=workers, progress=progress)

    def read_both(thread_id: str, capture: bool = False) -> ThreadDiff:
        sides = {side: _read_side(stores[side], thread_id, capture) for side in run.read_order()}
        return run.diff(thread_id, sides)

    try:
        ids = _merged_ids(run, stores["old"], stores["new"])
        for result in _map_bounded(read_both, ids, run.workers):
            run.scanned(result)
        for round_no, delay, threads, keep_all in run.recheck_rounds():
            time.sleep(delay)
            capture = run.capture(True)
            results = _map_bounded(lambda t: read_both(t, capture), threads, run.workers)
            for done, result in enumerate(results, start=1):
                run.rechecked(result, round_no, done, keep_all)
    except Exception as exc:
        if _is_outage(exc):
            raise CheckError(f"store unreachable during the check: {type(exc).__name__}") from exc
        raise
    return run.report()


# --------------------------------------------------------------------------- async driver


async def _amerged_ids(
    run: _CheckRun, old: AsyncNativeStore, new: AsyncNativeStore
) -> AsyncIterator[str]:
    if run.thread_ids is not None:
        for t in run.thread_ids:
            if run.wanted(t):
                yield t
        return
    streams = {"old": aiter(old.thread_ids()), "new": aiter(new.thread_ids())}
    heads = {side: await anext(it, None) for side, it in streams.items()}
    while heads["old"] is not None or heads["new"] is not None:
        thread_id, from_old, from_new = _merge_step(heads["old"], heads["new"])
        for side, took in (("old", from_old), ("new", from_new)):
            if took:
                run.note_id(side, thread_id)
                heads[side] = await anext(streams[side], None)
        if run.wanted(thread_id):
            yield thread_id


async def _aread_side(store: AsyncNativeStore, thread_id: str, capture: bool) -> ThreadSide:
    side = ThreadSide()
    try:
        async for item in store.read_thread(thread_id):
            side.add(item, capture)
    except Exception as exc:
        if _is_outage(exc):
            raise
        side.thread_error = f"{type(exc).__name__}: {exc}"
    return side


async def _amap_bounded(fn, items, workers: int) -> AsyncIterator[Any]:
    """Async `map` with at most 2*workers coroutines in flight, results in order."""
    pending: deque[asyncio.Task] = deque()
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


async def acheck(
    old: Any,
    new: Any,
    *,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    thread_ids: Sequence[str] | None = None,
    recheck: bool = True,
    progress: ProgressFn | None = None,
    show_values: bool = False,
    primary: Literal["old", "new"] = "old",
    backoff: Sequence[float] = DEFAULT_BACKOFF,
    old_name: str | None = None,
    new_name: str | None = None,
) -> DivergenceReport:
    """The async form of `check` (async savers or `AsyncNativeStore`s), same decisions."""
    stores = {"old": _anative(old), "new": _anative(new)}
    run = _new_run(stores, old, new, old_name, new_name, shard=shard, thread_ids=thread_ids,
                   recheck=recheck, backoff=backoff, show_values=show_values, primary=primary,
                   workers=workers, progress=progress)

    async def read_both(thread_id: str, capture: bool = False) -> ThreadDiff:
        sides = {}
        for side in run.read_order():  # in order: the primary is read last
            sides[side] = await _aread_side(stores[side], thread_id, capture)
        return run.diff(thread_id, sides)

    try:
        ids = _amerged_ids(run, stores["old"], stores["new"])
        async for result in _amap_bounded(read_both, ids, run.workers):
            run.scanned(result)
        for round_no, delay, threads, keep_all in run.recheck_rounds():
            await asyncio.sleep(delay)
            capture = run.capture(True)
            done = 0
            async for result in _amap_bounded(
                lambda t: read_both(t, capture), _alist(threads), run.workers
            ):
                done += 1
                run.rechecked(result, round_no, done, keep_all)
    except Exception as exc:
        if _is_outage(exc):
            raise CheckError(f"store unreachable during the check: {type(exc).__name__}") from exc
        raise
    return run.report()
