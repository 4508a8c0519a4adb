"""The routing table: which store answers reads, which is written first, which gets a copy.

Pure data, no I/O. `_plans.py` turns a route into the steps of one operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dualsaver.control.phase import Phase

Role = Literal["old", "new"]


@dataclass(frozen=True, slots=True)
class Route:
    phase: Phase
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


def route_for(phase: Phase) -> Route:
    return ROUTES[phase]
