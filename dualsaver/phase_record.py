"""The shared phase record a fleet follows, and the polling phase source replicas use.

The record lives in PostgreSQL (small `dualsaver_*` tables) or Redis (a few hashes and a
list under one hash tag, so a Redis Cluster keeps them on one node). It holds:

- the phase, a version number, and who changed it, when, why, and whether it was forced;
- the history of every transition;
- heartbeats: which replica saw which phase when (so `phase set --wait` knows the fleet
  followed, and `phase set` refuses a step while replicas still lag one behind);
- the migration status (last backfill, last check): see `migration_status.py`.

A phase change is a compare-and-set on the version: two operators racing cannot both win.

`PollingPhaseSource` reads the record every `interval` seconds in a daemon thread. A replica
that cannot reach the record keeps its last known phase, logs one warning per outage, and
says so in `origin`; it logs again when the record is back.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from dualsaver.phase import Phase
from dualsaver.stores.urls import parse_store_url, redact, scrub

log = structlog.get_logger("dualsaver.phase_record")

DEFAULT_TIMEOUT = 5.0  # seconds to connect or answer; a dead record must not hang a replica


class RecordUnavailable(ConnectionError):
    """The record cannot be reached. The message names the redacted URL, never a password."""


class ConcurrentChange(RuntimeError):
    """Someone else changed the phase between our read and our write."""


@dataclass(frozen=True)
class PhaseState:
    phase: Phase
    version: int
    changed_at: float
    changed_by: str
    reason: str = ""
    forced: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "phase": self.phase.value}


@dataclass(frozen=True)
class Transition:
    from_phase: str | None
    to_phase: str
    version: int
    changed_at: float
    changed_by: str
    reason: str = ""
    forced: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReplicaSeen:
    replica: str
    phase: str
    seen_at: float
    interval: float

    def alive(self, now: float | None = None) -> bool:
        """Seen recently enough to count: three polls, and never less than five seconds."""
        now = time.time() if now is None else now
        return now - self.seen_at <= max(3 * self.interval, self.interval + 5.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def who() -> str:
    """Who is changing the phase: $DUALSAVER_OPERATOR, else user@host."""
    explicit = os.environ.get("DUALSAVER_OPERATOR")
    if explicit:
        return explicit
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"
    return f"{user}@{socket.gethostname()}"


class PhaseRecord(ABC):
    """One migration's record (`name`) in one store (`where`, redacted)."""

    def __init__(self, url: str, name: str, timeout: float) -> None:
        self._url = url
        self.where = redact(url)
        self.name = name
        self.timeout = timeout
        self._lock = threading.RLock()

    def unavailable(self, exc: BaseException) -> RecordUnavailable:
        detail = scrub(f"{type(exc).__name__}: {exc}", self._url)
        return RecordUnavailable(f"phase record {self.where} is unreachable: {detail}")

    def failed(self, exc: BaseException) -> RecordUnavailable:
        detail = scrub(f"{type(exc).__name__}: {exc}", self._url)
        return RecordUnavailable(f"phase record {self.where} refused the request: {detail}")

    @abstractmethod
    def read(self) -> PhaseState | None:
        """The phase as recorded, or None when no phase was ever set."""

    @abstractmethod
    def set_phase(
        self, phase: Phase, *, expected_version: int, by: str, reason: str = "", forced: bool = False
    ) -> PhaseState:
        """Set the phase if the record is still at `expected_version` (0: never set)."""

    @abstractmethod
    def history(self, limit: int = 20) -> list[Transition]:
        """The last `limit` transitions, oldest first."""

    @abstractmethod
    def heartbeat(self, replica: str, phase: Phase, interval: float) -> None: ...

    @abstractmethod
    def forget_replica(self, replica: str) -> None: ...

    @abstractmethod
    def replicas(self) -> list[ReplicaSeen]: ...

    @abstractmethod
    def put_status(self, kind: str, value: dict[str, Any]) -> None: ...

    @abstractmethod
    def get_status(self, kind: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> PhaseRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r}, name={self.name!r})"


def _state(phase: str, version: Any, at: Any, by: str, reason: str | None, forced: Any) -> PhaseState:
    return PhaseState(Phase.parse(phase), int(version), float(at), by, reason or "", bool(forced))


# --------------------------------------------------------------------------- PostgreSQL

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
        self._conn: Any = None
        self._ready = False

    def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=max(1, int(self.timeout))
            )
            self._ready = False
        return self._conn

    def _run(self, fn: Any, *, write: bool = False) -> Any:
        import psycopg

        with self._lock:
            try:
                conn = self._connection()
                if write and not self._ready:
                    with conn.transaction():
                        # Serialize the CREATEs: concurrent CREATE IF NOT EXISTS can collide.
                        conn.execute("SELECT pg_advisory_xact_lock(hashtext('dualsaver_phase'))")
                        conn.execute(_PG_SCHEMA)
                    self._ready = True
                return fn(conn)
            except psycopg.errors.UndefinedTable:
                return None  # nothing was ever written: no record yet
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                self._drop()
                raise self.unavailable(exc) from None
            except psycopg.Error as exc:  # reachable, but refusing (permissions, ...)
                raise self.failed(exc) from None

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        self._conn = None

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

    def close(self) -> None:
        with self._lock:
            self._drop()


# --------------------------------------------------------------------------- Redis

# Compare-and-set: the version must still be the expected one; then the hash and the
# history change together (a script runs atomically, and every key shares a hash tag).
_SET_PHASE = """
local v = redis.call('HGET', KEYS[1], 'version') or '0'
if v ~= ARGV[1] then return {0, v, redis.call('HGET', KEYS[1], 'phase') or ''} end
redis.call('HSET', KEYS[1], 'phase', ARGV[2], 'version', ARGV[3], 'changed_at', ARGV[4],
           'changed_by', ARGV[5], 'reason', ARGV[6], 'forced', ARGV[7])
redis.call('RPUSH', KEYS[2], ARGV[8])
return {1, ARGV[3], ARGV[2]}
"""


class RedisPhaseRecord(PhaseRecord):
    """The record under `dualsaver:{name}:*`: standalone Redis or Redis Cluster."""

    def __init__(self, url: str, name: str = "default", timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(url, name, timeout)
        from dualsaver.stores.redis_url import parse_redis_url

        try:
            self._target = parse_redis_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        except ValueError as exc:
            raise RecordUnavailable(scrub(str(exc), url)) from None
        self._client: Any = None
        tag = "{" + name + "}"
        self.keys = {
            "phase": f"dualsaver:{tag}:phase",
            "history": f"dualsaver:{tag}:history",
            "replicas": f"dualsaver:{tag}:replicas",
            "status": f"dualsaver:{tag}:status",
        }

    def _run(self, fn: Any) -> Any:
        import redis

        with self._lock:
            try:
                if self._client is None:
                    from dualsaver.stores.redis_url import sync_client

                    self._client = sync_client(self._target)
                return fn(self._client)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._drop()
                raise self.unavailable(exc) from None
            except (redis.exceptions.ClusterError, redis.exceptions.RedisClusterException) as exc:
                self._drop()  # no node of the cluster answers
                raise self.unavailable(exc) from None
            except redis.RedisError as exc:  # reachable, but refusing (NOAUTH, wrong type, ...)
                raise self.failed(exc) from None

    def _drop(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        self._client = None

    def read(self) -> PhaseState | None:
        raw = self._run(lambda r: r.hgetall(self.keys["phase"]))
        if not raw:
            return None
        h = {k.decode(): v.decode() for k, v in raw.items()}
        return _state(h["phase"], h["version"], h["changed_at"], h["changed_by"], h.get("reason"), h.get("forced") == "1")

    def set_phase(
        self, phase: Phase, *, expected_version: int, by: str, reason: str = "", forced: bool = False
    ) -> PhaseState:
        now = time.time()
        new_version = expected_version + 1
        entry = {
            "from_phase": None,
            "to_phase": phase.value,
            "version": new_version,
            "changed_at": now,
            "changed_by": by,
            "reason": reason,
            "forced": forced,
        }
        current = self.read()
        entry["from_phase"] = previous = current.phase.value if current else None
        if current is not None and current.version != expected_version or (
            current is None and expected_version != 0
        ):
            raise ConcurrentChange(
                f"the phase changed meanwhile (now {previous}, version"
                f" {current.version if current else 0}); look again with `dualsaver phase show`"
            )
        args = [
            str(expected_version), phase.value, str(new_version), repr(now), by, reason,
            "1" if forced else "0", json.dumps(entry),
        ]
        ok, version, now_phase = self._run(
            lambda r: r.eval(_SET_PHASE, 2, self.keys["phase"], self.keys["history"], *args)
        )
        if int(ok) != 1:
            raise ConcurrentChange(
                f"the phase changed meanwhile (now {_text(now_phase)}, version {_text(version)});"
                " look again with `dualsaver phase show`"
            )
        return PhaseState(phase, new_version, now, by, reason, forced)

    def history(self, limit: int = 20) -> list[Transition]:
        rows = self._run(lambda r: r.lrange(self.keys["history"], -limit, -1))
        return [Transition(**json.loads(row)) for row in rows or []]

    def heartbeat(self, replica: str, phase: Phase, interval: float) -> None:
        value = json.dumps({"phase": phase.value, "seen_at": time.time(), "interval": interval})
        self._run(lambda r: r.hset(self.keys["replicas"], replica, value))

    def forget_replica(self, replica: str) -> None:
        self._run(lambda r: r.hdel(self.keys["replicas"], replica))

    def replicas(self) -> list[ReplicaSeen]:
        raw = self._run(lambda r: r.hgetall(self.keys["replicas"])) or {}
        seen = []
        for key, value in raw.items():
            v = json.loads(value)
            seen.append(ReplicaSeen(_text(key), v["phase"], float(v["seen_at"]), float(v["interval"])))
        return sorted(seen, key=lambda s: s.replica)

    def put_status(self, kind: str, value: dict[str, Any]) -> None:
        payload = json.dumps({"value": value, "recorded_at": time.time()})
        self._run(lambda r: r.hset(self.keys["status"], kind, payload))

    def get_status(self, kind: str) -> dict[str, Any] | None:
        raw = self._run(lambda r: r.hget(self.keys["status"], kind))
        return json.loads(raw)["value"] if raw else None

    def close(self) -> None:
        with self._lock:
            self._drop()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_phase_record(url: str, *, name: str = "default", timeout: float = DEFAULT_TIMEOUT) -> PhaseRecord:
    """The record at `url` (postgresql://... or redis://, rediss://, redis+cluster://...).

    Opening connects to nothing: the first read does, so a replica can start (with a
    fallback) while the record is down.
    """
    try:
        kind = parse_store_url(url).kind
    except Exception as exc:
        raise RecordUnavailable(scrub(str(exc), url)) from None
    if kind == "postgres":
        return PostgresPhaseRecord(url, name, timeout)
    if kind == "redis":
        return RedisPhaseRecord(url, name, timeout)
    raise RecordUnavailable(
        f"phase record {redact(url)}: a phase record lives in PostgreSQL or Redis"
        " (postgresql://..., redis://..., redis+cluster://...)"
    )


# --------------------------------------------------------------------------- polling


class PollingPhaseSource:
    """A phase source that follows a `PhaseRecord`, read every `interval` seconds.

    The first read happens in the constructor: if the record cannot be reached then and no
    `fallback` phase is given, `RecordUnavailable` is raised, because a replica that guesses
    its phase could read from a store the fleet no longer writes. `start=False` makes a
    one-shot source (no thread, no heartbeat) for commands that only look.
    """

    def __init__(
        self,
        record: PhaseRecord,
        interval: float = 2.0,
        *,
        start: bool = True,
        fallback: Phase | str | None = None,
        replica_id: str | None = None,
    ) -> None:
        self.record = record
        self.interval = float(interval)
        self.replica_id = replica_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.state: PhaseState | None = None
        self.last_error: str | None = None
        self.unreachable_since: float | None = None
        self._heartbeats = start
        self._phase: Phase | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()
        if self._phase is None:  # the record is unreachable at start
            if fallback is None:
                raise RecordUnavailable(
                    f"{self.last_error}; no last known phase to keep (pass a fallback phase,"
                    " or set DUALSAVER_PHASE to pin this replica)"
                )
            self._phase = Phase.parse(fallback)
        if start:
            self._thread = threading.Thread(
                target=self._loop, name="dualsaver-phase-poll", daemon=True
            )
            self._thread.start()

    def current(self) -> Phase:
        assert self._phase is not None
        return self._phase

    @property
    def reachable(self) -> bool:
        return self.unreachable_since is None

    @property
    def origin(self) -> str:
        base = f"phase record {self.record.where}"
        if self.unreachable_since is not None:
            since = time.strftime("%H:%M:%S", time.localtime(self.unreachable_since))
            return f"{base} (UNREACHABLE since {since}: keeping the last known phase)"
        if self.state is None:
            return f"{base} (no phase set yet: default)"
        return f"{base} (version {self.state.version})"

    def refresh(self) -> Phase | None:
        """Read the record once now; on failure keep the last known phase."""
        try:
            state = self.record.read()
        except RecordUnavailable as exc:
            self._lost(str(exc))
            return self._phase
        self._found(state)
        if self._heartbeats and self._phase is not None:
            try:
                self.record.heartbeat(self.replica_id, self._phase, self.interval)
            except RecordUnavailable as exc:
                self._lost(str(exc))
        return self._phase

    def _found(self, state: PhaseState | None) -> None:
        phase = state.phase if state is not None else Phase.SHADOW_WRITE
        if self.unreachable_since is not None:
            log.info(
                "phase_record_reachable_again",
                record=self.record.where,
                phase=phase.value,
                outage_seconds=round(time.time() - self.unreachable_since, 3),
            )
            self.unreachable_since = None
            self.last_error = None
        previous, self._phase, self.state = self._phase, phase, state
        if previous is not None and previous is not phase:
            log.info(
                "phase_changed",
                phase=phase.value,
                previous=previous.value,
                version=state.version if state else 0,
                changed_by=state.changed_by if state else None,
                reason=state.reason if state else None,
                forced=state.forced if state else False,
                origin=self.origin,
            )

    def _lost(self, error: str) -> None:
        self.last_error = error
        if self.unreachable_since is not None:
            return  # one warning per outage
        self.unreachable_since = time.time()
        if self._phase is not None:
            log.warning(
                "phase_record_unreachable",
                record=self.record.where,
                keeping_phase=self._phase.value,
                error=error,
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception as exc:  # never let the poller die silently
                self._lost(f"{type(exc).__name__}: {scrub(str(exc), self.record._url)}")

    def close(self) -> None:
        """Stop polling, forget this replica's heartbeat, close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + self.record.timeout + 1)
            self._thread = None
            try:
                self.record.forget_replica(self.replica_id)
            except RecordUnavailable:
                pass
        self.record.close()

    def __enter__(self) -> PollingPhaseSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PollingPhaseSource({self.record.where!r}, phase={self._phase}, every {self.interval}s)"
