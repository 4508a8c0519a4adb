"""The journal: a durable record of secondary writes that failed, so repair redoes exactly those.

It is a small SQLite file (stdlib, crash-safe, shared safely by processes on one host).
Every entry names the thread, namespace, checkpoint id, operation and store that missed a
write; repair copies those threads again and marks the entries repaired.

An entry about a long-term store item (a `DualStore` write) has no thread: its operation is
`store.put` or `store.delete`, `checkpoint_ns` holds the item's namespace as a JSON list and
`checkpoint_id` its key (`item_entry_fields` / `item_of`, the one place that knows this).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PATH = ".dualsaver/journal.sqlite"
ENV_PATH = "DUALSAVER_JOURNAL"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    phase TEXT NOT NULL,
    store TEXT NOT NULL,
    operation TEXT NOT NULL,
    thread_id TEXT,
    checkpoint_ns TEXT,
    checkpoint_id TEXT,
    task_id TEXT,
    error TEXT NOT NULL,
    repaired_at REAL
);
CREATE INDEX IF NOT EXISTS journal_pending ON journal (repaired_at, thread_id);
"""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One missed secondary write (or, for shadow reads, one mismatch)."""

    phase: str
    store: str  # "old" or "new": the store that missed the write
    operation: str  # put, put_writes, delete_thread, ...
    thread_id: str | None
    checkpoint_ns: str | None
    checkpoint_id: str | None
    task_id: str | None
    error: str  # exception type and message
    id: int | None = None
    ts: float | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> JournalEntry:
        """From a stored row: (id, ts, then the fields from `phase` to `error`)."""
        phase, store, operation, thread_id, checkpoint_ns, checkpoint_id, task_id, error = row[2:10]
        return cls(phase, store, operation, thread_id, checkpoint_ns, checkpoint_id, task_id, error, row[0], row[1])


ITEM_OPERATIONS = frozenset({"store.put", "store.delete"})


def item_entry_fields(namespace: Sequence[str], key: str) -> dict[str, str | None]:
    """Where an entry about the item (namespace, key) says it happened (no new columns)."""
    return {"thread_id": None, "checkpoint_ns": json.dumps(list(namespace)), "checkpoint_id": str(key)}


def is_item_entry(entry: JournalEntry) -> bool:
    return entry.operation in ITEM_OPERATIONS


def item_of(entry: JournalEntry) -> tuple[tuple[str, ...], str]:
    """The (namespace, key) an item entry names."""
    if not is_item_entry(entry) or entry.checkpoint_ns is None or entry.checkpoint_id is None:
        raise ValueError(f"not a store item entry: {entry.operation} {entry.thread_id!r}")
    return item_at(entry.checkpoint_ns, entry.checkpoint_id)


def item_at(checkpoint_ns: str, checkpoint_id: Any) -> tuple[tuple[str, ...], str]:
    """The (namespace, key) of the fields `item_entry_fields` wrote."""
    return tuple(json.loads(checkpoint_ns)), str(checkpoint_id)


@dataclass(frozen=True, slots=True)
class Stale:
    """What one store missed a write or a delete of, by the entries no repair has settled:
    threads, and long-term store items as (namespace, key)."""

    threads: frozenset[str] = frozenset()
    items: frozenset[tuple[tuple[str, ...], str]] = frozenset()

    @classmethod
    def of_rows(cls, rows: Iterable[Sequence[Any]]) -> Stale:
        """From (thread_id, checkpoint_ns, checkpoint_id) rows of open entries: a thread's
        entry names its thread, an item's none (`item_entry_fields`)."""
        rows = list(rows)
        return cls(frozenset(t for t, _, _ in rows if t is not None),
                   frozenset(item_at(ns, key) for t, ns, key in rows if t is None))


# The open entries `Stale.of_rows` reads: those naming a thread, or an item (by operation).
STALE_WHERE = "repaired_at IS NULL AND store = {mark} AND (thread_id IS NOT NULL OR operation IN ({items}))"


def journal_path(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The file `Journal(path)` uses: `path`, else $DUALSAVER_JOURNAL, else the default;
    None for ":memory:"."""
    raw = path if path is not None else os.environ.get(ENV_PATH, DEFAULT_PATH)
    return Path(raw) if str(raw) != ":memory:" else None


def journal_exists(path: str | os.PathLike[str] | None = None) -> bool:
    """Whether the journal `Journal(path)` would open already exists (":memory:" never does)."""
    found = journal_path(path)
    return found is not None and found.is_file()


# A write held back because the store cannot hold it faithfully is journaled with the error
# `LossyValue: ... [rule R; ...]` (dualsaver.preflight.live): reads cannot switch until it is repaired.
LOSSY_PREFIX = "LossyValue:"


def is_lossy(entry: JournalEntry) -> bool:
    return (entry.error or "").startswith(LOSSY_PREFIX)


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits for repair in a journal: how many entries, in how many threads, how many
    name new and how many old (None where not counted: the phase guards count them), and
    the lossy ones as (thread_id, error)."""

    depth: int
    threads: int
    lossy: list[tuple[str | None, str]]
    new: int | None = None
    old: int | None = None

    @classmethod
    def of(cls, entries: Sequence[JournalEntry]) -> Backlog:
        """The backlog of these pending entries (a control store's journal, say)."""
        return cls(
            depth=len(entries),
            threads=len({e.thread_id for e in entries}),
            lossy=[(e.thread_id, e.error) for e in entries if is_lossy(e)],
            new=sum(e.store == "new" for e in entries),
            old=sum(e.store == "old" for e in entries),
        )


def read_backlog(path: str | os.PathLike[str]) -> Backlog | None:
    """The backlog of the journal file at `path`, read only (nothing is created; None when
    there is no file); `sqlite3.Error` when the file is not a readable journal."""
    if not Path(path).exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        pending = "FROM journal WHERE repaired_at IS NULL"
        (depth,) = conn.execute(f"SELECT COUNT(*) {pending}").fetchone()
        (threads,) = conn.execute(f"SELECT COUNT(DISTINCT thread_id) {pending}").fetchone()
        lossy = conn.execute(f"SELECT thread_id, error {pending} AND error LIKE ?", (LOSSY_PREFIX + "%",)).fetchall()
    finally:
        conn.close()
    return Backlog(depth=int(depth), threads=int(threads), lossy=[(t, e) for t, e in lossy])


class Journal:
    """Append-only failure journal; thread-safe; one connection per process."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = journal_path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path) if self.path else ":memory:",
            check_same_thread=False,
            isolation_level=None,  # autocommit: an entry is durable when record() returns
            timeout=30,
        )
        if self.path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)

    def record(self, entry: JournalEntry) -> int:
        """Add an entry; returns its id (ids only grow)."""
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO journal (ts, phase, store, operation, thread_id, checkpoint_ns,"
                " checkpoint_id, task_id, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time(),
                    entry.phase,
                    entry.store,
                    entry.operation,
                    entry.thread_id,
                    entry.checkpoint_ns,
                    entry.checkpoint_id,
                    entry.task_id,
                    entry.error,
                ),
            )
            return int(cur.lastrowid or 0)

    def pending(self) -> Iterator[JournalEntry]:
        """Entries not yet repaired, oldest first."""
        return self._entries(None)

    def _entries(self, limit: int | None) -> Iterator[JournalEntry]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, ts, phase, store, operation, thread_id, checkpoint_ns, checkpoint_id, task_id, error"
                " FROM journal WHERE repaired_at IS NULL ORDER BY id LIMIT ?", (-1 if limit is None else limit,)
            ).fetchall()
        for row in rows:
            yield JournalEntry.from_row(row)

    def depth(self) -> int:
        """How many entries wait for repair."""
        with self._lock:
            (count,) = self._conn.execute(
                "SELECT COUNT(*) FROM journal WHERE repaired_at IS NULL"
            ).fetchone()
        return int(count)

    def missed_delete(self, store: str, thread_id: str) -> bool:
        """Whether `store` missed a delete of this thread that no repair has redone yet:
        the copy it still holds is one the application deleted."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM journal WHERE repaired_at IS NULL AND thread_id = ? AND store = ?"
                " AND operation = 'delete_thread' LIMIT 1",
                (thread_id, store),
            ).fetchone()
        return row is not None

    def missed_item_delete(self, store: str, namespace: Sequence[str], key: str) -> bool:
        """Whether `store` missed a delete of this long-term store item that no repair has
        redone yet."""
        at = item_entry_fields(namespace, key)
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM journal WHERE repaired_at IS NULL AND checkpoint_ns = ? AND checkpoint_id = ?"
                " AND store = ? AND operation = 'store.delete' LIMIT 1",
                (at["checkpoint_ns"], at["checkpoint_id"], store),
            ).fetchone()
        return row is not None

    def stale(self, store: str) -> Stale:
        """What `store` missed a write or a delete of, by the entries no repair has settled
        (as the control store's `journal_stale` says of the fleet's journal)."""
        where = STALE_WHERE.format(mark="?", items=", ".join("?" * len(ITEM_OPERATIONS)))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT DISTINCT thread_id, checkpoint_ns, checkpoint_id FROM journal WHERE {where}",
                (store, *sorted(ITEM_OPERATIONS)),
            ).fetchall()
        return Stale.of_rows(rows)

    def pending_threads(self) -> list[str]:
        """Distinct thread ids with entries waiting for repair."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT thread_id FROM journal"
                " WHERE repaired_at IS NULL AND thread_id IS NOT NULL ORDER BY thread_id"
            ).fetchall()
        return [r[0] for r in rows]

    def mark_repaired(self, ids: Iterable[int]) -> int:
        """Mark these entries repaired (the ones a repair read, not others of the same thread
        journaled since); each is marked once. Returns how many this call marked."""
        now = time.time()
        with self._lock:
            cur = self._conn.executemany(
                "UPDATE journal SET repaired_at = ? WHERE id = ? AND repaired_at IS NULL", [(now, i) for i in ids]
            )
            return cur.rowcount

    # -- as a spool: entries kept here until the control store has them ---------------------

    def oldest(self, limit: int) -> list[JournalEntry]:
        """Up to `limit` pending entries, oldest first."""
        return list(self._entries(limit))

    def forget(self, ids: Iterable[int]) -> None:
        """Drop entries another store now holds."""
        with self._lock:
            self._conn.executemany("DELETE FROM journal WHERE id = ?", [(i,) for i in ids])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
