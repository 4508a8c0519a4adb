"""Invariant 2 as a state machine: random puts, writes, deletes, failures and phase changes
against a model of what must be readable. No acknowledged write is lost."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from dualsaver import DualSaver, Journal, Phase
from dualsaver.migrate import backfill
from dualsaver.migrate import other, repairs_from_journal, repair, entries_to_mark
from dualsaver.saver.routing import route_for
from tests.faulty import Faulty

THREADS = ["t0", "t1", "t2"]
NAMESPACES = ["", "sub:a"]
ORDER = list(Phase)


class Migration(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        self.old = Faulty(SqliteSaver(conn))
        self.old.inner.setup()
        self.new = Faulty(InMemorySaver())
        self.journal = Journal(":memory:")
        self.saver = DualSaver(self.old, self.new, Phase.SHADOW_WRITE, journal=self.journal, secondary_timeout=None)
        # (thread, ns, checkpoint id) -> the value put there; and its acknowledged writes
        self.acked: dict[tuple[str, str, str], int] = {}
        self.writes: dict[tuple[str, str, str], list[tuple[str, str, int]]] = {}
        self.latest: dict[tuple[str, str], str] = {}
        self.counter = 0

    # --- helpers --------------------------------------------------------------------------

    def _secondary(self) -> Faulty | None:
        role = route_for(self.saver.phase).secondary
        return None if role is None else (self.old if role == "old" else self.new)

    def _repair_journal(self) -> None:
        entries = list(self.journal.pending())
        if not entries:
            return
        source = route_for(self.saver.phase).primary
        target = other(source)
        src, dst = (self.old, self.new) if source == "old" else (self.new, self.old)
        result = repair(src, dst, repairs=repairs_from_journal(entries, source=source), source_side=source)
        assert result.ok, result.summary()
        self.journal.mark_repaired(entries_to_mark(entries, result.repaired_threads, target))

    # --- rules ----------------------------------------------------------------------------

    @rule(thread=st.sampled_from(THREADS), ns=st.sampled_from(NAMESPACES), value=st.integers(0, 1000))
    def put(self, thread: str, ns: str, value: int) -> None:
        cp = empty_checkpoint()
        cp["channel_values"] = {"value": value}
        cp["channel_versions"] = {"value": self.saver.get_next_version(None, None)}
        conf = {"thread_id": thread, "checkpoint_ns": ns}
        if (thread, ns) in self.latest:
            conf["checkpoint_id"] = self.latest[(thread, ns)]
        saved = self.saver.put({"configurable": conf}, cp, {"source": "loop", "step": self.counter}, cp["channel_versions"])
        key = (thread, ns, saved["configurable"]["checkpoint_id"])
        self.acked[key] = value
        self.writes[key] = []
        self.latest[(thread, ns)] = key[2]
        self.counter += 1

    @precondition(lambda self: self.acked)
    @rule(data=st.data(), n=st.integers(1, 3))
    def put_writes(self, data: st.DataObject, n: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.acked)))
        task = f"task-{self.counter}"
        self.counter += 1
        writes = [(f"ch{i}", self.counter * 10 + i) for i in range(n)]
        cfg = {"configurable": {"thread_id": key[0], "checkpoint_ns": key[1], "checkpoint_id": key[2]}}
        self.saver.put_writes(cfg, writes, task, task_path=f"~{task}")
        self.writes[key] += [(task, ch, v) for ch, v in writes]

    @rule(thread=st.sampled_from(THREADS))
    def delete_thread(self, thread: str) -> None:
        self.saver.delete_thread(thread)
        for key in [k for k in self.acked if k[0] == thread]:
            del self.acked[key], self.writes[key]
        for key in [k for k in self.latest if k[0] == thread]:
            del self.latest[key]

    @rule(down=st.booleans())
    def secondary_health(self, down: bool) -> None:
        for store in (self.old, self.new):
            store.mode = None
        secondary = self._secondary()
        if down and secondary is not None:
            secondary.mode = "raise"

    @rule()
    def repair_from_journal(self) -> None:
        self.old.mode = self.new.mode = None
        self._repair_journal()

    @precondition(lambda self: self.saver.phase is not Phase.DECOMMISSION)
    @rule()
    def step_forward(self) -> None:
        target = ORDER[ORDER.index(self.saver.phase) + 1]
        self.old.mode = self.new.mode = None
        self._repair_journal()
        if target is Phase.READ_SWITCH:
            result = backfill(self.old, self.new, resume=False, state_path=":memory:")
            assert result.failed == 0, result.summary()
        self.saver.phase = target

    @precondition(lambda self: self.saver.phase is not Phase.SHADOW_WRITE)
    @rule(data=st.data())
    def step_back(self, data: st.DataObject) -> None:
        current = self.saver.phase
        target = data.draw(st.sampled_from(ORDER[: ORDER.index(current)]))
        self.old.mode = self.new.mode = None
        self._repair_journal()
        if current is Phase.DECOMMISSION:
            # Old missed everything since decommission. The deletes it missed were journaled
            # as tombstones and applied by the repair above; the reverse backfill copies the
            # rest.
            result = backfill(self.new, self.old, resume=False, state_path=":memory:")
            assert result.failed == 0, result.summary()
        self.saver.phase = target

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def every_acknowledged_write_is_readable(self) -> None:
        for (thread, ns, cid), value in self.acked.items():
            cfg = {"configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": cid}}
            got = self.saver.get_tuple(cfg)
            assert got is not None, (self.saver.phase, thread, ns, cid)
            assert got.checkpoint["channel_values"]["value"] == value
            held = [w for w in got.pending_writes if w[0].startswith("task-")]
            assert sorted(held) == sorted(self.writes[(thread, ns, cid)])

    @invariant()
    def deleted_threads_stay_deleted(self) -> None:
        for thread in THREADS:
            if not any(k[0] == thread for k in self.acked):
                assert self.saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}}) is None

    def teardown(self) -> None:
        self.saver.close()
        self.journal.close()


Migration.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_no_acknowledged_write_is_lost = pytest.mark.slow(Migration.TestCase)
