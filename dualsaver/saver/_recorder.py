"""The recorder: what a composite saver does when a store misses a write or a shadow read
disagrees. It counts (in the saver and in OpenTelemetry), logs (structlog) and journals
(durably, for repair), and it never raises into the caller's path.

Plans ask for it through the `sansio` target "recorder" with the records below; the async
shell awaits the ``a`` forms, which do the same work in a worker thread: the journal is SQLite
and maybe the control store (opening it, asking the fleet's journal), blocking calls that an
event loop must not make (LangGraph Agent Server's `langgraph dev` refuses them). They run
only when a store missed, a delete was tombstoned or a read-switch read falls back.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from dualsaver.control.fleet_journal import FleetJournal
from dualsaver.control.journal import (
    ITEM_OPERATIONS,
    Journal,
    JournalEntry,
    Stale,
    item_at,
    journal_exists,
    journal_path,
)
from dualsaver.control.record import open_phase_record
from dualsaver.control.phase import Phase
from dualsaver.errors import describe_error
from dualsaver.items.record import ItemKey
from dualsaver.observability import telemetry
from dualsaver.saver._stale import StaleView
from dualsaver.saver.routing import Mode, Role

log = structlog.get_logger("dualsaver")


@dataclass(frozen=True, slots=True)
class Missed:
    """A store missed a write: count it, log it and journal it."""

    role: Role
    operation: str
    where: Mapping[str, Any]  # thread_id, checkpoint_ns, checkpoint_id, task_id
    error: BaseException
    phase: Phase | Mode  # the call's, which a background write may outlive


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A delete the retired store does not receive (decommission writes new only): journal
    it, so that a rollback (reverse backfill, then repair from the journal) applies it
    instead of bringing the thread back from the retired store's stale copy."""

    role: Role  # the retired store
    operation: str
    where: Mapping[str, Any]  # the thread, or the item (`control.journal.item_entry_fields`)
    phase: Phase | Mode


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A shadow read whose answer from new differed from old's (or failed)."""

    where: Mapping[str, Any]
    fields: tuple[str, ...]
    phase: Phase | Mode
    error: BaseException | None = None


class Recorder:
    """Counts, logs and journals misses, tombstones and shadow-read mismatches.

    `journal`: a `Journal`, a path for one, or None for `$DUALSAVER_JOURNAL` /
    `.dualsaver/journal.sqlite`; a path is opened on the first entry, not before. With a
    `control` store URL, entries go to the fleet's journal there, and that file is the local
    spool of what is not shipped yet (`FleetJournal`)."""

    def __init__(
        self, journal: Journal | str | os.PathLike[str] | None = None, *, control: str | None = None,
        control_name: str = "default", replica: str = "",
    ) -> None:
        self._journal_path = None if isinstance(journal, Journal) else journal
        self._owns_journal = not isinstance(journal, Journal)  # one passed in belongs to the caller
        self._control, self._control_name, self.replica = control, control_name, replica
        self._journal: Any = journal if isinstance(journal, Journal) else None
        if self._journal is not None:
            telemetry.watch_journal(self._journal)
        self._lock = threading.Lock()
        self.secondary_failures: Counter[str] = Counter()
        self.shadow_mismatches: Counter[str] = Counter()
        # what each store missed a write of, here and in the journal: the steered phases do
        # not answer such a thread or item from that store (`plans.steered`)
        self._stale = StaleView(self._journal_stale, lambda: self.unshipped() == 0)
        self._stale_record: Any = None  # the control store, opened for those reads alone (no spool file)

    @property
    def journal(self) -> Any:
        """The `Journal` (or `FleetJournal`) entries go to, opened on first use."""
        with self._lock:
            if self._journal is None:
                spool = Journal(self._journal_path)
                if self._control:
                    record = open_phase_record(self._control, name=self._control_name)
                    self._journal = FleetJournal(record, spool, self.replica)
                else:
                    self._journal = spool
                telemetry.watch_journal(self._journal)
            return self._journal

    @property
    def spool_key(self) -> object:
        """What names its local journal file: two recorders on one file hold the same entries."""
        path = self._journal.path if self._journal is not None else journal_path(self._journal_path)
        return id(self) if path is None else os.path.realpath(path)

    def unshipped(self) -> int:
        """Entries this replica holds that the fleet's journal does not yet (0 without one)."""
        with self._lock:  # not while `close` closes it (the phase poller asks from its own thread)
            journal = self._journal
            return journal.unshipped() if isinstance(journal, FleetJournal) else 0

    def missed(self, *misses: Missed) -> None:
        """Count, log and journal writes a store missed (a store's batch misses several)."""
        for missed in misses:
            self._missed(missed)

    def _missed(self, missed: Missed) -> None:
        at, error = missed.where, describe_error(missed.error)
        thread_id, item = at.get("thread_id"), None
        if thread_id is None and missed.operation in ITEM_OPERATIONS and at.get("checkpoint_ns") is not None:
            item = item_at(at["checkpoint_ns"], at["checkpoint_id"])
        with self._stale.noting(missed.role, None if thread_id is None else str(thread_id), item):
            self._count_and_journal(missed, at, error)

    def _count_and_journal(self, missed: Missed, at: Mapping[str, Any], error: str) -> None:
        self.secondary_failures[missed.operation] += 1
        telemetry.secondary_failures.add(1, {"store": missed.role, "operation": missed.operation})
        log.warning(
            "secondary_write_failed",
            store=missed.role,
            operation=missed.operation,
            phase=str(missed.phase),
            thread_id=at.get("thread_id"),
            checkpoint_ns=at.get("checkpoint_ns"),
            checkpoint_id=at.get("checkpoint_id"),
            error=error,
        )
        self._journal_entry(missed.phase, missed.role, missed.operation, at, error)

    def tombstone(self, tombstone: Tombstone) -> None:
        """Journal a delete the retired store did not receive, for a rollback to apply."""
        at = tombstone.where
        log.info("tombstone_journaled", store=tombstone.role, operation=tombstone.operation,
                 phase=str(tombstone.phase), thread_id=at.get("thread_id"), checkpoint_ns=at.get("checkpoint_ns"),
                 checkpoint_id=at.get("checkpoint_id"))
        error = "not applied: the store is retired; a rollback applies it (repair from the journal)"
        self._journal_entry(tombstone.phase, tombstone.role, tombstone.operation, at, error)

    def mismatch(self, mismatch: Mismatch) -> None:
        """Count, log and journal a shadow read whose answer differed."""
        at = mismatch.where
        detail = ", ".join(mismatch.fields)
        if mismatch.error is not None:
            detail = f"shadow read failed: {describe_error(mismatch.error)}"
        for name in mismatch.fields:
            self.shadow_mismatches[name] += 1
        telemetry.shadow_mismatches.add(1, {"field": mismatch.fields[0]})
        log.warning("shadow_read_mismatch", phase=str(mismatch.phase), thread_id=at.get("thread_id"),
                    checkpoint_id=at.get("checkpoint_id"), fields=detail)
        self._journal_entry(mismatch.phase, "new", "shadow_read", at, f"mismatch: {detail}")

    def stale_threads(self, role: Role) -> Collection[str]:
        """The threads `role` missed a write (or a delete) of, that no repair has settled:
        this process's at once, and those of the journal (with a control store, every
        replica's) as read in the background every few seconds (`_stale.StaleView`)."""
        return self._stale.threads(role)

    def stale_items(self, role: Role) -> Collection[ItemKey]:
        """The same for long-term store items, as (namespace, key)."""
        return self._stale.items(role)

    def _journal_stale(self) -> dict[str, Stale] | None:
        """What each store missed, by the journal's open entries (None: nothing journaled)."""
        if self._control:
            record = self._stale_record
            if record is None:
                record = self._stale_record = open_phase_record(self._control, name=self._control_name)
            return {role: record.journal_stale(role) for role in ("old", "new")}
        if not self._journal_written():
            return None
        journal = self.journal
        return {role: journal.stale(role) for role in ("old", "new")}

    def missed_delete(self, role: Role, thread_id: str) -> bool:
        """Whether `role` missed a delete of this thread that is not repaired yet; read-switch
        does not fall back to such a copy."""
        if not self._journal_written():
            return False
        return self.journal.missed_delete(role, thread_id)

    def missed_item_delete(self, role: Role, namespace: tuple[str, ...], key: str) -> bool:
        """The same for a long-term store item: a DualStore's read-switch does not fall back to it."""
        if not self._journal_written():
            return False
        return self.journal.missed_item_delete(role, namespace, key)

    def _journal_written(self) -> bool:
        """A journal that was never written (not open, no file) holds nothing: it is not
        created just to be asked."""
        return self._journal is not None or bool(self._control) or journal_exists(self._journal_path)

    def _journal_entry(
        self, phase: Phase | Mode, store: str, operation: str, at: Mapping[str, Any], error: str
    ) -> None:
        self.journal.record(
            JournalEntry(
                phase=str(phase), store=store, operation=operation, thread_id=at.get("thread_id"),
                checkpoint_ns=at.get("checkpoint_ns"), checkpoint_id=at.get("checkpoint_id"),
                task_id=at.get("task_id"), error=error,
            )
        )

    def close(self) -> None:
        """Close a journal this recorder opened (one passed in belongs to the caller)."""
        with self._lock:
            if self._journal is not None and self._owns_journal:
                self._journal.close()
                self._journal = None
            # the record of the fleet's misses; its close waits for a read under way (one query)
            record, self._stale_record = self._stale_record, None
        if record is not None:
            record.close()

    # -- the async forms: the same work, in a worker thread (see the module docstring) ------

    async def amissed(self, *misses: Missed) -> None:
        await asyncio.to_thread(self.missed, *misses)

    async def atombstone(self, tombstone: Tombstone) -> None:
        await asyncio.to_thread(self.tombstone, tombstone)

    async def amismatch(self, mismatch: Mismatch) -> None:
        await asyncio.to_thread(self.mismatch, mismatch)

    async def amissed_delete(self, role: Role, thread_id: str) -> bool:
        return await asyncio.to_thread(self.missed_delete, role, thread_id)

    async def amissed_item_delete(self, role: Role, namespace: tuple[str, ...], key: str) -> bool:
        return await asyncio.to_thread(self.missed_item_delete, role, namespace, key)
