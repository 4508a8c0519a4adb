"""Side threads: run one function beside the caller, on a thread that waits for just that.

What the sync shell's `Both` runs its first plan on (the tiered read's hot answer, while the
caller asks the durable store). A shared pool would make callers queue behind each other's
side work (eight callers over four pool threads wait for a thread as long as for the read)
and pays a future, a condition and a shared queue per call. Here each call takes an idle
side thread of its own, or starts one, and hands it the function over that thread's own
queue; the caller waits on one lock. A side thread goes back to the idle ones when its
function returns, even after the caller stopped waiting for it (a time bound), so a slow
store never has two calls on one thread. There are as many side threads as calls were ever
at once, all idle between calls.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = None


class Pending:
    """The answer of a function run on a side thread: `wait` for it, within a bound."""

    __slots__ = ("_done", "error", "value")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.value: Any = None
        self.error: BaseException | None = None

    def wait(self, timeout: float | None = None) -> bool:
        """True once the function returned or raised; False when `timeout` passed first."""
        return self._done.acquire(timeout=-1 if timeout is None else timeout)

    def _finish(self, value: Any, error: BaseException | None) -> None:
        self.value, self.error = value, error
        self._done.release()


class SideThreads:
    """Idle threads, each taken by one call at a time (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._idle: list[queue.SimpleQueue[Any]] = []
        self._all: list[queue.SimpleQueue[Any]] = []
        self._lock = threading.Lock()
        self._generation = 0  # `close` starts a new one: the threads of an older one exit when idle

    def start(self, fn: Callable[[], Any]) -> Pending:
        """Run `fn` on a side thread of its own; its answer comes in the `Pending`."""
        pending = Pending()
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
            if inbox is None:
                inbox = queue.SimpleQueue()
                self._all.append(inbox)
                threading.Thread(target=self._serve, args=(inbox, self._generation),
                                 name=f"{self.name}-{len(self._all)}", daemon=True).start()
        inbox.put((fn, pending))
        return pending

    def _serve(self, inbox: queue.SimpleQueue[Any], generation: int) -> None:
        while (work := inbox.get()) is not _STOP:
            fn, pending = work
            try:
                value, error = fn(), None
            except BaseException as exc:  # handed to the caller, as a future would
                value, error = None, exc
            pending._finish(value, error)
            del work, fn, pending, value, error  # hold nothing of the call while idle
            with self._lock:
                if generation != self._generation:
                    return  # closed meanwhile
                self._idle.append(inbox)

    def close(self) -> None:
        """Stop every side thread once it is idle (a busy one finishes its call first); a
        later `start` starts new ones."""
        with self._lock:
            self._generation += 1
            inboxes, self._all, self._idle = self._all, [], []
        for inbox in inboxes:
            inbox.put(_STOP)
