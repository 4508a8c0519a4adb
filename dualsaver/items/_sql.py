"""What the SQL item stores share: the plans (streaming the `store` table joined to
`store_vectors` in (prefix, key) order, reading named items, insert-if-absent writes), and
the thin sync and async shells that carry out their effects (the public operations come
from `_shells`, shared with Redis).

A backend (`_sqlite`, `_postgres`) gives the SQL and how one row decodes and one item
encodes; the plans ask its database for `rows(sql, params)` (a streamed result), `query`
(a list of rows) and `write(steps)` (statements in one transaction, each with its rows;
what each returned comes back). The shells decide nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson

from dualsaver.errors import describe_error
from dualsaver.items.record import (
    BadItem, IndexInfo, ItemKey, Namespace, StoredItem, holdable, ns_text, ns_tuple, prefix_bounds, utc,
)
from dualsaver.items._shells import AsyncItemShell, ItemPlans, SyncItemShell
from dualsaver.sansio import END, AsyncTargets, Call, Emit, Next, Plan, Targets, arun, for_each, run
from dualsaver.stores.faithful import NON_FINITE, refuse

Steps = list[tuple[str, Any, bool]]  # (sql, params or rows, many)
KEYS_PER_QUERY = 400


def rows(sql: str, params: Sequence[Any]) -> Call:
    return Call("db", "rows", (sql, params), stream=True)


def query(sql: str, params: Sequence[Any]) -> Call:
    return Call("db", "query", (sql, params))


def write(steps: Steps) -> Call:
    return Call("db", "write", (steps,))


class SqlItemPlans(ItemPlans):
    """The item-store contract as plans; a backend gives its SQL and encodings."""

    exact = True
    holds_ttl = True
    allow_lossy: Collection[str] = ()  # rule classes the writer may convert (`dualsaver.stores.faithful`)
    KIND: str  # the store's kind, which names its rules: "sqlite", "postgres"
    NAME: str  # the same, in a message
    store: Any
    index: IndexInfo | None
    ITEMS_SQL: str  # {where} {vectors}: the item columns, then field_name and the embedding
    HAS_VECTORS_SQL: str
    MARK: str  # the driver's parameter mark

    def _where(self, prefix: Namespace) -> tuple[str, list[Any]]:
        bounds = prefix_bounds(prefix)
        if bounds is None:
            return "", []
        m = self.MARK
        return f"WHERE (s.prefix = {m} OR (s.prefix >= {m} AND s.prefix < {m}))", list(bounds)

    def _select(self, where: str, vectors: bool) -> str:
        join = "LEFT JOIN store_vectors v ON v.prefix = s.prefix AND v.key = s.key" if vectors else ""
        cols = self.VECTOR_COLUMNS if vectors else "NULL, NULL"
        return self.ITEMS_SQL.format(where=where, join=join, vectors=cols)

    VECTOR_COLUMNS = "v.field_name, v.embedding"

    def _has_vectors(self) -> Plan[bool]:
        """Whether the store has its vectors table (asked until it has: a table is not dropped
        under a running store, so one round trip per batch is saved)."""
        if self.__dict__.get("_vectors_table"):
            return True
        found = yield query(self.HAS_VECTORS_SQL, ())
        self.__dict__["_vectors_table"] = present = bool(found and found[0][0])
        return present

    def _items_plan(self, prefix: Namespace = ()) -> Plan[None]:
        """Emit every item (or `BadItem`) in (prefix, key) order."""
        vectors = yield from self._has_vectors()
        where, params = self._where(prefix)
        cursor = yield rows(self._select(where, vectors), params)
        yield from self._grouped(cursor)

    def _grouped(self, cursor: Any) -> Plan[None]:
        current: Any = None
        while (row := (yield Next(cursor))) is not END:
            if current is not None and (row[0], row[1]) == (current[0], current[1]):
                current[2].append(row)
                continue
            if current is not None:
                yield Emit((self._decode(current[2]),))
            current = (row[0], row[1], [row])
        if current is not None:
            yield Emit((self._decode(current[2]),))

    def _get_plan(self, keys: Sequence[ItemKey]) -> Plan[dict[ItemKey, StoredItem | BadItem]]:
        """The named items that exist, read afresh (the check's re-read, a lazy copy)."""
        vectors = yield from self._has_vectors()
        found: dict[ItemKey, StoredItem | BadItem] = {}
        keys = [key for key in keys if holdable(key)]
        for start in range(0, len(keys), KEYS_PER_QUERY):
            chunk = keys[start : start + KEYS_PER_QUERY]
            where, params = self._keys_where(chunk)
            answer = yield query(self._select(where, vectors), params)  # small: one round trip
            yield from for_each(self._grouped(iter(answer)), lambda item: _keep(found, item))
        return found

    def _held_plan(self, keys: Sequence[ItemKey]) -> Plan[set[ItemKey]]:
        """Which of the named items the store holds, by key alone, nothing decoded (what the
        backfill asks after writing a batch: `ItemJob.forget_deleted`)."""
        held: set[ItemKey] = set()
        keys = [key for key in keys if holdable(key)]
        for start in range(0, len(keys), KEYS_PER_QUERY):
            where, params = self._keys_where(keys[start : start + KEYS_PER_QUERY])
            found = yield query(f"SELECT s.prefix, s.key FROM store s {where}", params)
            held.update((ns_tuple(prefix), key) for prefix, key in found)
        return held

    def _keys_where(self, keys: Sequence[ItemKey]) -> tuple[str, list[Any]]:
        m = self.MARK
        marks = ", ".join(f"({m}, {m})" for _ in keys)
        return f"WHERE (s.prefix, s.key) IN (VALUES {marks})", [p for ns, k in keys for p in (ns_text(ns), k)]

    def _decode(self, group: list[Any]) -> StoredItem | BadItem:
        first = group[0]
        namespace = ns_tuple(first[0])
        try:
            value = self.load_value(first[2])
            if not isinstance(value, dict):
                raise ValueError(f"the value is a {type(value).__name__}, not a JSON object")
            vectors = {r[7]: self.load_vector(r[8]) for r in group if r[7] is not None and r[8] is not None}
            ttl = first[6]
            return StoredItem(namespace, first[1], value, utc(first[3]), utc(first[4]), utc(first[5]),
                              float(ttl) if ttl is not None else None, vectors or None)
        except Exception as exc:
            return BadItem(namespace, first[1], describe_error(exc))

    def value_json(self, item: StoredItem) -> str:
        """The item's value as JSON text (orjson), which would turn NaN and Infinity into null:
        such a value is refused by name (`LossyValue`: a bad item) unless the class
        `non-finite` is accepted. Only a text holding a null is walked (a NaN comes out as one)."""
        data = orjson.dumps(item.value)
        if b"null" in data:
            refuse(item.value, NON_FINITE, "the value", f"{self.KIND}.item-non-finite", self.NAME, self.allow_lossy)
        return data.decode()

    @staticmethod
    def load_value(raw: Any) -> Any:
        return orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw

    def load_vector(self, raw: Any) -> list[float]:
        return [float(x) for x in raw]

    def _write_plan(self, items: Sequence[StoredItem], replace: bool) -> Plan[int]:
        """Insert the items the store lacks (all of them with `replace`), each with its
        vectors, in one transaction; returns how many were written."""
        if not items:
            return 0
        vectors = self.index is not None and (yield from self._has_vectors())
        if replace:
            yield write(self.replace_steps(items, vectors))
            return len(items)
        return (yield from self._insert_plan(items, vectors))

    def _insert_plan(self, items: Sequence[StoredItem], vectors: bool) -> Plan[int]:
        results = yield write(self.insert_steps(items, vectors))
        return self.added(results)

    def _delete_plan(self, keys: Sequence[ItemKey]) -> Plan[None]:
        keys = [key for key in keys if holdable(key)]
        if keys:
            yield write(self.delete_steps(keys))

    def insert_steps(self, items: Sequence[StoredItem], vectors: bool) -> Steps:
        raise NotImplementedError

    def replace_steps(self, items: Sequence[StoredItem], vectors: bool) -> Steps:
        raise NotImplementedError

    def delete_steps(self, keys: Sequence[ItemKey]) -> Steps:
        raise NotImplementedError

    def added(self, results: list[Any]) -> int:
        raise NotImplementedError


def _keep(found: dict[ItemKey, Any], item: Any) -> Plan[None]:
    found[item.ident] = item
    return
    yield  # a plan step that performs nothing


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


class SyncSqlItems(SqlItemPlans, SyncItemShell):
    """The sync shell: `rows`, `query`, `write` do blocking I/O; the rest is the plans'."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.index = IndexInfo.of(getattr(store, "index_config", None))
        self._io = Targets(db=self)

    def rows(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return list(self.rows(sql, params))

    def held_items(self, keys: Sequence[ItemKey]) -> set[ItemKey]:
        return run(self._held_plan(keys), self._io)

    def write(self, steps: Steps) -> list[Any]:
        raise NotImplementedError


class AsyncSqlItems(SqlItemPlans, AsyncItemShell):
    """The async shell: `arows`, `aquery`, `awrite` await; the rest is the plans'."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.index = IndexInfo.of(getattr(store, "index_config", None))
        self._io = AsyncTargets(db=self)

    def arows(self, sql: str, params: Sequence[Any]) -> AsyncIterator[Any]:
        raise NotImplementedError

    async def aquery(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return [row async for row in self.arows(sql, params)]

    async def aheld_items(self, keys: Sequence[ItemKey]) -> set[ItemKey]:
        return await arun(self._held_plan(keys), self._io)

    async def awrite(self, steps: Steps) -> list[Any]:
        raise NotImplementedError
