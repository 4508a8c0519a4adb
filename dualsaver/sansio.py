"""The one driver of plans, sync and async. Every decision in dualsaver that touches a store
is written once, as a *plan*; this module runs plans with blocking or with awaited I/O.

A plan is a generator. It decides, and yields *effects* for what it needs done:

- `Call(target, method, args, kwargs)`: ask the object named `target` to do `method`. The
  sync driver calls ``target.method(...)``; the async driver awaits ``target.a<method>(...)``,
  the convention of LangGraph's own savers (`get_tuple` / `aget_tuple`). The result is sent
  back into the plan; an exception is thrown into it at the same `yield`, so a plan handles
  a store's failure with an ordinary ``try``/``except``.
  With ``stream=True`` the call returns an iterator (sync) or an async iterator (async, not
  awaited), which the plan reads with `Next`.
- `Next(iterator)`: the next item of such an iterator (or of any iterator the plan holds),
  or `END` when it is exhausted.
- `Emit(items)`: hand items to whoever iterates the plan (`stream` / `astream`).
- `Both(first, second)`: run two plans at once; what comes back is a pair of `Outcome`s
  (each a value or the exception its plan raised). The async driver runs the first as a task
  beside the second; the sync one runs them one after the other unless its executor has
  threads to spare (`both`).

What the plan returns is what `run` / `arun` return. Targets are resolved by an *executor*:
`Targets` (blocking) or `AsyncTargets` (awaiting), built from name=object pairs, to which
both add the target "clock" (`Call("clock", "sleep", (seconds,))` waits: the throttled
backfill, check and preflight). A shell that adds spans or time bounds to calls subclasses
one, names its own targets and overrides `call` / `open`.

This is the shape of httpx's auth flows and h11, and of psycopg's generators: the sync
method is one line over a shared plan (``return sansio.run(self._read_plan(), self._io)``),
the async one the same with ``await sansio.arun(...)``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

R = TypeVar("R")

# Effects and outcomes are values nobody changes once made, but not `frozen` dataclasses:
# a frozen one's __init__ sets each field through object.__setattr__ (1.7 us a Call against
# 0.4), and a plan makes several for every store call on LangGraph's hot path.


@dataclass(slots=True)
class Call:
    """Call `method` on the target named `target` (async: await ``"a" + method``)."""

    target: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    stream: bool = False  # the method returns an iterator to read with Next
    bounded: bool = False  # the executor may bound how long it takes (a secondary store)


@dataclass(slots=True)
class Next:
    """The next item of an iterator a streaming `Call` returned, or `END`."""

    iterator: Any


@dataclass(slots=True)
class Emit:
    """Hand these items to the plan's caller; nothing is sent back."""

    items: tuple[Any, ...] | list[Any]


@dataclass(slots=True)
class Both:
    """Run the plans `first` and `second` at once; their `Outcome`s come back, as a pair.
    `bounded`: the executor may stop waiting for `first` (a secondary store) after its time
    bound; its outcome is then a `TimeoutError`, and `second` still counts."""

    first: Generator[Any, Any, Any]
    second: Generator[Any, Any, Any]
    bounded: bool = False
    # `second` only collects an answer asked for before the `Both` (it is on its way): run
    # after `first`, it loses no time, so an executor on one thread (asyncio) may, sparing
    # a task. Either way `second` runs, even when `first` raises: it frees what it holds.
    collects: bool = False


@dataclass(slots=True)
class Outcome:
    """What one plan of a `Both` came to: its value, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END: Any = _End()  # what Next sends back once the iterator is exhausted

Effect = Call | Next | Emit | Both
Plan = Generator[Effect, Any, R]


class Done:
    """A finished plan and its return value (StopIteration may not cross a coroutine)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def step(plan: Plan[Any], send: Any = None, error: BaseException | None = None) -> Any:
    """Advance a plan once: its next effect, or `Done` with its return value."""
    try:
        return plan.throw(error) if error is not None else plan.send(send)
    except StopIteration as stop:
        return Done(stop.value)


# --------------------------------------------------------------------------- executors


class Clock:
    """The target "clock": a plan that must wait (a throttle) asks it to sleep."""

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


CLOCK = Clock()


class Targets:
    """Blocking execution of effects against named objects."""

    def __init__(self, **targets: Any) -> None:
        self.targets = {"clock": CLOCK, **targets}

    def perform(self, effect: Effect) -> Any:
        if type(effect) is Call:
            return self.open(effect) if effect.stream else self.call(effect)
        if type(effect) is Next:
            return next(effect.iterator, END)
        if type(effect) is Both:
            return self.both(effect)
        raise TypeError(f"not an effect this executor performs: {effect!r}")

    def both(self, effect: Both) -> tuple[Outcome, Outcome]:
        """One after the other here; an executor with a thread pool overrides this."""
        try:
            first = self.outcome(effect.first)
        finally:
            second = self.outcome(effect.second)
        return first, second

    def outcome(self, plan: Plan[Any]) -> Outcome:
        try:
            return Outcome(run(plan, self))
        except Exception as exc:
            return Outcome(error=exc)

    def call(self, call: Call) -> Any:
        return getattr(self.targets[call.target], call.method)(*call.args, **call.kwargs)

    def open(self, call: Call) -> Iterator[Any]:
        return getattr(self.targets[call.target], call.method)(*call.args, **call.kwargs)


class AsyncTargets:
    """Awaiting execution of effects against named objects: ``a<method>`` is awaited."""

    def __init__(self, **targets: Any) -> None:
        self.targets = {"clock": CLOCK, **targets}

    async def perform(self, effect: Effect) -> Any:
        if type(effect) is Call:
            return self.open(effect) if effect.stream else await self.call(effect)
        if type(effect) is Next:
            items = effect.iterator
            return await anext(items, END) if hasattr(items, "__anext__") else next(items, END)
        if type(effect) is Both:
            return await self.both(effect)
        raise TypeError(f"not an effect this executor performs: {effect!r}")

    async def both(self, effect: Both, timeout: float | None = None) -> tuple[Outcome, Outcome]:
        """`first` as a task, `second` in this one, at once; with a `timeout`, a bounded
        `first` gives up after it (counted from the start). One task, not the three of a
        gather over a `wait_for`: each costs a turn of the event loop. When `second` only
        collects (`Both.collects`), no task: `first` within the bound, then `second`."""
        if effect.collects:
            try:
                answered = await _within(self.outcome(effect.first), timeout if effect.bounded else None)
            finally:
                collected = await self.outcome(effect.second)
            return answered, collected
        began = time.monotonic()
        first = asyncio.ensure_future(self.outcome(effect.first))
        try:
            two = await self.outcome(effect.second)
            if not first.done():
                left = None if not effect.bounded or timeout is None else timeout - (time.monotonic() - began)
                await asyncio.wait((first,), timeout=left)
            late = not first.done()
        finally:
            if not first.done():
                first.cancel()  # out of time, or this task was cancelled: the first goes too
        if late:
            return Outcome(error=asyncio.TimeoutError()), two
        one: Outcome = first.result()
        return one, two

    async def outcome(self, plan: Plan[Any]) -> Outcome:
        try:
            return Outcome(await arun(plan, self))
        except Exception as exc:
            return Outcome(error=exc)

    async def call(self, call: Call) -> Any:
        return await getattr(self.targets[call.target], "a" + call.method)(*call.args, **call.kwargs)

    def open(self, call: Call) -> AsyncIterator[Any]:
        return getattr(self.targets[call.target], "a" + call.method)(*call.args, **call.kwargs)


async def bounded(awaitable: Awaitable[R], timeout: float | None) -> R:
    """`awaitable`'s result; `asyncio.TimeoutError` once it takes longer than `timeout`
    seconds (None: no bound). On Python 3.11+ a deadline on this task, not a task of its own
    as `wait_for` makes (a turn of the event loop each)."""
    if timeout is None:
        return await awaitable
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await awaitable
    return await asyncio.wait_for(awaitable, timeout)


async def _within(outcome: Awaitable[Outcome], timeout: float | None) -> Outcome:
    """`outcome`, or a `TimeoutError` one when it takes longer than `timeout` seconds."""
    try:
        return await bounded(outcome, timeout)
    except asyncio.TimeoutError:
        return Outcome(error=asyncio.TimeoutError())


# --------------------------------------------------------------------------- drivers


def _perform(plan: Plan[Any], effect: Effect, io: Targets) -> Any:
    try:
        result = io.perform(effect)
    except Exception as exc:  # the plan decides what a failure means
        return step(plan, error=exc)
    return step(plan, result)


async def _aperform(plan: Plan[Any], effect: Effect, io: AsyncTargets) -> Any:
    try:
        result = await io.perform(effect)
    except Exception as exc:
        return step(plan, error=exc)
    return step(plan, result)


def _emitted(effect: Any) -> TypeError:
    return TypeError(f"a plan run for its result emitted {effect!r}; iterate it with stream()")


def run(plan: Plan[R], io: Targets) -> R:
    """Drive `plan` to its return value with blocking I/O."""
    effect = step(plan)
    while type(effect) is not Done:
        if type(effect) is Emit:
            raise _emitted(effect)
        effect = _perform(plan, effect, io)
    return effect.value


def stream(plan: Plan[Any], io: Targets) -> Iterator[Any]:
    """Drive `plan`, yielding what it emits, with blocking I/O."""
    try:
        effect = step(plan)
        while type(effect) is not Done:
            if type(effect) is Emit:
                yield from effect.items
                effect = step(plan)
            else:
                effect = _perform(plan, effect, io)
    finally:
        plan.close()  # the caller may stop early: the plan's own cleanup runs now


async def arun(plan: Plan[R], io: AsyncTargets) -> R:
    """Drive `plan` to its return value, awaiting its I/O."""
    effect = step(plan)
    while type(effect) is not Done:
        if type(effect) is Emit:
            raise _emitted(effect)
        effect = await _aperform(plan, effect, io)
    return effect.value


async def astream(plan: Plan[Any], io: AsyncTargets) -> AsyncIterator[Any]:
    """Drive `plan`, yielding what it emits, awaiting its I/O."""
    try:
        effect = step(plan)
        while type(effect) is not Done:
            if type(effect) is Emit:
                for item in effect.items:
                    yield item
                effect = step(plan)
            else:
                effect = await _aperform(plan, effect, io)
    finally:
        plan.close()


def for_each(plan: Plan[R], handle: Callable[[Any], Plan[Any]]) -> Plan[R]:
    """A plan step that runs `plan` and, for each item it emits, the plan `handle(item)`,
    instead of emitting it; returns what `plan` returns."""
    effect = step(plan)
    while type(effect) is not Done:
        if type(effect) is Emit:
            for item in effect.items:
                yield from handle(item)
            effect = step(plan)
            continue
        try:
            result = yield effect
        except Exception as exc:  # thrown into this step: it belongs to `plan`
            effect = step(plan, error=exc)
        else:
            effect = step(plan, result)
    return effect.value


def relay(target: str, method: str, *args: Any, **kwargs: Any) -> Plan[int]:
    """A plan step that streams what ``target.method(...)`` yields on to the plan's caller;
    returns how many items it passed."""
    items = yield Call(target, method, args, kwargs, stream=True)
    count = 0
    while (item := (yield Next(items))) is not END:
        count += 1
        yield Emit((item,))
    return count


def gather(target: str, method: str, *args: Any, **kwargs: Any) -> Plan[list[Any]]:
    """A plan step that collects what ``target.method(...)`` yields into a list."""
    items = yield Call(target, method, args, kwargs, stream=True)
    found = []
    while (item := (yield Next(items))) is not END:
        found.append(item)
    return found
