"""Write-behind for the secondary: in order, in the background, bounded.

In shadow-write nobody reads the secondary (new), so the caller need not wait for it:
its copy of each write is taken when the call starts (plans.copies: pickle bytes, which
the worker thaws when it writes), handed to one background worker, and written in the
order the calls were made. A failure is journaled
like any secondary failure.

The worker yields to the application. A LangGraph turn is a burst of puts a millisecond
or two apart; a worker writing in the middle of it competes with the graph for the GIL
and the CPU, and the turn gets slower by about what the secondary costs. So the worker
waits for a pause in the calls (`QUIET`), which real agents have while they wait on a
model and chat users have between turns, and writes then. It does not wait past
`MAX_DELAY` for the oldest queued write, nor once a quarter of the queue is full, so
under sustained load (no pauses at all) the lag stays bounded and the worker writes
continuously, as it would without the rule.

The worker calls the store directly (a thread hop per write would cost the caller more
than the write itself); the queue is the bound instead: when the secondary falls that
far behind, callers wait for room (at most the secondary timeout) and then journal the
write as missed rather than grow memory. Once the worker has been stuck in one call for
longer than that timeout, callers stop waiting at all (for room, or for a drain).

Nothing queued is dropped silently on a normal exit: closing the saver (`close()` for the
sync queue, `aclose()` for the async one), the process exiting, or an event loop shutting
down under its tasks waits up to the timeout, then hands every write that did not land to
`abandon`, which journals it. A crash loses what was queued, without a journal entry;
the check that read-switch requires, started after the fleet left shadow-write (the phase
guard sees to it), finds it for repair.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from dualsaver.errors import WriteAbandoned

LIMIT = 256  # queued writes before callers wait: lag stays bounded, backpressure beyond
QUIET = 0.005  # seconds without a new call that count as a pause in the application
MAX_DELAY = 0.25  # seconds the oldest queued write may wait for a pause


def stuck(busy_since: float | None, timeout: float | None) -> bool:
    """The worker has been in one write for longer than callers may wait for room."""
    return timeout is not None and busy_since is not None and time.monotonic() - busy_since >= timeout


def pause_wait(now: float, queued_at: float, last_call: float, backlog: int, limit: int) -> float:
    """Seconds the worker should still hold back the write queued at `queued_at`: until
    the calls pause, but never past MAX_DELAY nor with a quarter of the queue full.
    0: write now."""
    if backlog * 4 >= limit:
        return 0.0
    wait = min(last_call + QUIET, queued_at + MAX_DELAY) - now
    return max(wait, 0.0)


Abandon = Callable[[Any, BaseException], None]  # (job, why) of a write that will not run


class SyncWriteBehind:
    """One worker thread running a FIFO of jobs through `run`.

    The caller's side takes no lock: a deque's append and popleft are atomic, and the worker
    is woken only when it sleeps for want of work. (A `queue.Queue` took its mutex three
    times a write, once in the caller, and the caller and the worker met on it and on the
    GIL; over stores that answer at once, bench_overhead, that was about a third of
    dualsaver's own CPU a write.) A job stays at the head of the deque while it runs, so
    "nothing unfinished" is "the deque is empty". Callers waiting for room or a drain sleep
    on `_changed`, which the worker notifies only when someone waits."""

    def __init__(
        self, run: Callable[[Any], None], abandon: Abandon, exit_timeout: float | None, limit: int = LIMIT
    ) -> None:
        self._run = run
        self._abandon = abandon
        self._limit = limit
        self._jobs: collections.deque[tuple[float, Any] | None] = collections.deque()  # None: stop
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()  # starting the worker; taking jobs off the deque
        self._idle = False  # the worker sleeps on `_wake` for want of work
        self._wake = threading.Event()
        self._changed = threading.Condition()  # a job finished, for those counted in `_waiters`
        self._waiters = 0
        self._busy_since: float | None = None  # when the running write started
        self._last_call = 0.0
        self._hurry = threading.Event()  # set while anyone drains: write now, no pause
        self._drainers = 0
        self.exit_timeout = exit_timeout  # how long an exiting process waits for it
        _open_queues.add(self)

    def submit(self, job: Any, timeout: float | None) -> bool:
        """Queue a write; False when there was no room within `timeout`. With several
        callers at once the queue may pass its limit by one write each: the bound is on
        memory, not exact."""
        worker = self._worker
        if worker is None or not worker.is_alive():
            self._start_worker()
        self._last_call = now = time.monotonic()
        if len(self._jobs) >= self._limit and not self._wait_for_room(timeout):
            return False
        self._jobs.append((now, job))
        if self._idle:
            self._wake.set()
        return True

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._drain_forever, name="dualsaver-write-behind", daemon=True)
                self._worker.start()

    def _wait_for_room(self, timeout: float | None) -> bool:
        def room_or_stuck() -> bool:
            return len(self._jobs) < self._limit or stuck(self._busy_since, timeout)

        with self._changed:
            self._waiters += 1
            try:
                self._changed.wait_for(room_or_stuck, timeout)
                return len(self._jobs) < self._limit
            finally:
                self._waiters -= 1

    def _drain_forever(self) -> None:
        while True:
            if not self._jobs:
                self._sleep()
                continue
            item = self._jobs[0]
            if item is None:
                self._taken(item)
                return
            queued_at, job = item
            try:
                self._hold_back(queued_at)
                if not self._jobs or self._jobs[0] is not item:  # close abandoned it (journaled) while it waited
                    continue
                self._busy_since = time.monotonic()
                self._run(job)
            finally:
                self._busy_since = None
                self._taken(item)

    def _sleep(self) -> None:
        """Wait for a job; a caller that appends while `_idle` is set wakes the worker."""
        self._idle = True
        if not self._jobs:  # looked at again after `_idle`: an append before it is seen here
            self._wake.wait()
        self._wake.clear()
        self._idle = False

    def _taken(self, item: tuple[float, Any] | None) -> None:
        """The head job is done: off the deque (unless close abandoned it meanwhile), and
        anyone waiting for room or a drain is told."""
        with self._lock:
            if self._jobs and self._jobs[0] is item:
                self._jobs.popleft()
        if self._waiters:
            with self._changed:
                self._changed.notify_all()

    def _hold_back(self, queued_at: float) -> None:
        while not self._hurry.is_set():
            backlog = len(self._jobs) - 1  # the job held back is at the head
            wait = pause_wait(time.monotonic(), queued_at, self._last_call, backlog, self._limit)
            if wait <= 0:
                return
            self._hurry.wait(wait)

    @property
    def drained(self) -> bool:
        """Nothing queued or running: `drain` would return at once."""
        return not self._jobs

    def drain(self, timeout: float | None) -> bool:
        """Wait until every queued write ran; False if `timeout` passed first."""
        if self.drained:
            return True  # the common case, on every call outside write-behind
        if stuck(self._busy_since, timeout):
            return False  # waiting would only stall this caller too
        with self._changed:
            self._waiters += 1
            self._drainers += 1
            self._hurry.set()
            try:
                return self._changed.wait_for(lambda: not self._jobs, timeout)
            finally:
                self._waiters -= 1
                self._drainers -= 1
                if not self._drainers:
                    self._hurry.clear()

    def close(self, timeout: float | None) -> bool:
        """Drain (bounded), then abandon what did not land, and stop the worker."""
        drained = self.drain(timeout)
        if not drained:
            self._abandon_all(WriteAbandoned(f"saver closed with the secondary still behind after {timeout}s"))
        if self._worker is not None and self._worker.is_alive():
            self._jobs.append(None)
            self._wake.set()
        return drained

    def _abandon_all(self, why: BaseException) -> None:
        # The running write too: if it lands after all, repairing it again adds nothing.
        with self._lock:
            abandoned = [item for item in self._jobs if item is not None]
            self._jobs.clear()
        for _, job in abandoned:
            self._abandon(job, why)


_open_queues: weakref.WeakSet[SyncWriteBehind] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    """Daemon workers die with the interpreter: land or journal what they still hold."""
    for writes in list(_open_queues):
        writes.close(writes.exit_timeout)


class AsyncWriteBehind:
    """The same for an event loop: each job is a task that first awaits the one before.

    A task copies the context it was created in, so the tracing context of the call that
    queued a write goes with it (the sync worker carries it over explicitly)."""

    def __init__(self, run: Callable[[Any], Awaitable[None]], abandon: Abandon, limit: int = LIMIT) -> None:
        self._run = run
        self._abandon = abandon
        self._limit = limit
        self._tail: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy_since: float | None = None
        self._last_call = 0.0
        self._draining = 0  # callers in adrain(): write now, do not wait for a pause
        self._closed_after: float | None = None  # set by aclose: why a cancelled write did not run

    async def asubmit(self, job: Any, timeout: float | None) -> bool:
        if len(self._tasks) >= self._limit and (stuck(self._busy_since, timeout) or not await self.adrain(timeout)):
            return False
        loop = asyncio.get_running_loop()
        previous = self._tail if self._tail is not None and self._tail.get_loop() is loop else None
        self._last_call = queued_at = time.monotonic()
        self._tail = task = loop.create_task(self._after(previous, queued_at, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _after(self, previous: asyncio.Task[None] | None, queued_at: float, job: Any) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])  # its outcome was recorded by itself
            while not self._draining:
                wait = pause_wait(time.monotonic(), queued_at, self._last_call, len(self._tasks), self._limit)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            self._busy_since = time.monotonic()
            await self._run(job)
        except asyncio.CancelledError:
            if self._closed_after is not None:
                why = f"saver closed with the secondary still behind after {self._closed_after}s"
            else:
                why = "its event loop closed before the write ran"
            self._abandon(job, WriteAbandoned(why))
            raise
        finally:
            self._busy_since = None

    @property
    def drained(self) -> bool:
        """Nothing queued or running: `adrain` would return at once."""
        return self._tail is None or self._tail.done()

    async def adrain(self, timeout: float | None) -> bool:
        tail = self._tail
        if tail is None or tail.done():  # `drained`, with `tail` narrowed for what follows
            return True
        if tail.get_loop() is not asyncio.get_running_loop():
            return False  # written from another event loop: it cannot be awaited here
        if stuck(self._busy_since, timeout):
            return False  # waiting would only stall this caller too
        self._draining += 1
        try:
            done, _ = await asyncio.wait([tail], timeout=timeout)
        finally:
            self._draining -= 1
        return bool(done)

    async def aclose(self, timeout: float | None) -> bool:
        """Drain (bounded), then cancel what did not land: each cancelled write is handed to
        `abandon` (journaled), as the sync queue's `close` does."""
        drained = await self.adrain(timeout)
        if not drained:
            self._closed_after = timeout
            here = [t for t in self._tasks if t.get_loop() is asyncio.get_running_loop()]
            for task in here:
                task.cancel()
            await asyncio.gather(*here, return_exceptions=True)
        return drained
