"""The journal of a fleet: what every replica's secondary missed, kept in the control store.

A replica's container may vanish with its disk, so its journal cannot live only there. Each
entry is written first to a local spool (the SQLite journal, one local insert), and a
background shipper moves spooled entries to the control store in batches. The call that
journals waits until its entry is shipped (one round trip of the control store; entries
journaled at once share a shipment), at most `SHIP_WAIT` seconds, and not at all while the
control store is known to be away: a replica killed right after a call returned (SIGKILL,
out of memory) has its entry in the control store, where repair and the phase guard see it.
(Before, entries waited up to `SHIP_EVERY` seconds to gather, and a kill in that window
lost them with the disk: a rollback to old could then pass the guard with old lacking the
write.) While the control store is unreachable the entries wait in the spool, and the
shipper retries; closing the saver (or the process exiting) ships what is left, within the
time it is given. Only a pod lost in the middle of an outage of the control store loses the
entries it spooled meanwhile.

Repair reads the whole fleet's entries from the control store, and marks each entry
repaired once, whoever else repairs at the same time.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import structlog

from dualsaver.control.journal import Journal, JournalEntry
from dualsaver.errors import RecordUnavailable

log = structlog.get_logger("dualsaver.journal")

SHIP_EVERY = 0.2  # seconds a shipment nobody waits for lets a burst of entries gather
SHIP_WAIT = 0.5  # seconds the call that journals waits for its entry to be shipped
BATCH = 500  # entries per shipment
RETRY = 2.0  # seconds between two tries while the control store is away


class FleetJournal:
    """A `Journal`'s interface over the control store (`control`, a `ControlStore`), with
    `spool` (a local `Journal`) holding what is not shipped yet."""

    def __init__(self, control: Any, spool: Journal, replica: str) -> None:
        self.control = control
        self.spool = spool
        self.replica = replica
        self.path = spool.path  # what telemetry labels the depth with
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one shipment at a time
        self._starting = threading.Lock()  # never held across I/O: callers take it
        self._shipper: threading.Thread | None = None
        self._away_since: float | None = None
        self._shipped = threading.Condition()  # a shipment ended (or found the control store away)
        self._through = 0  # every spooled id up to this one is in the control store
        self._waiters = 0  # calls waiting for their entry to be shipped
        _open_journals.add(self)

    # -- what the recorder calls ------------------------------------------------------------

    def record(self, entry: JournalEntry) -> None:
        """Spool `entry`, and wait (at most SHIP_WAIT) until it is in the control store."""
        spooled = self.spool.record(entry)
        with self._starting:
            if self._shipper is None:
                self._shipper = threading.Thread(target=self._ship_forever, name="dualsaver-journal", daemon=True)
                self._shipper.start()
        if self._away_since is not None:  # known away: the shipper retries; nobody waits on it
            self._wake.set()
            return
        with self._shipped:
            self._waiters += 1
            try:
                self._wake.set()
                self._shipped.wait_for(lambda: self._through >= spooled or self._away_since is not None
                                       or self._stop.is_set(), SHIP_WAIT)
            finally:
                self._waiters -= 1

    def missed_delete(self, store: str, thread_id: str) -> bool:
        """Asked on a read-switch fallback: the fleet's entries, and this replica's unshipped
        ones. With the control store away, only the latter (reads stay available)."""
        if self.spool.missed_delete(store, thread_id):
            return True
        try:
            return self.control.journal_missed_delete(store, thread_id)
        except RecordUnavailable:
            return False

    def missed_item_delete(self, store: str, namespace: Sequence[str], key: str) -> bool:
        """The same for a long-term store item (a DualStore's read-switch fallback)."""
        if self.spool.missed_item_delete(store, namespace, key):
            return True
        try:
            return self.control.journal_missed_item_delete(store, namespace, key)
        except RecordUnavailable:
            return False

    def unshipped(self) -> int:
        """Entries this replica has not handed to the control store yet (its heartbeat)."""
        return self.spool.depth()

    # -- what repair and status call --------------------------------------------------------

    def pending(self) -> Iterator[JournalEntry]:
        """The fleet's entries waiting for repair, oldest first (after shipping this
        replica's own)."""
        self.ship()
        yield from self.control.journal_pending()

    def depth(self) -> int:
        return len(self.control.journal_pending()) + self.spool.depth()

    def pending_threads(self) -> list[str]:
        return sorted({e.thread_id for e in self.pending() if e.thread_id is not None})

    def mark_repaired(self, ids: Iterable[int]) -> int:
        return self.control.journal_claim(list(ids), by=self.replica)

    # -- shipping ---------------------------------------------------------------------------

    def ship(self) -> bool:
        """Move spooled entries to the control store now; False if it is away."""
        with self._lock:  # one shipment at a time, so an entry is never sent twice by us
            while entries := self.spool.oldest(BATCH):
                try:
                    self.control.journal_add(entries, self.replica)
                except RecordUnavailable as exc:
                    if self._away_since is None:
                        self._away_since = time.time()
                        log.warning("journal_spooling", control=self.control.where, error=str(exc),
                                    spooled=self.spool.depth())
                    self._shipped_through(None)  # those waiting stop: it is away
                    return False
                ids = [e.id for e in entries if e.id is not None]
                self.spool.forget(ids)
                self._shipped_through(max(ids, default=0))
            if self._away_since is not None:
                outage = round(time.time() - self._away_since, 3)
                log.info("journal_shipped", control=self.control.where, outage_seconds=outage)
                self._away_since = None
            return True

    def _shipped_through(self, through: int | None) -> None:
        """Wake the calls waiting for their entries: shipped up to `through` (the spool's ids
        only grow, and a shipment takes the oldest first), or None: the control store is away."""
        with self._shipped:
            if through is not None:
                self._through = max(self._through, through)
            self._shipped.notify_all()

    def _ship_forever(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(RETRY if self._away_since is not None else None)
            self._wake.clear()
            if not self._waiters:  # nobody waits: let a burst of misses gather into one shipment
                time.sleep(SHIP_EVERY)
            if self._stop.is_set():
                return  # closing ships what is left, then closes the spool
            try:
                self.ship()
            except Exception as exc:  # never let the shipper die silently
                log.warning("journal_shipper_error", error=str(exc))

    def close(self, timeout: float = 5.0) -> None:
        """Ship what is left (trying for up to `timeout`), then stop."""
        deadline = time.monotonic() + timeout
        while not self.ship() and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        self._stop.set()
        self._wake.set()
        self._shipped_through(None)
        if self._shipper is not None:
            self._shipper.join(timeout=SHIP_EVERY + 1.0)  # not inside a shipment when the spool closes
        self.spool.close()
        self.control.close()


_open_journals: weakref.WeakSet[FleetJournal] = weakref.WeakSet()


@atexit.register
def _ship_at_exit() -> None:
    for journal in list(_open_journals):
        if not journal._stop.is_set():
            journal.ship()
