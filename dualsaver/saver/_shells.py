"""The two shells that run composite-saver plans: one blocking, one awaiting. They decide
nothing: the plans do (see `_plans`). A shell is built from the two stores, a recorder and
the time bounds, and it is the plans' targets "behind" (write-behind) and "copier" (the
lazy copy) itself. It adds what only I/O needs:

- a span per operation and per store call (`dualsaver.observability.telemetry`), when an
  OpenTelemetry SDK listens: decided once per call (`Operation.traced`), for both shells;
- the secondary bound: a secondary call that takes longer than `timeout` counts as failed
  (the sync shell waits on a worker thread, the async one with `asyncio.wait_for`);
- write-behind's queue, drained on close within `exit_timeout`, the rest journaled.

The two behave the same. Where the means differ, it is for a reason of the runtime: a
background write of the sync shell runs on a worker thread and gets the caller's tracing
context handed over explicitly; an asyncio task copies the context it was created in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, cast

from langgraph.checkpoint.memory import InMemorySaver

from dualsaver import sansio
from dualsaver.errors import CopyFailed, SecondaryTimeout
from dualsaver.migrate import acopy_thread, copy_thread
from dualsaver.observability import telemetry
from dualsaver.saver._breaker import Breaker
from dualsaver.saver._capabilities import METHODS as CAPABILITY_METHODS
from dualsaver.saver._plans import Behind, write_behind
from dualsaver.saver._recorder import Recorder
from dualsaver.saver._side import SideThreads
from dualsaver.saver._writebehind import AsyncWriteBehind, SyncWriteBehind
from dualsaver.saver.routing import Role
from dualsaver.stores import Capable

ROLES = ("old", "new")
# What the write-behind queues hold: the job, whether its call was traced, and (sync) the
# call's tracing context to continue in the worker thread (an asyncio task copies its own).
Queued = tuple[Behind, bool, Any]
EXIT_TIMEOUT = 30.0  # seconds an exiting process waits for write-behind when calls are unbounded
# A store method named so takes the bound as `timeout` and keeps it itself (a bounded call to
# it needs no thread): `get_tuple_within` of dualsaver's Redis savers.
WITHIN = "_within"


UNTRACED = contextlib.nullcontext()  # what stands for a span in a call nobody traces


class Operation:
    """What the spans of one composite-saver call are labelled with, and whether it has any:
    `traced` is decided once, when the call starts (`telemetry.listening`), for its spans,
    its store calls' metrics and its background write alike. `traced` given: a background
    write follows the call that queued it."""

    __slots__ = ("name", "phase", "thread_id", "traced")

    def __init__(self, name: str, phase: str, thread_id: str | None, traced: bool | None = None) -> None:
        self.name, self.phase, self.thread_id = name, phase, thread_id
        self.traced = telemetry.listening() if traced is None else traced

    def span(self) -> Any:
        """The operation's span, made current for a block (UNTRACED: nothing)."""
        return telemetry.operation_span(self.name, self.phase, self.thread_id) if self.traced else UNTRACED

    def detached_span(self) -> Any:
        """The same, not made current, for a plan that streams (see telemetry.detached_span)."""
        return telemetry.detached_span(self.name, self.phase, self.thread_id) if self.traced else UNTRACED

    def store_span(self, role: str, method: str) -> Any:
        """The span and metrics of one store call of this operation."""
        return telemetry.store_span(role, method, self.phase) if self.traced else UNTRACED


def _timed_out(timeout: float | None) -> SecondaryTimeout:
    return SecondaryTimeout(f"no answer within {timeout}s")


def _queue_full(timeout: float | None) -> SecondaryTimeout:
    return SecondaryTimeout(f"write-behind queue still full after {timeout}s: the secondary is too far behind")


def never_waits(store: Any) -> bool:
    """A store whose calls never wait on anything outside this process: LangGraph's
    in-memory saver. Bounding its calls on another thread would cost the thread hop (about
    0.1 ms a write) and bound nothing, so they run on the caller's: a migration from memory
    pays no hop in read-switch, where old is written second. (A DualStore's secondary write
    reads the primary's rows first, `StoreSide.mirror`: bounded whatever the secondary.)"""
    return type(store) is InMemorySaver


def _copied(result: Any) -> None:
    """A lazy copy reports failures in its result; the plan records them as a miss."""
    if not result.ok:
        raise CopyFailed(result.error or f"{result.unreadable} unreadable row(s)")


class _Shell:
    """What both shells hold: the targets of the plans, the time bounds, the breakers."""

    def __init__(
        self, stores: Mapping[Role, Any], recorder: Recorder, timeout: float | None, breakers: Mapping[Role, Breaker],
        copier: Any = None,
    ) -> None:
        self.stores = stores
        self.recorder = recorder
        self.breakers = breakers
        self.timeout = timeout
        self.exit_timeout = timeout if timeout is not None else EXIT_TIMEOUT
        self.targets: dict[str, Any] = {role: store for role, store in stores.items()}  # noqa: C416 - str keys
        # The lazy copy: threads by default (this shell's copy_thread); a DualStore's items by its own copier.
        self.targets.update(recorder=recorder, behind=self, copier=copier or self)
        # the extended capabilities: the saver's own, or done through its native store
        self.capable = {role: Capable(saver) for role, saver in stores.items()}
        # the stores whose bounded calls are bounded (`never_waits`: the others run unbounded)
        self.bounds: dict[str, bool] = {role: timeout is not None and not never_waits(store)
                                        for role, store in stores.items()}

    def bounded(self, call: sansio.Call) -> bool:
        """Whether a call waits at most `timeout`: one the plan bounds, of a store that may
        wait on something outside the process (`never_waits`), under a bound."""
        return call.bounded and self.bounds.get(call.target, self.timeout is not None)

    def owner(self, call: sansio.Call) -> Any:
        """What carries out a store call: the saver, or its `Capable` for a capability."""
        return (self.capable if call.method in CAPABILITY_METHODS else self.stores)[cast(Role, call.target)]

    def _abandoned(self, item: Queued, why: BaseException) -> None:
        """A queued write that will not run is journaled as missed."""
        self.recorder.missed(*item[0].missed(why))


class SyncShell(_Shell):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._side = SideThreads("dualsaver-both")  # the first plan of a `Both`
        self.queue = SyncWriteBehind(self._write_behind, self._abandoned, self.exit_timeout)

    def run(self, plan: sansio.Plan[Any], op: Operation) -> Any:
        with op.span():
            return sansio.run(plan, _SyncIo(self, op))

    def stream(self, plan: sansio.Plan[Any], op: Operation) -> Iterator[Any]:
        """Run a plan that emits items to the caller (a generator, so its span is detached)."""
        with op.detached_span() as span:
            yield from sansio.stream(plan, _SyncIo(self, op, span))

    def store_call(self, call: sansio.Call, op: Operation) -> Any:
        fn = getattr(self.owner(call), call.method)
        with op.store_span(call.target, call.method):
            if call.method.endswith(WITHIN):  # the store bounds it itself, on this thread
                return fn(*call.args, timeout=self.timeout if call.bounded else None, **call.kwargs)
            if not self.bounded(call):
                return fn(*call.args, **call.kwargs)
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="dualsaver-secondary")
            future = self._pool.submit(fn, *call.args, **call.kwargs)
            try:
                return future.result(timeout=self.timeout)
            except concurrent.futures.TimeoutError:
                raise _timed_out(self.timeout) from None

    def both(self, effect: sansio.Both, io: _SyncIo) -> tuple[sansio.Outcome, sansio.Outcome]:
        """The two plans at once: the first on a side thread of its own (`SideThreads`: no
        queueing behind other callers, and its bounded calls never wait for a thread held
        by this), the second here. Without a time bound, both here, one after the other: a
        thread hop costs about what it saves under one GIL (measured: bench_tiered)."""
        if not effect.bounded or self.timeout is None:
            return sansio.Targets.both(io, effect)
        context = telemetry.capture() if io.op.traced else None

        def first() -> sansio.Outcome:
            with telemetry.continued(context):
                return io.outcome(effect.first)

        try:
            pending = self._side.start(first)
        finally:
            second = io.outcome(effect.second)  # what it collects is freed, whatever happens
        if pending.wait(self.timeout):
            if pending.error is not None:  # not an Exception (an outcome holds those): pass it on
                raise pending.error
            return pending.value, second
        return sansio.Outcome(error=_timed_out(self.timeout)), second

    # -- the target "behind" -------------------------------------------------------------

    def submit(self, job: Behind, op: Operation) -> None:
        context = telemetry.capture() if op.traced else None
        if not self.queue.submit((job, op.traced, context), self.timeout):
            self.recorder.missed(*job.missed(_queue_full(self.timeout)))

    def drain(self) -> bool:
        return self.queue.drain(self.timeout)

    def _write_behind(self, item: Queued) -> None:
        job, traced, context = item
        op = Operation(job.operation, job.phase.value, None, traced)
        with telemetry.continued(context):  # the span stays a child of the operation's
            sansio.run(write_behind(job, self.breakers), _SyncIo(self, op))

    # -- the target "copier" -------------------------------------------------------------

    def copy_thread(self, source: Role, target: Role, thread_id: str) -> None:
        _copied(copy_thread(self.stores[source], self.stores[target], thread_id, forget_deleted=True))

    def close(self) -> None:
        self.queue.close(self.exit_timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        self._side.close()


class AsyncShell(_Shell):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.queue = AsyncWriteBehind(self._write_behind, self._abandoned)

    async def run(self, plan: sansio.Plan[Any], op: Operation) -> Any:
        with op.span():
            return await sansio.arun(plan, _AsyncIo(self, op))

    async def stream(self, plan: sansio.Plan[Any], op: Operation) -> AsyncIterator[Any]:
        with op.detached_span() as span:
            async for item in sansio.astream(plan, _AsyncIo(self, op, span)):
                yield item

    async def astore_call(self, call: sansio.Call, op: Operation) -> Any:
        kwargs = call.kwargs
        if call.method.endswith(WITHIN):  # the store bounds it itself
            kwargs = {**kwargs, "timeout": self.timeout if call.bounded else None}
        pending = getattr(self.owner(call), "a" + call.method)(*call.args, **kwargs)
        with op.store_span(call.target, call.method):
            if not self.bounded(call) or call.method.endswith(WITHIN):
                return await pending
            try:
                return await asyncio.wait_for(pending, self.timeout)
            except asyncio.TimeoutError:
                raise _timed_out(self.timeout) from None

    # -- the target "behind" -------------------------------------------------------------

    async def asubmit(self, job: Behind, op: Operation) -> None:
        if not await self.queue.asubmit((job, op.traced, None), self.timeout):
            await self.recorder.amissed(*job.missed(_queue_full(self.timeout)))

    async def adrain(self) -> bool:
        return await self.queue.adrain(self.timeout)

    async def _write_behind(self, item: Queued) -> None:
        job, traced, _ = item
        io = _AsyncIo(self, Operation(job.operation, job.phase.value, None, traced))
        await sansio.arun(write_behind(job, self.breakers), io)

    # -- the target "copier" -------------------------------------------------------------

    async def acopy_thread(self, source: Role, target: Role, thread_id: str) -> None:
        _copied(await acopy_thread(self.stores[source], self.stores[target], thread_id, forget_deleted=True))

    async def aclose(self) -> None:
        await self.queue.aclose(self.exit_timeout)


class _SyncIo(sansio.Targets):
    """The executor of one operation: store calls get spans and bounds."""

    def __init__(self, shell: SyncShell, op: Operation, span: Any = None) -> None:
        self.targets, self.shell, self.op, self.span = shell.targets, shell, op, span

    def call(self, call: sansio.Call) -> Any:
        with telemetry.attached(self.span):
            if call.target in ROLES:
                return self.shell.store_call(call, self.op)
            if call.target == "copier":
                with self.op.store_span(call.args[1], "lazy_copy"):
                    return super().call(call)
            if call.target == "behind" and call.method == "submit":  # the job follows its call's tracing
                return self.shell.submit(call.args[0], self.op)
            return super().call(call)

    def open(self, call: sansio.Call) -> Iterator[Any]:
        items = super().open(call)
        return telemetry.streamed(items, self.span, call.target, self.op.phase) if self.op.traced else items

    def both(self, effect: sansio.Both) -> tuple[sansio.Outcome, sansio.Outcome]:
        return self.shell.both(effect, self)


class _AsyncIo(sansio.AsyncTargets):
    """The async executor of one operation: store calls get spans and bounds."""

    def __init__(self, shell: AsyncShell, op: Operation, span: Any = None) -> None:
        self.targets, self.shell, self.op, self.span = shell.targets, shell, op, span

    async def call(self, call: sansio.Call) -> Any:
        with telemetry.attached(self.span):
            if call.target in ROLES:
                return await self.shell.astore_call(call, self.op)
            if call.target == "copier":
                with self.op.store_span(call.args[1], "lazy_copy"):
                    return await super().call(call)
            if call.target == "behind" and call.method == "submit":  # the job follows its call's tracing
                return await self.shell.asubmit(call.args[0], self.op)
            return await super().call(call)

    def open(self, call: sansio.Call) -> AsyncIterator[Any]:
        items = super().open(call)
        return telemetry.astreamed(items, self.span, call.target, self.op.phase) if self.op.traced else items

    async def both(self, effect: sansio.Both, timeout: float | None = None) -> tuple[sansio.Outcome, sansio.Outcome]:
        first, second = await super().both(effect, self.shell.timeout)
        if isinstance(first.error, asyncio.TimeoutError):
            first = sansio.Outcome(error=_timed_out(self.shell.timeout))
        return first, second
