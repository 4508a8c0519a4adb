"""What a phase record is, whatever store holds it: its state, history and heartbeats,
and the interface each backend implements (`_record_postgres`, `_record_redis`)."""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dualsaver.control.journal import JournalEntry, Stale
from dualsaver.control.phase import Phase
from dualsaver.errors import RecordUnavailable, describe_error
from dualsaver.redact import redact, secrets_of

DEFAULT_TIMEOUT = 5.0  # seconds to connect or answer; a dead record must not hang a replica


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
    journal_depth: int = 0  # entries its journal holds that are not in the control store yet

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
    try:  # $LOGNAME, $USER, ... then the password database: containers often set no $USER
        user = getpass.getuser()
    except (KeyError, OSError):  # a uid with no name (an arbitrary uid in a container)
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


class ControlStore(ABC):
    """One migration's record (`name`) in one store (`where`, redacted)."""

    def __init__(self, url: str, name: str, timeout: float) -> None:
        self._url = url
        self.where = redact(url)
        self.name = name
        self.timeout = timeout
        self._lock = threading.RLock()

    def describe(self, exc: BaseException) -> str:
        """An error of this record's store as text, its password masked."""
        return describe_error(exc, secrets=secrets_of(self._url))

    def unavailable(self, exc: BaseException) -> RecordUnavailable:
        return RecordUnavailable(f"control store {self.where} is unreachable: {self.describe(exc)}")

    def failed(self, exc: BaseException) -> RecordUnavailable:
        return RecordUnavailable(f"control store {self.where} refused the request: {self.describe(exc)}")

    # -- one connection, reopened after a failure (the backends say how) ----------------

    _client: Any = None

    @abstractmethod
    def _connect(self) -> Any:
        """A new client or connection to the record's store."""

    @abstractmethod
    def _errors(self) -> tuple[tuple[type[BaseException], ...], ...]:
        """(errors meaning nothing was ever written, so there is no record yet; errors meaning
        the store is unreachable; errors meaning it refused the request)."""

    def _prepare(self, client: Any) -> None:  # noqa: B027 - a hook: most stores need nothing
        """Before the first use of a connection: create or migrate what the store needs."""

    def _run(self, fn: Any) -> Any:
        """`fn(client)` under the lock; store errors become `RecordUnavailable`."""
        nothing_yet, unreachable, refused = self._errors()
        with self._lock:
            try:
                if self._client is None:
                    self._client, self._prepared = self._connect(), False
                if not self._prepared:
                    self._prepare(self._client)
                    self._prepared = True
                return fn(self._client)
            except nothing_yet:
                return None
            except unreachable as exc:
                self._drop()
                raise self.unavailable(exc) from None
            except refused as exc:  # reachable, but refusing (permissions, NOAUTH, ...)
                raise self.failed(exc) from None

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to save
                self._client.close()
        self._client = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- what a record holds ---------------------------------------------------------------

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
    def heartbeat(self, replica: str, phase: Phase, interval: float, journal_depth: int = 0) -> None: ...

    @abstractmethod
    def forget_replica(self, replica: str) -> None: ...

    @abstractmethod
    def replicas(self) -> list[ReplicaSeen]: ...

    @abstractmethod
    def put_status(self, kind: str, value: dict[str, Any]) -> None: ...

    @abstractmethod
    def get_status(self, kind: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def list_status(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every status whose kind starts with `prefix` (the shards of one job)."""

    # -- the fleet's journal: what every replica's secondary missed --------------------------

    @abstractmethod
    def journal_add(self, entries: Sequence[JournalEntry], replica: str) -> None:
        """Add entries (their ids are the store's own)."""

    @abstractmethod
    def journal_pending(self) -> list[JournalEntry]:
        """Entries not yet repaired, oldest first."""

    @abstractmethod
    def journal_stale(self, store: str) -> Stale:
        """The threads and items `store` missed a write or a delete of, by the entries naming
        it that no repair has settled: one query, however many entries name each."""

    @abstractmethod
    def journal_missed_delete(self, store: str, thread_id: str) -> bool:
        """Whether `store` missed a delete of this thread that no repair has redone."""

    @abstractmethod
    def journal_missed_item_delete(self, store: str, namespace: Sequence[str], key: str) -> bool:
        """Whether `store` missed a delete of this long-term store item that no repair has redone."""

    @abstractmethod
    def journal_claim(self, ids: Sequence[int], by: str) -> int:
        """Mark these entries repaired; an entry is claimed once, whoever else tries at the
        same time. Returns how many this call claimed."""

    # -- backfill progress: the threads each job (pair of stores and shard) has finished ------

    @abstractmethod
    def job_begin(self, job: str, meta: dict[str, Any], restart: bool) -> None:
        """Record that `job` runs (again); `restart` forgets what it had finished."""

    @abstractmethod
    def job_update(self, job: str, fields: dict[str, Any]) -> None:
        """Keep the job's counters and heartbeat (`updated_at`) current."""

    @abstractmethod
    def jobs(self) -> list[dict[str, Any]]:
        """Every job: its meta (pair, shard), counters, and when it started, beat, finished."""

    @abstractmethod
    def done_add(self, job: str, thread_ids: Sequence[str]) -> None: ...

    @abstractmethod
    def done_filter(self, job: str, thread_ids: Sequence[str]) -> set[str]:
        """Which of these threads the job has finished."""

    @abstractmethod
    def done_count(self, job: str) -> int: ...

    def __enter__(self) -> ControlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r}, name={self.name!r})"


def _state(phase: str, version: Any, at: Any, by: str, reason: str | None, forced: Any) -> PhaseState:
    return PhaseState(Phase.parse(phase), int(version), float(at), by, reason or "", bool(forced))



def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
