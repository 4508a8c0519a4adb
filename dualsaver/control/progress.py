"""A backfill's durable progress record: which threads (or, for the store's items, which
namespaces) of a job are fully copied.

A small SQLite file (default `.dualsaver/backfill.sqlite`), written in autocommit mode with
WAL, so a row is on disk when `mark_done` returns and a SIGKILL at any moment loses at most
the thread being copied, which the next run copies again (inserts are idempotent). A *job*
is keyed by the identities of both stores (passwords redacted) and the shard, so two shards
or two migrations never share progress.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dualsaver.redact import redact
from dualsaver.stores.faithful import has_surrogate

DEFAULT_PATH = ".dualsaver/backfill.sqlite"
ENV_PATH = "DUALSAVER_BACKFILL_STATE"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job TEXT PRIMARY KEY,
    old TEXT NOT NULL,
    new TEXT NOT NULL,
    shard TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS done (
    job TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    checkpoints INTEGER NOT NULL,
    writes INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (job, thread_id)
);
"""


def _kept(thread_id: str) -> str | bytes:
    """A thread id as this file keeps it: as text, or, holding a lone surrogate, as its bytes
    with the surrogate passed through (a BLOB, which no text id equals), rather than refused
    in the middle of a run."""
    return thread_id.encode("utf-8", "surrogatepass") if has_surrogate(thread_id) else thread_id


def _read(kept: str | bytes) -> str:
    return kept.decode("utf-8", "surrogatepass") if isinstance(kept, bytes) else kept


def job_key(old: str, new: str, shard: tuple[int, int] | None) -> str:
    shard_text = f"{shard[0]}/{shard[1]}" if shard else "all"
    raw = f"{redact(old)}\n{redact(new)}\n{shard_text}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


class BackfillState:
    """Per-thread completion records for one job; safe to share between worker threads."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        old: str,
        new: str,
        shard: tuple[int, int] | None,
    ) -> None:
        raw = str(path) if path is not None else os.environ.get(ENV_PATH, DEFAULT_PATH)
        if raw != ":memory:":
            Path(raw).parent.mkdir(parents=True, exist_ok=True)
        self.path = raw
        self.job = job_key(old, new, shard)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(raw, check_same_thread=False, isolation_level=None, timeout=30)
        if raw != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        self._done_before = self.done_count() > 0  # threads an earlier run finished
        shard_text = f"{shard[0]}/{shard[1]}" if shard else "all"
        self._conn.execute(
            "INSERT OR IGNORE INTO jobs (job, old, new, shard, started_at) VALUES (?, ?, ?, ?, ?)",
            (self.job, redact(old), redact(new), shard_text, time.time()),
        )

    def is_done(self, thread_id: str) -> bool:
        return bool(self.done_among([thread_id]))

    def done_among(self, thread_ids: Sequence[str]) -> set[str]:
        """Which of these threads an earlier run finished."""
        if not self._done_before:
            return set()  # a fresh job: nothing to look up (each thread is visited once)
        marks = ",".join("?" * len(thread_ids))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT thread_id FROM done WHERE job = ? AND thread_id IN ({marks})",
                (self.job, *map(_kept, thread_ids)),
            ).fetchall()
        return {_read(r[0]) for r in rows}

    def update(self, counters: dict[str, Any]) -> None:
        """Counters for `dualsaver status` (kept by the control store; a local run shows its
        threads done)."""

    def done_count(self) -> int:
        with self._lock:
            (n,) = self._conn.execute("SELECT COUNT(*) FROM done WHERE job = ?", (self.job,)).fetchone()
        return int(n)

    def mark_done(self, thread_id: str, checkpoints: int, writes: int) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO done (job, thread_id, checkpoints, writes, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (self.job, _kept(thread_id), checkpoints, writes, time.time()),
            )

    def mark_done_many(self, thread_ids: list[str]) -> None:
        """Mark several threads done in one transaction (one commit, not one per thread)."""
        if not thread_ids:
            return
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO done (job, thread_id, checkpoints, writes, at)"
                    " VALUES (?, ?, 0, 0, ?)",
                    [(self.job, _kept(t), now) for t in thread_ids],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def restart(self) -> None:
        """Forget this job's progress (`--restart`)."""
        with self._lock:
            self._conn.execute("DELETE FROM done WHERE job = ?", (self.job,))
            self._done_before = False
            self._conn.execute(
                "UPDATE jobs SET started_at = ?, finished_at = NULL, summary = NULL WHERE job = ?",
                (time.time(), self.job),
            )

    def finish(self, summary: str) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE jobs SET finished_at = ?, summary = ? WHERE job = ?",
                (time.time(), summary, self.job),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def recent_jobs(path: str | os.PathLike[str] | None = None, limit: int = 5) -> list[dict[str, Any]]:
    """The newest `limit` jobs of the progress file (`path`, `$DUALSAVER_BACKFILL_STATE`, the
    default), read only: stores, shard, start and end, threads done and checkpoints added so
    far. Nothing when there is no file or it cannot be read."""
    chosen = path or os.environ.get(ENV_PATH) or DEFAULT_PATH
    if not Path(chosen).exists():
        return []
    conn = sqlite3.connect(f"file:{chosen}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT j.old, j.new, j.shard, j.started_at, j.finished_at,"
            " (SELECT COUNT(*) FROM done d WHERE d.job = j.job),"
            " (SELECT COALESCE(SUM(checkpoints), 0) FROM done d WHERE d.job = j.job)"
            " FROM jobs j ORDER BY j.started_at DESC LIMIT ?", (limit,)
        ).fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    return [
        {
            "old": r[0], "new": r[1], "shard": r[2], "started_at": r[3], "finished_at": r[4],
            "running": r[4] is None, "threads_done": r[5], "checkpoints_added": r[6],
        }
        for r in rows
    ]


class FleetProgress:
    """A job's progress in the control store, so a shard re-run on another machine resumes
    where it was, and `dualsaver status` shows every shard. The same interface as
    `BackfillState`; `control` is the control store."""

    def __init__(self, control: Any, *, old: str, new: str, shard: tuple[int, int] | None, runner: str = "") -> None:
        self.control = control
        self.job = job_key(old, new, shard)
        self.path = f"control store {control.where}"
        self._meta = {"old": redact(old), "new": redact(new), "shard": f"{shard[0]}/{shard[1]}" if shard else "all",
                      "runner": runner}
        self.control.job_begin(self.job, self._meta, restart=False)

    def is_done(self, thread_id: str) -> bool:
        return bool(self.done_among([thread_id]))

    def done_among(self, thread_ids: Sequence[str]) -> set[str]:
        return self.control.done_filter(self.job, [t for t in thread_ids if not has_surrogate(t)])

    def done_count(self) -> int:
        return self.control.done_count(self.job)

    def mark_done_many(self, thread_ids: list[str]) -> None:
        # The control stores keep ids as UTF-8 text: an id holding a lone surrogate is never
        # marked done (a re-run copies its thread again, which changes nothing).
        kept = [t for t in thread_ids if not has_surrogate(t)]
        if kept:
            self.control.done_add(self.job, kept)

    def update(self, counters: dict[str, Any]) -> None:
        self.control.job_update(self.job, counters)

    def restart(self) -> None:
        self.control.job_begin(self.job, self._meta, restart=True)

    def finish(self, summary: str) -> None:
        self.control.job_update(self.job, {"finished_at": time.time(), "summary": summary})

    def close(self) -> None:
        self.control.close()


def open_progress(
    path: Any, *, old: str, new: str, shard: tuple[int, int] | None, control: str | None = None,
    control_name: str = "default", runner: str = "",
) -> BackfillState | FleetProgress:
    """Where a backfill keeps its progress: the control store when there is one, else the
    local file (`path`, `$DUALSAVER_BACKFILL_STATE`, `.dualsaver/backfill.sqlite`)."""
    if control:
        from dualsaver.control.record import open_control_store

        return FleetProgress(open_control_store(control, name=control_name), old=old, new=new, shard=shard,
                             runner=runner)
    return BackfillState(path, old=old, new=new, shard=shard)
