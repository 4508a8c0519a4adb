"""The control store in PostgreSQL: small `dualsaver_*` tables, created on first use under an
advisory lock (many replicas may start at once) and versioned in `dualsaver_schema`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from dualsaver.control._record_base import DEFAULT_TIMEOUT, ControlStore, PhaseState, ReplicaSeen, Transition, _state
from dualsaver.control.journal import ITEM_OPERATIONS, STALE_WHERE, JournalEntry, Stale, item_entry_fields
from dualsaver.control.phase import Phase
from dualsaver.errors import ConcurrentChange

_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS dualsaver_phase (
    name text PRIMARY KEY,
    phase text NOT NULL,
    version bigint NOT NULL,
    changed_at double precision NOT NULL,
    changed_by text NOT NULL,
    reason text NOT NULL DEFAULT '',
    forced boolean NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS dualsaver_phase_history (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    from_phase text,
    to_phase text NOT NULL,
    version bigint NOT NULL,
    changed_at double precision NOT NULL,
    changed_by text NOT NULL,
    reason text NOT NULL DEFAULT '',
    forced boolean NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS dualsaver_replicas (
    name text NOT NULL,
    replica text NOT NULL,
    phase text NOT NULL,
    seen_at double precision NOT NULL,
    poll_interval double precision NOT NULL,
    PRIMARY KEY (name, replica)
);
CREATE TABLE IF NOT EXISTS dualsaver_status (
    name text NOT NULL,
    kind text NOT NULL,
    value jsonb NOT NULL,
    recorded_at double precision NOT NULL,
    PRIMARY KEY (name, kind)
);
CREATE TABLE IF NOT EXISTS dualsaver_schema (version integer NOT NULL);
"""

# Migrations after the first tables, in order; `dualsaver_schema` holds how many ran.
_PG_MIGRATIONS = [
    """
    ALTER TABLE dualsaver_replicas ADD COLUMN IF NOT EXISTS journal_depth integer NOT NULL DEFAULT 0;
    CREATE TABLE IF NOT EXISTS dualsaver_journal (
        id bigserial PRIMARY KEY,
        name text NOT NULL,
        ts double precision NOT NULL,
        replica text NOT NULL,
        phase text NOT NULL,
        store text NOT NULL,
        operation text NOT NULL,
        thread_id text,
        checkpoint_ns text,
        checkpoint_id text,
        task_id text,
        error text NOT NULL,
        repaired_at double precision,
        repaired_by text
    );
    CREATE INDEX IF NOT EXISTS dualsaver_journal_pending ON dualsaver_journal (name, thread_id)
        WHERE repaired_at IS NULL;
    CREATE TABLE IF NOT EXISTS dualsaver_jobs (
        name text NOT NULL,
        job text NOT NULL,
        meta jsonb NOT NULL,
        counters jsonb NOT NULL DEFAULT '{}',
        started_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        PRIMARY KEY (name, job)
    );
    CREATE TABLE IF NOT EXISTS dualsaver_done (
        name text NOT NULL,
        job text NOT NULL,
        thread_id text NOT NULL,
        PRIMARY KEY (name, job, thread_id)
    );
    """,
]
_ENTRY_COLUMNS = "phase, store, operation, thread_id, checkpoint_ns, checkpoint_id, task_id, error"


class PostgresControlStore(ControlStore):
    """The record in four small tables; one autocommit connection, reopened after a failure."""

    def __init__(self, url: str, name: str = "default", timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(url, name, timeout)

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self._url, autocommit=True, connect_timeout=max(1, int(self.timeout)))

    def _errors(self) -> tuple[tuple[type[BaseException], ...], ...]:
        import psycopg

        unreachable = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
        return (psycopg.errors.UndefinedTable,), unreachable, (psycopg.Error,)

    def _prepare(self, conn: Any) -> None:
        with conn.transaction():
            # Serialize the CREATEs: concurrent CREATE IF NOT EXISTS can collide.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('dualsaver_phase'))")
            conn.execute(_PG_SCHEMA)
            row = conn.execute("SELECT version FROM dualsaver_schema").fetchone()
            done = row[0] if row else 0
            for migration in _PG_MIGRATIONS[done:]:
                conn.execute(migration)
            if row is None:
                conn.execute("INSERT INTO dualsaver_schema (version) VALUES (%s)", (len(_PG_MIGRATIONS),))
            else:
                conn.execute("UPDATE dualsaver_schema SET version = %s", (len(_PG_MIGRATIONS),))

    def read(self) -> PhaseState | None:
        def fn(conn: Any) -> PhaseState | None:
            row = conn.execute(
                "SELECT phase, version, changed_at, changed_by, reason, forced"
                " FROM dualsaver_phase WHERE name = %s",
                (self.name,),
            ).fetchone()
            return _state(*row) if row else None

        return self._run(fn)

    def set_phase(
        self, phase: Phase, *, expected_version: int, by: str, reason: str = "", forced: bool = False
    ) -> PhaseState:
        now = time.time()

        def fn(conn: Any) -> PhaseState:
            with conn.transaction():
                row = conn.execute(
                    "SELECT phase, version FROM dualsaver_phase WHERE name = %s FOR UPDATE",
                    (self.name,),
                ).fetchone()
                current_phase, version = (row[0], int(row[1])) if row else (None, 0)
                if version != expected_version:
                    raise ConcurrentChange(
                        f"the phase changed meanwhile (now {current_phase}, version {version});"
                        " look again with `dualsaver phase show`"
                    )
                new_version = version + 1
                if row:
                    conn.execute(
                        "UPDATE dualsaver_phase SET phase = %s, version = %s, changed_at = %s,"
                        " changed_by = %s, reason = %s, forced = %s WHERE name = %s",
                        (phase.value, new_version, now, by, reason, forced, self.name),
                    )
                else:
                    inserted = conn.execute(
                        "INSERT INTO dualsaver_phase (name, phase, version, changed_at, changed_by,"
                        " reason, forced) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (name) DO NOTHING",
                        (self.name, phase.value, new_version, now, by, reason, forced),
                    )
                    if inserted.rowcount != 1:
                        raise ConcurrentChange(
                            "the phase was set by someone else meanwhile; look again with"
                            " `dualsaver phase show`"
                        )
                conn.execute(
                    "INSERT INTO dualsaver_phase_history (name, from_phase, to_phase, version,"
                    " changed_at, changed_by, reason, forced) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (self.name, current_phase, phase.value, new_version, now, by, reason, forced),
                )
            return PhaseState(phase, new_version, now, by, reason, forced)

        return self._run(fn)

    def history(self, limit: int = 20) -> list[Transition]:
        def fn(conn: Any) -> list[Transition]:
            rows = conn.execute(
                "SELECT from_phase, to_phase, version, changed_at, changed_by, reason, forced"
                " FROM dualsaver_phase_history WHERE name = %s ORDER BY id DESC LIMIT %s",
                (self.name, limit),
            ).fetchall()
            return [Transition(*r) for r in reversed(rows)]

        return self._run(fn) or []

    def heartbeat(self, replica: str, phase: Phase, interval: float, journal_depth: int = 0) -> None:
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO dualsaver_replicas (name, replica, phase, seen_at, poll_interval, journal_depth)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name, replica) DO UPDATE SET"
                " phase = excluded.phase, seen_at = excluded.seen_at,"
                " poll_interval = excluded.poll_interval, journal_depth = excluded.journal_depth",
                (self.name, replica, phase.value, time.time(), interval, journal_depth),
            ),
        )

    def forget_replica(self, replica: str) -> None:
        self._run(
            lambda conn: conn.execute(
                "DELETE FROM dualsaver_replicas WHERE name = %s AND replica = %s", (self.name, replica)
            )
        )

    def replicas(self) -> list[ReplicaSeen]:
        def fn(conn: Any) -> list[ReplicaSeen]:
            rows = conn.execute(
                "SELECT replica, phase, seen_at, poll_interval, journal_depth FROM dualsaver_replicas"
                " WHERE name = %s ORDER BY replica",
                (self.name,),
            ).fetchall()
            return [ReplicaSeen(*r) for r in rows]

        return self._run(fn) or []

    def put_status(self, kind: str, value: dict[str, Any]) -> None:
        from psycopg.types.json import Jsonb

        self._run(
            lambda conn: conn.execute(
                "INSERT INTO dualsaver_status (name, kind, value, recorded_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (name, kind) DO UPDATE SET value = excluded.value,"
                " recorded_at = excluded.recorded_at",
                (self.name, kind, Jsonb(value), time.time()),
            ),
        )

    def get_status(self, kind: str) -> dict[str, Any] | None:
        def fn(conn: Any) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT value FROM dualsaver_status WHERE name = %s AND kind = %s", (self.name, kind)
            ).fetchone()
            return row[0] if row else None

        return self._run(fn)

    def list_status(self, prefix: str) -> dict[str, dict[str, Any]]:
        rows = self._run(lambda conn: conn.execute(
            "SELECT kind, value FROM dualsaver_status WHERE name = %s AND starts_with(kind, %s)", (self.name, prefix)
        ).fetchall())
        return dict(rows or ())

    # -- the fleet's journal -------------------------------------------------------------

    def journal_add(self, entries: Sequence[JournalEntry], replica: str) -> None:
        rows = [(self.name, e.ts or time.time(), replica, *_entry_fields(e)) for e in entries]
        self._run(lambda conn: conn.cursor().executemany(
            f"INSERT INTO dualsaver_journal (name, ts, replica, {_ENTRY_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows
        ))

    def journal_pending(self) -> list[JournalEntry]:
        rows = self._run(lambda conn: conn.execute(
            f"SELECT id, ts, {_ENTRY_COLUMNS} FROM dualsaver_journal"
            " WHERE name = %s AND repaired_at IS NULL ORDER BY id", (self.name,)
        ).fetchall())
        return [JournalEntry.from_row(r) for r in rows or ()]

    def journal_stale(self, store: str) -> Stale:
        where = STALE_WHERE.format(mark="%s", items=", ".join(["%s"] * len(ITEM_OPERATIONS)))
        rows = self._run(lambda conn: conn.execute(
            "SELECT DISTINCT thread_id, checkpoint_ns, checkpoint_id FROM dualsaver_journal"
            f" WHERE name = %s AND {where}",
            (self.name, store, *sorted(ITEM_OPERATIONS)),
        ).fetchall()) or ()
        return Stale.of_rows(rows)

    def journal_missed_delete(self, store: str, thread_id: str) -> bool:
        row = self._run(lambda conn: conn.execute(
            "SELECT 1 FROM dualsaver_journal WHERE name = %s AND repaired_at IS NULL AND thread_id = %s"
            " AND store = %s AND operation = 'delete_thread' LIMIT 1", (self.name, thread_id, store)
        ).fetchone())
        return row is not None

    def journal_missed_item_delete(self, store: str, namespace: Sequence[str], key: str) -> bool:
        at = item_entry_fields(namespace, key)
        row = self._run(lambda conn: conn.execute(
            "SELECT 1 FROM dualsaver_journal WHERE name = %s AND repaired_at IS NULL AND checkpoint_ns = %s"
            " AND checkpoint_id = %s AND store = %s AND operation = 'store.delete' LIMIT 1",
            (self.name, at["checkpoint_ns"], at["checkpoint_id"], store),
        ).fetchone())
        return row is not None

    def journal_claim(self, ids: Sequence[int], by: str) -> int:
        # One statement: a row whose repaired_at another claim set first is not touched.
        cur = self._run(lambda conn: conn.execute(
            "UPDATE dualsaver_journal SET repaired_at = %s, repaired_by = %s"
            " WHERE name = %s AND id = ANY(%s) AND repaired_at IS NULL", (time.time(), by, self.name, list(ids))
        ))
        return max(cur.rowcount, 0) if cur is not None else 0

    # -- backfill progress ---------------------------------------------------------------

    def job_begin(self, job: str, meta: dict[str, Any], restart: bool) -> None:
        from psycopg.types.json import Jsonb

        def fn(conn: Any) -> None:
            with conn.transaction():
                if restart:
                    conn.execute("DELETE FROM dualsaver_done WHERE name = %s AND job = %s", (self.name, job))
                now = time.time()
                conn.execute(
                    "INSERT INTO dualsaver_jobs (name, job, meta, started_at, updated_at) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (name, job) DO UPDATE SET meta = excluded.meta, started_at = excluded.started_at,"
                    " updated_at = excluded.updated_at, counters = '{}'",
                    (self.name, job, Jsonb(meta), now, now),
                )

        self._run(fn)

    def job_update(self, job: str, fields: dict[str, Any]) -> None:
        from psycopg.types.json import Jsonb

        self._run(lambda conn: conn.execute(
            "UPDATE dualsaver_jobs SET counters = counters || %s, updated_at = %s WHERE name = %s AND job = %s",
            (Jsonb(fields), time.time(), self.name, job),
        ))

    def jobs(self) -> list[dict[str, Any]]:
        rows = self._run(lambda conn: conn.execute(
            "SELECT job, meta, counters, started_at, updated_at,"
            " (SELECT COUNT(*) FROM dualsaver_done d WHERE d.name = j.name AND d.job = j.job)"
            " FROM dualsaver_jobs j WHERE name = %s ORDER BY started_at", (self.name,)
        ).fetchall())
        return [
            {"job": j, **meta, **counters, "started_at": s, "updated_at": u, "threads_done": n}
            for j, meta, counters, s, u, n in rows or ()
        ]

    def done_add(self, job: str, thread_ids: Sequence[str]) -> None:
        rows = [(self.name, job, t) for t in thread_ids]
        self._run(lambda conn: conn.cursor().executemany(
            "INSERT INTO dualsaver_done (name, job, thread_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", rows
        ))

    def done_filter(self, job: str, thread_ids: Sequence[str]) -> set[str]:
        rows = self._run(lambda conn: conn.execute(
            "SELECT thread_id FROM dualsaver_done WHERE name = %s AND job = %s AND thread_id = ANY(%s)",
            (self.name, job, list(thread_ids)),
        ).fetchall())
        return {r[0] for r in rows or ()}

    def done_count(self, job: str) -> int:
        row = self._run(lambda conn: conn.execute(
            "SELECT COUNT(*) FROM dualsaver_done WHERE name = %s AND job = %s", (self.name, job)
        ).fetchone())
        return int(row[0]) if row else 0


def _entry_fields(e: JournalEntry) -> tuple[Any, ...]:
    return (e.phase, e.store, e.operation, e.thread_id, e.checkpoint_ns, e.checkpoint_id, e.task_id, e.error)
