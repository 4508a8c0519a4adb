"""A sync long-term store served to async callers: each batch in a worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from langgraph.store.base import BaseStore


class SyncStoreInThreads(BaseStore):
    """A sync store served to async callers (the Agent Server): each batch runs in a worker
    thread. For SQLite with an index, which stays the sync `SqliteStore` (see
    `aopen_item_store`) and whose `abatch` is not implemented. The item adapters see through
    it to `store`."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store
        self.supports_ttl = store.supports_ttl
        self.ttl_config = store.ttl_config
        self.index_config = getattr(store, "index_config", None)

    def batch(self, ops: Iterable[Any]) -> list[Any]:
        return self.store.batch(ops)

    async def abatch(self, ops: Iterable[Any]) -> list[Any]:
        return await asyncio.to_thread(self.store.batch, list(ops))

    def __repr__(self) -> str:
        return type(self.store).__name__
