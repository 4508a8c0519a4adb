"""Phases of a migration, the allowed moves between them, and where the phase comes from."""

from __future__ import annotations

import os
from enum import Enum

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


def resolve_phase(argument: str | Phase | None = None) -> tuple[Phase, str]:
    """The phase and where it came from: the argument, else $DUALSAVER_PHASE, else shadow-write."""
    if argument is not None:
        return Phase.parse(argument), "argument"
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Phase.parse(from_env), f"environment ({ENV_VAR})"
    return Phase.SHADOW_WRITE, "default"


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
