"""The DualStore's short way for reads (`_store_plans.answered_alone`): when it names a store,
the batch's plan, run in full, makes exactly that one call of that store and answers with it,
so calling the store directly (as `DualStore.batch` does when nobody traces) is the same.
Checked for every phase's route with and without write-behind (combinations the saver never
makes included), strictness and mixes of operations, gets that miss among them, with the
plan's targets recording what they are asked."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st
from langgraph.store.base import GetOp, ListNamespacesOp, MatchCondition, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore

from dualsaver import DualStore, Phase, sansio
from dualsaver.saver import _store_plans as store_plans
from dualsaver.saver._plans import Context
from dualsaver.saver.routing import route_for

OPS = [GetOp(("u",), "k"), GetOp(("u",), "missing"), SearchOp(("u",)), ListNamespacesOp(), PutOp(("u",), "k", {"a": 1}),
       PutOp(("u",), "gone", None)]


class Recording:
    """A plan's target that answers every call with a value naming it, and keeps the calls."""

    def __init__(self, name: str, calls: list) -> None:
        self.name, self.calls = name, calls

    def __getattr__(self, method: str):
        def call(*args, **kwargs):
            self.calls.append((self.name, method, args))
            if method == "batch":
                return [None if getattr(op, "key", "") == "missing" else f"{self.name}:{i}"
                        for i, op in enumerate(args[0])]
            return None if method in ("submit", "drain", "missed", "tombstone") else False
        return call


def test_a_store_answering_alone_is_the_plans_only_call():
    """Every context (phase's route, write-behind or not, strict or not), the queue behind
    drained or not, and every batch of up to three operations: a small space, walked whole.
    Where the plan asks for a drain first, `drained` says it would return at once."""
    batches = [list(ops) for size in (1, 2, 3) for ops in itertools.product(OPS, repeat=size)]
    for phase, write_behind, strict, drained in itertools.product(Phase, *[(True, False)] * 3):
        ctx = Context(route_for(phase), strict, write_behind=write_behind)
        for ops in batches:
            alone = store_plans.answered_alone(ctx, ops, drained)
            if alone is None:
                continue
            calls: list = []
            targets = sansio.Targets(**{name: Recording(name, calls) for name in
                                        ("old", "new", "behind", "recorder", "copier")})
            answer = sansio.run(store_plans.batch(ctx, list(ops)), targets)
            if calls[0] == ("behind", "drain", ()):
                assert drained, (phase, write_behind, ops)
                calls.pop(0)
            assert calls == [(alone, "batch", (ops,))], (phase, write_behind, ops)
            assert answer == targets.targets[alone].batch(ops)


def test_reads_are_answered_alone_in_every_phase_but_read_switch_when_nothing_waits_behind():
    for phase, write_behind in itertools.product(Phase, (True, False)):
        with DualStore(InMemoryStore(), InMemoryStore(), phase, write_behind=write_behind,
                       journal=":memory:") as store:
            ctx, reader, _ = store._begin()
            read = "old" if phase in (Phase.SHADOW_WRITE, Phase.BACKFILL) else "new"
            assert reader is (None if phase is Phase.READ_SWITCH else getattr(store, read))  # kept with the context
        for ops in ([OPS[0]], [OPS[2]], [OPS[3]], OPS[:4]):
            assert store_plans.answered_alone(ctx, ops, True) == (None if phase is Phase.READ_SWITCH else read)
        assert store_plans.answered_alone(ctx, OPS, True) is None  # holds writes
        behind = phase is Phase.SHADOW_WRITE and write_behind
        assert store_plans.answered_alone(ctx, [OPS[0]], False) == ("old" if behind else None)  # queued writes first


LABELS = st.sampled_from(["a", "b", "c"])
NAMESPACES = st.lists(LABELS, min_size=1, max_size=3).map(tuple)
PATHS = st.lists(st.one_of(LABELS, st.just("*")), max_size=3).map(tuple)
CONDITIONS = st.lists(st.builds(MatchCondition, st.sampled_from(["prefix", "suffix"]), PATHS), max_size=2)


@given(namespace=NAMESPACES, conditions=CONDITIONS, prefix=st.lists(LABELS, max_size=3).map(tuple))
def test_a_read_covers_a_missed_item_exactly_when_the_store_would_answer_with_it(namespace, conditions, prefix):
    """Steering a search or a listing of namespaces (`_store_plans._covers`) asks whether it
    covers an item a store missed a write of; the answer is what a real store (LangGraph's
    InMemoryStore) says when it holds that item alone: the listing names its namespace, the
    search returns it. Wildcards, prefixes and suffixes longer than the namespace included."""
    store = InMemoryStore()
    store.put(namespace, "k", {"v": 1})
    missed = [(namespace, "k")]
    listing = ListNamespacesOp(match_conditions=tuple(conditions) or None)
    assert store_plans._covers(listing, missed) == bool(store.batch([listing])[0])
    search = SearchOp(prefix)
    assert store_plans._covers(search, missed) == bool(store.batch([search])[0])
    assert not store_plans._covers(search, []) and not store_plans._covers(listing, [])
