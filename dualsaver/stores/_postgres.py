"""Native access to `PostgresSaver` / `AsyncPostgresSaver` stores (langgraph-checkpoint-postgres).

Reads reuse the saver's own `SELECT_SQL` (checkpoint, its blobs joined through
`channel_versions`, and its writes with `task_path` and `idx`) and `_load_blobs`. Writes reuse
the rows `_dump_blobs` and `_dump_writes` build (a write's stored bytes pass through
unchanged when the source's serializer is the same configuration) and split channel values
exactly as `put` does (primitives inline in the JSONB checkpoint, `_DeltaSnapshot` as a blob
behind a `true` marker, the rest as blobs), so a copied row is indistinguishable from one
the saver wrote. Every insert is insert-if-absent (see `CopyInsert`), in one transaction per
batch, so live traffic's rows are never overwritten.

Orders use `COLLATE "C"` so thread ids and (namespace, checkpoint id) come out in code-point
order, the same order SQLite, the in-memory saver and Python give, whatever the database's
collation.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import Checkpoint, get_serializable_checkpoint_metadata
from langgraph.checkpoint.serde.types import _DeltaSnapshot
import orjson
from psycopg.adapt import Transformer
from psycopg.errors import UniqueViolation
from psycopg.pq import Format
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb, set_json_loads
from psycopg.types.string import BytesBinaryDumper

from dualsaver.sansio import AsyncTargets, Call, Emit, Plan, Targets, arun, run
from dualsaver.stores.faithful import NON_FINITE, NUL, refuse
from dualsaver.stores._pg_lookup import Asked, Row, answer as pg_answer, ask as pg_ask, lookup as pg_lookup
from dualsaver.stores._prints import Write, printed, value_digest
from dualsaver.stores._sql import AsyncSqlStore, SqlPlans, Statements, SyncSqlStore, latest_key, select
from dualsaver.stores.native import (
    Printed, StoredCheckpoint, StoredValue, ThreadItem, Unreadable, check_typed, checked,
    in_write_order, loads_json, stored_write, typed_value, unreadable,
)

PG_NON_FINITE = "postgres.json-non-finite"  # the preflight's rule ids (dualsaver.preflight.rules)
PG_NUL = "postgres.nul"
THREADS_FIRST = (
    'SELECT DISTINCT thread_id COLLATE "C" AS thread_id FROM checkpoints ORDER BY 1 LIMIT %s'
)
THREADS_NEXT = (
    'SELECT DISTINCT thread_id COLLATE "C" AS thread_id FROM checkpoints'
    ' WHERE thread_id COLLATE "C" > %s ORDER BY 1 LIMIT %s'
)
_KEY = 'thread_id COLLATE "C", checkpoint_ns COLLATE "C", checkpoint_id COLLATE "C"'
_ORDER = f" ORDER BY {_KEY} LIMIT %s"
_AFTER = f" AND ({_KEY}) > (%s, %s, %s)"
KEYS_SQL = "SELECT checkpoint_ns, checkpoint_id FROM checkpoints WHERE thread_id = %s"
# The check's digests read the three tables apart (`_read_prints_plan`): each blob once,
# however many checkpoints name its version, and no correlated subquery per checkpoint. The
# documents come as text, which psycopg reads in C (its jsonb loader is a Python call per
# value) and `loads_json` parses as the jsonb loader would.
_PRINT_CHECKPOINTS = (
    "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint::text, metadata::text"
    " FROM checkpoints WHERE thread_id = ANY(%s)"
)
PRINT_CHECKPOINTS_FIRST = _PRINT_CHECKPOINTS + _ORDER
PRINT_CHECKPOINTS_NEXT = _PRINT_CHECKPOINTS + _AFTER + _ORDER
# the blobs of the threads given, a page at a time in primary-key order (its index): one range
# scan per thread, where looking up each named version was 4x the server's work and a Python
# array of keys to send (measured, 10k checkpoints: 16 ms against 74 ms)
_BLOB_KEY = "thread_id, checkpoint_ns, channel, version"
_PRINT_BLOBS = f"SELECT {_BLOB_KEY}, type, blob FROM checkpoint_blobs WHERE thread_id = ANY(%s)"
PRINT_BLOBS_FIRST = f"{_PRINT_BLOBS} ORDER BY {_BLOB_KEY} LIMIT %s"
PRINT_BLOBS_NEXT = f"{_PRINT_BLOBS} AND ({_BLOB_KEY}) > (%s, %s, %s, %s) ORDER BY {_BLOB_KEY} LIMIT %s"
BLOB_PAGE = 2000  # blobs a query brings (their bytes are digested, then dropped)
PRINT_WRITES = (
    "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob"
    f" FROM checkpoint_writes WHERE thread_id = ANY(%s) AND ({_KEY}) >= (%s, %s, %s) AND ({_KEY}) <= (%s, %s, %s)"
)
BLOB_CACHE = 200_000  # blob digests one batch keeps (its threads' versions), then forgets
_LATEST = (
    "SELECT c.checkpoint_id, (SELECT count(*) FROM checkpoint_writes w WHERE w.thread_id = c.thread_id"
    " AND w.checkpoint_ns = c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id) AS writes"
    " FROM checkpoints c WHERE c.thread_id = %s AND c.checkpoint_ns = %s"
)
INSERT_CHECKPOINT_SQL = """
    INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
    VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO NOTHING
"""


# Bulk inserts: rows are COPYed straight into the table, inside a savepoint. When a row is
# already there (a re-run, live traffic, a blob version an earlier batch of the thread
# wrote) the COPY fails on the unique key and only the savepoint is rolled back; the rows
# then go through a temporary table and INSERT ... SELECT ... ON CONFLICT DO NOTHING (the
# saver's own conflict rule for blobs and new writes). Either way a batch costs a few round
# trips and no per-row statement, and nothing present is overwritten. The direct COPY does
# about 40% less work in the server, which is the backfill's bottleneck, and the binary
# format spares both sides the text conversions. Small batches use the saver's own INSERT
# statements with executemany instead.
@dataclass(frozen=True, slots=True)
class CopyInsert:
    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    types: tuple[str, ...]  # of the columns, for the binary COPY

    @property
    def temp(self) -> str:
        return f"_dualsaver_{self.table}"

    def create_temp(self) -> str:
        return (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.temp} (LIKE {self.table} INCLUDING DEFAULTS)"
            " ON COMMIT DELETE ROWS"
        )

    def copy_sql(self) -> str:
        return f"COPY {self.temp} ({', '.join(self.columns)}) FROM STDIN (FORMAT BINARY)"

    def direct_sql(self) -> str:
        return f"COPY {self.table} ({', '.join(self.columns)}) FROM STDIN (FORMAT BINARY)"

    @property
    def wire_types(self) -> tuple[str, ...]:
        """The types the binary COPY is told: a JSONB value is sent as its wire bytes, already
        built (`jsonb_wire`), so it goes through psycopg's C bytes dumper, not a Python one."""
        return tuple("bytea" if t == "jsonb" else t for t in self.types)

    def params(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        """`rows` as parameters of the saver's INSERT statements (a JSONB value as `Jsonb`)."""
        if "jsonb" not in self.types:
            return rows
        wire = [i for i, t in enumerate(self.types) if t == "jsonb"]
        return [tuple(_as_jsonb(v) if i in wire else v for i, v in enumerate(row)) for row in rows]

    def move_sql(self) -> str:
        cols = ", ".join(self.columns)
        return (
            f"INSERT INTO {self.table} ({cols}) SELECT {cols} FROM {self.temp}"
            f" ON CONFLICT ({', '.join(self.key)}) DO NOTHING"
        )


COPY_BLOBS = CopyInsert(
    "checkpoint_blobs",
    ("thread_id", "checkpoint_ns", "channel", "version", "type", "blob"),
    ("thread_id", "checkpoint_ns", "channel", "version"),
    ("text", "text", "text", "text", "text", "bytea"),
)
COPY_WRITES = CopyInsert(
    "checkpoint_writes",
    ("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "task_path", "idx", "channel", "type", "blob"),
    ("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
    ("text", "text", "text", "text", "text", "int4", "text", "text", "bytea"),
)
COPY_CHECKPOINTS = CopyInsert(
    "checkpoints",
    ("thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "checkpoint", "metadata"),
    ("thread_id", "checkpoint_ns", "checkpoint_id"),
    ("text", "text", "text", "text", "jsonb", "jsonb"),
)
COPY_THRESHOLD = 64  # rows; below it, executemany of the saver's statements is as fast


def _small_sql(saver: Any, op: CopyInsert) -> str:
    return {
        "checkpoint_blobs": saver.UPSERT_CHECKPOINT_BLOBS_SQL,  # DO NOTHING on conflict
        "checkpoint_writes": saver.INSERT_CHECKPOINT_WRITES_SQL,  # DO NOTHING on conflict
        "checkpoints": INSERT_CHECKPOINT_SQL,
    }[op.table]


def json_dumps(value: Any) -> bytes | str:
    """JSON for a JSONB column: orjson (several times faster than `json.dumps`, which the
    saver uses; JSONB stores the same value either way), else `json.dumps` for what orjson
    refuses (integers beyond 64 bits). orjson writes NaN and Infinity as null: see `jsonb_wire`."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value)


def _as_is(data: bytes | str) -> bytes | str:
    return data


JSONB_VERSION = b"\x01"  # the first byte of a JSONB value in PostgreSQL's binary format, before its text


def jsonb_wire(value: Any, what: str, allowed: Collection[str] = (), nones: int = 0) -> bytes:
    """`value` for a JSONB column in the binary format (its version byte, then its JSON text),
    encoded now (so a refusal fails the batch's encoding, not its transaction). NaN and
    Infinity, which JSONB cannot hold and orjson would write as null, are refused
    (`LossyValue`) unless that class is allowed.

    They are looked for only when the text holds more nulls than the `nones` Nones the caller
    knows `value` holds (each None and each NaN is a null, a string may hold one too, so no
    more nulls than known Nones means no NaN): an ordinary checkpoint, whose nulls are its
    branch channels' None values, costs a count, not a walk."""
    data = json_dumps(value)
    if isinstance(data, str):
        refuse(value, NON_FINITE, what, PG_NON_FINITE, "PostgreSQL's JSONB", allowed)
        return JSONB_VERSION + data.encode()
    if b"null" in data and data.count(b"null") > nones and not _all_finite(value):
        refuse(value, NON_FINITE, what, PG_NON_FINITE, "PostgreSQL's JSONB", allowed)
    return JSONB_VERSION + data


def _as_jsonb(wire: bytes) -> Jsonb:
    return Jsonb(wire[1:], dumps=_as_is)


_INFINITIES = (math.inf, -math.inf)


def _all_finite(value: Any) -> bool:
    """No NaN or Infinity anywhere in `value` (dicts' values, lists, tuples): the leaves
    `refuse` looks for, found without building the path of every leaf it passes (it costs a
    fifth of this)."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        node = pop()
        kind = type(node)
        if kind is str or kind is int or kind is bool or node is None:
            continue
        if kind is dict:
            extend(node.values())
        elif kind is float:
            if node != node or node in _INFINITIES:
                return False
        elif kind is list or kind is tuple:
            extend(node)
        elif isinstance(node, dict):
            extend(node.values())
        elif isinstance(node, (list, tuple)):
            extend(node)
        elif isinstance(node, float) and not math.isfinite(node):
            return False
    return True


def metadata_wire(metadata: Any, allowed: Collection[str] = ()) -> bytes:
    """The metadata for its JSONB column (`jsonb_wire`), as `put` stores it
    (`serializable_metadata`). Most metadata holds no NUL, no "writes" key and no null: its
    encoding is then already what put stores, and is kept without looking at the values."""
    data = json_dumps(metadata)
    if isinstance(data, bytes) and b"null" not in data and b"\\u0000" not in data and b'"writes"' not in data:
        return JSONB_VERSION + data
    return jsonb_wire(serializable_metadata(metadata, allowed), "metadata", allowed)


def serializable_metadata(metadata: Any, allowed: Collection[str] = ()) -> Any:
    """`get_serializable_checkpoint_metadata({}, metadata)`, as put stores it; the same dict
    when it already is (no "writes" key, no NUL in a top-level string: most of them). The
    saver strips a NUL from a top-level string: refused here (`LossyValue`) unless allowed."""
    changed = any(isinstance(v, str) and (type(v) is not str or "\x00" in v) for v in metadata.values())
    if changed or "writes" in metadata:
        top = {k: v for k, v in metadata.items() if isinstance(v, str)}
        refuse(top, NUL, "metadata", PG_NUL, "PostgresSaver's metadata encoding", allowed)
        return get_serializable_checkpoint_metadata({}, metadata)
    return metadata


_INLINE = frozenset({str, int, float, bool})  # exactly these types (a subclass goes the long way)


def split_channel_values(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(inline, blob) values, as `PostgresSaver.put` splits them."""
    inline: dict[str, Any] = {}
    blobs: dict[str, Any] = {}
    for k, v in values.items():
        if v is None or type(v) in _INLINE:  # most values: decided by the type alone
            inline[k] = v
        elif isinstance(v, StoredValue):  # bytes passed through; decided when they were split
            blobs[k] = v
            if v.snapshot:
                inline[k] = True
        elif isinstance(v, _DeltaSnapshot):
            blobs[k] = v
            inline[k] = True  # the marker put leaves for a snapshot
        elif v is None or isinstance(v, (str, int, float, bool)):
            inline[k] = v
        else:
            blobs[k] = v
    return inline, blobs


def _stored_blobs(rows: Any, inline: dict[str, Any], key: Any) -> dict[str, StoredValue]:
    """The blobs of one checkpoint as their stored bytes (checked, not decoded); a snapshot is
    the one blob behind an inline `true` marker (as `put` writes a `_DeltaSnapshot`)."""
    blobs = {}
    for channel, tag, blob in rows or ():
        name, tag = channel.decode(), tag.decode()
        if tag != "empty":  # as `_load_blobs` skips it
            typed = check_typed((tag, blob), key, "a channel value")
            blobs[name] = StoredValue(typed, snapshot=inline.get(name) is True)
    return blobs


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["thread_id"], row["checkpoint_ns"], row["checkpoint_id"])


def _unlocking(lock: Any) -> Callable[[Any], None]:
    """How an `Asked` on the saver's single connection lets it go: its lock released."""
    return lambda _conn: lock.release()


async def _released(done: Any) -> None:
    """A pool's `putconn` is a coroutine in the async pool; a lock's release is not."""
    if inspect.isawaitable(done):
        await done


def select_tuples(sql: str, params: Sequence[Any]) -> Call:
    """`select`, its rows as tuples in the query's column order (no dict per row: the check
    reads millions)."""
    return Call("db", "query", (sql, params), {"tuples": True})


def _named_blobs(thread_id: str, ns: str, checkpoint: Any) -> Iterator[tuple[str, str, str, str]]:
    """The (thread, ns, channel, version) of each blob a checkpoint names, as the saver's
    SELECT joins them (`jsonb_each_text` of its channel_versions)."""
    versions = (checkpoint.get("channel_versions") if isinstance(checkpoint, dict) else None) or {}
    for channel, version in versions.items():
        yield (thread_id, ns, channel, version if isinstance(version, str) else str(version))


class PostgresPlans(SqlPlans):
    """SQL and (de)serialization for the PostgreSQL schema; no I/O."""

    takes_stored_values = True  # channel values as blobs: see dualsaver.stores._msgpack_split
    allow_lossy: Collection[str] = ()  # rule classes the writer may convert (see dualsaver.stores.faithful)
    gives_stored_values = True  # and reads them so: a copy into PostgreSQL or SQLite passes the bytes on
    LATEST_SQL = _LATEST + " ORDER BY c.checkpoint_id DESC LIMIT 1"  # as the saver's get_tuple orders
    CHECKPOINT_SQL = _LATEST + " AND c.checkpoint_id = %s"

    def _lookup(self, name: str, sql: str, params: Sequence[Any]) -> Call:
        return Call("db", "lookup", (name, sql, params))  # see dualsaver.stores._pg_lookup

    RUNS_SQL = (
        "SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints WHERE metadata->>'run_id' = ANY(%s)"
    )
    DELETE_SQLS = (
        # the blobs only the deleted checkpoints of the thread referenced (versions are unique)
        (
            "DELETE FROM checkpoint_blobs b USING checkpoints d,"
            " jsonb_each_text(d.checkpoint -> 'channel_versions') v(channel, version)"
            " WHERE d.thread_id = %s AND d.checkpoint_ns = %s AND d.checkpoint_id = %s"
            " AND b.thread_id = d.thread_id AND b.checkpoint_ns = d.checkpoint_ns"
            " AND b.channel = v.channel AND b.version = v.version"
            " AND NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = d.thread_id"
            " AND c.checkpoint_ns = d.checkpoint_ns AND c.checkpoint_id <> ALL(%s)"
            " AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)",
            True,
        ),
        ("DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s", False),
        ("DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s", False),
    )

    def __init__(self, saver: Any) -> None:
        super().__init__(saver)  # type: ignore[call-arg]  # cooperative: next in the MRO is a SqlStore shell
        self._first_page = saver.SELECT_SQL + "WHERE thread_id = ANY(%s)" + _ORDER
        self._next_page = saver.SELECT_SQL + "WHERE thread_id = ANY(%s)" + _AFTER + _ORDER

    def _thread_ids_plan(self) -> Plan[None]:
        return self.keyset_threads(THREADS_FIRST, THREADS_NEXT)

    def _read_threads_plan(
        self, thread_ids: Sequence[str], encoded: bool = False, stored_values: bool = False, prints: bool = False
    ) -> Plan[None]:
        if prints:
            return self._read_prints_plan(thread_ids)
        return self._read_records_plan(thread_ids, encoded, stored_values)

    def _read_records_plan(self, thread_ids: Sequence[str], encoded: bool, stored_values: bool) -> Plan[None]:
        encoding = self.serde_key if encoded else None
        ids, page = list(thread_ids), self.page_size(thread_ids)

        def each(rows: list[Any]) -> Plan[None]:
            yield Emit([self.decode(row, encoding, stored_values) for row in rows])

        return self.keyset_pages(
            select(self._first_page, (ids, page)), lambda after: select(self._next_page, (ids, *after, page)),
            page, _key, each,
        )

    def _read_prints_plan(self, thread_ids: Sequence[str]) -> Plan[None]:
        """`Printed` digests (`dualsaver.stores._prints`), a page of checkpoints at a time with
        the blobs of the threads it starts (each thread's blobs are digested once, however
        many pages its checkpoints fill) and its writes. Rows come as tuples
        (`select_tuples`), in the column order of the PRINT_ queries."""
        ids, page = list(thread_ids), self.page_size(thread_ids)
        blobs: dict[tuple[str, str, str, str], Any] = {}  # (thread, ns, channel, version) -> digest
        digested: set[str] = set()  # the threads whose blobs are in `blobs`

        def each(rows: list[Any]) -> Plan[None]:
            if len(blobs) > BLOB_CACHE:
                blobs.clear()
                digested.clear()
            rows = [(*r[:4], loads_json(r[4]), loads_json(r[5]) if r[5] is not None else None) for r in rows]
            threads = sorted({row[0] for row in rows} - digested)
            if threads:
                yield from self.keyset_pages(
                    select_tuples(PRINT_BLOBS_FIRST, (threads, BLOB_PAGE)),
                    lambda after: select_tuples(PRINT_BLOBS_NEXT, (threads, *after, BLOB_PAGE)),
                    BLOB_PAGE, lambda b: b[:4], digest,
                )
                digested.update(threads)
            writes: dict[tuple[str, str, str], list[Write]] = {}
            for w in (yield select_tuples(PRINT_WRITES, (ids, *rows[0][:3], *rows[-1][:3]))):
                task_id, task_path, idx, channel, type_, blob = w[3:]
                writes.setdefault(w[:3], []).append((task_id, task_path or "", idx, channel, type_, blob))
            yield Emit([
                self.print_row(row, _named_blobs(row[0], row[1], row[4]), blobs, writes.get(row[:3], ()))
                for row in rows
            ])

        def digest(page: list[Any]) -> Plan[None]:
            for b in page:
                blobs[b[:4]] = self.blob_digest(b[4], b[5])
            yield from ()

        return self.keyset_pages(
            select_tuples(PRINT_CHECKPOINTS_FIRST, (ids, page)),
            lambda after: select_tuples(PRINT_CHECKPOINTS_NEXT, (ids, *after, page)),
            page, lambda row: row[:3], each,
        )

    def blob_digest(self, type_: str, blob: Any) -> Any:
        """A blob's digest; None for an "empty" blob (the saver skips it); the error for one
        that does not check (a checkpoint naming it is read decoded)."""
        if type_ == "empty":
            return None
        try:
            return value_digest((type_, blob), self.plaintext)
        except Exception as exc:
            return exc

    def print_row(
        self, row: tuple, blob_keys: Iterable[tuple], blobs: dict[tuple, Any], writes: Iterable[Write]
    ) -> Printed | Unreadable:
        """One checkpoint (a PRINT_CHECKPOINTS row) as a digest of its stored bytes
        (`dualsaver.stores._prints`), its blobs' digests (`blob_keys`: the blobs it names)
        looked up in `blobs`."""
        thread_id, ns, checkpoint_id, parent, checkpoint, metadata = row
        key = (thread_id, ns, checkpoint_id)
        try:
            stored = dict(checkpoint)
            values = dict(stored.get("channel_values") or {})
            for blob_key in blob_keys:
                found = blobs.get(blob_key)
                if isinstance(found, Exception):
                    raise found
                if found is not None:  # wins over an inline `true` (the marker of a delta snapshot)
                    values[blob_key[2]] = found
            stored["channel_values"] = values
            return printed(key, parent or None, stored, metadata, writes, self.plaintext)
        except Exception as exc:
            return unreadable(thread_id, ns, checkpoint_id, exc)

    def decode(self, row: dict[str, Any], encoding: Any = None, stored_values: bool = False) -> ThreadItem:
        """One checkpoint and its writes. With an `encoding` (a serde key), writes keep their
        stored bytes and are not decoded (the backfill passes them through); with
        `stored_values` too, so do the blobs (`StoredValue`s)."""
        thread_id, ns, checkpoint_id = row["thread_id"], row["checkpoint_ns"], row["checkpoint_id"]
        key = self.serde_key
        try:
            stored, metadata = checked(row["checkpoint"], row["metadata"])
            inline = stored.get("channel_values") or {}
            if stored_values and encoding is not None:
                blobs = _stored_blobs(row["channel_values"], inline, encoding)
            else:
                blobs = self.saver._load_blobs(row["channel_values"])
            checkpoint: Checkpoint = {**stored, "channel_values": {**inline, **blobs}}
            writes = [
                stored_write(tid.decode(), path.decode() if path is not None else "", int(idx), channel.decode(),
                             (t.decode(), blob), self.serde, key, encoding)
                for tid, channel, t, blob, path, idx in row["pending_writes"] or ()
            ]
            return StoredCheckpoint(
                thread_id=thread_id,
                checkpoint_ns=ns,
                checkpoint_id=checkpoint_id,
                parent_checkpoint_id=row["parent_checkpoint_id"] or None,
                checkpoint=checkpoint,
                metadata=metadata,
                writes=in_write_order(writes),
                encoding=encoding,
            )
        except Exception as exc:  # reported, never a crash
            return unreadable(thread_id, ns, checkpoint_id, exc)

    def _keys_plan(self, thread_id: str) -> Plan[set[tuple[str, str]]]:
        rows = yield select(KEYS_SQL, (thread_id,))
        return {(r["checkpoint_ns"], r["checkpoint_id"]) for r in rows}

    def held_query(self, thread_ids: list[str]) -> tuple[str, Sequence[Any]]:
        return "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id = ANY(%s)", (thread_ids,)

    def encode(self, items: Iterable[StoredCheckpoint]) -> Statements:
        """Rows exactly as `PostgresSaver.put` / `put_writes` would write them.

        A blob row is keyed by (thread, ns, channel, version), and consecutive checkpoints
        mostly repeat their parent's versions: each key is encoded once per batch, its first
        occurrence in (ns, checkpoint id) order, the row `ON CONFLICT DO NOTHING` keeps anyway.
        """
        serde, key, allowed = self.serde, self.serde_key, self.allow_lossy
        dumps = serde.dumps_typed
        blob_rows: list[tuple] = []
        write_rows: list[tuple] = []
        checkpoint_rows: list[tuple] = []
        seen_blobs: set[tuple[str, str, str, str]] = set()
        for item in items:
            t, ns, cid = item.thread_id, item.checkpoint_ns, item.checkpoint_id
            copy: dict[str, Any] = dict(item.checkpoint)
            inline, blob_values = split_channel_values(copy.get("channel_values") or {})
            copy["channel_values"] = inline
            versions = copy.get("channel_versions") or {}
            for channel, value in blob_values.items():
                if channel not in versions:
                    continue
                version = versions[channel]
                version = version if isinstance(version, str) else str(version)  # the column is text
                if (t, ns, channel, version) in seen_blobs:
                    continue
                seen_blobs.add((t, ns, channel, version))
                typed = value.typed if type(value) is StoredValue else dumps(value)
                blob_rows.append((t, ns, channel, version, *typed))
            same_serde = key is not None and item.encoding == key  # stored bytes pass through
            for w in item.writes:  # the stored idx, not a recount
                tag, data = w.typed if same_serde and w.typed is not None else typed_value(item, w, serde, key)
                write_rows.append((t, ns, cid, w.task_id, w.task_path, w.idx, w.channel, tag, data))
            checkpoint_rows.append(
                (
                    t,
                    ns,
                    cid,
                    item.parent_checkpoint_id,
                    jsonb_wire(copy, "checkpoint", allowed, list(inline.values()).count(None)),
                    metadata_wire(item.metadata, allowed),
                )
            )
        # checkpoints last: a visible checkpoint row has its blobs and writes
        return ((COPY_BLOBS, blob_rows), (COPY_WRITES, write_rows), (COPY_CHECKPOINTS, checkpoint_rows))

    def _insert_rows_plan(self, bulk: CopyInsert, rows: Sequence[Sequence[Any]]) -> Plan[int]:
        """Insert-if-absent into one table, inside the batch's transaction; returns the rows
        added (see the comment on CopyInsert). Runs against the target "cursor"."""
        if not rows:
            return 0
        if len(rows) < COPY_THRESHOLD:
            return (yield Call("cursor", "executemany", (_small_sql(self.saver, bulk), bulk.params(rows))))
        yield Call("cursor", "execute", ("SAVEPOINT dualsaver_copy",))
        try:
            yield Call("cursor", "copy", (bulk.direct_sql(), bulk.wire_types, rows))
        except UniqueViolation:  # a row is there already: only the savepoint is undone
            yield Call("cursor", "execute", ("ROLLBACK TO SAVEPOINT dualsaver_copy",))
            yield Call("cursor", "execute", (bulk.create_temp(),))
            yield Call("cursor", "copy", (bulk.copy_sql(), bulk.wire_types, rows))
            return (yield Call("cursor", "execute", (bulk.move_sql(),)))
        yield Call("cursor", "execute", ("RELEASE SAVEPOINT dualsaver_copy",))
        return len(rows)


def fast_bytea(cur: Any) -> Any:
    """`cur`, dumping bytes to bytea with psycopg's C dumper: by oid (as a binary COPY's
    `set_types` looks it up) psycopg finds its DB-API `Binary` dumper, a Python subclass that
    costs 4 us a value, a fifth of a checkpoint's budget."""
    cur.adapters.register_dumper(bytes, BytesBinaryDumper)
    return cur


# A table's rows as one binary COPY payload, formatted by psycopg's own row formatter (C) in
# one loop and sent with one write: `write_row` costs twice as much a row in Python around
# the same formatter, and each of its flushes gives up the GIL the reader then keeps for up
# to 5 ms. The formatter is not public API: where it is missing, rows go one by one.
try:
    from psycopg._copy_base import format_row_binary
except ImportError:  # pragma: no cover - another psycopg layout
    format_row_binary = None
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # the binary COPY header: signature, flags, extension
COPY_TRAILER = b"\xff\xff"


def binary_payload(cur: Any, types: tuple[str, ...], rows: list[tuple]) -> bytearray | None:
    """`rows` in the binary COPY format, dumped as `cur` dumps them (its adapters, its
    connection's encoding); None where psycopg's formatter is not there."""
    if format_row_binary is None:
        return None
    tx = Transformer.from_context(cur)
    tx.set_dumper_types([cur.adapters.types[t].oid for t in types], Format.BINARY)
    out = bytearray(COPY_SIGNATURE)
    for row in rows:
        format_row_binary(row, tx, out)
    out += COPY_TRAILER
    return out


class Cursor:
    """The target "cursor" of `_insert_rows_plan`: a psycopg cursor, blocking."""

    def __init__(self, cur: Any) -> None:
        self.cur = fast_bytea(cur)

    def execute(self, sql: str) -> int:
        self.cur.execute(sql)
        return max(self.cur.rowcount, 0)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        self.cur.executemany(sql, rows)
        return max(self.cur.rowcount, 0)

    def copy(self, sql: str, types: tuple[str, ...], rows: list[tuple]) -> None:
        with self.cur.copy(sql) as copy:
            if (payload := binary_payload(self.cur, types, rows)) is not None:
                copy.write(payload)
                return
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)


class AsyncCursor:
    """The same target over an async psycopg cursor."""

    def __init__(self, cur: Any) -> None:
        self.cur = fast_bytea(cur)

    async def aexecute(self, sql: str) -> int:
        await self.cur.execute(sql)
        return max(self.cur.rowcount, 0)

    async def aexecutemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        await self.cur.executemany(sql, rows)
        return max(self.cur.rowcount, 0)

    async def acopy(self, sql: str, types: tuple[str, ...], rows: list[tuple]) -> None:
        async with self.cur.copy(sql) as copy:
            if (payload := binary_payload(self.cur, types, rows)) is not None:
                await copy.write(payload)
                return
            copy.set_types(types)
            for row in rows:
                await copy.write_row(row)


class PostgresNativeStore(PostgresPlans, SyncSqlStore):
    """Sync shell over a `PostgresSaver`'s connection (its lock) or pool (no lock needed)."""

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        from psycopg_pool import ConnectionPool

        conn = self.saver.conn
        if isinstance(conn, ConnectionPool):
            with conn.connection() as c:
                yield c
        else:
            with self.saver.lock:
                yield conn

    def query(self, sql: str, params: Any, tuples: bool = False) -> list[Any]:
        rows = tuple_row if tuples else dict_row
        with self._connection() as conn, conn.cursor(binary=True, row_factory=rows) as cur:
            set_json_loads(loads_json, cur)  # json.loads read through orjson (`loads_json`)
            cur.execute(sql, params)
            return cur.fetchall()

    def lookup(self, name: str, sql: str, params: Sequence[Any]) -> list[Row]:
        with self._connection() as conn, conn.lock:
            return conn.wait(pg_lookup(conn, name, sql, params))

    def ask_latest(self, thread_id: str, ns: str = "", checkpoint_id: str | None = None) -> Asked | None:
        """`latest`, sent on a connection held until `answer_latest` (a tiered read holds it
        for the length of its hot read): a pooled one (size the pool to the reads at once),
        or the saver's single connection when it is idle (its lock taken without waiting;
        other calls of the saver wait for it at most as long as the hot read). None (ask
        nothing; the caller asks `latest` whole) when that connection is busy."""
        from psycopg_pool import ConnectionPool

        pool = self.saver.conn
        release: Callable[[Any], Any]
        if isinstance(pool, ConnectionPool):
            conn, release = pool.getconn(), pool.putconn
        elif self.saver.lock.acquire(blocking=False):
            conn, release = pool, _unlocking(self.saver.lock)
        else:
            return None
        try:
            with conn.lock:
                asked = conn.wait(pg_ask(conn, *self._latest_query(thread_id, ns, checkpoint_id)))
        except BaseException:
            release(conn)
            raise
        asked.release = release
        return asked

    def answer_latest(self, asked: Asked) -> tuple[str, int] | None:
        """What `latest` would have returned for an `ask_latest`; lets the connection go."""
        try:
            with asked.conn.lock:
                return latest_key(asked.conn.wait(pg_answer(asked)))
        finally:
            asked.release(asked.conn)

    def execute(self, statements: Statements) -> list[int]:
        with self._connection() as conn, conn.transaction(), conn.cursor(binary=True) as cur:
            io = Targets(cursor=Cursor(cur))
            return [run(self._insert_rows_plan(bulk, rows), io) for bulk, rows in statements]

    def remove(self, statements: Statements) -> list[int]:
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            return [Cursor(cur).executemany(sql, rows) for sql, rows in statements]


class AsyncPostgresNativeStore(PostgresPlans, AsyncSqlStore):
    """Async shell over an `AsyncPostgresSaver`'s connection (its lock) or pool."""

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        from psycopg_pool import AsyncConnectionPool

        conn = self.saver.conn
        if isinstance(conn, AsyncConnectionPool):
            async with conn.connection() as c:
                yield c
        else:
            async with self.saver.lock:
                yield conn

    async def aquery(self, sql: str, params: Any, tuples: bool = False) -> list[Any]:
        rows = tuple_row if tuples else dict_row
        async with self._connection() as conn, conn.cursor(binary=True, row_factory=rows) as cur:
            set_json_loads(loads_json, cur)
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def alookup(self, name: str, sql: str, params: Sequence[Any]) -> list[Row]:
        async with self._connection() as conn, conn.lock:
            return await conn.wait(pg_lookup(conn, name, sql, params))

    async def aask_latest(self, thread_id: str, ns: str = "", checkpoint_id: str | None = None) -> Asked | None:
        from psycopg_pool import AsyncConnectionPool

        pool = self.saver.conn
        release: Callable[[Any], Any]
        if isinstance(pool, AsyncConnectionPool):
            conn, release = await pool.getconn(), pool.putconn
        elif not self.saver.lock.locked():
            await self.saver.lock.acquire()  # free: taken at once, no turn of the event loop
            conn, release = pool, _unlocking(self.saver.lock)
        else:
            return None
        try:
            async with conn.lock:
                asked = await conn.wait(pg_ask(conn, *self._latest_query(thread_id, ns, checkpoint_id)))
        except BaseException:
            await _released(release(conn))
            raise
        asked.release = release
        return asked

    async def aanswer_latest(self, asked: Asked) -> tuple[str, int] | None:
        try:
            async with asked.conn.lock:
                return latest_key(await asked.conn.wait(pg_answer(asked)))
        finally:
            await _released(asked.release(asked.conn))

    async def aexecute(self, statements: Statements) -> list[int]:
        async with self._connection() as conn, conn.transaction(), conn.cursor(binary=True) as cur:
            io = AsyncTargets(cursor=AsyncCursor(cur))
            return [await arun(self._insert_rows_plan(bulk, rows), io) for bulk, rows in statements]

    async def aremove(self, statements: Statements) -> list[int]:
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            return [await AsyncCursor(cur).aexecutemany(sql, rows) for sql, rows in statements]
