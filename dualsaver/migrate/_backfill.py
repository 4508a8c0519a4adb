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
  serializer would decode to the same values), after a cheap check of their type tag and
  msgpack structure;
- a bad row is its own thread's problem: a row that does not decode to what LangGraph wrote
  (a checkpoint that is not a mapping, an unknown type tag, truncated msgpack), or that the
  target refuses on its own, is reported as unreadable with its thread, namespace and
  checkpoint id; the rest of its thread is copied, but the thread is reported failed (not
  marked done, so every run reports it again until it is repaired); every other thread,
  including those that shared a batch with it, is copied.

The decisions are written once: batching and which threads are done in `Flow` (`_flow`),
reading and writing in the plans of `_copy`, the run (which threads, resume, tallies,
progress) in `Job`. `backfill` / `abackfill` only run them: one reader and `workers` writers
with a bounded queue between them, as threads or as tasks (`_pump`); with `processes=N`, in N
processes under this one job (`_processes`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Collection, Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from dualsaver import sansio
from dualsaver.migrate._copy import asks_many, deleted_meanwhile
from dualsaver.migrate._lossy import agate, allow, gate
from dualsaver.migrate._flow import APPROXIMATE_NOTE, MAX_FAILURES_KEPT, Flow, read_options, threads_per_read
from dualsaver.migrate._processes import Processes, Spec, check_processes
from dualsaver.heap import fewer_collections
from dualsaver.migrate._pump import apump, pump
from dualsaver.control.throttle import Relay, Throttle
from dualsaver.control.sources import replica_name
from dualsaver.migrate.progress import open_progress
from dualsaver.observability import telemetry
from dualsaver.processes import start_context, warm_up
from dualsaver.sansio import END, AsyncTargets, Call, Emit, Next, Plan, Targets
from dualsaver.redact import redact
from dualsaver.stores import anative_for, in_shard, native_for, open_saver, refuse_same_store, store_identity
from dualsaver.stores.faithful import ascii_safe
from dualsaver.stores.serde import check_serde_names, serde_from_name

if TYPE_CHECKING:
    from typing_extensions import Unpack


class Progress(Protocol):
    """What the backfill tells a progress display."""

    def start(self, total: int | None, already_done: int) -> None: ...

    def advance(self, thread_id: str, status: str, checkpoints: int, writes: int) -> None: ...


RESUME_CHUNK = 500  # thread ids asked at once whether an earlier run finished them
PROBED = 3  # threads an earlier run finished, asked of the target before its progress is trusted
DELETED_NOTE = (
    "{n} thread(s) were deleted from the source while this run copied them (the application deleted"
    " them): deleted from the target too, so the copy does not bring them back"
)
FORGOTTEN_NOTE = (
    "the target held none of the first {n} thread(s) the saved progress says an earlier run copied"
    " (emptied or replaced since?): that progress was set aside and every thread copied again"
)


@dataclass
class BackfillResult:
    threads: int = 0  # threads copied in this run
    threads_resumed: int = 0  # threads already done in an earlier run, not read again
    checkpoints: int = 0  # checkpoints added to the target
    writes: int = 0  # writes added to the target
    skipped: int = 0  # checkpoints read that the target already held
    failed: int = 0  # threads not fully copied (an error, or an unreadable row)
    unreadable: int = 0  # rows that failed to decode, or that the target refused on their own
    deleted: int = 0  # threads the source deleted while they were copied: deleted from the target too
    exact: bool = True  # False when either side used the public-API adapter
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (thread id, error)
    bad_rows: list[dict[str, str]] = field(default_factory=list)  # thread, namespace, checkpoint id, error
    # what the preflight found and `allow_lossy` accepted: the copy changed these (see `_lossy`)
    lossy: list[dict[str, Any]] = field(default_factory=list)  # rule, class, thread, namespace, checkpoint id, what
    allowed_lossy: list[str] = field(default_factory=list)
    throttled_s: float = 0.0  # seconds the writers waited for the throttle (summed over writers)
    processes_cpu_s: float = 0.0  # with processes=N: the CPU seconds the copy processes used, summed
    elapsed_s: float = 0.0
    read_s: float = 0.0  # time reading (and decoding) the source
    write_s: float = 0.0  # summed over writers; overlaps read_s
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def rate(self) -> float:
        """Checkpoints read per second."""
        return (self.checkpoints + self.skipped) / self.elapsed_s if self.elapsed_s else 0.0

    def _fidelity(self) -> str:
        if not self.exact:
            return "APPROXIMATE"
        return "exact except what --allow-lossy accepted (listed below)" if self.lossy else "exact"

    def summary(self) -> str:
        verb = "would add" if self.dry_run else "added"
        lines = [
            f"{'dry run: ' if self.dry_run else ''}{self.threads} thread(s) copied,"
            f" {self.threads_resumed} already done; {verb} {self.checkpoints} checkpoint(s) and"
            f" {self.writes} write(s); {self.skipped} checkpoint(s) already present;"
            f" {self.failed} thread(s) failed; {self.unreadable} unreadable row(s)",
            f"{self.elapsed_s:.2f}s ({self.rate:.0f} checkpoints/s); copy is {self._fidelity()}",
        ]
        if self.throttled_s:
            lines.append(f"throttled for {self.throttled_s:.1f}s (summed over writers)")
        lines += self.notes
        if self.lossy:
            lines.append(f"changed (accepted with --allow-lossy {','.join(self.allowed_lossy)}):"
                         f" {len(self.lossy)} finding(s)")
        lines += [f"changed: {f['rule']}: thread {f['thread_id']!r}"
                  + (f", ns {f['checkpoint_ns']!r}, checkpoint {f['checkpoint_id']}" if f["checkpoint_id"] else "")
                  + (f": {f['what']}" if f["what"] else "") for f in self.lossy[:10]]
        lines += [f"failed: {t}: {e}" for t, e in self.failures[:10]]
        lines += [
            f"unreadable: thread {r['thread_id']}, ns {r['checkpoint_ns'] or '(root)'}, checkpoint"
            f" {r['checkpoint_id'] or '*'}: {r['error']}"
            for r in self.bad_rows[:10]
        ]
        return ascii_safe("\n".join(lines))  # a lone surrogate in a named id: the summary is still UTF-8

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate}


# --------------------------------------------------------------------------- the job


class Job:
    """The whole run's decisions: which threads, what is already done, what to record."""

    def __init__(
        self,
        source: Any,
        target: Any,
        *,
        old_name: str,
        new_name: str,
        shard: tuple[int, int] | None,
        resume: bool,
        dry_run: bool,
        thread_ids: Iterable[str] | None,
        progress: Progress | None,
        state_path: Any,
        throttle: Throttle | None = None,
        control: str | None = None,
        control_name: str = "default",
    ) -> None:
        if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
            raise ValueError(f"bad shard {shard[0]}/{shard[1]}: need 0 <= index < count")
        self.shard = shard
        self.dry_run = dry_run
        self.thread_ids = sorted(set(thread_ids)) if thread_ids is not None else None
        self.progress = progress
        self.result = BackfillResult(dry_run=dry_run, started_at=time.time())
        self.result.exact = bool(source.exact and target.exact)
        for side, store in (("the source", source), ("the target", target)):
            if not store.exact:
                self.result.notes.append(APPROXIMATE_NOTE.format(side=side))
        self.state = open_progress(state_path, old=old_name, new=new_name, shard=shard, control=control,
                                   control_name=control_name, runner=replica_name())
        if not resume and not dry_run:
            self.state.restart()
        self.throttle = throttle
        options = read_options(source, target)
        self.flow = Flow(read_options=options, on_finished=self.threads_finished, throttle=throttle,
                         threads_per_read=threads_per_read(source))
        self._lock = threading.Lock()
        self._reported = (0, 0)  # checkpoints and writes already shown by the progress display
        self._counted = 0  # checkpoints already added to the backfill metric
        self._t0 = time.perf_counter()
        self._beat = 0.0  # when the counters last went to the progress store
        self._held: bool | None = None  # does the target hold what the saved progress says? (`_still_held`)
        self._copied: list[str] = []  # threads this run wrote to, not yet asked of the source (`forget_deleted`)
        self._asks_many = asks_many(source)
        self.total: int | None = None

    def wanted_ids(self) -> Plan[None]:
        """Emit the ids of the threads this run covers (the shard's, or the ones named)."""
        if self.thread_ids is not None:
            yield Emit([t for t in self.thread_ids if in_shard(t, self.shard)])
            return
        ids = yield Call("source", "thread_ids", stream=True)
        while (thread_id := (yield Next(ids))) is not END:
            if in_shard(thread_id, self.shard):
                yield Emit((thread_id,))

    def todo_ids(self) -> Plan[None]:
        """Emit the ids of the threads still to copy: the wanted ones an earlier run (here or
        on another machine) has not finished, asked for a chunk at a time."""
        chunk: list[str] = []
        for_each = sansio.for_each(self.wanted_ids(), lambda thread_id: self._pending(chunk, thread_id))
        yield from for_each
        yield from self._unfinished(chunk)

    def _pending(self, chunk: list[str], thread_id: str) -> Plan[None]:
        chunk.append(thread_id)
        if len(chunk) >= RESUME_CHUNK:
            yield from self._unfinished(chunk)

    def _unfinished(self, chunk: list[str]) -> Plan[None]:
        yield from self.forget_deleted()
        if chunk:
            done = self.state.done_among(chunk)  # the progress store: local, or a short query
            if done and self._held is None:
                self._held = yield from self._still_held(done)
            if self._held is False:
                done = set()
            self.result.threads_resumed += len(done)
            yield Emit([t for t in chunk if t not in done])
            chunk.clear()

    def _still_held(self, done: set[str]) -> Plan[bool]:
        """Whether the target still holds what the saved progress says an earlier run copied.
        The progress is kept apart from the target, which may since have been emptied or
        replaced (a Redis restarted without its data, a database made again, a new volume):
        skipping the threads it names would then leave it without them while the run reports
        an exact copy. So the first few are asked of the target, once; if it holds none, the
        progress is set aside (copying again inserts only what is missing) and the result says so."""
        probed = sorted(done)[:PROBED]
        for thread_id in probed:
            if (yield Call("target", "checkpoint_keys", (thread_id,))):
                return True
        if not self.dry_run:
            self.state.restart()
        self.result.notes.append(FORGOTTEN_NOTE.format(n=len(probed)))
        return False

    def forget_deleted(self) -> Plan[None]:
        """Delete from the target every thread this run copied that the source no longer holds
        (`_copy.deleted_meanwhile`: the application deleted it while it was copied). Called by
        the reader between chunks and once at the end, with the reader's targets."""
        with self._lock:
            copied, self._copied = self._copied, []
        self.result.deleted += len((yield from deleted_meanwhile(copied, self._asks_many)))

    def started(self, total: int | None) -> None:
        self.total = total
        if self.progress is not None:
            self.progress.start(total, self.state.done_count())

    def threads_finished(self, threads: list[tuple[str, str | None]]) -> None:
        """Record finished threads: the fully copied ones are marked done in one commit (after
        all their rows committed, so a kill before this line only means copying them again)."""
        with self._lock:
            r, flow = self.result, self.flow
            r.threads += len(threads)
            if not self.dry_run:
                self._copied += [thread_id for thread_id, _ in threads]
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
            if not self.dry_run and time.monotonic() - self._beat >= 1.0:  # what status shows
                self._beat = time.monotonic()
                self.state.update({"total": self.total, "threads": r.threads, "failed": r.failed,
                                   "checkpoints": flow.checkpoints, "resumed": r.threads_resumed})
            if self.progress is not None:  # the counts since the last report go with the first
                added = (flow.checkpoints - self._reported[0], flow.writes - self._reported[1])
                self._reported = (flow.checkpoints, flow.writes)
                for n, (thread_id, error) in enumerate(threads):
                    status = "failed" if error is not None else "ok"
                    self.progress.advance(thread_id, status, *(added if n == 0 else (0, 0)))

    def finish(self) -> BackfillResult:
        r, flow = self.result, self.flow
        r.checkpoints, r.writes, r.skipped, r.unreadable = flow.checkpoints, flow.writes, flow.skipped, flow.unreadable
        r.read_s, r.write_s, r.bad_rows = flow.read_s, flow.write_s, list(flow.bad_rows)
        if self.throttle is not None:  # with processes, theirs were summed in already
            r.throttled_s = self.throttle.throttled_s
        if r.deleted:
            r.notes.append(DELETED_NOTE.format(n=r.deleted))
        self.result.elapsed_s = time.perf_counter() - self._t0
        self.result.finished_at = time.time()
        if not self.dry_run:
            self.state.update({"total": self.total, "threads": r.threads, "failed": r.failed,
                               "checkpoints": r.checkpoints, "resumed": r.threads_resumed})
            self.state.finish(self.result.summary())
        self.state.close()
        return self.result


# --------------------------------------------------------------------------- the shells


class BackfillOptions(TypedDict, total=False):
    """How a backfill runs: the keywords `backfill` and `abackfill` both take (defaults: `_DEFAULTS`).

    `workers` writers (threads or tasks) insert batches side by side. `shard=(i, n)` takes
    the threads whose stable hash falls in shard i of n; `thread_ids` limits the run to those
    threads; `resume=False` forgets earlier progress; `dry_run` writes nothing and counts what
    would be added; `progress` is told of each thread (`Progress`). `old_name`/`new_name` name
    the stores in the progress record (default: derived from the savers, passwords redacted).
    With a `control` store URL, progress goes there under `control_name` (a shard re-run
    elsewhere resumes), else to `state_path` (`.dualsaver/backfill.sqlite`). `throttle` paces
    the copy (`dualsaver.control.throttle`). `preflight` and `allow_lossy` (rule classes): what
    the target cannot hold faithfully is refused before anything is copied
    (`PreflightRefused`) unless accepted; see `dualsaver.migrate._lossy`."""

    workers: int
    shard: tuple[int, int] | None
    resume: bool
    dry_run: bool
    thread_ids: Iterable[str] | None
    progress: Progress | None
    state_path: Any
    old_name: str | None
    new_name: str | None
    throttle: Throttle | None
    control: str | None
    control_name: str
    preflight: bool | None
    allow_lossy: Collection[str] | str | None


_DEFAULTS: BackfillOptions = {
    "workers": 1, "shard": None, "resume": True, "dry_run": False, "thread_ids": None, "progress": None,
    "state_path": None, "old_name": None, "new_name": None, "throttle": None, "control": None,
    "control_name": "default", "preflight": None, "allow_lossy": None,
}


@dataclass(slots=True)
class _Begun:
    """One backfill's choices before its preflight, the shells and the processes alike: the
    native stores, their names, the rule classes accepted as lossy, the gate's arguments."""

    source: Any
    target: Any
    chosen: dict[str, Any]
    names: dict[str, str]
    allowed: frozenset[str]

    @classmethod
    def of(cls, old: Any, new: Any, source: Any, target: Any, options: BackfillOptions) -> _Begun:
        unknown = set(options) - set(_DEFAULTS)
        if unknown:
            raise TypeError(f"backfill() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        refuse_same_store(old, new, "a backfill")
        chosen: dict[str, Any] = {**_DEFAULTS, **options}
        if chosen["thread_ids"] is not None:
            chosen["thread_ids"] = list(chosen["thread_ids"])
        names = {"old_name": chosen["old_name"] or store_identity(old),
                 "new_name": chosen["new_name"] or store_identity(new)}
        return cls(source, target, chosen, names, allow(target, chosen["allow_lossy"]))

    def gate_args(self) -> dict[str, Any]:
        """The keywords of `gate` / `agate` (the preflight that refuses lossy copies)."""
        c = self.chosen
        return {"preflight": c["preflight"], "allowed": self.allowed, "shard": c["shard"],
                "thread_ids": c["thread_ids"], "throttle": c["throttle"], "names": self.names}

    def job(self, lossy: list[dict[str, Any]], *, paced: bool = True) -> Job:
        """The run, once the preflight found `lossy`; `paced=False`: the processes pace
        themselves (the throttle reaches them through a `Relay`), the job does not."""
        c = self.chosen
        job = Job(self.source, self.target, **self.names, shard=c["shard"], resume=c["resume"],
                  dry_run=c["dry_run"], thread_ids=c["thread_ids"], progress=c["progress"],
                  state_path=c["state_path"], throttle=c["throttle"] if paced else None,
                  control=c["control"], control_name=c["control_name"])
        job.result.lossy, job.result.allowed_lossy = lossy, sorted(self.allowed)
        return job


def backfill(
    old: Any, new: Any, *, processes: int | None = None, serdes: tuple[str, str] = ("default", "default"),
    **options: Unpack[BackfillOptions],
) -> BackfillResult:
    """Copy `old`'s history into `new` (savers or native stores); see the module docstring
    and `BackfillOptions` for what the keywords do.

    `processes=N` runs the copy in N processes as one job (`dualsaver.migrate._processes`):
    `old` and `new` are then store URLs, which each process opens with the serializers
    named in `serdes` ("default" or "encrypted"); `workers` is per process, and a throttle's
    rate is the whole job's (its changes while the job runs reach every process). It cannot
    be combined with `shard`."""
    check_serde_names(serdes)
    if processes is not None:
        return _backfill_processes(old, new, processes=processes, serdes=serdes, options=options)
    begun = _Begun.of(old, new, native_for(old), native_for(new), options)
    job = begun.job(gate(begun.source, begun.target, **begun.gate_args()))
    io = Targets(source=begun.source, target=begun.target)
    try:
        if job.progress is not None:
            job.started(sum(1 for _ in sansio.stream(job.wanted_ids(), io)))
        todo = sansio.stream(job.todo_ids(), io)
        with fewer_collections():
            pump(job.flow, io, begun.target, todo, max(1, begun.chosen["workers"]), job.dry_run)
        sansio.run(job.forget_deleted(), io)
    finally:
        result = job.finish()
    return result


def _backfill_processes(
    old_url: Any, new_url: Any, *, processes: int, serdes: tuple[str, str], options: BackfillOptions
) -> BackfillResult:
    """`backfill` in `processes` processes; this one keeps the job (see `_processes`)."""
    processes = check_processes(processes, options.get("shard"))
    if not (isinstance(old_url, str) and isinstance(new_url, str)):
        raise TypeError("backfill with processes takes the stores' URLs, which each process opens")
    warm_up()
    with ExitStack() as stack:
        old = stack.enter_context(open_saver(old_url, must_exist=True, serde=serde_from_name(serdes[0])))
        new = stack.enter_context(open_saver(new_url, serde=serde_from_name(serdes[1])))  # set up once, here
        # the job is named by the URLs, as the CLI names it: the savers opened here are this run's
        named: BackfillOptions = {**options, "old_name": options.get("old_name") or redact(old_url),
                                  "new_name": options.get("new_name") or redact(new_url)}
        begun = _Begun.of(old, new, native_for(old), native_for(new), named)
        chosen = begun.chosen
        relay = Relay(chosen["throttle"], processes, start_context())  # the processes follow the job's limits
        spec = Spec(old_url, new_url, *serdes, workers=max(1, chosen["workers"]), dry_run=chosen["dry_run"],
                    allowed=begun.allowed, limits=relay.shared)
        # they start while the preflight runs and the threads are counted
        with Processes(spec, processes, relay.relay) as pool:
            job = begun.job(gate(begun.source, begun.target, **begun.gate_args()), paced=False)
            io = Targets(source=begun.source, target=begun.target)
            try:
                if job.progress is not None:
                    job.started(sum(1 for _ in sansio.stream(job.wanted_ids(), io)))
                pool.run(job, io)
                sansio.run(job.forget_deleted(), io)
            finally:
                result = job.finish()
    return result


async def abackfill(
    old: Any, new: Any, *, processes: int | None = None, serdes: tuple[str, str] = ("default", "default"),
    **options: Unpack[BackfillOptions],
) -> BackfillResult:
    """The async form of `backfill`: the same `Job` and plans, `workers` writer tasks. With
    `processes`, `backfill`'s processes, waited for in a thread (the work is theirs)."""
    check_serde_names(serdes)
    if processes is not None:
        return await asyncio.to_thread(backfill, old, new, processes=processes, serdes=serdes, **options)
    begun = _Begun.of(old, new, anative_for(old), anative_for(new), options)
    job = begun.job(await agate(begun.source, begun.target, **begun.gate_args()))
    io = AsyncTargets(source=begun.source, target=begun.target)
    try:
        if job.progress is not None:
            job.started(sum([1 async for _ in sansio.astream(job.wanted_ids(), io)]))
        todo = sansio.astream(job.todo_ids(), io)
        with fewer_collections():
            await apump(job.flow, io, begun.target, todo, max(1, begun.chosen["workers"]), job.dry_run)
        await sansio.arun(job.forget_deleted(), io)
    finally:
        result = job.finish()
    return result
