"""Fault injection around a REAL saver: it delegates every call, and can raise or hang writes.

This is not a fake database: the data lives in the wrapped real saver. It only lets a test
decide when a store refuses or stalls, which a healthy server will not do on cue.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

WRITES = ("put", "put_writes", "delete_thread")


class StoreDown(ConnectionError):
    """What the faulty store raises: looks like a lost connection."""


class Faulty(BaseCheckpointSaver):
    """`mode`: None (healthy), "raise" (writes fail), "hang" (writes block until released)."""

    def __init__(self, inner: BaseCheckpointSaver) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.mode: str | None = None
        self.release = threading.Event()
        self.entered = threading.Event()  # set when a write reaches this store
        self.calls: list[str] = []
        self.message = "connection refused"  # what a raising write says

    def _gate(self, name: str) -> None:
        self.calls.append(name)
        self.entered.set()
        if self.mode == "raise":
            raise StoreDown(f"{name}: {self.message}")
        if self.mode == "hang":
            self.release.wait(timeout=60)

    async def _agate(self, name: str) -> None:
        self.calls.append(name)
        self.entered.set()
        if self.mode == "raise":
            raise StoreDown(f"{name}: {self.message}")
        if self.mode == "hang":
            while not self.release.is_set():
                await asyncio.sleep(0.01)

    def get_next_version(self, current: Any, channel: None = None) -> Any:
        return self.inner.get_next_version(current, channel)

    # reads pass straight through
    def get_tuple(self, config):
        return self.inner.get_tuple(config)

    def list(self, config, **kwargs):
        return self.inner.list(config, **kwargs)

    async def aget_tuple(self, config):
        return await self.inner.aget_tuple(config)

    async def alist(self, config, **kwargs):
        async for item in self.inner.alist(config, **kwargs):
            yield item

    # writes go through the gate
    def put(self, *args, **kwargs):
        self._gate("put")
        return self.inner.put(*args, **kwargs)

    def put_writes(self, *args, **kwargs):
        self._gate("put_writes")
        return self.inner.put_writes(*args, **kwargs)

    def delete_thread(self, thread_id):
        self._gate("delete_thread")
        return self.inner.delete_thread(thread_id)

    async def aput(self, *args, **kwargs):
        await self._agate("put")
        return await self.inner.aput(*args, **kwargs)

    async def aput_writes(self, *args, **kwargs):
        await self._agate("put_writes")
        return await self.inner.aput_writes(*args, **kwargs)

    async def adelete_thread(self, thread_id):
        await self._agate("delete_thread")
        return await self.inner.adelete_thread(thread_id)
