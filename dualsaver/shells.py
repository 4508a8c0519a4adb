"""The two shells that execute plans: one sync, one async. They decide nothing.

Each effect a plan yields is carried out against the wrapped savers; results go back into
the plan with `send`, store exceptions with `throw`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from dualsaver.plans import Call, CopyThread, Missed, Plan, SecondaryTimeout, Stream

if TYPE_CHECKING:
    from dualsaver.saver import DualSaver


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

    def _execute(self, effect: Any) -> Any:
        saver = self.saver
        if isinstance(effect, Call):
            fn = getattr(saver.store(effect.role), effect.method)
            if effect.bounded:
                return self._bounded(fn, effect.args, effect.kwargs)
            return fn(*effect.args, **effect.kwargs)
        if isinstance(effect, Missed):
            return saver.record_missed(effect)
        if isinstance(effect, CopyThread):
            from dualsaver.backfill import copy_thread

            return copy_thread(saver.store(effect.source), saver.store(effect.target), effect.thread_id)
        raise TypeError(f"unknown effect {effect!r}")

    def _step(self, plan: Plan, effect: Any) -> Any:
        try:
            result = self._execute(effect)
        except Exception as exc:
            return _advance(plan, error=exc)
        return _advance(plan, result)

    def run(self, plan: Plan) -> Any:
        effect = _advance(plan)
        while not isinstance(effect, Done):
            effect = self._step(plan, effect)
        return effect.value

    def stream(self, plan: Plan) -> Iterator[Any]:
        """Run a plan whose Stream effects yield items to the caller."""
        effect = _advance(plan)
        while not isinstance(effect, Done):
            if isinstance(effect, Stream):
                count = 0
                store = self.saver.store(effect.role)
                for item in store.list(*effect.args, **effect.kwargs):
                    count += 1
                    yield item
                effect = _advance(plan, count)
            else:
                effect = self._step(plan, effect)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class AsyncShell:
    def __init__(self, saver: DualSaver) -> None:
        self.saver = saver

    async def _execute(self, effect: Any) -> Any:
        saver = self.saver
        if isinstance(effect, Call):
            coro = getattr(saver.store(effect.role), "a" + effect.method)(
                *effect.args, **effect.kwargs
            )
            timeout = saver.secondary_timeout
            if effect.bounded and timeout is not None:
                try:
                    return await asyncio.wait_for(coro, timeout)
                except asyncio.TimeoutError:
                    raise SecondaryTimeout(f"no answer within {timeout}s") from None
            return await coro
        if isinstance(effect, Missed):
            return saver.record_missed(effect)
        if isinstance(effect, CopyThread):
            from dualsaver.backfill import acopy_thread

            return await acopy_thread(
                saver.store(effect.source), saver.store(effect.target), effect.thread_id
            )
        raise TypeError(f"unknown effect {effect!r}")

    async def _step(self, plan: Plan, effect: Any) -> Any:
        try:
            result = await self._execute(effect)
        except Exception as exc:
            return _advance(plan, error=exc)
        return _advance(plan, result)

    async def run(self, plan: Plan) -> Any:
        effect = _advance(plan)
        while not isinstance(effect, Done):
            effect = await self._step(plan, effect)
        return effect.value

    async def stream(self, plan: Plan) -> AsyncIterator[Any]:
        effect = _advance(plan)
        while not isinstance(effect, Done):
            if isinstance(effect, Stream):
                count = 0
                store = self.saver.store(effect.role)
                async for item in store.alist(*effect.args, **effect.kwargs):
                    count += 1
                    yield item
                effect = _advance(plan, count)
            else:
                effect = await self._step(plan, effect)
