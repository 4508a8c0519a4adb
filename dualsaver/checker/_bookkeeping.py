"""The bookkeeping of one check: what to read in what order, counts, suspects, the re-check
rule and the report. Pure: the shells in `_run` do the reading."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dualsaver.checker._bytes import compares_bytes
from dualsaver.checker._diff import ThreadDiff, ThreadSide, diff_thread
from dualsaver.checker.findings import KINDS, Divergence, DivergenceReport, report_order
from dualsaver.control.throttle import Throttle
from dualsaver.errors import CheckError, is_outage
from dualsaver.observability import telemetry
from dualsaver.stores.native import in_shard


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



@dataclass(frozen=True, slots=True)
class Round:
    """One pass of reading threads from both stores: after `delay` seconds, read `threads`
    (None: every wanted thread, from the merged id streams), capturing values or not, and
    hand each thread's diff to `record`."""

    delay: float
    threads: list[str] | None
    capture: bool
    record: Callable[[ThreadDiff], None]


def describe_store(store: Any) -> str:
    """A store named by its saver's class, when no name (a redacted URL) was given."""
    saver = getattr(store, "saver", None)
    return type(saver if saver is not None else store).__name__


class CheckRun:
    """Bookkeeping of one check: counts, suspects, the re-check rule, the report."""

    @classmethod
    def of(cls, stores: dict[str, Any], old_desc: str, new_desc: str, **options: Any) -> CheckRun:
        """The bookkeeping of a check over these native stores (`check` and `acheck` alike)."""
        exact = {side: bool(getattr(stores[side], "exact", False)) for side in ("old", "new")}
        compare = options.pop("compare", "auto")
        if compare not in ("auto", "decoded"):
            raise ValueError("compare must be 'auto' or 'decoded'")
        run = cls(old_desc=old_desc, new_desc=new_desc, old_exact=exact["old"], new_exact=exact["new"], **options)
        run.compares_bytes = compare == "auto" and compares_bytes(stores["old"], stores["new"])
        return run

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
        throttle: Throttle | None = None,
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
        self.throttle = throttle  # paces the reads (see dualsaver.control.throttle)
        self.compares_bytes = False  # bytes first where both stores allow it (`_bytes`)
        self.reads_many = False  # both stores read several threads at once (`read_threads`)
        self.by_bytes = 0  # threads the scan found clean from their bytes alone
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

    # -- results
    def scanned(self, result: ThreadDiff) -> None:
        self.threads += 1
        self.checkpoints += result.checkpoints_compared
        self.totals["checkpoints_old"] += result.checkpoints_old
        self.totals["checkpoints_new"] += result.checkpoints_new
        self.totals["writes_old"] += result.writes_old
        self.totals["writes_new"] += result.writes_new
        self.by_bytes += result.by_bytes
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

    def rounds(self) -> Iterator[Round]:
        """What the shells run, in order: the scan of every wanted thread (`threads` None:
        the merged id streams), then a re-check round per backoff delay while suspects
        remain, then (values asked for, re-check off) one pass to capture their values."""
        yield Round(0.0, None, False, self.scanned)
        self.first_pass_suspects = len(self.suspects)
        for n, delay in enumerate(self.backoff, start=1):
            if not self.suspects:
                return
            self.rounds_run = n
            yield Round(delay, sorted(self.suspects), self.show_values, self._rechecking(n, keep_all=False))
        if not self.recheck and self.show_values and self.suspects:
            yield Round(0.0, sorted(self.suspects), True, self._rechecking(0, keep_all=True))

    def _rechecking(self, round_no: int, *, keep_all: bool) -> Callable[[ThreadDiff], None]:
        done = itertools.count(1)
        return lambda result: self.rechecked(result, round_no, next(done), keep_all)

    def _report_progress(self, phase: Literal["scan", "recheck"], done: int, round_no: int = 0) -> None:
        if self.progress is not None:
            self.progress(
                CheckProgress(
                    phase=phase,
                    threads=done,
                    checkpoints=self.checkpoints,
                    suspects=len(self.suspects),
                    elapsed=time.monotonic() - self.started,
                    round=round_no,
                )
            )

    def report(self) -> DivergenceReport:
        divergences = sorted((d for found in self.suspects.values() for d in found.values()), key=report_order)
        counts = count_kinds(divergences)
        record_counts(counts)
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
            "workers": self.workers,  # threads (tasks) reading side by side in each process
            "processes": 1,  # a check in N processes (`_processes`) merges N reports into one
            "primary": self.primary,
            "recheck": {
                "enabled": self.recheck,
                "rounds": self.rounds_run,
                "suspect_threads": self.first_pass_suspects,
                "cleared_threads": self.first_pass_suspects - len(self.suspects),
            },
            "values_shown": self.show_values,
            "compared": {  # threads of the scan: clean from their stored bytes / diffed decoded
                "by_bytes": self.by_bytes,
                "decoded": self.threads - self.by_bytes,
            },
            "throttled_seconds": round(self.throttle.throttled_s, 3) if self.throttle else 0.0,
            "warnings": list(self.warnings),
        }
        return DivergenceReport(clean=not divergences, divergences=divergences, summary=summary)


@contextlib.contextmanager
def outages() -> Iterator[None]:
    """A store that cannot be reached leaves no verdict: the check stops with CheckError."""
    try:
        yield
    except Exception as exc:
        if is_outage(exc):
            raise CheckError(f"store unreachable during the check: {type(exc).__name__}") from exc
        raise


def count_kinds(divergences: Iterable[Divergence]) -> dict[str, int]:
    """How many divergences of each kind (every kind named, zero included)."""
    counts = dict.fromkeys(KINDS, 0)
    for d in divergences:
        counts[d.kind] += 1
    return counts


def record_counts(counts: dict[str, int]) -> None:
    """The divergences a finished check reports, counted by kind (the metric)."""
    for kind, n in counts.items():
        if n:
            telemetry.divergences.add(n, {"kind": kind})


def merge_step(a: str | None, b: str | None) -> tuple[str, bool, bool]:
    """The next id of two ascending streams (None: that stream is exhausted; never both), and
    which streams it came from."""
    if a is not None and (b is None or a < b):
        return a, True, False
    if b is not None and (a is None or b < a):
        return b, False, True
    assert a is not None and a == b, "merge_step is not asked once both streams are exhausted"
    return a, True, True
