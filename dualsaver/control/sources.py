"""Where a process's phase comes from, read at the start of every DualSaver operation.

In this precedence (the first that is set wins): the constructor argument, the
`DUALSAVER_PHASE` environment variable, `migration.phase` in the settings file, the shared
phase record (polled by `PollingPhaseSource`), `shadow-write`.

`PollingPhaseSource` reads the record every `interval` seconds in a daemon thread. A replica
that cannot reach the record keeps its last known phase, logs one warning per outage, and
says so in `origin`; it logs again when the record is back.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Any, Protocol

import structlog

from dualsaver.control.phase import Phase
from dualsaver.control.record import ControlStore, PhaseState, RecordUnavailable, open_control_store
from dualsaver.control.settings import current as current_settings

ENV_VAR = "DUALSAVER_PHASE"

log = structlog.get_logger("dualsaver.phase_record")


class PhaseSource(Protocol):
    """Where a DualSaver reads its phase at the start of every operation."""

    @property
    def origin(self) -> str: ...

    def current(self) -> Phase: ...


class StaticPhase:
    """A phase fixed for the life of the process (an argument, the environment, a file)."""

    def __init__(self, phase: Phase | str, origin: str) -> None:
        self.phase = Phase.parse(phase)
        self.origin = origin

    def current(self) -> Phase:
        return self.phase

    def __repr__(self) -> str:
        return f"StaticPhase({self.phase.value!r}, origin={self.origin!r})"


def replica_name() -> str:
    """This process among the fleet's replicas: host, pid and a random tail."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def is_phase_source(obj: Any) -> bool:
    return callable(getattr(obj, "current", None)) and hasattr(obj, "origin")


def phase_source(argument: Any = None, *, settings: Any = None, start: bool = True) -> PhaseSource:
    """The source of the phase, in this precedence (the first that is set wins):

    1. the constructor argument: a `Phase`, its name, or a phase source object;
    2. the `DUALSAVER_PHASE` environment variable;
    3. `migration.phase` in the settings file (`--config` / `$DUALSAVER_SETTINGS`);
    4. the phase record in the control store (`control.url` in the settings file, or
       `$DUALSAVER_CONTROL_URL`), polled every `control.poll_interval` seconds;
    5. `shadow-write`, the first phase.

    A local setting (1-3) wins over the record so one replica can be pinned while the fleet
    follows the record; `dualsaver status` shows which one is in force. With `start=False`
    a record is read once and not polled (for commands that look, not serve).
    """
    if argument is not None:
        if is_phase_source(argument):
            return argument
        return StaticPhase(argument, "argument")
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return StaticPhase(from_env, f"environment ({ENV_VAR})")
    if settings is None:
        settings = current_settings()
    if settings.phase:
        return StaticPhase(settings.phase, f"settings file ({settings.path})")
    if settings.control_url:
        control = open_control_store(settings.control_url, name=settings.control_name)
        return PollingPhaseSource(control, interval=settings.poll_interval, start=start)
    return StaticPhase(Phase.SHADOW_WRITE, "default")


def resolve_phase(argument: Any = None, *, settings: Any = None) -> tuple[Phase, str]:
    """The phase in force now and where it came from (see `phase_source` for the order)."""
    source = phase_source(argument, settings=settings, start=False)
    try:
        return source.current(), source.origin
    finally:
        close = getattr(source, "close", None)
        if source is not argument and callable(close):
            close()


class PollingPhaseSource:
    """A phase source that follows a `ControlStore`, read every `interval` seconds.

    The first read happens in the constructor: if the control store cannot be reached then and no
    `fallback` phase is given, `RecordUnavailable` is raised, because a replica that guesses
    its phase could read from a store the fleet no longer writes. `start=False` makes a
    one-shot source (no thread, no heartbeat) for commands that only look.
    """

    def __init__(
        self,
        control: ControlStore,
        interval: float = 2.0,
        *,
        start: bool = True,
        fallback: Phase | str | None = None,
        replica_id: str | None = None,
    ) -> None:
        self.control = control
        self.interval = float(interval)
        self.replica_id = replica_id or replica_name()
        self._journals: list[Any] = []  # the recorders of the pairs following this source (`follow_journal`)
        self._followers_lock = threading.Lock()
        self._close_when_unfollowed = False  # `release`d by its owner while other pairs still follow it
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

    def follow_journal(self, recorder: Any) -> None:
        """Count `recorder`'s unshipped entries (`unshipped()`, its file `spool_key`) in this
        replica's heartbeat: every DualSaver and DualStore following this source adds its own."""
        with self._followers_lock:
            self._journals.append(recorder)

    def unfollow_journal(self, recorder: Any) -> None:
        with self._followers_lock:
            if recorder in self._journals:
                self._journals.remove(recorder)
            closing = self._close_when_unfollowed and not self._journals
        if closing:
            self.close()

    def release(self) -> None:
        """`close`, once no pair follows this source any more. The pair that made the source
        calls it when it closes: a DualStore given its DualSaver's source (one application,
        one phase) keeps reading the fleet's phase, and heartbeating, after the saver closed."""
        with self._followers_lock:
            self._close_when_unfollowed = True
            closing = not self._journals
        if closing:
            self.close()

    def journal_depth(self) -> int:
        """Entries this replica holds that the fleet's journal does not yet, each journal file
        counted once (a DualSaver and a DualStore built from one settings file share one), and
        asked once."""
        with self._followers_lock:
            by_file = {recorder.spool_key: recorder for recorder in self._journals}
        return sum(recorder.unshipped() for recorder in by_file.values())

    @property
    def reachable(self) -> bool:
        return self.unreachable_since is None

    @property
    def origin(self) -> str:
        base = f"phase record {self.control.where}"
        if self.unreachable_since is not None:
            since = time.strftime("%H:%M:%S", time.localtime(self.unreachable_since))
            return f"{base} (UNREACHABLE since {since}: keeping the last known phase)"
        if self.state is None:
            return f"{base} (no phase set yet: default)"
        return f"{base} (version {self.state.version})"

    def refresh(self) -> Phase | None:
        """Read the record once now; on failure keep the last known phase."""
        try:
            state = self.control.read()
        except RecordUnavailable as exc:
            self._lost(str(exc))
            return self._phase
        self._found(state)
        if self._heartbeats and self._phase is not None:
            try:
                self.control.heartbeat(self.replica_id, self._phase, self.interval, self.journal_depth())
            except RecordUnavailable as exc:
                self._lost(str(exc))
        return self._phase

    def _found(self, state: PhaseState | None) -> None:
        phase = state.phase if state is not None else Phase.SHADOW_WRITE
        if self.unreachable_since is not None:
            log.info(
                "phase_record_reachable_again",
                record=self.control.where,
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
                record=self.control.where,
                keeping_phase=self._phase.value,
                error=error,
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception as exc:  # never let the poller die silently
                self._lost(self.control.describe(exc))

    def close(self) -> None:
        """Stop polling, forget this replica's heartbeat, close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + self.control.timeout + 1)
            self._thread = None
            try:
                self.control.forget_replica(self.replica_id)
            except RecordUnavailable:
                pass
        self.control.close()

    def __enter__(self) -> PollingPhaseSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PollingPhaseSource({self.control.where!r}, phase={self._phase}, every {self.interval}s)"
