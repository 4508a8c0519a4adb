"""The phase record in PostgreSQL: four small `dualsaver_*` tables."""

from __future__ import annotations

import time
from typing import Any

from dualsaver.control._record_base import DEFAULT_TIMEOUT, PhaseRecord, PhaseState, ReplicaSeen, Transition, _state
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
"""


class PostgresPhaseRecord(PhaseRecord):
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

        return self._run(fn, write=True)

    def history(self, limit: int = 20) -> list[Transition]:
        def fn(conn: Any) -> list[Transition]:
            rows = conn.execute(
                "SELECT from_phase, to_phase, version, changed_at, changed_by, reason, forced"
                " FROM dualsaver_phase_history WHERE name = %s ORDER BY id DESC LIMIT %s",
                (self.name, limit),
            ).fetchall()
            return [Transition(*r) for r in reversed(rows)]

        return self._run(fn) or []

    def heartbeat(self, replica: str, phase: Phase, interval: float) -> None:
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO dualsaver_replicas (name, replica, phase, seen_at, poll_interval)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name, replica) DO UPDATE SET"
                " phase = excluded.phase, seen_at = excluded.seen_at,"
                " poll_interval = excluded.poll_interval",
                (self.name, replica, phase.value, time.time(), interval),
            ),
            write=True,
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
                "SELECT replica, phase, seen_at, poll_interval FROM dualsaver_replicas"
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
            write=True,
        )

    def get_status(self, kind: str) -> dict[str, Any] | None:
        def fn(conn: Any) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT value FROM dualsaver_status WHERE name = %s AND kind = %s", (self.name, kind)
            ).fetchone()
            return row[0] if row else None

        return self._run(fn)



