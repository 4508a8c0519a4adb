"""The two shells that execute plans: one sync, one async. They decide nothing.

Each effect a plan yields is carried out against the wrapped savers; results go back into
the plan with `send`, store exceptions with `throw`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from dualsaver import telemetry
from dualsaver.plans import (
    Behind,
    Call,
    CopyThread,
    Drain,
    Mismatch,
    Missed,
    MissedDelete,
    Plan,
    SecondaryTimeout,
    Stream,
    Tombstone,
)
from dualsaver.writebehind import AsyncWriteBehind, SyncWriteBehind

if TYPE_CHECKING:
    from dualsaver.saver import DualSaver


class Operation:
    """What the spans of one DualSaver call are labelled with."""

    __slots__ = ("name", "phase", "thread_id", "context")

    def __init__(self, name: str, phase: str, thread_id: str | None) -> None:
        self.name, self.phase, self.thread_id = name, phase, thread_id
        self.context: Any = None  # the tracing context a background write continues in


def _record(saver: DualSaver, effect: Any) -> Any:
    """Effects with no store I/O, the same in both shells."""
    if isinstance(effect, Missed):
        return saver.record_missed(effect)
    if isinstance(effect, Mismatch):
        return saver.record_mismatch(effect)
    if isinstance(effect, Tombstone):
        return saver.record_tombstone(effect)
    if isinstance(effect, MissedDelete):
        return saver.missed_delete(effect.role, effect.thread_id)
    raise TypeError(f"unknown effect {effect!r}")


def _behind_failed(effect: Behind, error: BaseException) -> Missed:
    return Missed(effect.call.role, effect.operation, effect.where, error, effect.phase)


EXIT_TIMEOUT = 30.0  # seconds an exiting process waits for write-behind without a bound


def _journal_abandoned(saver: DualSaver) -> Any:
    """What write-behind does with a write that will not run: journal it as missed."""

    def abandoned(effect: Behind, op: Operation, why: BaseException) -> None:
        saver.record_missed(_behind_failed(effect, why))

    return abandoned


def _queue_full(timeout: float | None) -> SecondaryTimeout:
    return SecondaryTimeout(f"write-behind queue still full after {timeout}s: the secondary is too far behind")


class Done:
    """A finished plan and what it returned (StopIteration may not cross a coroutine)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _advance(plan: Plan, send: Any = None, error: BaseException | None = None) -> Any:
    """One step of a plan: its next effect, or Done with its return value."""
    try:
        return plan.throw(error) if error is not None else plan.send(send)
    except StopIteration as stop:
        return Done(stop.value)


class SyncShell:
    def __init__(self, saver: DualSaver) -> None:
        self.saver = saver
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        timeout = saver.secondary_timeout
        exit_timeout = timeout if timeout is not None else EXIT_TIMEOUT
        self.behind = SyncWriteBehind(self._write_behind, _journal_abandoned(saver), exit_timeout)

    def _write_behind(self, effect: Behind, op: Operation) -> None:
        with telemetry.continued(op.context):  # the span stays a child of the operation's
            try:
                self._execute(effect.call, op)
            except Exception as exc:
                self.saver.record_missed(_behind_failed(effect, exc))

    def _bounded(self, fn: Any, args: tuple, kwargs: Any) -> Any:
        timeout = self.saver.secondary_timeout
        if timeout is None:
            return fn(*args, **kwargs)
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=8, thread_name_prefix="dualsaver-secondary"
            )
        future = self._pool.submit(fn, *args, **kwargs)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise SecondaryTimeout(f"no answer within {timeout}s") from None

    def _execute(self, effect: Any, op: Operation) -> Any:
        saver = self.saver
        if isinstance(effect, Call):
            fn = getattr(saver.store(effect.role), effect.method)
            with telemetry.store_span(effect.role, effect.method, op.phase):
                if effect.bounded:
                    return self._bounded(fn, effect.args, effect.kwargs)
                return fn(*effect.args, **effect.kwargs)
        if isinstance(effect, CopyThread):
            from dualsaver.backfill import copy_thread

            with telemetry.store_span(effect.target, "lazy_copy", op.phase):
                return copy_thread(saver.store(effect.source), saver.store(effect.target), effect.thread_id)
        if isinstance(effect, Behind):
            timeout = saver.secondary_timeout
            op.context = telemetry.capture()
            if not self.behind.submit(effect, op, timeout):
                saver.record_missed(_behind_failed(effect, _queue_full(timeout)))
            return None
        if isinstance(effect, Drain):
            return self.behind.drain(saver.secondary_timeout)
        return _record(saver, effect)

    def _step(self, plan: Plan, effect: Any, op: Operation) -> Any:
        try:
            result = self._execute(effect, op)
        except Exception as exc:
            return _advance(plan, error=exc)
        return _advance(plan, result)

    def run(self, plan: Plan, op: Operation) -> Any:
        with telemetry.operation_span(op.name, op.phase, op.thread_id):
            effect = _advance(plan)
            while not isinstance(effect, Done):
                effect = self._step(plan, effect, op)
            return effect.value

    def stream(self, plan: Plan, op: Operation) -> Iterator[Any]:
        """Run a plan whose Stream effects yield items to the caller."""
        with telemetry.detached_span(op.name, op.phase, op.thread_id) as span:
            effect = _advance(plan)
            while not isinstance(effect, Done):
                if isinstance(effect, Stream):
                    count = 0
                    store = self.saver.store(effect.role)
                    child = telemetry.stream_span(span, effect.role, op.phase)
                    try:
                        for item in store.list(*effect.args, **effect.kwargs):
                            count += 1
                            yield item
                    finally:
                        child.end()
                    effect = _advance(plan, count)
                else:
                    with telemetry.attached(span):
                        effect = self._step(plan, effect, op)

    def close(self) -> None:
        self.behind.close(self.saver.secondary_timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class AsyncShell:
    def __init__(self, saver: DualSaver) -> None:
        self.saver = saver
        self.behind = AsyncWriteBehind(self._write_behind, _journal_abandoned(saver))

    async def _write_behind(self, effect: Behind, op: Operation) -> None:
        try:
            await self._execute(effect.call, op)
        except Exception as exc:
            self.saver.record_missed(_behind_failed(effect, exc))

    async def _call(self, effect: Call) -> Any:
        coro = getattr(self.saver.store(effect.role), "a" + effect.method)(*effect.args, **effect.kwargs)
        timeout = self.saver.secondary_timeout
        if effect.bounded and timeout is not None:
            try:
                return await asyncio.wait_for(coro, timeout)
            except asyncio.TimeoutError:
                raise SecondaryTimeout(f"no answer within {timeout}s") from None
        return await coro

    async def _execute(self, effect: Any, op: Operation) -> Any:
        saver = self.saver
        if isinstance(effect, Call):
            with telemetry.store_span(effect.role, effect.method, op.phase):
                return await self._call(effect)
        if isinstance(effect, CopyThread):
            from dualsaver.backfill import acopy_thread

            with telemetry.store_span(effect.target, "lazy_copy", op.phase):
                return await acopy_thread(saver.store(effect.source), saver.store(effect.target), effect.thread_id)
        if isinstance(effect, Behind):
            timeout = saver.secondary_timeout
            if not await self.behind.submit(effect, op, timeout):
                saver.record_missed(_behind_failed(effect, _queue_full(timeout)))
            return None
        if isinstance(effect, Drain):
            return await self.behind.drain(saver.secondary_timeout)
        return _record(saver, effect)

    async def _step(self, plan: Plan, effect: Any, op: Operation) -> Any:
        try:
            result = await self._execute(effect, op)
        except Exception as exc:
            return _advance(plan, error=exc)
        return _advance(plan, result)

    async def run(self, plan: Plan, op: Operation) -> Any:
        with telemetry.operation_span(op.name, op.phase, op.thread_id):
            effect = _advance(plan)
            while not isinstance(effect, Done):
                effect = await self._step(plan, effect, op)
            return effect.value

    async def stream(self, plan: Plan, op: Operation) -> AsyncIterator[Any]:
        with telemetry.detached_span(op.name, op.phase, op.thread_id) as span:
            effect = _advance(plan)
            while not isinstance(effect, Done):
                if isinstance(effect, Stream):
                    count = 0
                    store = self.saver.store(effect.role)
                    child = telemetry.stream_span(span, effect.role, op.phase)
                    try:
                        async for item in store.alist(*effect.args, **effect.kwargs):
                            count += 1
                            yield item
                    finally:
                        child.end()
                    effect = _advance(plan, count)
                else:
                    with telemetry.attached(span):
                        effect = await self._step(plan, effect, op)
