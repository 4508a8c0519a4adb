"""The circuit breaker on the secondary: its states, and a DualSaver that stops waiting on a
failed secondary, probes it once the cool-down is over, and closes when it answers."""

from __future__ import annotations

import time

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dualsaver import DualSaver, Phase
from dualsaver.saver._breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from tests.faulty import Faulty
from tests.graphs import build_agent, config, run_turn
from tests.savers import sync_saver

COOL_DOWN = 10.0


class BreakerMachine(RuleBasedStateMachine):
    """Against a model: what may be sent, and what the breaker's state must be."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.breaker = Breaker(COOL_DOWN, clock=lambda: self.now)
        self.model = CLOSED
        self.opened_at = 0.0
        self.in_flight = 0  # calls sent and not yet answered

    @rule(seconds=st.floats(0, 2 * COOL_DOWN))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def call(self) -> None:
        allowed = self.breaker.allow()
        if self.model == OPEN and self.now >= self.opened_at + COOL_DOWN:
            self.model = HALF_OPEN
        if self.model == CLOSED:
            assert allowed
        elif self.model == OPEN:
            assert not allowed  # a failed store is not waited on during the cool-down
        else:
            assert allowed == (self.in_flight == 0)  # one probe at a time
        self.in_flight += allowed

    @precondition(lambda self: self.in_flight > 0)
    @rule(ok=st.booleans())
    def answer(self, ok: bool) -> None:
        self.in_flight -= 1
        if ok:
            self.breaker.succeeded()
            self.model = CLOSED
        else:
            self.breaker.failed()
            self.model, self.opened_at = OPEN, self.now
        if self.model == OPEN or ok:
            self.in_flight = 0  # what is still in flight is answered by the same outage

    @invariant()
    def same_state(self) -> None:
        if self.breaker.state == OPEN and self.model == HALF_OPEN:
            return  # the breaker moves to half-open lazily, on the next call
        assert self.breaker.state == self.model


TestBreakerStates = BreakerMachine.TestCase


def test_a_failed_secondary_is_skipped_then_probed_then_used_again(tmp_path) -> None:
    with sync_saver("memory") as a, sync_saver("memory") as b:
        new = Faulty(b)
        new.mode = "raise"
        saver = DualSaver(a, new, Phase.BACKFILL, journal=tmp_path / "j.sqlite", circuit_cool_down=2.0)
        app = build_agent(saver)
        run_turn(app, "t1", "alpha")
        assert saver.breakers["new"].state == OPEN
        tried = new.calls.count("put") + new.calls.count("put_writes")  # the first, and any in flight with it
        skipped = [e for e in saver.journal.pending() if e.error.startswith("CircuitOpen")]
        assert skipped and tried + len(skipped) == len(list(saver.journal.pending()))
        new.mode = None  # the secondary is back; the circuit does not know yet
        run_turn(app, "t2", "beta")
        assert b.get_tuple(config("t2")) is None  # still skipped (journaled) during the cool-down
        time.sleep(2.1)
        calls = len(new.calls)
        run_turn(app, "t3", "gamma")
        assert saver.breakers["new"].state == CLOSED  # the probe succeeded
        assert len(new.calls) > calls + 1 and b.get_tuple(config("t3")) == a.get_tuple(config("t3"))
        failures = saver.secondary_failures
        assert failures["put"] + failures["put_writes"] == len(list(saver.journal.pending()))
        saver.close()
