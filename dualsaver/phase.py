"""Phases of a migration, the allowed moves between them, and where the phase comes from.

- `Phase`: the four phases, in order.
- `check_transition` / `guard_transition`: the rules for moving between them; the guard adds
  what the migration has recorded (`Evidence`: backfill, check, reverse backfill).
- `phase_source` / `resolve_phase`: where a process's phase comes from, in this order:
  constructor argument, `$DUALSAVER_PHASE`, `migration.phase` in the settings file, the
  shared phase record (polled; see phase_record.py), `shadow-write`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

ENV_VAR = "DUALSAVER_PHASE"


class InvalidPhaseError(ValueError):
    """A phase name that is not one of the four."""


class TransitionError(ValueError):
    """A phase change the migration rules refuse."""


class Phase(str, Enum):
    SHADOW_WRITE = "shadow-write"
    BACKFILL = "backfill"
    READ_SWITCH = "read-switch"
    DECOMMISSION = "decommission"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str | Phase) -> Phase:
        """The phase named by `value`; accepts `read_switch` and any case too."""
        if isinstance(value, Phase):
            return value
        wanted = str(value).strip().lower().replace("_", "-")
        for phase in cls:
            if phase.value == wanted:
                return phase
        valid = ", ".join(p.value for p in cls)
        raise InvalidPhaseError(f"unknown phase {value!r}; valid phases are: {valid}")

    @property
    def index(self) -> int:
        return list(Phase).index(self)

    @property
    def writes_old(self) -> bool:
        """Whether the old store still receives every write in this phase."""
        return self is not Phase.DECOMMISSION


ORDER: tuple[Phase, ...] = tuple(Phase)


class PhaseSource(Protocol):
    """Where a DualSaver reads its phase at the start of every operation."""

    origin: str

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


def is_phase_source(obj: Any) -> bool:
    return callable(getattr(obj, "current", None)) and hasattr(obj, "origin")


def phase_source(argument: Any = None, *, settings: Any = None, start: bool = True) -> PhaseSource:
    """The source of the phase, in this precedence (the first that is set wins):

    1. the constructor argument: a `Phase`, its name, or a phase source object;
    2. the `DUALSAVER_PHASE` environment variable;
    3. `migration.phase` in the settings file (`--config` / `$DUALSAVER_SETTINGS`);
    4. the shared phase record (`phase_record.url` in the settings file, or
       `$DUALSAVER_PHASE_RECORD`), polled every `phase_record.poll_interval` seconds;
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
        from dualsaver import settings as settings_module

        settings = settings_module.current()
    if settings.phase:
        return StaticPhase(settings.phase, f"settings file ({settings.path})")
    if settings.record_url:
        from dualsaver.phase_record import PollingPhaseSource, open_phase_record

        record = open_phase_record(settings.record_url, name=settings.record_name)
        return PollingPhaseSource(record, interval=settings.poll_interval, start=start)
    return StaticPhase(Phase.SHADOW_WRITE, "default")


def resolve_phase(argument: Any = None, *, settings: Any = None) -> tuple[Phase, str]:
    """The phase in force now and where it came from (see `phase_source` for the order)."""
    source = phase_source(argument, settings=settings, start=False)
    try:
        return source.current(), source.origin
    finally:
        if source is not argument and callable(getattr(source, "close", None)):
            source.close()


def check_transition(
    current: Phase, target: Phase, *, reverse_backfill_done: bool = False
) -> None:
    """Raise TransitionError unless moving from `current` to `target` is allowed.

    Forward goes one step at a time. Backward is allowed from any phase in which the old
    store is still written; leaving decommission backward needs a reverse backfill first,
    because old stopped receiving writes there.
    """
    if target is current:
        return
    if target.index > current.index:
        if target.index != current.index + 1:
            nxt = ORDER[current.index + 1]
            raise TransitionError(
                f"cannot jump from {current} to {target}: forward moves go one step at a"
                f" time (next is {nxt})"
            )
        return
    if not current.writes_old and not reverse_backfill_done:
        raise TransitionError(
            f"cannot move back from {current} to {target}: the old store has not been"
            " written since decommission; run a reverse backfill (new -> old) first"
        )


@dataclass(frozen=True)
class Evidence:
    """What the migration has recorded, for the guards (times are Unix seconds).

    `backfill_*` is the last forward backfill (old -> new), `reverse_backfill_*` the last
    reverse one (new -> old), `check_*` the last check; `entered_at` is when the current
    phase was entered. A partial run (one shard, chosen threads) proves nothing for the
    whole store, so it counts as not done (`*_full=False`).
    """

    backfill_at: float | None = None
    backfill_ok: bool = False
    backfill_full: bool = True
    reverse_backfill_at: float | None = None
    reverse_backfill_ok: bool = False
    check_at: float | None = None
    check_clean: bool = False
    check_full: bool = True
    check_divergences: int = 0
    entered_at: float | None = None


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def guard_transition(current: Phase, target: Phase, evidence: Evidence) -> None:
    """Raise TransitionError unless the rules and the recorded evidence allow the move.

    On top of `check_transition`: leaving decommission backward needs a successful reverse
    backfill finished after decommission was entered, and entering read-switch from
    backfill needs a successful full backfill and a clean full check finished after it.
    """
    reverse_done = (
        evidence.reverse_backfill_at is not None
        and evidence.reverse_backfill_ok
        and (evidence.entered_at is None or evidence.reverse_backfill_at >= evidence.entered_at)
    )
    check_transition(current, target, reverse_backfill_done=reverse_done)
    if not (target is Phase.READ_SWITCH and current is Phase.BACKFILL):
        return
    e = evidence
    if e.backfill_at is None:
        raise TransitionError(
            "cannot switch reads: no backfill has been recorded; run `dualsaver backfill`"
            " and then `dualsaver check`"
        )
    if not e.backfill_ok or not e.backfill_full:
        why = "some threads failed" if not e.backfill_ok else "it covered only part of the store"
        raise TransitionError(
            f"cannot switch reads: the last backfill ({_when(e.backfill_at)}) is not complete"
            f" ({why}); run it again until it finishes cleanly, then `dualsaver check`"
        )
    if e.check_at is None or e.check_at < e.backfill_at:
        raise TransitionError(
            f"cannot switch reads: no check has started since the last backfill finished"
            f" ({_when(e.backfill_at)}); run `dualsaver check` and repair what it finds"
        )
    if not e.check_full:
        raise TransitionError(
            f"cannot switch reads: the last check ({_when(e.check_at)}) covered only part of"
            " the store; run a full `dualsaver check`"
        )
    if not e.check_clean:
        raise TransitionError(
            f"cannot switch reads: the last check ({_when(e.check_at)}) found"
            f" {e.check_divergences} divergence(s); run `dualsaver repair`, then"
            " `dualsaver check` again"
        )
