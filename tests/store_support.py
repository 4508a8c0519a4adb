"""Real long-term stores (LangGraph's `BaseStore`) for the DualStore tests, a deterministic
embedding (no model is downloaded), a fault-injecting wrapper, and ways to read a store whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

from langgraph.store.base import BaseStore, PutOp
from langgraph.store.memory import InMemoryStore

from tests.faulty import StoreDown

DIMS = 8
_files = itertools.count(1)


def embed(texts: list[str]) -> list[list[float]]:
    """A unit vector per text from its SHA-256: the same text, the same vector, everywhere."""
    vectors = []
    for text in texts:
        digest = hashlib.sha256(text.encode()).digest()
        raw = [b - 127.5 for b in digest[:DIMS]]
        norm = math.sqrt(sum(x * x for x in raw)) or 1.0
        vectors.append([x / norm for x in raw])
    return vectors


def index_config() -> dict[str, Any]:
    # SqliteStore reads the fields to embed from "text_fields" (the others, and its own
    # docstring, say "fields"); without it, it embeds the whole value.
    return {"dims": DIMS, "embed": embed, "fields": ["text"], "text_fields": ["text"]}


TTL = {"default_ttl": None, "refresh_on_read": True}


def memory_store(indexed: bool = True) -> InMemoryStore:
    return InMemoryStore(index=index_config() if indexed else None)  # type: ignore[arg-type]


def sqlite_connection(path: Path) -> Any:
    """What SqliteStore.from_conn_string opens, from a SQLite that may load sqlite-vec (its
    semantic index): this Python's own sqlite3 module cannot load extensions."""
    import pysqlite3.dbapi2 as sqlite

    return sqlite.connect(str(path), check_same_thread=False, isolation_level=None)


def clear_postgres_store(pg_url: str) -> None:
    """Empty the official store's tables so one database serves many fresh stores."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN IF to_regclass('store') IS NOT NULL THEN TRUNCATE store CASCADE; END IF;"
            " IF to_regclass('store_vectors') IS NOT NULL THEN TRUNCATE store_vectors; END IF; END $$"
        )


@contextlib.contextmanager
def sync_store(kind: str, *, pg_url: str | None = None, tmp: Path | None = None, redis_url: str | None = None,
               indexed: bool = True) -> Iterator[BaseStore]:
    """A ready, empty sync store of `kind` (memory, sqlite, postgres, redis)."""
    index: Any = index_config() if indexed else None
    if kind == "memory":
        yield memory_store(indexed)
    elif kind == "sqlite":
        from langgraph.store.sqlite import SqliteStore

        assert tmp is not None
        conn = sqlite_connection(tmp / f"store{next(_files)}.sqlite")
        try:
            store = SqliteStore(conn, index=index, ttl=TTL)
            store.setup()
            yield store
        finally:
            conn.close()
    elif kind == "postgres":
        from langgraph.store.postgres import PostgresStore

        assert pg_url is not None
        with PostgresStore.from_conn_string(pg_url, index=index, ttl=TTL) as store:
            store.setup()
            clear_postgres_store(pg_url)
            yield store
    elif kind == "redis":
        from langgraph.store.redis import RedisStore

        assert redis_url is not None
        with RedisStore.from_conn_string(redis_url, index=index, ttl=TTL) as store:
            store.setup()
            yield store
    else:
        raise ValueError(kind)


@contextlib.asynccontextmanager
async def async_store(kind: str, *, pg_url: str | None = None, tmp: Path | None = None,
                      indexed: bool = True) -> AsyncIterator[BaseStore]:
    """A ready, empty async store of `kind` (memory, sqlite, postgres)."""
    index: Any = index_config() if indexed else None
    if kind == "memory":
        yield memory_store(indexed)
    elif kind == "sqlite":
        from langgraph.store.sqlite.aio import AsyncSqliteStore

        assert tmp is not None
        async with AsyncSqliteStore.from_conn_string(str(tmp / f"astore{next(_files)}.sqlite"), index=index,
                                                     ttl=TTL) as store:
            await store.setup()
            yield store
    elif kind == "postgres":
        from langgraph.store.postgres.aio import AsyncPostgresStore

        assert pg_url is not None
        async with AsyncPostgresStore.from_conn_string(pg_url, index=index, ttl=TTL) as store:
            await store.setup()
            await asyncio.to_thread(clear_postgres_store, pg_url)
            yield store
    else:
        raise ValueError(kind)


def contents(store: BaseStore) -> dict[tuple[tuple[str, ...], str], Any]:
    """Every item of a store: (namespace, key) -> value, read through its own API."""
    found = {}
    for namespace in store.list_namespaces(limit=100_000):
        for item in store.search(namespace, limit=100_000):
            if tuple(item.namespace) == tuple(namespace):
                found[(tuple(item.namespace), item.key)] = item.value
    return found


async def acontents(store: BaseStore) -> dict[tuple[tuple[str, ...], str], Any]:
    found = {}
    for namespace in await store.alist_namespaces(limit=100_000):
        for item in await store.asearch(namespace, limit=100_000):
            if tuple(item.namespace) == tuple(namespace):
                found[(tuple(item.namespace), item.key)] = item.value
    return found


class FaultyStore(BaseStore):
    """A REAL store behind a gate: reads pass through; with `mode="raise"` every batch that
    writes (a put or a delete) fails, as a lost connection would, and with `mode="down"`
    every batch. The data lives in `inner`."""

    def __init__(self, inner: BaseStore) -> None:
        self.inner = inner
        self.mode: str | None = None
        self.refused: list[PutOp] = []
        self.supports_ttl = inner.supports_ttl
        self.ttl_config = inner.ttl_config

    def _gate(self, ops: Iterable[Any]) -> list[Any]:
        ops = list(ops)
        writes = [op for op in ops if isinstance(op, PutOp)]
        if self.mode == "down" or (writes and self.mode == "raise"):
            self.refused += writes
            raise StoreDown("store batch: connection refused")
        return ops

    def batch(self, ops: Iterable[Any]) -> list[Any]:
        return self.inner.batch(self._gate(ops))

    async def abatch(self, ops: Iterable[Any]) -> list[Any]:
        return await self.inner.abatch(self._gate(ops))
