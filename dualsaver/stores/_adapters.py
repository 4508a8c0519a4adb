"""Which native store serves a saver (`native_for` / `anative_for`): one table, one rule.

Each known saver class maps to its sync adapter and its async adapter. A sync saver used
from async code gets its sync adapter run in worker threads (`ThreadedStore`); an async
saver has no sync adapter. A saver with no entry gets the public-API adapter (`exact` is
False). A saver may also provide its own adapter (`native_store()` / `anative_store()`), and a
native store passed in is returned as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from functools import cache
from itertools import islice
from typing import Any

from dualsaver.redact import redact
from dualsaver.stores.native import AsyncNativeStore, NativeStore, StoredCheckpoint, ThreadItem

Factory = Callable[[Any], Any]


def native_for(saver: Any) -> NativeStore:
    """The sync native store for `saver` (a native store passes through unchanged)."""
    return _adapter(saver, asynchronous=False)


def anative_for(saver: Any) -> AsyncNativeStore:
    """The async native store for `saver`; a sync saver's store runs in worker threads."""
    return _adapter(saver, asynchronous=True)


def _adapter(saver: Any, *, asynchronous: bool) -> Any:
    if _is_native(saver):
        return _async_form(saver) if asynchronous else saver
    own = getattr(saver, "anative_store" if asynchronous else "native_store", None)
    if callable(own):
        return _async_form(own()) if asynchronous else own()
    for cls, sync_factory, async_factory in _table():
        if isinstance(saver, cls):
            if not asynchronous:
                if sync_factory is None:
                    raise TypeError(f"{type(saver).__name__} is an async saver: use the async form"
                                    " (acheck, abackfill, arepair, anative_for)")
                return sync_factory(saver)
            if async_factory is not None:
                return async_factory(saver)
            assert sync_factory is not None, "an adapter has a sync factory, an async one, or both"
            return ThreadedStore(sync_factory(saver))
    _refuse_non_saver(saver)
    from dualsaver.stores._public import PublicNativeStore

    return PublicNativeStore(saver)


def _refuse_non_saver(value: Any) -> None:
    """A clear TypeError for what is not a checkpointer (a URL, None), rather than an
    AttributeError from deep inside a backfill or a check."""
    if isinstance(value, str):
        raise TypeError(f"expected a checkpointer, got the string {redact(value)!r}: open a URL with"
                        " open_saver(url) (the functions take URLs only with processes=N)")
    if not all(callable(getattr(value, name, None)) for name in ("get_tuple", "list", "put")):
        raise TypeError(f"expected a checkpointer (a BaseCheckpointSaver or a native store),"
                        f" got {type(value).__name__}")


def _is_native(obj: Any) -> bool:
    return hasattr(obj, "exact") and not hasattr(obj, "put") and (
        hasattr(obj, "read_thread") or hasattr(obj, "aread_thread")
    )


def _async_form(store: Any) -> Any:
    return store if hasattr(store, "aread_thread") else ThreadedStore(store)


@cache
def _table() -> tuple[tuple[type, Factory | None, Factory | None], ...]:
    """(saver class, sync adapter, async adapter) for each backend installed (each is an
    optional extra; one that does not import is simply absent)."""
    from langgraph.checkpoint.memory import InMemorySaver

    from dualsaver.stores._memory import MemoryNativeStore

    rows: list[tuple[type, Factory | None, Factory | None]] = [(InMemorySaver, MemoryNativeStore, MemoryNativeStore)]
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        from dualsaver.stores._sqlite import AsyncSqliteNativeStore, SqliteNativeStore

        rows += [(SqliteSaver, SqliteNativeStore, None), (AsyncSqliteSaver, None, AsyncSqliteNativeStore)]
    except ImportError:
        pass
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        from dualsaver.stores._postgres import AsyncPostgresNativeStore, PostgresNativeStore

        rows += [(PostgresSaver, PostgresNativeStore, None), (AsyncPostgresSaver, None, AsyncPostgresNativeStore)]
    except ImportError:
        pass
    try:  # the official langgraph-checkpoint-redis savers (not ShallowRedisSaver: its own layout)
        from langgraph.checkpoint.redis import AsyncRedisSaver as OfficialAsync
        from langgraph.checkpoint.redis import RedisSaver as Official

        from dualsaver.stores._langgraph_redis import LangGraphRedisNativeStore

        rows += [(Official, LangGraphRedisNativeStore, None), (OfficialAsync, None, LangGraphRedisNativeStore)]
    except ImportError:
        pass
    from dualsaver.redis import AsyncRedisSaver, RedisSaver
    from dualsaver.stores._redis import RedisNativeStore

    rows += [(RedisSaver, RedisNativeStore, None), (AsyncRedisSaver, None, RedisNativeStore)]
    return tuple(rows)


class ThreadedStore:
    """An `AsyncNativeStore` over a sync one: each blocking call runs in a worker thread."""

    _CHUNK = 256

    def __init__(self, store: NativeStore) -> None:
        self.store = store
        self.exact = store.exact
        if hasattr(store, "serde_key"):  # stored bytes may pass through (see native.py)
            self.serde_key = store.serde_key
        self.gives_stored_values = getattr(store, "gives_stored_values", False)
        if hasattr(store, "prints_key"):  # the check's byte path (dualsaver.checker._bytes)
            self.prints_key = store.prints_key
        if hasattr(store, "read_threads"):  # several threads at once (the check's byte path)
            self.aread_threads = lambda ids, **options: self._stream(store.read_threads(ids, **options))

    async def _stream(self, iterator: Iterator[Any]) -> AsyncIterator[Any]:
        while True:
            chunk = await asyncio.to_thread(lambda: list(islice(iterator, self._CHUNK)))
            for item in chunk:
                yield item
            if len(chunk) < self._CHUNK:
                return

    def prepare_write(self, items: Iterable[StoredCheckpoint]) -> Any:
        return self.store.prepare_write(items)

    def athread_ids(self) -> AsyncIterator[str]:
        return self._stream(self.store.thread_ids())

    def aread_thread(self, thread_id: str, **options: Any) -> AsyncIterator[ThreadItem]:
        return self._stream(self.store.read_thread(thread_id, **options))

    async def acheckpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return await asyncio.to_thread(self.store.checkpoint_keys, thread_id)

    async def awrite_prepared(self, prepared: Any) -> tuple[int, int]:
        return await asyncio.to_thread(self.store.write_prepared, prepared)

    async def awrite_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return await self.awrite_prepared(self.prepare_write(items))

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.store.delete_thread, thread_id)

    # Capability primitives NativeStore does not declare: asked only where the wrapped store has them
    # (`_NEEDS` in stores._capabilities)
    async def arun_checkpoints(self, run_ids: Any) -> dict[str, list[tuple[str, str]]]:
        return await asyncio.to_thread(self.store.run_checkpoints, run_ids)  # type: ignore[attr-defined]

    async def adelete_checkpoints(self, thread_id: str, keys: Any) -> None:
        await asyncio.to_thread(self.store.delete_checkpoints, thread_id, keys)  # type: ignore[attr-defined]
