"""Open checkpointers from URLs, and reach each backend's rows below the public API.

- `open_saver(url)` / `aopen_saver(url)`: context managers yielding a ready saver (tables set
  up) for ``sqlite:///``, ``postgresql://`` / ``postgres://``, ``redis://`` / ``rediss://`` /
  ``redis+cluster://`` (the Redis helper's savers) and ``memory://`` (tests). Anything that
  goes wrong while opening raises `StoreURLError` with one line naming the redacted URL.
- `native_for(saver)` / `anative_for(saver)`: the `NativeStore` / `AsyncNativeStore` for a
  saver; the public-API fallback (``exact=False``) for savers without a native adapter.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from dualsaver.stores.native import (
    AsyncNativeStore,
    NativeStore,
    StoredCheckpoint,
    StoredWrite,
    ThreadItem,
    Unreadable,
    in_shard,
    shard_of,
)
from dualsaver.stores.sql import describe_error
from dualsaver.stores.urls import StoreURL, StoreURLError, parse_store_url, redact, scrub

__all__ = [
    "AsyncNativeStore",
    "NativeStore",
    "StoreURLError",
    "StoredCheckpoint",
    "StoredWrite",
    "Unreadable",
    "anative_for",
    "aopen_saver",
    "in_shard",
    "native_for",
    "open_saver",
    "redact",
    "shard_of",
]

CONNECT_TIMEOUT = 10  # seconds; an unreachable host fails instead of hanging
_memory_savers: dict[str, Any] = {}  # memory://name -> one saver per process


# --------------------------------------------------------------------------- opening


def _failure(spec: StoreURL, exc: BaseException) -> StoreURLError:
    return StoreURLError(f"cannot open {spec.redacted}: {scrub(describe_error(exc), spec.url)}")


@contextmanager
def open_saver(
    url: str, *, serde: Any = None, pool_size: int = 1, must_exist: bool = False
) -> Iterator[Any]:
    """A ready sync saver for `url`. `must_exist` refuses a store with no checkpoint tables
    (a typo in a source URL must not read as an empty store). `pool_size` > 1 gives
    PostgreSQL a connection pool, so several backfill workers really run side by side."""
    spec = parse_store_url(url)
    with ExitStack() as stack:
        try:
            saver = _open_sync(spec, stack, serde, pool_size, must_exist)
        except StoreURLError:
            raise
        except Exception as exc:
            raise _failure(spec, exc) from None
        yield saver


@asynccontextmanager
async def aopen_saver(
    url: str, *, serde: Any = None, pool_size: int = 1, must_exist: bool = False
) -> AsyncIterator[Any]:
    """A ready async saver for `url`; see `open_saver`."""
    spec = parse_store_url(url)
    async with AsyncExitStack() as stack:
        try:
            saver = await _open_async(spec, stack, serde, pool_size, must_exist)
        except StoreURLError:
            raise
        except Exception as exc:
            raise _failure(spec, exc) from None
        yield saver


def _sqlite_file(spec: StoreURL, must_exist: bool) -> str:
    path = spec.target
    if path == ":memory:":
        return path
    p = Path(path)
    if must_exist and not p.exists():
        raise StoreURLError(f"cannot open {spec.redacted}: no such file")
    if not p.parent.exists():
        raise StoreURLError(f"cannot open {spec.redacted}: directory {p.parent} does not exist")
    return path


_SQLITE_HAS_TABLES = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'"
_PG_HAS_TABLES = "SELECT to_regclass('checkpoints') IS NOT NULL AS present"


def _no_tables(spec: StoreURL) -> StoreURLError:
    return StoreURLError(f"cannot open {spec.redacted}: it holds no LangGraph checkpoint tables")


def _pg_kwargs(spec: StoreURL) -> dict[str, Any]:
    from psycopg.rows import dict_row

    kwargs: dict[str, Any] = dict(autocommit=True, prepare_threshold=0, row_factory=dict_row)
    if "connect_timeout" not in spec.url:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT
    return kwargs


def _memory_saver(spec: StoreURL, serde: Any) -> Any:
    from langgraph.checkpoint.memory import InMemorySaver

    if not spec.target:
        return InMemorySaver(serde=serde)
    if spec.target not in _memory_savers:
        _memory_savers[spec.target] = InMemorySaver(serde=serde)
    return _memory_savers[spec.target]


def _redis_module(spec: StoreURL) -> Any:
    try:
        from dualsaver.stores import redis as redis_store
    except ModuleNotFoundError as exc:
        if exc.name in ("dualsaver.stores.redis", "redis"):
            raise StoreURLError(
                f"cannot open {spec.redacted}: Redis support is not available in this install"
            ) from None
        raise
    return redis_store


def _serde_kwargs(serde: Any) -> dict[str, Any]:
    return {"serde": serde} if serde is not None else {}


def _open_sync(spec: StoreURL, stack: ExitStack, serde: Any, pool_size: int, must_exist: bool) -> Any:
    if spec.kind == "memory":
        return _memory_saver(spec, serde)
    if spec.kind == "redis":
        module = _redis_module(spec)
        return stack.enter_context(module.open_redis_saver(spec.url, **_serde_kwargs(serde)))
    if spec.kind == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(_sqlite_file(spec, must_exist), check_same_thread=False)
        stack.callback(conn.close)
        if must_exist and conn.execute(_SQLITE_HAS_TABLES).fetchone() is None:
            raise _no_tables(spec)
        saver = SqliteSaver(conn, serde=serde)
        saver.setup()
        return saver
    # postgres
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg import Connection

    kwargs = _pg_kwargs(spec)
    conn: Any = stack.enter_context(Connection.connect(spec.target, **kwargs))
    if must_exist and not conn.execute(_PG_HAS_TABLES).fetchone()["present"]:
        raise _no_tables(spec)
    if pool_size > 1:
        from psycopg_pool import ConnectionPool

        kwargs.pop("connect_timeout", None)
        conn = ConnectionPool(spec.target, min_size=1, max_size=pool_size, kwargs=kwargs, open=False)
        conn.open(wait=True, timeout=CONNECT_TIMEOUT)
        stack.callback(conn.close)
    saver = PostgresSaver(conn, serde=serde)
    if not must_exist:  # a source is read as it is; a target gets the saver's own migrations
        saver.setup()
    return saver


async def _open_async(
    spec: StoreURL, stack: AsyncExitStack, serde: Any, pool_size: int, must_exist: bool
) -> Any:
    if spec.kind == "memory":
        return _memory_saver(spec, serde)
    if spec.kind == "redis":
        module = _redis_module(spec)
        return await stack.enter_async_context(
            module.aopen_redis_saver(spec.url, **_serde_kwargs(serde))
        )
    if spec.kind == "sqlite":
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        conn = await aiosqlite.connect(_sqlite_file(spec, must_exist))
        stack.push_async_callback(conn.close)
        if must_exist:
            async with conn.execute(_SQLITE_HAS_TABLES) as cur:
                if await cur.fetchone() is None:
                    raise _no_tables(spec)
        saver = AsyncSqliteSaver(conn, serde=serde)
        await saver.setup()
        return saver
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import AsyncConnection

    kwargs = _pg_kwargs(spec)
    conn: Any = await stack.enter_async_context(await AsyncConnection.connect(spec.target, **kwargs))
    if must_exist:
        cur = await conn.execute(_PG_HAS_TABLES)
        if not (await cur.fetchone())["present"]:
            raise _no_tables(spec)
    if pool_size > 1:
        from psycopg_pool import AsyncConnectionPool

        kwargs.pop("connect_timeout", None)
        conn = AsyncConnectionPool(
            spec.target, min_size=1, max_size=pool_size, kwargs=kwargs, open=False
        )
        await conn.open(wait=True, timeout=CONNECT_TIMEOUT)
        stack.push_async_callback(conn.close)
    saver = AsyncPostgresSaver(conn, serde=serde)
    if not must_exist:
        await saver.setup()
    return saver


# --------------------------------------------------------------------------- native access


def _is_native(obj: Any) -> bool:
    return all(hasattr(obj, m) for m in ("thread_ids", "read_thread", "write_checkpoints", "exact"))


def _classes() -> dict[str, type | None]:
    """Backend classes that are installed (each backend is an optional extra)."""
    found: dict[str, type | None] = {}
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver

        found["sqlite"] = SqliteSaver
    except ImportError:
        found["sqlite"] = None
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        found["asqlite"] = AsyncSqliteSaver
    except ImportError:
        found["asqlite"] = None
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        found["postgres"], found["apostgres"] = PostgresSaver, AsyncPostgresSaver
    except ImportError:
        found["postgres"] = found["apostgres"] = None
    from langgraph.checkpoint.memory import InMemorySaver

    found["memory"] = InMemorySaver
    return found


def _isinstance(obj: Any, cls: type | None) -> bool:
    return cls is not None and isinstance(obj, cls)


def native_for(saver: Any) -> NativeStore:
    """The sync native store for `saver` (a store object passes through unchanged)."""
    if _is_native(saver) and not hasattr(saver, "put"):
        return saver
    if callable(getattr(saver, "native_store", None)):
        return saver.native_store()
    c = _classes()
    if _isinstance(saver, c["sqlite"]):
        from dualsaver.stores.sqlite import SqliteNativeStore

        return SqliteNativeStore(saver)
    if _isinstance(saver, c["postgres"]):
        from dualsaver.stores.postgres import PostgresNativeStore

        return PostgresNativeStore(saver)
    if _isinstance(saver, c["memory"]):
        from dualsaver.stores.memory import MemoryNativeStore

        return MemoryNativeStore(saver)
    if _isinstance(saver, c["asqlite"]) or _isinstance(saver, c["apostgres"]):
        raise TypeError(f"{type(saver).__name__} is an async saver: use anative_for()")
    from dualsaver.stores.public import PublicNativeStore

    return PublicNativeStore(saver)


def anative_for(saver: Any) -> AsyncNativeStore:
    """The async native store for `saver`; a sync saver's store runs in worker threads."""
    if _is_native(saver) and not hasattr(saver, "put"):
        return saver if inspect.iscoroutinefunction(saver.write_checkpoints) else ThreadedStore(saver)
    for name in ("anative_store", "native_store"):
        if callable(getattr(saver, name, None)):
            store = getattr(saver, name)()
            return store if inspect.iscoroutinefunction(store.write_checkpoints) else ThreadedStore(store)
    c = _classes()
    if _isinstance(saver, c["asqlite"]):
        from dualsaver.stores.sqlite import AsyncSqliteNativeStore

        return AsyncSqliteNativeStore(saver)
    if _isinstance(saver, c["apostgres"]):
        from dualsaver.stores.postgres import AsyncPostgresNativeStore

        return AsyncPostgresNativeStore(saver)
    if _isinstance(saver, c["memory"]):
        from dualsaver.stores.memory import AsyncMemoryNativeStore

        return AsyncMemoryNativeStore(saver)
    if _isinstance(saver, c["sqlite"]) or _isinstance(saver, c["postgres"]):
        return ThreadedStore(native_for(saver))
    from dualsaver.stores.public import AsyncPublicNativeStore

    return AsyncPublicNativeStore(saver)


class ThreadedStore:
    """An `AsyncNativeStore` over a sync one: each blocking call runs in a worker thread."""

    _CHUNK = 256

    def __init__(self, store: NativeStore) -> None:
        self.store = store
        self.exact = store.exact
        if hasattr(store, "serde_key"):  # stored bytes may pass through (see native.py)
            self.serde_key = store.serde_key

    async def _stream(self, iterator: Iterator[Any]) -> AsyncIterator[Any]:
        while True:
            chunk = await asyncio.to_thread(lambda: list(islice(iterator, self._CHUNK)))
            for item in chunk:
                yield item
            if len(chunk) < self._CHUNK:
                return

    def thread_ids(self) -> AsyncIterator[str]:
        return self._stream(self.store.thread_ids())

    def read_thread(self, thread_id: str, *, encoded: bool = False) -> AsyncIterator[ThreadItem]:
        if encoded:
            return self._stream(self.store.read_thread(thread_id, encoded=True))  # type: ignore[call-arg]
        return self._stream(self.store.read_thread(thread_id))

    async def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return await asyncio.to_thread(self.store.checkpoint_keys, thread_id)

    async def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return await asyncio.to_thread(self.store.write_checkpoints, list(items))
