"""Which item adapter serves a store (`items_for` / `aitems_for`): one table, one rule.

Each official store class maps to its sync adapter and its async one; a sync store used
from async code gets its sync adapter run in worker threads (`ThreadedItems`); a store with
no entry goes through the public API (`exact` False). An adapter passed in is returned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Sequence
from functools import cache
from itertools import islice
from typing import Any

from dualsaver.items._threaded import SyncStoreInThreads

Factory = Callable[[Any], Any]


def items_for(store: Any) -> Any:
    """The sync item adapter for `store`."""
    return _adapter(store, asynchronous=False)


def aitems_for(store: Any) -> Any:
    """The async item adapter for `store`; a sync store's adapter runs in worker threads."""
    return _adapter(store, asynchronous=True)


def accepting(adapter: Any, allowed: Collection[str]) -> Any:
    """`adapter` (and the sync one it serves in threads) converting what the rule classes
    `allowed` name instead of refusing it (`dualsaver.stores.faithful`)."""
    for writer in (adapter, getattr(adapter, "sync", None)):
        if writer is not None and hasattr(writer, "allow_lossy"):
            writer.allow_lossy = frozenset(allowed)
    return adapter


def renews_on_read(store: Any) -> bool:
    """Whether a get or search asking for it (`refresh_ttl`) renews the TTLs of what it
    returns in `store`: the official PostgreSQL stores always do, SQLite's when their ttl
    config says `refresh_on_read`, Redis's (and any other store keeping TTLs) when they have
    a ttl config. (Found in the official stores' batch code; each decides on its own.)"""
    if isinstance(store, SyncStoreInThreads):
        store = store.store
    if not getattr(store, "supports_ttl", False):
        return False
    config = getattr(store, "ttl_config", None)
    modules = [cls.__module__ for cls in type(store).__mro__]
    if any(m.startswith("langgraph.store.postgres") for m in modules):
        return True
    if any(m.startswith("langgraph.store.sqlite") for m in modules):
        return bool(config and config.get("refresh_on_read", False))
    return config is not None


def _is_adapter(obj: Any) -> bool:
    return hasattr(obj, "exact") and (hasattr(obj, "write_items") or hasattr(obj, "awrite_items"))


def _adapter(store: Any, *, asynchronous: bool) -> Any:
    if isinstance(store, SyncStoreInThreads):  # the store it serves in threads has the rows
        store = store.store
    if _is_adapter(store):
        return store if not asynchronous or hasattr(store, "awrite_items") else ThreadedItems(store)
    for cls, sync_factory, async_factory in _table():
        if isinstance(store, cls):
            if not asynchronous:
                if sync_factory is None:
                    raise TypeError(f"{type(store).__name__} is an async store: use aitems_for()")
                return sync_factory(store)
            if async_factory is not None:
                return async_factory(store)
            assert sync_factory is not None  # every row has one factory or both
            return ThreadedItems(sync_factory(store))
    from dualsaver.items._public import PublicItems

    return PublicItems(store)


@cache
def _table() -> tuple[tuple[type, Factory | None, Factory | None], ...]:
    """(store class, sync adapter, async adapter) for each backend installed."""
    from langgraph.store.memory import InMemoryStore

    from dualsaver.items._memory import MemoryItems

    rows: list[tuple[type, Factory | None, Factory | None]] = [(InMemoryStore, MemoryItems, MemoryItems)]
    try:
        from langgraph.store.sqlite import SqliteStore
        from langgraph.store.sqlite.aio import AsyncSqliteStore

        from dualsaver.items._sqlite import AsyncSqliteItems, SqliteItems

        rows += [(SqliteStore, SqliteItems, None), (AsyncSqliteStore, None, AsyncSqliteItems)]
    except ImportError:
        pass
    try:
        from langgraph.store.postgres import AsyncPostgresStore, PostgresStore

        from dualsaver.items._postgres import AsyncPostgresItems, PostgresItems

        rows += [(PostgresStore, PostgresItems, None), (AsyncPostgresStore, None, AsyncPostgresItems)]
    except ImportError:
        pass
    try:
        from langgraph.store.redis import AsyncRedisStore, RedisStore

        from dualsaver.items._redis import AsyncRedisItems, RedisItems

        rows += [(RedisStore, RedisItems, None), (AsyncRedisStore, None, AsyncRedisItems)]
    except ImportError:
        pass
    return tuple(rows)


class ThreadedItems:
    """An async item adapter over a sync one: each blocking call runs in a worker thread."""

    _CHUNK = 256

    def __init__(self, items: Any) -> None:
        self.sync, self.store = items, items.store  # its store: the target's embeddings, its name
        self.exact, self.holds_ttl, self.index = items.exact, items.holds_ttl, items.index
        self.side_queries = getattr(items, "side_queries", True)

    async def aitems(self, prefix: tuple[str, ...] = ()) -> AsyncIterator[Any]:
        iterator: Iterator[Any] = self.sync.items(prefix)
        while chunk := await asyncio.to_thread(lambda: list(islice(iterator, self._CHUNK))):
            for item in chunk:
                yield item

    async def aget_items(self, keys: Sequence[Any]) -> dict[Any, Any]:
        return await asyncio.to_thread(self.sync.get_items, keys)

    async def aheld_items(self, keys: Sequence[Any]) -> set[Any]:
        return await asyncio.to_thread(self.sync.held_items, keys)

    async def awrite_items(self, items: Iterable[Any], *, replace: bool = False) -> int:
        return await asyncio.to_thread(self.sync.write_items, list(items), replace=replace)

    async def adelete_items(self, keys: Sequence[Any]) -> None:
        await asyncio.to_thread(self.sync.delete_items, keys)
