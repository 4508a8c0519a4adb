"""The item store of `PostgresStore` / `AsyncPostgresStore` (langgraph-checkpoint-postgres):
the `store` table (jsonb values, timestamptz times, `ttl_minutes` an INT) and, with an
index, `store_vectors` (pgvector's `vector` or `halfvec`).

A batch is written by one statement: the items as arrays (`unnest`), inserted if absent, and
the vectors of exactly the rows that statement inserted (a data-modifying CTE), so an item
and its vectors commit together and an item already there keeps its own."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext
from typing import Any

from dualsaver.items._pgvector import TYPE_OIDS_SQL, VectorArray, dumper
from dualsaver.items._sql import AsyncSqlItems, Steps, SyncSqlItems, SqlItemPlans
from dualsaver.items.record import ItemKey, StoredItem, ns_text

_SOURCE = """src AS (
    SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::timestamptz[],
                         %b::timestamptz[], %b::float8[])
        AS t(prefix, key, value, created_at, updated_at, expires_at, ttl_minutes))"""
_INSERT = """ins AS (
    INSERT INTO store (prefix, key, value, created_at, updated_at, expires_at, ttl_minutes)
    SELECT prefix, key, value::jsonb, created_at, updated_at, expires_at, ttl_minutes FROM src
    ON CONFLICT (prefix, key) DO {conflict}
    RETURNING prefix, key)"""
_UPDATE = ("UPDATE SET value = EXCLUDED.value, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,"
           " expires_at = EXCLUDED.expires_at, ttl_minutes = EXCLUDED.ttl_minutes")
_VECTORS = """vec AS (
    INSERT INTO store_vectors (prefix, key, field_name, embedding, created_at, updated_at)
    SELECT v.prefix, v.key, v.field_name, v.embedding, v.created_at, v.updated_at
    FROM unnest(%b::text[], %b::text[], %b::text[], %b::{kind}[], %b::timestamptz[], %b::timestamptz[])
        AS v(prefix, key, field_name, embedding, created_at, updated_at)
    JOIN ins USING (prefix, key)
    RETURNING 1)"""  # %b: the arrays go binary, with no text quoting to do (the vectors: `_pgvector`)
ITERSIZE = 1000  # rows per fetch of a read
_cursors = itertools.count()
_DROP = "DELETE FROM store WHERE (prefix, key) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"


class PostgresItemPlans(SqlItemPlans):
    MARK = "%s"
    KIND, NAME = "postgres", "PostgreSQL's JSONB"
    HAS_VECTORS_SQL = "SELECT to_regclass('store_vectors') IS NOT NULL"
    VECTOR_COLUMNS = "v.field_name, v.embedding::real[]"
    ITEMS_SQL = ("SELECT s.prefix, s.key, s.value::text, s.created_at, s.updated_at, s.expires_at, s.ttl_minutes,"
                 ' {vectors} FROM store s {join} {where} ORDER BY s.prefix COLLATE "C", s.key COLLATE "C"')

    @property
    def side_queries(self) -> bool:
        """Whether a query may run while `items` streams: with one connection, the stream holds
        it (under the store's lock) until it ends; a pool lends another."""
        return hasattr(self.store.conn, "getconn")

    @property
    def vector_oids(self) -> dict[str, tuple[int, int]]:
        """pgvector type -> (its oid, its array type's oid) in this store's database, as looked up."""
        found: dict[str, tuple[int, int]] = self.__dict__.setdefault("_vector_oids", {})
        return found

    @property
    def vector_kind(self) -> str:
        config = getattr(self.store, "index_config", None) or {}
        return (config.get("ann_index_config") or {}).get("vector_type", "vector")

    def _statement(self, items: Sequence[StoredItem], vectors: bool, conflict: str) -> tuple[str, list[Any]]:
        params: list[Any] = [
            [ns_text(i.namespace) for i in items], [i.key for i in items],
            [self.value_json(i) for i in items], [i.created_at for i in items],
            [i.updated_at for i in items], [i.expires_at for i in items], [i.ttl_minutes for i in items],
        ]
        parts = [_SOURCE, _INSERT.format(conflict=conflict)]
        if vectors:
            rows = [(ns_text(i.namespace), i.key, name, v, i.created_at, i.updated_at)
                    for i in items for name, v in (i.vectors or {}).items()]
            columns: list[Any] = [list(column) for column in zip(*rows)] if rows else [[] for _ in range(6)]
            columns[3] = VectorArray(self.vector_kind, columns[3])
            params += columns
            parts.append(_VECTORS.format(kind=self.vector_kind))
            tail = "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM vec)"
        else:
            tail = "SELECT (SELECT count(*) FROM ins), 0"
        return "WITH " + ",\n".join(parts) + "\n" + tail, params

    def insert_steps(self, items: Sequence[StoredItem], vectors: bool) -> Steps:
        return [(*self._statement(items, vectors, "NOTHING"), False)]

    def replace_steps(self, items: Sequence[StoredItem], vectors: bool) -> Steps:
        keys = [[ns_text(i.namespace) for i in items], [i.key for i in items]]
        return [(_DROP, keys, False), (*self._statement(items, vectors, _UPDATE), False)]

    def delete_steps(self, keys: Sequence[ItemKey]) -> Steps:
        return [(_DROP, [[ns_text(ns) for ns, _ in keys], [k for _, k in keys]], False)]

    def added(self, results: list[Any]) -> int:
        return int(results[-1][0][0])


def _named_cursor(conn: Any) -> Any:
    """A server-side cursor read `ITERSIZE` rows per round trip. Not `cursor.stream`: its
    single-row mode on the store's own connection breaks the official store's next pipelined
    query there ("unexpected result status from query: SINGLE_TUPLE", psycopg 3.3)."""
    from psycopg.rows import tuple_row

    cursor = conn.cursor(name=f"dualsaver_items_{next(_cursors)}", row_factory=tuple_row)
    cursor.itersize = ITERSIZE
    return cursor


def _one_statement(conn: Any, steps: Steps) -> bool:
    """Whether the steps are one statement on an autocommit connection: a transaction of its
    own, so BEGIN and COMMIT (two round trips) are spared."""
    return len(steps) == 1 and bool(conn.autocommit)


def _atomic(conn: Any, steps: Steps) -> Any:
    """The steps' transaction (sync or async: `nullcontext` is both)."""
    return nullcontext() if _one_statement(conn, steps) else conn.transaction()


def _vector_arrays(steps: Steps) -> list[VectorArray]:
    return [p for _, params, _ in steps for p in params if isinstance(p, VectorArray)]


class PostgresItems(PostgresItemPlans, SyncSqlItems):
    """Over a `PostgresStore`: its connection (or one of its pool's)."""

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        conn = self.store.conn
        if hasattr(conn, "getconn"):  # a pool
            with conn.connection() as held:
                yield held
        else:
            with self.store.lock:
                yield conn

    def rows(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        with self._connection() as conn, conn.transaction(), _named_cursor(conn) as cursor:
            cursor.execute(sql, params)
            yield from cursor

    def query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """A small result in one round trip (`rows` streams through a server-side cursor: a
        transaction and a cursor to open and close, four round trips more)."""
        from psycopg.rows import tuple_row

        with self._connection() as conn, conn.cursor(row_factory=tuple_row) as cursor:
            return cursor.execute(sql, params).fetchall()

    def write(self, steps: Steps) -> list[Any]:
        from psycopg.rows import tuple_row

        results = []
        with self._connection() as conn, _atomic(conn, steps), conn.cursor(row_factory=tuple_row) as cursor:
            for array in _vector_arrays(steps):
                if array.kind not in self.vector_oids:
                    self.vector_oids[array.kind] = cursor.execute(TYPE_OIDS_SQL, (array.kind,)).fetchone()
                cursor.adapters.register_dumper(VectorArray, dumper(*self.vector_oids[array.kind]))
            for sql, params, _ in steps:
                cursor.execute(sql, params)
                results.append(cursor.fetchall() if cursor.description else cursor.rowcount)
        return results


class AsyncPostgresItems(PostgresItemPlans, AsyncSqlItems):
    """Over an `AsyncPostgresStore`: its connection (or one of its pool's)."""

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        conn = self.store.conn
        if hasattr(conn, "getconn"):
            async with conn.connection() as held:
                yield held
        else:
            async with self.store.lock:
                yield conn

    async def arows(self, sql: str, params: Sequence[Any]) -> AsyncIterator[Any]:
        async with self._connection() as conn, conn.transaction(), _named_cursor(conn) as cursor:
            await cursor.execute(sql, params)
            async for row in cursor:
                yield row

    async def aquery(self, sql: str, params: Sequence[Any]) -> list[Any]:
        from psycopg.rows import tuple_row

        async with self._connection() as conn, conn.cursor(row_factory=tuple_row) as cursor:
            await cursor.execute(sql, params)
            return await cursor.fetchall()

    async def awrite(self, steps: Steps) -> list[Any]:
        from psycopg.rows import tuple_row

        results = []
        async with self._connection() as conn, _atomic(conn, steps), conn.cursor(row_factory=tuple_row) as cursor:
            for array in _vector_arrays(steps):
                if array.kind not in self.vector_oids:
                    found = await cursor.execute(TYPE_OIDS_SQL, (array.kind,))
                    self.vector_oids[array.kind] = await found.fetchone()
                cursor.adapters.register_dumper(VectorArray, dumper(*self.vector_oids[array.kind]))
            for sql, params, _ in steps:
                await cursor.execute(sql, params)
                results.append(await cursor.fetchall() if cursor.description else cursor.rowcount)
        return results
