"""What the SQL native stores share: their plans' effects, the keyset paging of thread ids,
and the thin sync and async shells that run the plans.

A backend (`_sqlite`, `_postgres`) writes each operation once, as a plan (see
`dualsaver.sansio`) that asks its database for `select(sql, params)` (the rows come back) or
`insert(statements)` (bulk statements in one transaction; each one's row count comes back),
and emits what it read. The sync shell carries these out with blocking calls (`query`,
`execute`), the async one with awaits (`aquery`, `aexecute`); neither decides anything.
This is the shape of langgraph-checkpoint-postgres's base and of psycopg's generators.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any

from dualsaver.sansio import AsyncTargets, Call, Emit, Plan, Targets, arun, astream, run, stream
from dualsaver.stores.native import Printed, StoredCheckpoint, ThreadItem
from dualsaver.stores.serde import Plaintext, plaintext, serde_key

THREAD_PAGE = 1000  # thread ids per keyset page
CHECKPOINT_PAGE = 200  # checkpoints per page when reading one thread
MANY_THREADS_PAGE = 1000  # and when reading several (`read_threads`)
HELD_PER_QUERY = 500  # thread ids asked at once whether the store holds them (SQLite binds each)

Statements = tuple[tuple[Any, Sequence[Sequence[Any]]], ...]  # (statement, rows) pairs


def select(sql: str, params: Sequence[Any]) -> Call:
    """Run one query; its rows come back."""
    return Call("db", "query", (sql, params))


def insert(statements: Statements) -> Call:
    """Run bulk statements in one transaction; each statement's row count comes back."""
    return Call("db", "execute", (statements,))


def remove(statements: Statements) -> Call:
    """Run plain statements (each with its rows of parameters) in one transaction."""
    return Call("db", "remove", (statements,))


def latest_key(rows: Sequence[Any]) -> tuple[str, int] | None:
    """A latest-checkpoint lookup's rows as (checkpoint id, number of pending writes)."""
    if not rows:
        return None
    found, writes = rows[0].values() if isinstance(rows[0], dict) else rows[0]
    return str(found), int(writes)


class SqlPlans:
    """The native-store contract as plans; a backend provides the SQL and the encoding.

    `encode(items)` returns the bulk statements for a batch, in insert order, ending with the
    writes' and then the checkpoints' (a checkpoint row that is visible has its blobs and
    writes already): `added` reads the counts back in that order."""

    exact = True
    serde: Any
    saver: Any

    @functools.cached_property
    def serde_key(self) -> Any:
        """Equal keys let stored bytes pass through (see `dualsaver.stores.serde.serde_key`)."""
        return serde_key(self.serde)

    @functools.cached_property
    def plaintext(self) -> Plaintext:
        """How the check's byte path opens stored bytes (decrypts them where the serializer encrypts)."""
        return plaintext(self.serde)

    @property
    def prints_key(self) -> Any:
        """Equal keys: the check compares stored bytes first (`read_threads(ids, prints=True)`):
        the serializer configuration that wrote their plaintext."""
        return self.plaintext.key

    def _thread_ids_plan(self) -> Plan[None]:
        raise NotImplementedError

    def _read_thread_plan(self, thread_id: str, encoded: bool = False, stored_values: bool = False) -> Plan[None]:
        return self._read_threads_plan((thread_id,), encoded, stored_values)

    def _read_threads_plan(
        self, thread_ids: Sequence[str], encoded: bool = False, stored_values: bool = False, prints: bool = False
    ) -> Plan[None]:
        """Every checkpoint of the threads listed, in (thread, ns, id) order; with `prints`,
        each as a `Printed` digest of its stored bytes (or `Unreadable`)."""
        raise NotImplementedError

    @staticmethod
    def page_size(thread_ids: Sequence[str]) -> int:
        """Checkpoints per page: one thread's page, larger when many threads are read at once."""
        return CHECKPOINT_PAGE if len(thread_ids) == 1 else MANY_THREADS_PAGE

    def _keys_plan(self, thread_id: str) -> Plan[set[tuple[str, str]]]:
        raise NotImplementedError

    def held_query(self, thread_ids: list[str]) -> tuple[str, Sequence[Any]]:
        """The SQL and parameters of the distinct thread ids, among these, the store holds."""
        raise NotImplementedError

    def _held_plan(self, thread_ids: Sequence[str]) -> Plan[set[str]]:
        """Which of these threads the store holds a checkpoint of (asked after copying them:
        `migrate._copy.deleted_meanwhile`), a query per HELD_PER_QUERY."""
        held: set[str] = set()
        for start in range(0, len(thread_ids), HELD_PER_QUERY):
            rows = yield select(*self.held_query(list(thread_ids[start : start + HELD_PER_QUERY])))
            held.update(str(_first(row)) for row in rows)
        return held

    LATEST_SQL: str  # (thread, ns) -> the newest checkpoint id and its write count
    CHECKPOINT_SQL: str  # (thread, ns, id) -> the same for one checkpoint

    def _latest_plan(self, thread_id: str, ns: str, checkpoint_id: str | None = None) -> Plan[tuple[str, int] | None]:
        """The newest checkpoint of (thread, namespace), or the one named, as (id, how many
        pending writes it has); None when there is none. One index lookup: what a tiered
        read checks the hot store's answer against."""
        return latest_key((yield self._lookup(*self._latest_query(thread_id, ns, checkpoint_id))))

    def _latest_query(self, thread_id: str, ns: str, checkpoint_id: str | None) -> tuple[str, str, tuple[str, ...]]:
        """The statement name, SQL and parameters of `_latest_plan`'s lookup."""
        if checkpoint_id is None:
            return "dualsaver_latest", self.LATEST_SQL, (thread_id, ns)
        return "dualsaver_checkpoint", self.CHECKPOINT_SQL, (thread_id, ns, checkpoint_id)

    def _lookup(self, name: str, sql: str, params: Sequence[Any]) -> Call:
        """A small query asked on every tiered read: a backend may run it its cheapest way
        (PostgreSQL: prepared, over libpq) under the statement name `name`."""
        return select(sql, params)

    def encode(self, items: Iterable[StoredCheckpoint]) -> Statements:
        raise NotImplementedError

    # -- the extended capabilities' primitives (see `dualsaver.stores._capabilities`) -----

    RUNS_SQL: str  # run ids (one parameter) -> (thread, ns, id) of their checkpoints
    # (statement, whether it also takes every id deleted in the thread), each run per checkpoint
    # with (thread, ns, id[, ids]), in this order
    DELETE_SQLS: tuple[tuple[str, bool], ...]

    def _run_checkpoints_plan(self, run_ids: Sequence[str]) -> Plan[dict[str, list[tuple[str, str]]]]:
        rows = yield select(self.RUNS_SQL, (self.runs_param(run_ids),))
        found: dict[str, list[tuple[str, str]]] = {}
        for row in rows:
            thread_id, ns, checkpoint_id = row.values() if isinstance(row, dict) else row
            found.setdefault(str(thread_id), []).append((str(ns), str(checkpoint_id)))
        return found

    def runs_param(self, run_ids: Sequence[str]) -> Any:
        return list(run_ids)

    def _delete_checkpoints_plan(self, thread_id: str, keys: Sequence[tuple[str, str]]) -> Plan[None]:
        """The checkpoints named, their writes (and what only they referenced), in one transaction."""
        if not keys:
            return
        ids = self.ids_param([cid for _, cid in keys])
        rows = [(thread_id, ns, cid) for ns, cid in keys]
        yield remove(
            tuple((sql, [(*r, ids) for r in rows] if with_ids else rows) for sql, with_ids in self.DELETE_SQLS)
        )

    def ids_param(self, ids: list[str]) -> Any:
        return ids

    def prepare_write(self, items: Iterable[StoredCheckpoint]) -> Statements:
        """Encode a batch now (CPU only); `write_prepared` sends it later. The backfill
        encodes in its reader thread, so writers only wait on the database."""
        return self.encode(items)

    def _insert_plan(self, statements: Statements) -> Plan[tuple[int, int]]:
        counts = yield insert(statements)
        return counts[-1], counts[-2]  # (checkpoints added, writes added)

    @staticmethod
    def keyset_pages(
        first: Call,
        after: Callable[[Any], Call],
        page: int,
        key: Callable[[Any], Any],
        each: Callable[[list[Any]], Plan[None]],
    ) -> Plan[None]:
        """A keyset-paged query, a page at a time: `first` asks for the first page, `after(key)`
        for the page after the row with that key. `each(rows)` handles a page (a plan: it may
        ask more queries and emit); a short page is the last."""
        rows = yield first
        while rows:
            yield from each(rows)
            if len(rows) < page:
                return
            rows = yield after(key(rows[-1]))

    @classmethod
    def keyset_threads(cls, first_sql: str, next_sql: str, page: int = THREAD_PAGE) -> Plan[None]:
        """Distinct thread ids in ascending order, one keyset page at a time."""

        def each(rows: list[Any]) -> Plan[None]:
            yield Emit([_first(r) for r in rows])

        return cls.keyset_pages(
            select(first_sql, (page,)), lambda last: select(next_sql, (last, page)), page, _first, each
        )


def _first(row: Any) -> Any:
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]


class SyncSqlStore(SqlPlans):
    """The sync shell: `query` and `execute` do blocking I/O; the rest is the plans'."""

    def __init__(self, saver: Any) -> None:
        self.saver = saver
        self.serde = saver.serde
        self._io = Targets(db=self)

    def query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def execute(self, statements: Statements) -> list[int]:
        raise NotImplementedError

    def thread_ids(self) -> Iterator[str]:
        return stream(self._thread_ids_plan(), self._io)

    def read_thread(
        self, thread_id: str, *, encoded: bool = False, stored_values: bool = False
    ) -> Iterator[ThreadItem]:
        return stream(self._read_thread_plan(thread_id, encoded, stored_values), self._io)

    def read_threads(
        self, thread_ids: Sequence[str], *, encoded: bool = False, stored_values: bool = False, prints: bool = False
    ) -> Iterator[ThreadItem | Printed]:
        return stream(self._read_threads_plan(thread_ids, encoded, stored_values, prints), self._io)

    def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return run(self._keys_plan(thread_id), self._io)

    def threads_held(self, thread_ids: Sequence[str]) -> set[str]:
        return run(self._held_plan(thread_ids), self._io)

    def latest(self, thread_id: str, ns: str = "", checkpoint_id: str | None = None) -> tuple[str, int] | None:
        return run(self._latest_plan(thread_id, ns, checkpoint_id), self._io)

    def write_prepared(self, statements: Statements) -> tuple[int, int]:
        return run(self._insert_plan(statements), self._io)

    def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return self.write_prepared(self.prepare_write(items))

    def delete_thread(self, thread_id: str) -> None:
        self.saver.delete_thread(thread_id)

    def remove(self, statements: Statements) -> list[int]:
        raise NotImplementedError

    def run_checkpoints(self, run_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        return run(self._run_checkpoints_plan(run_ids), self._io)

    def delete_checkpoints(self, thread_id: str, keys: Sequence[tuple[str, str]]) -> None:
        run(self._delete_checkpoints_plan(thread_id, keys), self._io)


class AsyncSqlStore(SqlPlans):
    """The async shell: `aquery` and `aexecute` await; the rest is the plans'."""

    def __init__(self, saver: Any) -> None:
        self.saver = saver
        self.serde = saver.serde
        self._io = AsyncTargets(db=self)

    async def aquery(self, sql: str, params: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    async def aexecute(self, statements: Statements) -> list[int]:
        raise NotImplementedError

    def athread_ids(self) -> AsyncIterator[str]:
        return astream(self._thread_ids_plan(), self._io)

    def aread_thread(
        self, thread_id: str, *, encoded: bool = False, stored_values: bool = False
    ) -> AsyncIterator[ThreadItem]:
        return astream(self._read_thread_plan(thread_id, encoded, stored_values), self._io)

    def aread_threads(
        self, thread_ids: Sequence[str], *, encoded: bool = False, stored_values: bool = False, prints: bool = False
    ) -> AsyncIterator[ThreadItem | Printed]:
        return astream(self._read_threads_plan(thread_ids, encoded, stored_values, prints), self._io)

    async def acheckpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return await arun(self._keys_plan(thread_id), self._io)

    async def athreads_held(self, thread_ids: Sequence[str]) -> set[str]:
        return await arun(self._held_plan(thread_ids), self._io)

    async def alatest(self, thread_id: str, ns: str = "", checkpoint_id: str | None = None) -> tuple[str, int] | None:
        return await arun(self._latest_plan(thread_id, ns, checkpoint_id), self._io)

    async def awrite_prepared(self, statements: Statements) -> tuple[int, int]:
        return await arun(self._insert_plan(statements), self._io)

    async def awrite_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return await self.awrite_prepared(self.prepare_write(items))

    async def adelete_thread(self, thread_id: str) -> None:
        await self.saver.adelete_thread(thread_id)

    async def aremove(self, statements: Statements) -> list[int]:
        raise NotImplementedError

    async def arun_checkpoints(self, run_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        return await arun(self._run_checkpoints_plan(run_ids), self._io)

    async def adelete_checkpoints(self, thread_id: str, keys: Sequence[tuple[str, str]]) -> None:
        await arun(self._delete_checkpoints_plan(thread_id, keys), self._io)
