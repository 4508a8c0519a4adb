"""The check on every core: one check run as N processes (`check(..., processes=N)`).

One GIL is the wall of a check in one process (decoding and digesting rows is Python work:
about 110 us a checkpoint, SQLite against PostgreSQL; threads only contend for it), so the
threads are split among N processes, and the parent makes them one check:

- the work: process j checks shard j of N with the same `check` a single process runs, so
  each re-checks its own suspects, with the same rounds and backoff. A check of shard i of n
  split N ways is shards i + n*j of n*N (`parts_of`): disjoint, and together exactly shard i
  of n, so `shard` and `processes` compose;
- the report: the N reports merged into one (`_merge`), timed by the parent's wall clock,
  its `shard` the one asked for, `processes` N, `workers` each process's;
- the progress: one callback in the parent, fed from what the processes report;
- the verdict: a process that fails fails the check with its error (a store that cannot be
  reached: the `CheckError` one process gives), and one that dies with a `CheckError`.

Each process opens its own stores from their URLs (with the serializers named in `serdes`)
and starts as the backfill's do (`dualsaver.processes`: from a fork server, never a fork of
the caller; gone when the parent dies). As with any spawned process, the caller's main
module is run again in each (under `if __name__ == "__main__":` it does nothing). Why not a
`ProcessPoolExecutor`: the parent must hear each process's progress while it runs and notice
one that died, and a pool hides both behind its futures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from dualsaver.checker._bookkeeping import CheckProgress, ProgressFn, outages, record_counts
from dualsaver.checker._merge import merge_reports
from dualsaver.checker.findings import DivergenceReport
from dualsaver.control.throttle import Relay, SharedLimits, Throttle
from dualsaver.errors import CheckError
from dualsaver.processes import exit_with_parent, portable, process_count, receive, start_context
from dualsaver.stores import open_saver
from dualsaver.stores.urls import parse_store_url
from dualsaver.stores.serde import serde_from_name

PROGRESS_EVERY = 0.2  # seconds between two progress reports of a process (and at each phase change)

CheckPart = Callable[..., DivergenceReport]  # `check` itself, run on one part in each process


@dataclass(frozen=True)
class Spec:
    """What each process needs to run its part: everything here crosses a process boundary."""

    old_url: str
    new_url: str
    serdes: tuple[str, str]
    options: dict[str, Any]  # the check's options, but shard, progress and throttle
    limits: SharedLimits | None  # each process's share of the check's throttle, relayed by the parent
    progress: bool  # whether the parent wants to hear the progress
    # The caller's environment when the check started (the serializer's key): a fork server
    # started earlier in a long-lived process would hand on an older one.
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))


def parts_of(shard: tuple[int, int] | None, processes: int) -> list[tuple[int, int]]:
    """The shards the processes check: shard i of n split `processes` ways. A thread's hash
    modulo n*N is i + n*j for exactly one j < N when it is i modulo n, and for none otherwise."""
    index, count = shard if shard is not None else (0, 1)
    return [(index + count * j, count * processes) for j in range(processes)]


def check_in_processes(
    check_part: CheckPart, old: Any, new: Any, *, processes: Any, serdes: tuple[str, str], options: dict[str, Any]
) -> DivergenceReport:
    """`check(old, new, processes=N, **options)`: see the module docstring."""
    if not (isinstance(old, str) and isinstance(new, str)):
        raise TypeError("check with processes takes the stores' URLs (each process opens its own stores),"
                        f" not {type(old).__name__} and {type(new).__name__}")
    processes = process_count(processes)
    for url in (old, new):
        parse_store_url(url)  # a bad URL is refused here, before any process starts (check() refused unknown serdes)
    options = dict(options)
    shard = options.pop("shard", None)
    if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise ValueError(f"bad shard {shard!r}: expected (index, count), 0 <= index < count")
    progress: ProgressFn | None = options.pop("progress", None)
    throttle: Throttle | None = options.pop("throttle", None)
    if options.get("thread_ids") is not None:
        options["thread_ids"] = list(options["thread_ids"])
    relay = Relay(throttle, processes, start_context())  # the processes follow the check's limits
    spec = Spec(old, new, serdes, options, relay.shared, progress=progress is not None)
    started, started_at = time.monotonic(), dt.datetime.now(dt.timezone.utc)
    with Parts(check_part, spec, parts_of(shard, processes), relay.relay) as parts:
        reports = parts.collect(Combined(progress, processes, started) if progress is not None else None)
    report = merge_reports(reports, shard=shard, processes=processes, started_at=started_at,
                           duration=time.monotonic() - started)
    record_counts(report.counts())  # the processes' own metrics go nowhere: counted here
    return report


class Parts:
    """The N processes of one check and the queue of their reports to the parent. Entering
    starts them; leaving stops any left (a check interrupted leaves nothing to undo)."""

    def __init__(
        self, check_part: CheckPart, spec: Spec, shards: list[tuple[int, int]], relay: Callable[[], None] = lambda: None
    ) -> None:
        context = start_context()
        self.relay = relay  # passes the check's limits on to the processes, called while the parent waits
        self.shards = shards
        self.events: Any = context.Queue()
        self.procs = [
            context.Process(target=_child, args=(check_part, spec, i, shard, self.events),
                            name=f"dualsaver-check-{i}", daemon=True)
            for i, shard in enumerate(shards)
        ]

    def __enter__(self) -> Parts:
        for proc in self.procs:
            proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join()
        self.events.cancel_join_thread()  # a report nobody reads must not hold the exit
        self.events.close()

    def collect(self, progress: Combined | None) -> list[DivergenceReport]:
        """Every process's report, in shard order, feeding `progress` on the way; the first
        error any process raises is raised here."""
        reports: dict[int, DivergenceReport] = {}
        for kind, index, payload in receive(self.events, self.procs, self._lost, between=self.relay):
            if kind == "progress":
                if progress is not None:
                    progress.update(index, payload)
            elif kind == "result":
                reports[index] = DivergenceReport.from_dict(payload)
                if progress is not None:
                    progress.finished(index)
            else:
                error, cause = payload
                raise error from cause
        return [reports[i] for i in sorted(reports)]

    def _lost(self, index: int, exitcode: int) -> CheckError:
        shard = self.shards[index]
        return CheckError(f"check process {index} (shard {shard[0]}/{shard[1]}) exited (code {exitcode})"
                          " before it reported; no verdict")


class Combined:
    """One progress for the whole check, from what each process reported last: the scan's
    counts summed while any process still scans, then the re-check rounds'."""

    def __init__(self, progress: ProgressFn, processes: int, started: float) -> None:
        self.progress, self.processes, self.started = progress, processes, started
        self.latest: dict[int, CheckProgress] = {}
        self.scanned: dict[int, int] = {}  # threads each process's scan has diffed
        self.past_scan: set[int] = set()

    def update(self, index: int, p: CheckProgress) -> None:
        self.latest[index] = p
        if p.phase == "scan":
            self.scanned[index] = p.threads
        else:
            self.past_scan.add(index)
        self.progress(self.combined())

    def finished(self, index: int) -> None:
        self.past_scan.add(index)

    def combined(self) -> CheckProgress:
        latest = list(self.latest.values())
        whole = CheckProgress(phase="scan", threads=sum(self.scanned.values()),
                              checkpoints=sum(p.checkpoints for p in latest), suspects=sum(p.suspects for p in latest),
                              elapsed=time.monotonic() - self.started)
        if len(self.past_scan) < self.processes:
            return whole
        rechecking = [p for p in latest if p.phase == "recheck"]
        return dataclasses.replace(whole, phase="recheck", threads=sum(p.threads for p in rechecking),
                                   round=max((p.round for p in rechecking), default=0))


# --------------------------------------------------------------------------- in each process


def _child(check_part: CheckPart, spec: Spec, index: int, shard: tuple[int, int], events: Any) -> None:
    exit_with_parent()
    try:
        events.put(("result", index, _check_given(check_part, spec, index, shard, events).to_dict()))
    except BaseException as exc:
        cause = exc.__cause__
        events.put(("error", index, (portable(exc, CheckError), cause and portable(cause, CheckError))))


def _check_given(
    check_part: CheckPart, spec: Spec, index: int, shard: tuple[int, int], events: Any
) -> DivergenceReport:
    os.environ.clear()
    os.environ.update(spec.environ)
    workers = max(1, int(spec.options.get("workers", 1)))
    forward = _Forward(events, index) if spec.progress else None
    with ExitStack() as stack:
        with outages():  # a store that cannot be reached: the CheckError a check in one process gives
            old = stack.enter_context(open_saver(spec.old_url, must_exist=True, pool_size=workers,
                                                 serde=serde_from_name(spec.serdes[0])))
            new = stack.enter_context(open_saver(spec.new_url, must_exist=True, pool_size=workers,
                                                 serde=serde_from_name(spec.serdes[1])))
        throttle = spec.limits.throttle(index) if spec.limits is not None else None
        report = check_part(old, new, shard=shard, progress=forward, throttle=throttle, **spec.options)
    if forward is not None:
        forward.flush()
    return report


class _Forward:
    """A process's progress, sent to the parent at most every `PROGRESS_EVERY` seconds and at
    each change of phase or round (the last report before the change goes first)."""

    def __init__(self, events: Any, index: int) -> None:
        self.events, self.index = events, index
        self.sent: CheckProgress | None = None
        self.held: CheckProgress | None = None
        self.last = 0.0

    def __call__(self, p: CheckProgress) -> None:
        now = time.monotonic()
        changed = self.sent is None or (p.phase, p.round) != (self.sent.phase, self.sent.round)
        if changed:
            self.flush()
        if changed or now - self.last >= PROGRESS_EVERY:
            self._send(p)
            self.last = now
        else:
            self.held = p

    def flush(self) -> None:
        if self.held is not None:
            self._send(self.held)

    def _send(self, p: CheckProgress) -> None:
        self.held = None
        self.sent = p
        self.events.put(("progress", self.index, p))
