"""DualStore against a model: random puts (with and without an index or a TTL), deletes, gets,
searches (filter, limit, offset, semantic query) and namespace listings through a DualStore
over SQLite -> PostgreSQL (pgvector), across every phase and phase change, each answer
compared with an `InMemoryStore` that received the same calls. Nothing acknowledged is lost:
at the end the read store, and each store still written, holds exactly the model's items.

Stores order an unqueried search differently (insertion order, or `updated_at` at a
second's resolution in SQLite), so a page is compared by what it may hold: its size, and
each item's value; a full search by its set. A semantic search is compared by the scores
of its page (the same deterministic embedding everywhere)."""

from __future__ import annotations

import contextlib
import copy
import math

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from langgraph.store.base import GetOp, PutOp

from dualsaver import DualStore, Phase
from dualsaver.control.phase import ORDER
from dualsaver.control.sources import StaticPhase
from tests.store_support import contents, memory_store, sync_store

NAMESPACES = [("users", "u1"), ("users", "u2"), ("docs",), ("docs", "a", "b")]
PREFIXES = [(), ("users",), ("users", "u1"), ("docs",), ("docs", "a")]
KEYS = ["k1", "k2", "k3"]
TEXTS = ["apple", "banana", "cherry", "apple pie"]

namespaces = st.sampled_from(NAMESPACES)
keys = st.sampled_from(KEYS)
# Every value has a text: a put without one leaves a SQL store's older vector of the key in
# place (the model drops it), a difference of the backends, not of the routing.
values = st.fixed_dictionaries(
    {"n": st.integers(0, 2), "text": st.sampled_from(TEXTS)}, optional={"tags": st.lists(st.sampled_from("xyz"))}
)
indexes = st.sampled_from([None, False, ["text"]])
ttls = st.sampled_from([None, 60.0])


def _page(items: list) -> dict:
    return {(tuple(i.namespace), i.key): i.value for i in items}


class DualStoreMachine(RuleBasedStateMachine):
    pg_url: str
    tmp: object

    def __init__(self) -> None:
        super().__init__()
        self.stack = contextlib.ExitStack()
        old = self.stack.enter_context(sync_store("sqlite", tmp=self.tmp))  # type: ignore[arg-type]
        new = self.stack.enter_context(sync_store("postgres", pg_url=self.pg_url))
        self.source = StaticPhase(Phase.SHADOW_WRITE, "test")
        self.old, self.new = old, new
        self.dual = DualStore(old, new, phase=self.source, journal=":memory:")
        self.model = memory_store()
        self.decommissioned = False  # old has stopped receiving writes
        # After a put with index=False the SQL stores keep the key's older vector (the model
        # does not): semantic searches are compared in the examples without one.
        self.unindexed = False

    # -- phases ----------------------------------------------------------------------

    @precondition(lambda self: self.source.phase is not Phase.DECOMMISSION)
    @rule()
    def forward(self) -> None:
        self.source.phase = ORDER[self.source.phase.index + 1]
        self.decommissioned |= self.source.phase is Phase.DECOMMISSION

    @precondition(lambda self: self.source.phase.index > 0 and self.source.phase.writes_old)
    @rule(data=st.data())
    def back(self, data: st.DataObject) -> None:
        self.source.phase = data.draw(st.sampled_from(ORDER[: self.source.phase.index]))

    # -- writes ------------------------------------------------------------------------

    @rule(namespace=namespaces, key=keys, value=values, index=indexes, ttl=ttls)
    def put(self, namespace, key, value, index, ttl) -> None:
        self.dual.put(namespace, key, value, index=index, ttl=ttl)
        self.unindexed |= index is False
        # The model keeps items forever (60 minutes do not pass here), and its own copy.
        self.model.batch([PutOp(namespace, key, copy.deepcopy(value), index=index, ttl=None)])
        value["n"] = -1  # the caller mutates what it handed over: neither store may see it

    @rule(namespace=namespaces, key=keys)
    def delete(self, namespace, key) -> None:
        self.dual.delete(namespace, key)
        self.model.delete(namespace, key)

    @rule(namespace=namespaces, key=keys, value=values)
    def put_then_get_in_one_batch(self, namespace, key, value) -> None:
        before = self.model.get(namespace, key)
        results = self.dual.batch([GetOp(namespace, key), PutOp(namespace, key, value), GetOp(namespace, key),
                                   PutOp(namespace, key, None), GetOp(namespace, key)])
        assert (results[0] and results[0].value) == (before and before.value)
        assert results[1] is None and results[2].value == value and results[3] is None and results[4] is None
        self.model.delete(namespace, key)

    # -- reads -------------------------------------------------------------------------

    @rule(namespace=namespaces, key=keys)
    def get(self, namespace, key) -> None:
        found, expected = self.dual.get(namespace, key), self.model.get(namespace, key)
        assert (found and found.value) == (expected and expected.value), (namespace, key, found, expected)

    @rule(prefix=st.sampled_from(PREFIXES), n=st.none() | st.integers(0, 2), limit=st.integers(1, 5),
          offset=st.integers(0, 4))
    def search(self, prefix, n, limit, offset) -> None:
        where = None if n is None else {"n": n}
        everything = _page(self.model.search(prefix, filter=where, limit=1000))
        page = self.dual.search(prefix, filter=where, limit=limit, offset=offset)
        assert len(page) == min(limit, max(0, len(everything) - offset))
        assert len(_page(page)) == len(page)  # no item twice
        for item in page:
            assert everything[(tuple(item.namespace), item.key)] == item.value
        assert _page(self.dual.search(prefix, filter=where, limit=1000)) == everything

    @precondition(lambda self: not self.unindexed)
    @rule(prefix=st.sampled_from(PREFIXES), query=st.sampled_from(TEXTS), limit=st.integers(1, 5),
          offset=st.integers(0, 3))
    def semantic_search(self, prefix, query, limit, offset) -> None:
        # The model pads a page with items that have no vector (score None); SQL stores do not.
        answer = self.model.search(prefix, query=query, limit=limit, offset=offset)
        expected = [i for i in answer if i.score is not None]
        found = self.dual.search(prefix, query=query, limit=limit, offset=offset)
        assert len(found) == len(expected), (found, expected)
        for got, want in zip(sorted(found, key=lambda i: -i.score), expected):
            assert math.isclose(got.score, want.score, abs_tol=1e-3), (found, expected)
        model_values = _page(self.model.search(prefix, limit=1000))
        for item in found:
            assert model_values[(tuple(item.namespace), item.key)] == item.value

    @rule(prefix=st.sampled_from(PREFIXES[1:]) | st.none(), depth=st.none() | st.integers(1, 3))
    def list_namespaces(self, prefix, depth) -> None:
        # From the model's items: InMemoryStore still lists a namespace whose items are all gone.
        held = {ns for ns, _ in _page(self.model.search((), limit=10_000))}
        expected = {ns[:depth] for ns in held if prefix is None or ns[: len(prefix)] == prefix}
        found = self.dual.list_namespaces(prefix=prefix, max_depth=depth, limit=1000)
        assert sorted(found) == sorted(expected)

    # -- nothing lost --------------------------------------------------------------------

    @invariant()
    def nothing_failed(self) -> None:
        assert not self.dual.secondary_failures

    def teardown(self) -> None:
        try:
            assert self.dual.flush(timeout=30)
            held = dict(_page(self.model.search((), limit=10_000)))
            assert contents(self.new) == held  # new received every write
            if not self.decommissioned:
                assert contents(self.old) == held  # and old, while it is still written
            self.dual.close()
        finally:
            self.stack.close()


def test_dual_store_answers_like_the_model_in_every_phase(pg_url, tmp_path):
    DualStoreMachine.pg_url, DualStoreMachine.tmp = pg_url, tmp_path
    run_state_machine_as_test(
        DualStoreMachine,
        settings=settings(max_examples=15, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
