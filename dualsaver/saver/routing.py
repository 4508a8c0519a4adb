"""The routing table: which store answers reads, which is written first, which gets a copy,
per migration phase, and for the tiered mode.

Pure data, no I/O. `_plans.py` turns a route into the steps of one operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from dualsaver.control.phase import Phase

Role = Literal["old", "new"]


def other(role: Role) -> Role:
    """The other store of the pair."""
    return "new" if role == "old" else "old"


class Mode(str, Enum):
    """A permanent routing that is not a migration phase (it never moves)."""

    TIERED = "tiered"  # TieredSaver: "old" is the durable store, "new" the hot one

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Route:
    phase: Phase | Mode
    read: Role  # answers get_tuple / list
    fallback: Role | None  # where a read miss looks next (and what is lazily copied from)
    primary: Role  # written first; its failure fails the call
    secondary: Role | None  # receives a copy; its failure is journaled, not raised

    @property
    def written(self) -> tuple[Role, ...]:
        """Stores written by this phase, in write order."""
        return (self.primary,) if self.secondary is None else (self.primary, self.secondary)


ROUTES: dict[Phase, Route] = {
    Phase.SHADOW_WRITE: Route(Phase.SHADOW_WRITE, "old", None, "old", "new"),
    Phase.BACKFILL: Route(Phase.BACKFILL, "old", None, "old", "new"),
    Phase.READ_SWITCH: Route(Phase.READ_SWITCH, "new", "old", "new", "old"),
    Phase.DECOMMISSION: Route(Phase.DECOMMISSION, "new", None, "new", None),
}


# Tiered: writes reach the durable store first (its failure fails the call), then the hot
# one; reads ask the hot store and check its answer against the durable one (_tier_plans).
TIERED = Route(Mode.TIERED, "new", "old", "old", "new")


def route_for(phase: Phase) -> Route:
    return ROUTES[phase]
