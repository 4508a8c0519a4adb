"""Native access to `SqliteSaver` / `AsyncSqliteSaver` stores (langgraph-checkpoint-sqlite).

Rows follow the saver's own schema (`checkpoints`, `writes` with `task_path` and `idx`) and
its own encodings: the whole checkpoint through the saver's serde, metadata as UTF-8 JSON
(`get_checkpoint_metadata`, as `put` does). Writes go in with INSERT OR IGNORE, so nothing
already in the store (live traffic) is ever overwritten.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from langgraph.checkpoint.base import get_checkpoint_metadata

from dualsaver.sansio import Emit, Plan
from dualsaver.stores._sql import CHECKPOINT_PAGE, AsyncSqlStore, SqlPlans, Statements, SyncSqlStore, select
from dualsaver.stores._msgpack_split import split_checkpoint
from dualsaver.stores.native import (
    NOT_DECODED, StoredCheckpoint, StoredWrite, ThreadItem, check_typed, checked, in_write_order, load_typed,
    loads_json, typed_value, unreadable,
)

THREADS_FIRST = "SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id LIMIT ?"
THREADS_NEXT = (
    "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id > ? ORDER BY thread_id LIMIT ?"
)
_CHECKPOINT_COLUMNS = (
    "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata"
    " FROM checkpoints WHERE thread_id = ?"
)
CHECKPOINTS_FIRST = _CHECKPOINT_COLUMNS + " ORDER BY checkpoint_ns, checkpoint_id LIMIT ?"
CHECKPOINTS_NEXT = (
    _CHECKPOINT_COLUMNS
    + " AND (checkpoint_ns, checkpoint_id) > (?, ?) ORDER BY checkpoint_ns, checkpoint_id LIMIT ?"
)


def writes_range_sql(has_task_path: bool) -> str:
    task_path = "task_path" if has_task_path else "''"
    return (
        f"SELECT checkpoint_ns, checkpoint_id, task_id, {task_path}, idx, channel, type, value"
        " FROM writes WHERE thread_id = ?"
        " AND (checkpoint_ns, checkpoint_id) >= (?, ?) AND (checkpoint_ns, checkpoint_id) <= (?, ?)"
    )


KEYS_SQL = "SELECT checkpoint_ns, checkpoint_id FROM checkpoints WHERE thread_id = ?"
_LATEST = (
    "SELECT c.checkpoint_id, (SELECT count(*) FROM writes w WHERE w.thread_id = c.thread_id"
    " AND w.checkpoint_ns = c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id)"
    " FROM checkpoints c WHERE c.thread_id = ? AND c.checkpoint_ns = ?"
)
INSERT_CHECKPOINT_SQL = (
    "INSERT OR IGNORE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id,"
    " parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_WRITE_SQL = (
    "INSERT OR IGNORE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path,"
    " idx, channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class SqlitePlans(SqlPlans):
    """SQL and (de)serialization for the SQLite schema; no I/O."""

    # metadata as the saver's own `list(filter=...)` reads it; run ids as one JSON array
    RUNS_SQL = (
        "SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints"
        " WHERE json_extract(CAST(metadata AS TEXT), '$.run_id') IN (SELECT value FROM json_each(?))"
    )
    DELETE_SQLS = (
        ("DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", False),
        ("DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", False),
    )

    def runs_param(self, run_ids: Any) -> Any:
        return json.dumps(list(run_ids))

    def _thread_ids_plan(self) -> Plan[None]:
        return self.keyset_threads(THREADS_FIRST, THREADS_NEXT)

    gives_stored_values = True  # whole checkpoints: see dualsaver.stores._msgpack_split
    LATEST_SQL = _LATEST + " ORDER BY c.checkpoint_id DESC LIMIT 1"  # as the saver's get_tuple orders
    CHECKPOINT_SQL = _LATEST + " AND c.checkpoint_id = ?"

    def _read_thread_plan(self, thread_id: str, encoded: bool = False, stored_values: bool = False) -> Plan[None]:
        writes_sql = writes_range_sql(getattr(self.saver, "_has_task_path", True))
        encoding = self.serde_key if encoded else None
        split = stored_values and encoding is not None and encoding[0] == "jsonplus"
        after: tuple[str, str] | None = None
        while True:
            if after is None:
                rows = yield select(CHECKPOINTS_FIRST, (thread_id, CHECKPOINT_PAGE))
            else:
                rows = yield select(CHECKPOINTS_NEXT, (thread_id, *after, CHECKPOINT_PAGE))
            if not rows:
                return
            first, last = (rows[0][0], rows[0][1]), (rows[-1][0], rows[-1][1])
            writes = yield select(writes_sql, (thread_id, *first, *last))
            by_key: dict[tuple[str, str], list[Any]] = defaultdict(list)
            for w in writes:
                by_key[(w[0], w[1])].append(w)
            yield Emit([self.decode(thread_id, r, by_key.get((r[0], r[1]), ()), encoding, split) for r in rows])
            if len(rows) < CHECKPOINT_PAGE:
                return
            after = last

    def decode(
        self, thread_id: str, row: Any, writes: Iterable[Any], encoding: Any = None, split: bool = False
    ) -> ThreadItem:
        """One checkpoint and its writes. With an `encoding` (a serde key), writes keep their
        stored bytes and are not decoded (the backfill passes them through); with `split`,
        so do the channel values a target stores apart (`split_checkpoint`)."""
        ns, checkpoint_id, parent, type_, blob, metadata = row
        key = self.serde_key
        try:
            if encoding is None:
                decoded = [
                    StoredWrite(task_id, task_path or "", idx, channel, load_typed(self.serde, key, (t, v)))
                    for _, _, task_id, task_path, idx, channel, t, v in writes
                ]
            else:
                decoded = [
                    StoredWrite(task_id, task_path or "", idx, channel, NOT_DECODED, check_typed((t, v), encoding))
                    for _, _, task_id, task_path, idx, channel, t, v in writes
                ]
            stored = None
            if split and type_ == "msgpack":
                try:
                    stored = split_checkpoint(blob, self.serde)
                except ValueError:  # decoded whole below, which says what is wrong
                    pass
            if stored is None:
                stored = load_typed(self.serde, key, (type_, blob), "the checkpoint")
            checkpoint, metadata = checked(stored, loads_json(metadata) if metadata is not None else {})
            writes_in_order = in_write_order(decoded) if len(decoded) > 1 else tuple(decoded)
            return StoredCheckpoint(  # by position: a checkpoint read is the backfill's hottest call
                thread_id, ns, checkpoint_id, parent or None, checkpoint, metadata, writes_in_order, encoding
            )
        except Exception as exc:  # a row that does not load is reported, never a crash
            return unreadable(thread_id, ns, checkpoint_id, exc)

    def _keys_plan(self, thread_id: str) -> Plan[set[tuple[str, str]]]:
        rows = yield select(KEYS_SQL, (thread_id,))
        return {(r[0], r[1]) for r in rows}

    def encode(self, items: Iterable[StoredCheckpoint]) -> Statements:
        """Rows exactly as `SqliteSaver.put` / `put_writes` would write them."""
        dumps, serde, key = self.serde.dumps_typed, self.serde, self.serde_key
        checkpoint_rows: list[tuple] = []
        write_rows: list[tuple] = []
        for item in items:
            row_key = (item.thread_id, item.checkpoint_ns, item.checkpoint_id)
            metadata = json.dumps(
                get_checkpoint_metadata({}, item.metadata), ensure_ascii=False
            ).encode("utf-8", "ignore")
            checkpoint_rows.append(
                (*row_key, item.parent_checkpoint_id, *dumps(item.checkpoint), metadata)
            )
            for w in item.writes:
                write_rows.append(
                    (*row_key, w.task_id, w.task_path, w.idx, w.channel, *typed_value(item, w, serde, key))
                )
        return ((INSERT_WRITE_SQL, write_rows), (INSERT_CHECKPOINT_SQL, checkpoint_rows))


class SqliteNativeStore(SqlitePlans, SyncSqlStore):
    """Sync shell over a `SqliteSaver`'s connection, under the saver's own lock."""

    def query(self, sql: str, params: Any) -> list[Any]:
        with self.saver.cursor(transaction=False) as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def execute(self, statements: Statements) -> list[int]:
        saver = self.saver
        with saver.lock:
            saver.setup()
            counts = []
            with saver.conn:  # one transaction: committed, or rolled back on error
                cur = saver.conn.cursor()
                try:
                    for sql, rows in statements:
                        cur.executemany(sql, rows)
                        counts.append(max(cur.rowcount, 0))
                finally:
                    cur.close()
            return counts

    remove = execute  # plain statements run the same way


class AsyncSqliteNativeStore(SqlitePlans, AsyncSqlStore):
    """Async shell over an `AsyncSqliteSaver`'s aiosqlite connection, under its lock."""

    async def aquery(self, sql: str, params: Any) -> list[Any]:
        await self.saver.setup()
        async with self.saver.lock, self.saver.conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def aexecute(self, statements: Statements) -> list[int]:
        saver = self.saver
        await saver.setup()
        async with saver.lock:
            counts = []
            try:
                for sql, rows in statements:
                    cur = await saver.conn.executemany(sql, rows)
                    counts.append(max(cur.rowcount, 0))
                    await cur.close()
                await saver.conn.commit()
            except BaseException:
                await saver.conn.rollback()
                raise
            return counts

    aremove = aexecute
