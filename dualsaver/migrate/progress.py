"""The backfill's durable progress record: which threads of a job are fully copied.

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
from pathlib import Path

from dualsaver.redact import redact

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
        if not self._done_before:
            return False  # a fresh job: nothing to look up (each thread is visited once)
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM done WHERE job = ? AND thread_id = ?", (self.job, thread_id)
            ).fetchone()
        return row is not None

    def done_count(self) -> int:
        with self._lock:
            (n,) = self._conn.execute("SELECT COUNT(*) FROM done WHERE job = ?", (self.job,)).fetchone()
        return int(n)

    def mark_done(self, thread_id: str, checkpoints: int, writes: int) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO done (job, thread_id, checkpoints, writes, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (self.job, thread_id, checkpoints, writes, time.time()),
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
                    [(self.job, t, now) for t in thread_ids],
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
