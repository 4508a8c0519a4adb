"""Native access to `SqliteSaver` / `AsyncSqliteSaver` stores (langgraph-checkpoint-sqlite).

Rows follow the saver's own schema (`checkpoints`, `writes` with `task_path` and `idx`) and
its own encodings: the whole checkpoint through the saver's serde, metadata as UTF-8 JSON
(`get_checkpoint_metadata`, as `put` does; metadata holding a lone surrogate, which that
encoding drops, is refused by rule `sqlite.surrogate` unless accepted). Writes go in with INSERT OR IGNORE, so nothing
already in the store (live traffic) is ever overwritten.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from langgraph.checkpoint.base import get_checkpoint_metadata

from dualsaver.sansio import Emit, Plan
from dualsaver.stores._sql import AsyncSqlStore, SqlPlans, Statements, SyncSqlStore, select
from dualsaver.stores._msgpack_join import joined
from dualsaver.stores._msgpack_split import split_checkpoint
from dualsaver.stores._prints import document, document_values, printed
from dualsaver.stores.faithful import SURROGATE, refuse
from dualsaver.stores.native import (
    Printed, StoredCheckpoint, ThreadItem, Unreadable, checked,
    in_write_order, load_typed, loads_json, stored_write, typed_value, unreadable,
)

SQLITE_SURROGATE = "sqlite.surrogate"  # the preflight's rule id (dualsaver.preflight.rules)
THREADS_FIRST = "SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id LIMIT ?"
THREADS_NEXT = (
    "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id > ? ORDER BY thread_id LIMIT ?"
)
# Several threads at once, in (thread, ns, id) order, a keyset page at a time: the check reads
# a batch of threads in a round trip or two instead of two per thread. The ids are bound one
# by one (a JSON array would lose an id holding NUL), at most MAX_IDS to a query.
MAX_IDS = 500
_KEY_ORDER = " ORDER BY thread_id, checkpoint_ns, checkpoint_id LIMIT ?"


def checkpoints_sql(ids: int, after: bool) -> str:
    """The checkpoints of `ids` threads, from the first or after a key (thread, ns, id)."""
    return (
        "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata"
        f" FROM checkpoints WHERE thread_id IN ({', '.join('?' * ids)})"
        + (" AND (thread_id, checkpoint_ns, checkpoint_id) > (?, ?, ?)" if after else "")
        + _KEY_ORDER
    )


def writes_range_sql(has_task_path: bool, ids: int) -> str:
    """The writes of the checkpoints from key (thread, ns, id) to key, of `ids` threads."""
    task_path = "task_path" if has_task_path else "''"
    return (
        f"SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, {task_path}, idx, channel, type, value"
        f" FROM writes WHERE thread_id IN ({', '.join('?' * ids)})"
        " AND (thread_id, checkpoint_ns, checkpoint_id) >= (?, ?, ?)"
        " AND (thread_id, checkpoint_ns, checkpoint_id) <= (?, ?, ?)"
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

    allow_lossy: Collection[str] = ()  # rule classes the writer may convert (see dualsaver.stores.faithful)
    takes_stored_values = True  # channel values as their bytes, joined into the document: see _msgpack_join

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

    def _read_threads_plan(
        self, thread_ids: Sequence[str], encoded: bool = False, stored_values: bool = False, prints: bool = False
    ) -> Plan[None]:
        encoding = self.serde_key if encoded else None
        split = stored_values and encoding is not None and encoding[0] == "jsonplus"
        ids = sorted(set(thread_ids))  # in the order the rows come
        for start in range(0, len(ids), MAX_IDS):
            yield from self._read_some_plan(ids[start : start + MAX_IDS], encoding, split, prints)

    def _read_some_plan(self, ids: list[str], encoding: Any, split: bool, prints: bool) -> Plan[None]:
        writes_sql = writes_range_sql(getattr(self.saver, "_has_task_path", True), len(ids))
        page = self.page_size(ids)

        def each(rows: list[Any]) -> Plan[None]:
            writes = yield select(writes_sql, (*ids, *rows[0][:3], *rows[-1][:3]))
            by_key: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
            for w in writes:
                by_key[(w[0], w[1], w[2])].append(w[1:])
            found = [(r, by_key.get((r[0], r[1], r[2]), ())) for r in rows]
            if prints:
                yield Emit([self.print_row(r, w) for r, w in found])
            else:
                yield Emit([self.decode(r[0], r[1:], w, encoding, split) for r, w in found])

        return self.keyset_pages(
            select(checkpoints_sql(len(ids), after=False), (*ids, page)),
            lambda last: select(checkpoints_sql(len(ids), after=True), (*ids, *last, page)),
            page, lambda row: tuple(row[:3]), each,
        )

    def decode(
        self, thread_id: str, row: Any, writes: Iterable[Any], encoding: Any = None, split: bool = False
    ) -> ThreadItem:
        """One checkpoint and its writes. With an `encoding` (a serde key), writes keep their
        stored bytes and are not decoded (the backfill passes them through); with `split`,
        so do the channel values a target stores apart (`split_checkpoint`)."""
        ns, checkpoint_id, parent, type_, blob, metadata = row
        key = self.serde_key
        try:
            decoded = [
                stored_write(task_id, task_path or "", idx, channel, (t, v), self.serde, key, encoding)
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

    def print_row(self, row: Any, writes: Iterable[Any]) -> Printed | Unreadable:
        """One checkpoint as a digest of its stored bytes (`dualsaver.stores._prints`)."""
        thread_id, ns, checkpoint_id, parent, type_, blob, metadata = row
        try:
            type_, blob = self.plaintext.open((type_, blob))
            if type_ != "msgpack":
                raise ValueError(f"a {type_!r} checkpoint is compared decoded")
            checkpoint = document(blob)
            if not isinstance(checkpoint, dict):
                raise ValueError("the checkpoint is not a mapping")
            checkpoint["channel_values"] = document_values(checkpoint.get("channel_values") or {})
            return printed(
                (thread_id, ns, checkpoint_id),
                parent or None,
                checkpoint,
                loads_json(metadata) if metadata is not None else {},
                [(w[2], w[3] or "", w[4], w[5], w[6], w[7]) for w in writes],
                self.plaintext,
            )
        except Exception as exc:
            return unreadable(thread_id, ns, checkpoint_id, exc)

    def _keys_plan(self, thread_id: str) -> Plan[set[tuple[str, str]]]:
        rows = yield select(KEYS_SQL, (thread_id,))
        return {(r[0], r[1]) for r in rows}

    def held_query(self, thread_ids: list[str]) -> tuple[str, Sequence[Any]]:
        marks = ", ".join("?" * len(thread_ids))
        return f"SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id IN ({marks})", thread_ids

    def encode(self, items: Iterable[StoredCheckpoint]) -> Statements:
        """Rows exactly as `SqliteSaver.put` / `put_writes` would write them."""
        serde, key, allowed = self.serde, self.serde_key, self.allow_lossy
        checkpoint_rows: list[tuple] = []
        write_rows: list[tuple] = []
        for item in items:
            row_key = (item.thread_id, item.checkpoint_ns, item.checkpoint_id)
            refuse(item.metadata, SURROGATE, "metadata", SQLITE_SURROGATE, "SqliteSaver's UTF-8 encoding", allowed,
                   keys=True, fate="would drop it")  # dropped quietly otherwise
            metadata = json.dumps(
                get_checkpoint_metadata({}, item.metadata), ensure_ascii=False
            ).encode("utf-8", "ignore")
            checkpoint_rows.append(
                (*row_key, item.parent_checkpoint_id, *joined(item.checkpoint, serde, key), metadata)
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
