"""The circuit breaker on the secondary: a store that is down costs the caller one timeout,
not one per call.

- closed: calls go to the secondary. A failure or a timeout opens the circuit.
- open: for `cool_down` seconds calls are not sent; each is journaled at once as missed
  (`CircuitOpen`), so a graph turn of several calls waits at most one secondary timeout.
- half-open: after the cool-down, one call at a time is sent as a probe (the others are
  journaled); a probe that succeeds closes the circuit, one that fails opens it again.

A decision object, no I/O: the plans ask `allow()` before a secondary call and report its
outcome. Transitions are logged and counted (`dualsaver.secondary.circuit`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from dualsaver.errors import CircuitOpen
from dualsaver.observability import telemetry

log = structlog.get_logger("dualsaver")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class Breaker:
    def __init__(self, cool_down: float | None = 5.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cool_down = cool_down  # None: never open (every call waits for the store)
        self.clock = clock
        self.state = CLOSED
        self.opened_at = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Whether this secondary call may go to the store now."""
        if self.cool_down is None or self.state == CLOSED:  # the common case, without the lock
            return True
        with self._lock:
            if self.state == OPEN and self.clock() >= self.opened_at + self.cool_down:
                self._move(HALF_OPEN)
            if self.state == CLOSED:
                return True
            if self.state == HALF_OPEN and not self._probing:
                self._probing = True  # this call is the probe
                return True
            return False

    def succeeded(self) -> None:
        if self.state == CLOSED and not self._probing:
            return  # nothing to change (a failure racing this one is ordered after it)
        with self._lock:
            self._probing = False
            if self.state != CLOSED:
                self._move(CLOSED)

    def failed(self) -> None:
        if self.cool_down is None:
            return
        with self._lock:
            self._probing = False
            self.opened_at = self.clock()
            if self.state != OPEN:
                self._move(OPEN)

    def refusal(self) -> CircuitOpen:
        """What a call skipped while the circuit is open is journaled with."""
        return CircuitOpen(f"the secondary failed; not waiting on it for {self.cool_down}s (circuit {self.state})")

    def _move(self, state: str) -> None:
        level = log.info if state == CLOSED else log.warning
        level("secondary_circuit", state=state, previous=self.state, cool_down=self.cool_down)
        telemetry.circuit_transitions.add(1, {"state": state})
        self.state = state
