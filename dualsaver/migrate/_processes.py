"""Backfill on every core: one job run as N processes (`backfill(..., processes=N)`).

One GIL is the wall of a single-process copy (reading and decoding the source and encoding
the target take some 1.6 times the CPU the server's ingest does: 50 us a checkpoint against
31, SQLite -> PostgreSQL, measured), so the copy runs in N processes, and the parent keeps
everything that makes them one job:

- the progress record: only the parent reads and writes it, so there is one job (keyed as an
  unsharded run), resumed by any later run whatever its N; a thread is marked done by the
  parent once its process reported that every batch holding its rows committed;
- the work: the parent lists the threads still to copy and hands them out a chunk at a time
  over one queue, so a process that finishes early takes more (no process idles behind a
  slow shard);
- the progress display, the tallies and the result, from what the processes report.

Each process starts clean (forking the parent, with its open connections and threads, is
unsafe: they come from a fork server, or are spawned), opens its own stores from their URLs
and runs the same plans and pump as a single-process backfill (`_pump`). They start while
the parent runs the preflight and counts the threads. As with any spawned process, the
caller's main module is run again in each (under `if __name__ == "__main__":` it does nothing).
A process whose parent dies (SIGKILL, SIGTERM) exits at once, so a killed run leaves nothing
copying behind it; run again, it resumes from what the parent marked done.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from dualsaver import sansio
from dualsaver.control.throttle import SharedLimits
from dualsaver.errors import CopyFailed
from dualsaver.migrate._flow import MAX_FAILURES_KEPT, Flow, read_options, threads_per_read
from dualsaver.migrate._lossy import allow
from dualsaver.heap import fewer_collections
from dualsaver.migrate._pump import pump
from dualsaver.processes import POLL, exit_with_parent, portable, process_count, receive, start_context
from dualsaver.sansio import Targets
from dualsaver.stores import native_for, open_saver
from dualsaver.stores.serde import serde_from_name

CHUNK = 32  # thread ids handed to a process at once: small enough to balance, big enough to be cheap
COUNTED = ("checkpoints", "writes", "skipped", "read", "unreadable", "read_s", "write_s")


@dataclass(frozen=True)
class Spec:
    """What each process needs to run its part: everything here crosses a process boundary."""

    source_url: str
    target_url: str
    source_serde: str = "default"
    target_serde: str = "default"
    workers: int = 1
    dry_run: bool = False
    allowed: frozenset[str] = frozenset()  # the lossy classes the operator accepted
    limits: SharedLimits | None = None  # each process's share of the job's throttle, relayed by the parent
    # The caller's environment when the job started (the serializer's key, settings): a
    # fork server started earlier in a long-lived process would hand on an older one.
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))


def check_processes(processes: Any, shard: tuple[int, int] | None) -> int:
    """`processes` as given, or a `ValueError` that says what is wrong."""
    process_count(processes)
    if shard is not None:
        raise ValueError("processes and shard cannot be combined: processes runs every shard of one job itself"
                         " (run one command per machine with --shard, or one with --processes)")
    return processes


class Processes:
    """N spawned copy processes and the two queues between them and the parent: thread ids
    out (`tasks`), reports back (`events`). Entering starts them; leaving stops any left."""

    def __init__(self, spec: Spec, processes: int, relay: Callable[[], None] = lambda: None) -> None:
        context = start_context()
        self.relay = relay  # passes the job's limits on to the processes, called while the parent waits
        self.tasks: Any = context.Queue(maxsize=2 * processes)
        self.events: Any = context.Queue()
        self.procs = [
            context.Process(target=_child, args=(spec, i, self.tasks, self.events),
                            name=f"dualsaver-backfill-{i}", daemon=True)
            for i in range(processes)
        ]
        self._stop = threading.Event()
        self._feed_error: BaseException | None = None

    def __enter__(self) -> Processes:
        for proc in self.procs:
            proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()  # interrupted: what a process had not committed is copied next run
        for proc in self.procs:
            proc.join()
        for q in (self.tasks, self.events):
            q.cancel_join_thread()  # a report nobody reads must not hold the exit
            q.close()

    def run(self, job: Any, io: Targets) -> None:
        """Hand out the job's threads to do, record what the processes finish, and fold their
        counts into `job.flow` (the job's result is taken from it)."""
        ids = sansio.stream(job.todo_ids(), io)
        feeder = threading.Thread(target=self._feed, args=(ids,), name="dualsaver-backfill-feed", daemon=True)
        feeder.start()
        try:
            results = self._collect(job)
        finally:
            self._stop.set()
            feeder.join()
        flow: Flow = job.flow
        for name in COUNTED:
            setattr(flow, name, sum(r[name] for r in results))
        flow.bad_rows = [row for r in results for row in r["bad_rows"]][:MAX_FAILURES_KEPT]
        job.result.throttled_s = sum(r["throttled_s"] for r in results)
        job.result.processes_cpu_s = sum(r["cpu_s"] for r in results)

    def _feed(self, ids: Iterator[str]) -> None:
        try:
            chunk: list[str] = []
            for thread_id in ids:
                chunk.append(thread_id)
                if len(chunk) >= CHUNK:
                    if not self._put(chunk):
                        return  # stopped: nobody takes more
                    chunk = []
            if chunk:
                self._put(chunk)
        except BaseException as exc:  # the parent's read of the source or progress failed: the run fails
            self._feed_error = exc
        for _ in self.procs:
            self._put(None)

    def _put(self, chunk: list[str] | None) -> bool:
        while not self._stop.is_set():
            try:
                self.tasks.put(chunk, timeout=POLL)
                return True
            except queue.Full:
                continue
        return False

    def _collect(self, job: Any) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for kind, _, payload in receive(self.events, self.procs, _lost, between=self._between):
            if kind == "finished":
                threads, checkpoints, writes = payload
                job.flow.checkpoints += checkpoints  # what the progress display shows as added
                job.flow.writes += writes
                job.threads_finished(threads)
            elif kind == "result":
                results.append(payload)
            else:
                raise payload
        return results

    def _between(self) -> None:
        self.relay()
        if self._feed_error is not None:
            raise self._feed_error


def _lost(index: int, exitcode: int) -> CopyFailed:
    return CopyFailed(f"backfill process {index} exited (code {exitcode}) before it finished; run again to resume")


# --------------------------------------------------------------------------- in each process


def _child(spec: Spec, index: int, tasks: Any, events: Any) -> None:
    exit_with_parent()
    try:
        events.put(("result", index, _copy_given(spec, index, tasks, events)))
    except BaseException as exc:
        events.put(("error", index, portable(exc, CopyFailed)))


def _copy_given(spec: Spec, index: int, tasks: Any, events: Any) -> dict[str, Any]:
    os.environ.clear()
    os.environ.update(spec.environ)
    with ExitStack() as stack:
        old = stack.enter_context(open_saver(spec.source_url, must_exist=True, pool_size=spec.workers,
                                             serde=serde_from_name(spec.source_serde)))
        new = stack.enter_context(open_saver(spec.target_url, pool_size=spec.workers,
                                             serde=serde_from_name(spec.target_serde)))
        source, target = native_for(old), native_for(new)
        allow(target, spec.allowed)
        throttle = spec.limits.throttle(index) if spec.limits is not None else None
        reporter = _Reporter(events, index)
        flow = Flow(read_options=read_options(source, target), on_finished=reporter, throttle=throttle,
                    threads_per_read=threads_per_read(source))
        reporter.flow = flow
        with fewer_collections():
            pump(flow, Targets(source=source, target=target), target, _given(tasks), spec.workers, spec.dry_run)
        counts = {name: getattr(flow, name) for name in COUNTED}
        return {**counts, "bad_rows": flow.bad_rows, "throttled_s": throttle.throttled_s if throttle else 0.0,
                "cpu_s": time.process_time()}


def _given(tasks: Any) -> Iterator[str]:
    while (chunk := tasks.get()) is not None:
        yield from chunk


class _Reporter:
    """Tells the parent which threads finished, with the checkpoints and writes added since
    the last report (for the progress display; the totals come with the process's result)."""

    def __init__(self, events: Any, index: int) -> None:
        self.events, self.index = events, index
        self.flow: Flow | None = None
        self._sent = (0, 0)
        self._lock = threading.Lock()

    def __call__(self, threads: list[tuple[str, str | None]]) -> None:
        assert self.flow is not None
        with self._lock:
            now = (self.flow.checkpoints, self.flow.writes)
            added = (now[0] - self._sent[0], now[1] - self._sent[1])
            self._sent = now
            self.events.put(("finished", self.index, (threads, *added)))
