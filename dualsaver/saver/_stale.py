"""What each store missed a write of, as the steered phases ask (`plans.steered`): the
threads and items this process saw a store miss, and what the journal holds open.

The journal (the fleet's in the control store, or the local file) is read in the background,
never on the caller's path, at most every READ_EVERY seconds while it is asked about: so
another replica's miss counts here about that long after it shipped, and a repair's
settling about that long after it is done. What this process missed counts at once, from
the moment the miss is noted, until a read of the journal that began after its entry was
journaled (and shipped) has come back: the journal speaks for it from then on, and lets it
go once a repair settles it. So a replica serving for days keeps what is open, not every
thread its secondary ever missed, and stops steering reads of what a repair made equal. A
miss whose entry could not be journaled stays for the life of the process: nothing will
say when it is repaired.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog

from dualsaver.control.journal import Stale
from dualsaver.errors import describe_error
from dualsaver.items.record import ItemKey
from dualsaver.saver.routing import Role

log = structlog.get_logger("dualsaver")

READ_EVERY = 2.0  # seconds between two reads of the journal's open entries, while asked
_NOTHING = Stale()
_KEPT = float("inf")  # the number of a miss whose entry was not journaled: never let go


class StaleView:
    """`threads(role)` and `items(role)`: what `role` missed a write of, here or in the
    journal that `read_journal` reads ({role: Stale}, or None while nothing was journaled).
    `shipped()` says whether every entry recorded so far is in that journal. `every`: seconds
    between two reads in the background (READ_EVERY; infinity: only `refresh` reads)."""

    def __init__(
        self, read_journal: Callable[[], Mapping[str, Stale] | None], shipped: Callable[[], bool],
        every: float | None = None,
    ) -> None:
        self._read_journal, self._shipped = read_journal, shipped
        self._every = READ_EVERY if every is None else every
        self._lock = threading.Lock()
        # what this process noted, each with the number of its latest miss (`_KEPT`: unjournaled)
        self._threads: dict[Role, dict[str, float]] = {"old": {}, "new": {}}
        self._items: dict[Role, dict[ItemKey, float]] = {"old": {}, "new": {}}
        self._misses = 0  # misses noted so far
        self._journaling = 0  # misses noted whose entries are being journaled now
        self._journal: Mapping[str, Stale] = {}  # as last read
        self._read_at = float("-inf")
        self._reading = threading.Lock()

    @contextmanager
    def noting(self, role: Role, thread_id: str | None, item: ItemKey | None) -> Any:
        """Note a miss of `role` (of a thread, or an item) for the time its entry is journaled
        inside the block: it counts from now, and a read of the journal lets it go only
        once the block has ended well (and the entry shipped)."""
        noted: dict[Any, float] | None = None
        key: Any = thread_id if thread_id is not None else item
        with self._lock:
            self._misses += 1
            self._journaling += 1
            if key is not None:
                noted = self._threads[role] if thread_id is not None else self._items[role]
                if noted.get(key) != _KEPT:  # a miss the journal never heard of stays, whatever follows
                    noted[key] = self._misses
        journaled = False
        try:
            yield
            journaled = True
        finally:
            with self._lock:
                self._journaling -= 1
                if noted is not None and not journaled:
                    noted[key] = _KEPT

    def threads(self, role: Role) -> Collection[str]:
        return self._with_journal(self._threads[role], self._journal_says(role).threads)

    def items(self, role: Role) -> Collection[ItemKey]:
        return self._with_journal(self._items[role], self._journal_says(role).items)

    @staticmethod
    def _with_journal(noted: dict[Any, float], journal: frozenset[Any]) -> Collection[Any]:
        # no copy: a read asks `in` of each, on every call of a steered phase
        return Either(noted, journal) if journal else noted

    def _journal_says(self, role: Role) -> Stale:
        now = time.monotonic()
        if now - self._read_at > self._every and self._reading.acquire(blocking=False):
            self._read_at = now
            threading.Thread(target=self._read_held, name="dualsaver-journal-stale", daemon=True).start()
        return self._journal.get(role, _NOTHING)

    def refresh(self) -> None:
        """Read the journal now, on this thread: what the background read does."""
        self._reading.acquire()
        self._read_held()

    def _read_held(self) -> None:
        try:
            with self._lock:  # every miss noted so far journaled, and shipped: this read speaks for them
                through = self._misses if self._journaling == 0 else 0
            if through and not self._shipped():
                through = 0
            found = self._read_journal()
            self._journal = found if found is not None else {}
            if through:
                self._let_go(through)
        except Exception as exc:  # the journal away (or closed under it): keep what was last read
            log.debug("journal_stale_not_read", error=describe_error(exc))
        finally:
            self._reading.release()

    def _let_go(self, through: int) -> None:
        """Forget what this process noted up to miss `through`: the journal read since says it."""
        with self._lock:
            every: list[dict[Any, float]] = [*self._threads.values(), *self._items.values()]
            for noted in every:
                for key in [k for k, n in noted.items() if n <= through]:
                    del noted[key]


class Either(Collection[Any]):
    """What is in one collection or the other, asked without building their union."""

    __slots__ = ("first", "second")

    def __init__(self, first: Collection[Any], second: Collection[Any]) -> None:
        self.first, self.second = first, second

    def __contains__(self, key: object) -> bool:
        return key in self.first or key in self.second

    def __iter__(self) -> Iterator[Any]:
        # `first` may be a dict another thread adds to: copied in one C call (the GIL held)
        # before anything else, so no "changed size during iteration"
        first = tuple(self.first)
        return iter(first + tuple(key for key in self.second if key not in self.first))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return bool(self.first) or bool(self.second)
