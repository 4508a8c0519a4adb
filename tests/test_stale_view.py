"""`StaleView`: what each store missed, as the steered phases ask, over a real journal.

A state machine runs misses (journaled, failing to journal, or still being journaled while
the journal is read), repairs that settle entries, shipping to the fleet's journal held back
(entries waiting in the spool) and resumed, and reads of the journal, in any order. After each step: everything the journal holds open,
every miss being journaled and every miss that could not be journaled is reported stale (a
read steered away from it), and after a read with nothing in flight and everything shipped
the view holds no more than that (what a repair settled is let go, so a replica serving for
days does not keep every thread its secondary ever missed).
"""

from __future__ import annotations

from contextlib import ExitStack

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from dualsaver.control.journal import Journal, JournalEntry, item_entry_fields, item_at
from dualsaver.saver._stale import Either, StaleView

ROLES = ("old", "new")
THREADS = ("t1", "t2", "t3")
ITEMS = ((("docs",), "k1"), (("docs", "sub"), "k2"))
KEYS = st.sampled_from([*THREADS, *ITEMS])
BY_HAND = float("inf")  # the journal read by `refresh` alone, never in the background: steps in order


def entry(role: str, key) -> JournalEntry:
    if isinstance(key, str):
        return JournalEntry("read-switch", role, "put", key, "", "c1", None, "StoreDown")
    at = item_entry_fields(*key)
    return JournalEntry("read-switch", role, "store.put", None, at["checkpoint_ns"], at["checkpoint_id"], None,
                        "StoreDown")


def key_of(e: JournalEntry):
    return e.thread_id if e.thread_id is not None else item_at(e.checkpoint_ns, e.checkpoint_id)


class StaleViewMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.journal = Journal(":memory:")  # the fleet's, in the control store
        self.paused = False  # shipping held back (the control store away): entries wait in the spool
        self.spool: list[JournalEntry] = []
        self.view = StaleView(lambda: {r: self.journal.stale(r) for r in ROLES}, lambda: not self.spool,
                              every=BY_HAND)
        self.in_flight: list[tuple[ExitStack, str, object]] = []
        self.unjournaled: set[tuple[str, object]] = set()

    def noting(self, role: str, key) -> ExitStack:
        stack = ExitStack()
        thread, item = (key, None) if isinstance(key, str) else (None, key)
        stack.enter_context(self.view.noting(role, thread, item))
        return stack

    def record(self, e: JournalEntry) -> None:
        if self.paused:
            self.spool.append(e)
        else:
            self.journal.record(e)

    @rule(role=st.sampled_from(ROLES), key=KEYS)
    def miss(self, role, key):
        with self.noting(role, key):
            self.record(entry(role, key))

    @rule(role=st.sampled_from(ROLES), key=KEYS)
    def miss_not_journaled(self, role, key):
        try:
            with self.noting(role, key):
                raise OSError("the journal's disk is full")
        except OSError:
            self.unjournaled.add((role, key))

    @rule(role=st.sampled_from(ROLES), key=KEYS)
    def begin_miss(self, role, key):
        self.in_flight.append((self.noting(role, key), role, key))

    @rule()
    def end_miss(self):
        if self.in_flight:
            stack, role, key = self.in_flight.pop(0)
            self.record(entry(role, key))
            stack.close()

    @rule(role=st.sampled_from(ROLES), key=KEYS)
    def repair(self, role, key):
        self.journal.mark_repaired([e.id for e in self.journal.pending() if e.store == role and key_of(e) == key])

    @rule(paused=st.booleans())
    def shipping(self, paused):
        self.paused = paused

    @rule()
    def ship(self):
        while self.spool:
            self.journal.record(self.spool.pop(0))

    @rule()
    def read_journal(self):
        self.view.refresh()
        if not self.spool and not self.in_flight:
            for role in ROLES:
                expected = self.open(role) | {k for r, k in self.unjournaled if r == role}
                assert self.reported(role) == expected

    def open(self, role: str) -> set:
        return {key_of(e) for e in self.journal.pending() if e.store == role}

    def reported(self, role: str) -> set:
        return set(self.view.threads(role)) | set(self.view.items(role))

    @invariant()
    def nothing_missed_is_reported_fresh(self):
        for role in ROLES:
            must = self.open(role) | {k for r, k in self.unjournaled if r == role}
            must |= {k for _, r, k in self.in_flight if r == role} | {key_of(e) for e in self.spool if e.store == role}
            threads, items = self.view.threads(role), self.view.items(role)
            for key in must:
                assert key in (threads if isinstance(key, str) else items), (role, key)

    def teardown(self):
        for stack, _, _ in self.in_flight:
            stack.close()
        self.journal.close()


TestStaleView = StaleViewMachine.TestCase
TestStaleView.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_either_answers_as_the_union_without_building_it():
    first, second = {"a": 1.0, "b": 2.0}, frozenset({"b", "c"})
    either = Either(first, second)
    assert all(k in either for k in "abc") and "d" not in either
    assert sorted(either) == ["a", "b", "c"] and len(either) == 3
    assert either and not Either({}, frozenset())
    first["d"] = 3.0  # a view, not a copy: what is noted later counts at once
    assert "d" in either


def test_a_miss_the_journal_never_heard_of_outlives_the_repair_of_a_later_one():
    """The journal's disk was full for one miss of t1; a later miss of t1 was journaled and a
    repair settled that entry. The first is still missing from the store, and nothing in the
    journal will say when it is not: t1 stays stale in this process."""
    journal = Journal(":memory:")
    view = StaleView(lambda: {r: journal.stale(r) for r in ROLES}, lambda: True, every=BY_HAND)
    try:
        with view.noting("new", "t1", None):
            raise OSError("the journal's disk is full")
    except OSError:
        pass
    with view.noting("new", "t1", None):
        journal.record(entry("new", "t1"))
    journal.mark_repaired([e.id for e in journal.pending()])
    view.refresh()
    assert "t1" in view.threads("new") and "t1" not in view.threads("old")
    journal.close()
