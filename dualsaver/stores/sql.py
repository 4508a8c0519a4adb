"""Sans-I/O plans for the SQL native stores, and the thin sync and async shells that run them.

A backend writes each operation once, as a generator (a *plan*) that yields `Query` (run it,
send back the rows), `Execute` (run these bulk statements in one transaction, send back the
row counts) or `Emit` (hand these items to the caller). The sync shell drives a plan with
blocking calls, the async shell with awaits; neither holds a decision of its own. This is the
shape of httpx's auth flows and of langgraph-checkpoint-postgres's `_keep_latest`.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, TypeVar

from dualsaver.stores.native import StoredCheckpoint, ThreadItem, Unreadable

R = TypeVar("R")

THREAD_PAGE = 1000  # thread ids per keyset page
CHECKPOINT_PAGE = 200  # checkpoints per page when reading one thread


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    params: Sequence[Any]


@dataclass(frozen=True, slots=True)
class Execute:
    """Bulk statements run in one transaction; the plan receives each statement's row count."""

    statements: tuple[tuple[str, list[Sequence[Any]]], ...]


@dataclass(frozen=True, slots=True)
class Emit:
    items: list[Any]


Op = Query | Execute | Emit
Plan = Generator[Op, Any, R]


def run_stream(plan: Plan[Any], execute: Callable[[Query | Execute], Any]) -> Iterator[Any]:
    """Drive a plan that emits items, with blocking I/O."""
    try:
        op = next(plan)
        while True:
            if isinstance(op, Emit):
                yield from op.items
                op = next(plan)
            else:
                op = plan.send(execute(op))
    except StopIteration:
        return


def run_call(plan: Plan[R], execute: Callable[[Query | Execute], Any], first: Op | None = None) -> R:
    """Drive a plan to its return value, with blocking I/O (from `first`, when a
    `PreparedWrite` already advanced it)."""
    try:
        op = next(plan) if first is None else first
        while True:
            op = plan.send(execute(op))
    except StopIteration as stop:
        return stop.value


async def arun_stream(
    plan: Plan[Any], execute: Callable[[Query | Execute], Awaitable[Any]]
) -> AsyncIterator[Any]:
    try:
        op = next(plan)
        while True:
            if isinstance(op, Emit):
                for item in op.items:
                    yield item
                op = next(plan)
            else:
                op = plan.send(await execute(op))
    except StopIteration:
        return


async def arun_call(
    plan: Plan[R], execute: Callable[[Query | Execute], Awaitable[Any]], first: Op | None = None
) -> R:
    try:
        op = next(plan) if first is None else first
        while True:
            op = plan.send(await execute(op))
    except StopIteration as stop:
        return stop.value


def describe_error(exc: BaseException) -> str:
    """`Type: message` on one line, short; never a value (serializers name types, not data)."""
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def unreadable(thread_id: str, ns: str, checkpoint_id: str, exc: BaseException) -> Unreadable:
    return Unreadable(thread_id, ns, checkpoint_id, describe_error(exc))


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """A write plan advanced to its first statement: the rows are encoded, nothing is sent.
    The backfill prepares batches in its reader thread, so writers only talk to the target."""

    plan: Plan[tuple[int, int]]
    first: Op


class SqlPlans:
    """What every SQL backend provides: the four plans of the native-store contract."""

    exact = True
    serde: Any

    @property
    def serde_key(self) -> Any:
        """See `dualsaver.stores.serde.serde_key`: equal keys let stored bytes pass through."""
        from dualsaver.stores.serde import serde_key

        return serde_key(self.serde)

    def _thread_ids_plan(self) -> Plan[None]:
        raise NotImplementedError

    def _read_thread_plan(self, thread_id: str, encoded: bool = False) -> Plan[None]:
        raise NotImplementedError

    def _keys_plan(self, thread_id: str) -> Plan[set[tuple[str, str]]]:
        raise NotImplementedError

    def _write_plan(self, items: Iterable[StoredCheckpoint]) -> Plan[tuple[int, int]]:
        raise NotImplementedError

    def prepare_write(self, items: Iterable[StoredCheckpoint]) -> PreparedWrite:
        """Encode `items` now (CPU only); `write_prepared` sends them later."""
        plan = self._write_plan(items)
        return PreparedWrite(plan, next(plan))

    # shared plan pieces -------------------------------------------------------------

    @staticmethod
    def keyset_threads(first_sql: str, next_sql: str, page: int = THREAD_PAGE) -> Plan[None]:
        """Distinct thread ids in ascending order, one keyset page at a time."""
        last: str | None = None
        while True:
            if last is None:
                rows = yield Query(first_sql, (page,))
            else:
                rows = yield Query(next_sql, (last, page))
            ids = [_first(r) for r in rows]
            if ids:
                yield Emit(ids)
                last = ids[-1]
            if len(ids) < page:
                return


def _first(row: Any) -> Any:
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]


class SyncSqlStore(SqlPlans):
    """The sync shell: `_execute` does blocking I/O; everything else is the plans'."""

    def _execute(self, op: Query | Execute) -> Any:
        raise NotImplementedError

    def thread_ids(self) -> Iterator[str]:
        return run_stream(self._thread_ids_plan(), self._execute)

    def read_thread(self, thread_id: str, *, encoded: bool = False) -> Iterator[ThreadItem]:
        return run_stream(self._read_thread_plan(thread_id, encoded), self._execute)

    def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return run_call(self._keys_plan(thread_id), self._execute)

    def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return run_call(self._write_plan(items), self._execute)

    def write_prepared(self, prepared: PreparedWrite) -> tuple[int, int]:
        return run_call(prepared.plan, self._execute, prepared.first)


class AsyncSqlStore(SqlPlans):
    """The async shell: `_execute` awaits; everything else is the plans'."""

    async def _execute(self, op: Query | Execute) -> Any:
        raise NotImplementedError

    def thread_ids(self) -> AsyncIterator[str]:
        return arun_stream(self._thread_ids_plan(), self._execute)

    def read_thread(self, thread_id: str, *, encoded: bool = False) -> AsyncIterator[ThreadItem]:
        return arun_stream(self._read_thread_plan(thread_id, encoded), self._execute)

    async def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return await arun_call(self._keys_plan(thread_id), self._execute)

    async def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return await arun_call(self._write_plan(items), self._execute)

    async def write_prepared(self, prepared: PreparedWrite) -> tuple[int, int]:
        return await arun_call(prepared.plan, self._execute, prepared.first)
