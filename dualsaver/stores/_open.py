"""Opening a ready saver from a store URL: the decisions once, as a plan; the I/O twice.

What a store needs (which saver class, refusing a store with no checkpoint tables when it
must exist, a pool when several workers share it, the saver's own `setup()` only on stores
that are written) is `_open_plan`. The sync `Opener` and the async `AsyncOpener` connect,
query and set up; each registers what it opened on an exit stack, closed with the saver.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from dualsaver.errors import MissingExtra, StoreUnreachable, StoreURLError, describe_error, install_hint, is_outage
from dualsaver.redact import secrets_of
from dualsaver.sansio import AsyncTargets, Call, Plan, Targets, arun, run
from dualsaver.stores.urls import StoreURL, parse_store_url

CONNECT_TIMEOUT = 10  # seconds; an unreachable host fails instead of hanging
_SQLITE_HAS_TABLES = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'"
_PG_HAS_TABLES = "SELECT to_regclass('checkpoints') IS NOT NULL AS present"
SETUP_LOCK = 0x64_75_61_6C_73_76_72  # the advisory lock key ("dualsvr") serializing setup()
LOCK_POLL = 0.05  # seconds between two tries for it
_memory_savers: dict[str, Any] = {}  # memory://name -> one saver per process


@contextmanager
def open_saver(url: str, *, serde: Any = None, pool_size: int = 1, must_exist: bool = False) -> Iterator[Any]:
    """A ready sync saver for `url`. `must_exist` refuses a store with no checkpoint tables
    (a typo in a source URL must not read as an empty store). `pool_size` > 1 gives
    PostgreSQL a connection pool, so several backfill workers really run side by side."""
    spec = parse_store_url(url)
    with ExitStack() as stack:
        try:
            saver = run(_open_plan(spec, serde, pool_size, must_exist), Targets(open=Opener(stack)))
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
            saver = await arun(_open_plan(spec, serde, pool_size, must_exist), AsyncTargets(open=AsyncOpener(stack)))
        except Exception as exc:
            raise _failure(spec, exc) from None
        yield saver


def _failure(spec: StoreURL, exc: BaseException) -> StoreURLError:
    if isinstance(exc, StoreURLError):
        return exc
    if isinstance(exc, ModuleNotFoundError):  # a driver of an extra that is not installed
        return MissingExtra(f"cannot open {spec.redacted}: {install_hint(exc.name)}")
    if spec.kind == "langgraph-redis" and _UNKNOWN_MODULE_COMMAND in str(exc):
        return StoreURLError(
            f"cannot open {spec.redacted}: this Redis lacks RediSearch/RedisJSON, which the official"
            " LangGraph Redis saver needs (Redis 8, or Redis Stack); for a Redis without modules use"
            " redis://, dualsaver's own Redis saver"
        )
    kind = StoreUnreachable if is_outage(exc) else StoreURLError
    return kind(f"cannot open {spec.redacted}: {describe_error(exc, secrets=secrets_of(spec.url))}")


# What a Redis without RediSearch (FT.*) or RedisJSON (JSON.*) answers the official saver.
_UNKNOWN_MODULE_COMMAND = "unknown command"


def _open_plan(spec: StoreURL, serde: Any, pool_size: int, must_exist: bool) -> Plan[Any]:
    if spec.kind == "memory":
        return _memory_saver(spec, serde)
    if spec.kind == "redis":
        return (yield Call("open", "redis", (spec.url, serde)))
    if spec.kind == "python":
        return (yield Call("open", "factory", (spec.target, serde, not must_exist)))
    if spec.kind == "langgraph-redis":
        saver = yield Call("open", "langgraph_redis", (spec.url, serde))
        if must_exist and not (yield Call("open", "has_index", (saver,))):
            raise _no_tables(spec)
        yield Call("open", "setup", (saver,))  # indexes if absent; the write-key registry
        return saver
    if spec.kind == "sqlite":
        conn = yield Call("open", "sqlite_connect", (_sqlite_file(spec, must_exist),))
        if must_exist and (yield Call("open", "first_row", (conn, _SQLITE_HAS_TABLES))) is None:
            raise _no_tables(spec)
        saver = yield Call("open", "sqlite_saver", (conn, serde))
        yield Call("open", "setup", (saver,))
        return saver
    kwargs = _pg_kwargs(spec)
    conn = yield Call("open", "postgres_connect", (spec.target, kwargs))
    if must_exist and not (yield Call("open", "first_row", (conn, _PG_HAS_TABLES)))["present"]:
        raise _no_tables(spec)
    pool = None
    if pool_size > 1:
        kwargs.pop("connect_timeout", None)  # the pool's own timeout applies
        pool = yield Call("open", "postgres_pool", (spec.target, pool_size, kwargs))
    saver = yield Call("open", "postgres_saver", (pool or conn, serde))
    if not must_exist:  # a source is read as it is; a target gets the saver's own migrations
        # Replicas starting at once against a fresh database would race in the saver's
        # migrations (a duplicate key in checkpoint_migrations): one at a time.
        yield Call("open", "postgres_lock", (conn, SETUP_LOCK))
        try:
            yield Call("open", "setup", (saver,))
        finally:
            yield Call("open", "postgres_unlock", (conn, SETUP_LOCK))
    return saver


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


def _no_tables(spec: StoreURL) -> StoreURLError:
    return StoreURLError(f"cannot open {spec.redacted}: it holds no LangGraph checkpoint tables")


def _pg_kwargs(spec: StoreURL) -> dict[str, Any]:
    from psycopg.rows import dict_row

    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
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


def _held(row: Any) -> bool:
    return bool(next(iter(row.values())) if isinstance(row, dict) else row[0])


def _serde_kwargs(serde: Any) -> dict[str, Any]:
    return {"serde": serde} if serde is not None else {}


class Opener:
    """The blocking I/O of `_open_plan`; what it opens is closed with `stack`."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack

    def redis(self, url: str, serde: Any) -> Any:
        from dualsaver.redis import open_redis_saver

        return self.stack.enter_context(open_redis_saver(url, **_serde_kwargs(serde)))

    def langgraph_redis(self, url: str, serde: Any) -> Any:
        from dualsaver.stores._langgraph_redis_saver import open_langgraph_redis_saver

        return self.stack.enter_context(open_langgraph_redis_saver(url, serde=serde))

    def has_index(self, saver: Any) -> bool:
        from dualsaver.stores._langgraph_redis_saver import has_index

        return has_index(saver)

    def factory(self, target: str, serde: Any, setup: bool) -> Any:
        from dualsaver.stores._factory import open_factory_saver

        return self.stack.enter_context(open_factory_saver(target, serde=serde, setup=setup))

    def sqlite_connect(self, path: str) -> Any:
        conn = sqlite3.connect(path, check_same_thread=False)
        self.stack.callback(conn.close)
        return conn

    def sqlite_saver(self, conn: Any, serde: Any) -> Any:
        from langgraph.checkpoint.sqlite import SqliteSaver

        return SqliteSaver(conn, serde=serde)

    def postgres_connect(self, dsn: str, kwargs: dict[str, Any]) -> Any:
        from psycopg import Connection

        return self.stack.enter_context(Connection.connect(dsn, **kwargs))

    def postgres_pool(self, dsn: str, size: int, kwargs: dict[str, Any]) -> Any:
        from psycopg_pool import ConnectionPool

        pool = ConnectionPool(dsn, min_size=1, max_size=size, kwargs=kwargs, open=False)
        pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        self.stack.callback(pool.close)
        return pool

    def postgres_saver(self, conn: Any, serde: Any) -> Any:
        from langgraph.checkpoint.postgres import PostgresSaver

        return PostgresSaver(conn, serde=serde)

    def first_row(self, conn: Any, sql: str) -> Any:
        return conn.execute(sql).fetchone()

    def postgres_lock(self, conn: Any, key: int) -> None:
        # Polled, not waited for: the saver's migrations CREATE INDEX CONCURRENTLY, which
        # waits for every open transaction, and a session blocked in pg_advisory_lock is one.
        while not _held(conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()):
            time.sleep(LOCK_POLL)

    def postgres_unlock(self, conn: Any, key: int) -> None:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def setup(self, saver: Any) -> None:
        saver.setup()


class AsyncOpener:
    """The awaiting I/O of `_open_plan`; what it opens is closed with `stack`."""

    def __init__(self, stack: AsyncExitStack) -> None:
        self.stack = stack

    async def aredis(self, url: str, serde: Any) -> Any:
        from dualsaver.redis import aopen_redis_saver

        return await self.stack.enter_async_context(aopen_redis_saver(url, **_serde_kwargs(serde)))

    async def alanggraph_redis(self, url: str, serde: Any) -> Any:
        from dualsaver.stores._langgraph_redis_saver import aopen_langgraph_redis_saver

        return await self.stack.enter_async_context(aopen_langgraph_redis_saver(url, serde=serde))

    async def ahas_index(self, saver: Any) -> bool:
        from dualsaver.stores._langgraph_redis_saver import ahas_index

        return await ahas_index(saver)

    async def afactory(self, target: str, serde: Any, setup: bool) -> Any:
        from dualsaver.stores._factory import aopen_factory_saver

        return await self.stack.enter_async_context(aopen_factory_saver(target, serde=serde, setup=setup))

    async def asqlite_connect(self, path: str) -> Any:
        import aiosqlite

        conn = await aiosqlite.connect(path)
        self.stack.push_async_callback(conn.close)
        return conn

    async def asqlite_saver(self, conn: Any, serde: Any) -> Any:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        return AsyncSqliteSaver(conn, serde=serde)

    async def apostgres_connect(self, dsn: str, kwargs: dict[str, Any]) -> Any:
        from psycopg import AsyncConnection

        return await self.stack.enter_async_context(await AsyncConnection.connect(dsn, **kwargs))

    async def apostgres_pool(self, dsn: str, size: int, kwargs: dict[str, Any]) -> Any:
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(dsn, min_size=1, max_size=size, kwargs=kwargs, open=False)
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        self.stack.push_async_callback(pool.close)
        return pool

    async def apostgres_saver(self, conn: Any, serde: Any) -> Any:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        return AsyncPostgresSaver(conn, serde=serde)

    async def afirst_row(self, conn: Any, sql: str) -> Any:
        cursor = await conn.execute(sql)
        return await cursor.fetchone()

    async def apostgres_lock(self, conn: Any, key: int) -> None:
        while not _held(await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))).fetchone()):
            await asyncio.sleep(LOCK_POLL)

    async def apostgres_unlock(self, conn: Any, key: int) -> None:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    async def asetup(self, saver: Any) -> None:
        await saver.setup()
