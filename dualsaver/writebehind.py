"""Write-behind for the secondary: in order, in the background, bounded.

In shadow-write nobody reads the secondary (new), so the caller need not wait for it:
its copy of each write is taken when the call starts (plans.snapshot), handed to one
background worker, and written in the order the calls were made. A failure is journaled
like any secondary failure. The queue is bounded: when the secondary falls that far
behind, callers wait for room (at most the secondary timeout) and then journal the write
as missed rather than grow memory. A crash loses what was queued, without a journal
entry; the backfill, which must run before read-switch, copies it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

LIMIT = 256  # queued writes before callers wait: lag stays bounded, backpressure beyond


class SyncWriteBehind:
    """One worker thread draining a FIFO of (effect, operation) pairs through `run`."""

    def __init__(self, run: Callable[[Any, Any], None], limit: int = LIMIT) -> None:
        self._run = run
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=limit)
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, effect: Any, op: Any, timeout: float | None) -> bool:
        """Queue a write; False when there was no room within `timeout`."""
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._drain_forever, name="dualsaver-write-behind", daemon=True)
                self._worker.start()
        try:
            self._queue.put((effect, op), timeout=timeout)
        except queue.Full:
            return False
        return True

    def _drain_forever(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._run(*item)
            finally:
                self._queue.task_done()

    def drain(self, timeout: float | None) -> bool:
        """Wait until every queued write ran; False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout: float | None) -> bool:
        drained = self.drain(timeout)
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
        return drained


class AsyncWriteBehind:
    """The same for an event loop: each write is a task that first awaits the one before."""

    def __init__(self, run: Callable[[Any, Any], Awaitable[None]], limit: int = LIMIT) -> None:
        self._run = run
        self._limit = limit
        self._tail: asyncio.Task[None] | None = None
        self._pending = 0

    async def submit(self, effect: Any, op: Any, timeout: float | None) -> bool:
        if self._pending >= self._limit and not await self.drain(timeout):
            return False
        loop = asyncio.get_running_loop()
        previous = self._tail if self._tail is not None and self._tail.get_loop() is loop else None
        self._pending += 1
        self._tail = loop.create_task(self._after(previous, effect, op))
        return True

    async def _after(self, previous: asyncio.Task[None] | None, effect: Any, op: Any) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])  # its outcome was recorded by itself
            await self._run(effect, op)
        finally:
            self._pending -= 1

    async def drain(self, timeout: float | None) -> bool:
        tail = self._tail
        if tail is None or tail.done():
            return True
        if tail.get_loop() is not asyncio.get_running_loop():
            return False  # written from another event loop: it cannot be awaited here
        done, _ = await asyncio.wait([tail], timeout=timeout)
        return bool(done)
