"""The item store of `SqliteStore` / `AsyncSqliteStore` (langgraph-checkpoint-sqlite): the
`store` table (value as JSON text, times as UTC text) and, with an index, `store_vectors`
(float32 blobs, sqlite-vec's layout)."""

from __future__ import annotations

from array import array
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from dualsaver.items._sql import AsyncSqlItems, Steps, SyncSqlItems, SqlItemPlans, query, write
from dualsaver.items.record import ItemKey, StoredItem, ns_text, sql_time
from dualsaver.sansio import Plan

_COLUMNS = "prefix, key, value, created_at, updated_at, expires_at, ttl_minutes"
_INSERT = f"INSERT OR IGNORE INTO store ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_REPLACE = f"INSERT OR REPLACE INTO store ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_VECTOR = ("INSERT OR REPLACE INTO store_vectors (prefix, key, field_name, embedding, created_at, updated_at)"
           " VALUES (?, ?, ?, ?, ?, ?)")
_DROP_VECTORS = "DELETE FROM store_vectors WHERE prefix = ? AND key = ?"
_DROP = "DELETE FROM store WHERE prefix = ? AND key = ?"


class SqliteItemPlans(SqlItemPlans):
    MARK = "?"
    KIND, NAME = "sqlite", "SQLite"
    HAS_VECTORS_SQL = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'store_vectors'"
    ITEMS_SQL = ("SELECT s.prefix, s.key, s.value, s.created_at, s.updated_at, s.expires_at, s.ttl_minutes,"
                 " {vectors} FROM store s {join} {where} ORDER BY s.prefix, s.key")

    def load_vector(self, raw: Any) -> list[float]:
        return array("f", raw).tolist()

    def row(self, item: StoredItem) -> tuple[Any, ...]:
        return (ns_text(item.namespace), item.key, self.value_json(item), sql_time(item.created_at),
                sql_time(item.updated_at), sql_time(item.expires_at), item.ttl_minutes)

    @staticmethod
    def vector_rows(items: Sequence[StoredItem]) -> list[tuple[Any, ...]]:
        return [(ns_text(i.namespace), i.key, name, array("f", vector).tobytes(), sql_time(i.created_at),
                 sql_time(i.updated_at)) for i in items for name, vector in (i.vectors or {}).items()]

    def _insert_plan(self, items: Sequence[StoredItem], vectors: bool) -> Plan[int]:
        wanted = [(i.namespace, i.key) for i in items]
        where, params = self._keys_where(wanted)
        present = {(r[0], r[1]) for r in (yield query(f"SELECT s.prefix, s.key FROM store s {where}", params))}
        fresh = [i for i in items if (ns_text(i.namespace), i.key) not in present]
        steps: Steps = [(_INSERT, [self.row(i) for i in fresh], True)]
        if vectors:
            steps.append((_VECTOR, self.vector_rows(fresh), True))
        results = yield write(steps)
        return int(results[0])

    def replace_steps(self, items: Sequence[StoredItem], vectors: bool) -> Steps:
        keys = [(ns_text(i.namespace), i.key) for i in items]
        steps: Steps = [(_REPLACE, [self.row(i) for i in items], True)]
        if vectors:
            steps = [(_DROP_VECTORS, keys, True), *steps, (_VECTOR, self.vector_rows(items), True)]
        return steps

    def delete_steps(self, keys: Sequence[ItemKey]) -> Steps:
        rows = [(ns_text(ns), k) for ns, k in keys]
        return [(_DROP, rows, True)] + ([(_DROP_VECTORS, rows, True)] if self.index is not None else [])


class SqliteItems(SqliteItemPlans, SyncSqlItems):
    """Over a `SqliteStore`: its connection, under its lock for writes."""

    def rows(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        return iter(self.store.conn.execute(sql, params))

    def write(self, steps: Steps) -> list[Any]:
        conn = self.store.conn
        with self.store.lock:
            if conn.in_transaction:
                conn.commit()
            conn.execute("BEGIN IMMEDIATE")
            try:
                counts = [_run(conn, step) for step in steps]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return counts


def _run(conn: Any, step: tuple[str, Any, bool]) -> int:
    sql, params, many = step
    cursor = conn.executemany(sql, params) if many else conn.execute(sql, params)
    return cursor.rowcount


class AsyncSqliteItems(SqliteItemPlans, AsyncSqlItems):
    """Over an `AsyncSqliteStore`: its aiosqlite connection."""

    async def arows(self, sql: str, params: Sequence[Any]) -> AsyncIterator[Any]:
        async with self.store.conn.execute(sql, params) as cursor:
            async for row in cursor:
                yield row

    async def awrite(self, steps: Steps) -> list[Any]:
        conn = self.store.conn
        async with self.store.lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                counts = []
                for sql, params, many in steps:
                    cursor = await (conn.executemany(sql, params) if many else conn.execute(sql, params))
                    counts.append(cursor.rowcount)
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
        return counts
