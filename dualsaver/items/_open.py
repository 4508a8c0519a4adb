"""Opening a long-term store (`BaseStore`) from a URL, with its index configuration.

The URL forms are the checkpointers' (`stores.urls`): ``sqlite:///path``, ``postgresql://``,
``redis+langgraph://`` (the official Redis store; RedisJSON and RediSearch), ``memory://``
(``memory://name``: one per process). `index` is LangGraph's index configuration (dims,
fields, distance_type), its ``embed`` either a callable, ``python:package.module:function``
or LangGraph's provider string (``openai:text-embedding-3-small``). The store's tables or
indexes are set up; the store is closed on exit."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from dualsaver.errors import StoreURLError, describe_error
from dualsaver.items.identity import named
from dualsaver.redact import secrets_of
from dualsaver.stores.urls import StoreURL, parse_store_url

if TYPE_CHECKING:
    from langgraph.store.postgres.base import PoolConfig

# PostgreSQL stores opened from a URL keep a small pool, not one connection: the item backfill
# asks the source which items it still holds while the source streams them on another
# (`ItemJob.forget_deleted`); on one connection that question would wait for the stream.
POOL: PoolConfig = {"min_size": 1, "max_size": 2}

_memory_stores: dict[str, Any] = {}


def index_config(index: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """LangGraph's index configuration from settings: ``embed`` resolved when it names a
    Python function."""
    if not index:
        return None
    config = dict(index)
    if "fields" in config:  # SqliteStore reads the fields to embed from `text_fields`
        config.setdefault("text_fields", config["fields"])
    embed = config.get("embed")
    if isinstance(embed, str) and embed.startswith("python:"):
        module, _, name = embed[len("python:") :].partition(":")
        try:
            config["embed"] = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise StoreURLError(f"store.index.embed {embed}: {describe_error(exc)}") from None
    return config


def _sqlite_connect(path: str) -> Any:
    try:  # the stdlib module may be built without extension loading, which sqlite-vec needs
        import pysqlite3 as sqlite3
    except ImportError:
        import sqlite3
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)


def _redis_url(spec: StoreURL) -> str:
    return spec.url.replace("+langgraph", "", 1)


def _refused(spec: StoreURL, exc: BaseException) -> StoreURLError:
    why = describe_error(exc, secrets=secrets_of(spec.url))
    return StoreURLError(f"cannot open the store {spec.redacted}: {why}")


def _memory(spec: StoreURL, index: Any) -> Any:
    from langgraph.store.memory import InMemoryStore

    if not spec.target:
        return InMemoryStore(index=index)
    return _memory_stores.setdefault(spec.target, InMemoryStore(index=index))


@contextmanager
def open_item_store(url: str, *, index: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A ready sync store for `url` (see the module docstring)."""
    spec, config = parse_store_url(url), index_config(index)
    with ExitStack() as stack:
        try:
            store = stack.enter_context(_opened(spec, config))
        except StoreURLError:
            raise
        except Exception as exc:
            raise _refused(spec, exc) from None
        stack.enter_context(named(store, spec.url))  # its name in progress records (redacted there)
        yield store


@contextmanager
def _opened(spec: StoreURL, config: Any) -> Iterator[Any]:
    if spec.kind == "memory":
        yield _memory(spec, config)
    elif spec.kind == "sqlite":
        from langgraph.store.sqlite import SqliteStore

        conn = _sqlite_connect(spec.target)
        try:
            store = SqliteStore(conn, index=config)
            store.setup()
            yield store
        finally:
            conn.close()
    elif spec.kind == "postgres":
        from langgraph.store.postgres import PostgresStore

        with PostgresStore.from_conn_string(spec.url, index=config, pool_config=POOL) as pg_store:
            pg_store.setup()
            yield pg_store
    elif spec.kind == "langgraph-redis":
        from langgraph.store.redis import RedisStore

        with RedisStore.from_conn_string(_redis_url(spec), index=config) as redis_store:
            redis_store.setup()
            yield redis_store
    else:
        raise StoreURLError(f"no long-term store for {spec.redacted}: use sqlite:///, postgresql://,"
                            " redis+langgraph:// or memory://")


@asynccontextmanager
async def aopen_item_store(url: str, *, index: Mapping[str, Any] | None = None) -> AsyncIterator[Any]:
    """A ready async store for `url`; SQLite with an index stays the sync store (aiosqlite
    cannot load sqlite-vec here), as Redis does where `AsyncRedisStore` cannot be built: the
    async adapters run those in worker threads."""
    spec, config = parse_store_url(url), index_config(index)
    async with AsyncExitStack() as stack:
        try:
            store = await stack.enter_async_context(_aopened(spec, config))
        except StoreURLError:
            raise
        except Exception as exc:
            raise _refused(spec, exc) from None
        stack.enter_context(named(store, spec.url))
        yield store


def _async_redis_works() -> bool:
    """Whether `AsyncRedisStore` can be built here: with some redisvl releases its
    constructor hands its async client to a sync `SearchIndex` and fails (the sync store,
    run in worker threads, serves then)."""
    from langgraph.store.redis import AsyncRedisStore

    try:
        AsyncRedisStore(redis_url="redis://127.0.0.1:1")
    except TypeError:
        return False
    except Exception:
        return True
    return True


@asynccontextmanager
async def _aopened(spec: StoreURL, config: Any) -> AsyncIterator[Any]:
    if spec.kind == "postgres":
        from langgraph.store.postgres import AsyncPostgresStore

        async with AsyncPostgresStore.from_conn_string(spec.url, index=config, pool_config=POOL) as store:
            await store.setup()
            yield store
    elif spec.kind == "langgraph-redis" and _async_redis_works():
        from langgraph.store.redis import AsyncRedisStore

        async with AsyncRedisStore.from_conn_string(_redis_url(spec), index=config) as store:
            await store.setup()
            yield store
    elif spec.kind == "sqlite" and config is None:
        from langgraph.store.sqlite.aio import AsyncSqliteStore

        async with AsyncSqliteStore.from_conn_string(spec.target) as store:
            await store.setup()
            yield store
    else:
        with _opened(spec, config) as store:
            yield store
