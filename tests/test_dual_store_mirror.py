"""The secondary's side of a DualStore write: the primary's stored row of each written key,
copied below the API (`ItemCopier.mirror`), so that after live traffic in any phase the two
stores hold one created_at, updated_at, TTL and vector per item and the store check is clean
without a repair. (Each store stamping its own time, a put through both public APIs leaves
every item's timestamps apart: SQLite keeps seconds, PostgreSQL microseconds, and SQLite
resets created_at on every update.) Real stores, read back by the official stores."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dualsaver import DualStore, Phase
from dualsaver.items import check_items, items_for
from tests.store_support import FaultyStore, memory_store, sync_store

NS = ("users", "u1")


def traffic(store: DualStore, ttl: float | None = 30) -> None:
    """Puts (indexed and not, with a TTL), an update, a delete."""
    store.put(NS, "profile", {"text": "likes tea", "n": 1})
    store.put(NS, "plain", {"n": 2}, index=False)
    store.put(("users", "u2"), "expiring", {"text": "short lived"}, ttl=ttl)
    store.put(NS, "profile", {"text": "likes green tea", "n": 2})  # an update: created_at stays old's
    store.put(NS, "gone", {"n": 3})
    store.delete(NS, "gone")


def assert_identical(old, new) -> None:
    report = check_items(old, new)
    assert report.clean, [(d.kind, d.checkpoint_ns, d.checkpoint_id, d.detail) for d in report.divergences]
    a, b = items_for(old), items_for(new)
    keys = [(NS, "profile"), (NS, "plain"), (("users", "u2"), "expiring")]
    left, right = a.get_items(keys), b.get_items(keys)
    for key in keys:  # the times themselves, not only the check's verdict
        assert (right[key].created_at, right[key].updated_at) == (left[key].created_at, left[key].updated_at)
        assert right[key].value == left[key].value
    assert (NS, "gone") not in a.get_items([(NS, "gone")]) | b.get_items([(NS, "gone")])


@pytest.mark.parametrize("phase", [Phase.SHADOW_WRITE, Phase.BACKFILL, Phase.READ_SWITCH])
def test_live_writes_leave_sqlite_and_postgres_identical(tmp_path, pg_url, phase) -> None:
    with sync_store("sqlite", tmp=tmp_path) as old, sync_store("postgres", pg_url=pg_url) as new:
        with DualStore(old, new, phase, journal=tmp_path / "j.sqlite") as store:
            traffic(store)
            store.flush(timeout=30)
            assert not store.secondary_failures
        assert_identical(old, new)
        assert new.get(NS, "profile").value["text"] == "likes green tea"  # the official store reads it


def test_live_writes_leave_postgres_and_the_official_redis_store_identical(tmp_path, pg_url, langgraph_redis_url,
                                                                           redis_stack) -> None:
    # langgraph_redis_url: the server emptied first (the check compares the stores whole)
    with sync_store("postgres", pg_url=pg_url) as old, \
            sync_store("redis", redis_url=redis_stack.url_for("redis")) as new:
        with DualStore(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite") as store:
            traffic(store)
        assert_identical(old, new)
        (best,) = new.search(NS, query="likes green tea", limit=1)  # the copied vector is searchable
        assert best.key == "profile"


def test_a_store_without_an_adapter_takes_the_writes_themselves(tmp_path) -> None:
    """No native adapter on one side: the secondary gets the puts through its API (its own times)."""
    inner = memory_store()
    with sync_store("sqlite", tmp=tmp_path) as old:
        with DualStore(old, FaultyStore(inner), Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite") as store:
            assert not store.lazy_copy_exact
            traffic(store, ttl=None)  # InMemoryStore keeps no TTL
        assert inner.get(NS, "profile").value["text"] == "likes green tea"
        assert inner.get(NS, "gone") is None


KEYS = st.sampled_from([(NS, "a"), (NS, "b"), (("users", "u2"), "a")])
STEP = st.one_of(
    st.tuples(st.just("put"), KEYS, st.integers(0, 3)),
    st.tuples(st.just("delete"), KEYS, st.just(0)),
    st.tuples(st.just("phase"), st.sampled_from(list(Phase)), st.just(0)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, max_size=12))
def test_any_traffic_through_any_phases_leaves_no_divergence(tmp_path, steps) -> None:
    """Whatever the order of puts, deletes and phase changes (no decommission: old then stops
    receiving, by design), the two stores end equal, times included."""
    old, new = memory_store(indexed=False), memory_store(indexed=False)
    with DualStore(old, new, Phase.SHADOW_WRITE, journal=":memory:") as store:
        for action, target, n in steps:
            if action == "phase":
                store.phase = target if target is not Phase.DECOMMISSION else Phase.READ_SWITCH
            elif action == "put":
                store.put(target[0], target[1], {"n": n})
            else:
                store.delete(target[0], target[1])
        store.flush(timeout=30)
        assert not store.secondary_failures
    report = check_items(old, new)
    assert report.clean, [(d.kind, d.checkpoint_id, d.detail) for d in report.divergences]


async def test_a_sync_store_served_in_threads_is_still_copied_exactly(tmp_path, pg_url) -> None:
    """The Agent Server serves an indexed SQLite store through `SyncStoreInThreads`: the item
    adapters see through it, so its copies keep their times."""
    from dualsaver.items import SyncStoreInThreads

    with sync_store("sqlite", tmp=tmp_path) as old, sync_store("postgres", pg_url=pg_url) as new:
        store = DualStore(SyncStoreInThreads(old), new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite")
        assert store.lazy_copy_exact
        await store.aput(NS, "profile", {"text": "likes tea"})
        await store.aput(NS, "profile", {"text": "likes green tea"})
        await store.aclose()
        report = check_items(old, new)
        assert report.clean, [(d.kind, d.detail) for d in report.divergences]


def test_a_clean_store_check_counts_every_item_kind() -> None:
    """The JSON report's counts name the item kinds (zeros included) when items were compared."""
    old, new = memory_store(indexed=False), memory_store(indexed=False)
    old.put(NS, "a", {"n": 1})
    new.put(NS, "b", {"n": 1})
    counts = check_items(old, new).summary["counts"]
    assert counts["item_missing_in_new"] == 1 and counts["item_missing_in_old"] == 1
    assert counts["item_value_mismatch"] == 0 and "item_ttl_mismatch" in counts


@pytest.mark.parametrize("other", ["put", "delete"])
def test_a_write_from_another_replica_during_the_copy_does_not_leave_the_secondary_behind(tmp_path, pg_url, other):
    """Two replicas' DualStores over the same stores. Replica A's copy of its put reads the
    primary's row; before it writes it, replica B's whole write of the same key lands (the
    primary, then B's own copy). A's copy then put the older row back in new (or the deleted
    item), until it read the primary again after writing (`ItemJob._settle`)."""
    import threading

    from dualsaver.items._shells import SyncItemShell

    with sync_store("sqlite", tmp=tmp_path) as old, sync_store("postgres", pg_url=pg_url) as new:
        a = DualStore(old, new, Phase.SHADOW_WRITE, write_behind=False, journal=tmp_path / "a.sqlite")
        b = DualStore(old, new, Phase.SHADOW_WRITE, write_behind=False, journal=tmp_path / "b.sqlite")
        old.put(NS, "profile", {"text": "likes tea"})
        read, held, go = SyncItemShell.get_items, threading.Event(), threading.Event()

        def read_then_wait(self, keys):  # A's copy, the first to read the primary, waits after its read
            found = read(self, keys)
            if self.store is old and not held.is_set():
                held.set()
                go.wait(10)
            return found

        SyncItemShell.get_items = read_then_wait
        try:
            replica_a = threading.Thread(target=lambda: a.put(NS, "profile", {"text": "likes coffee"}))
            replica_a.start()
            assert held.wait(10)
            if other == "put":
                b.put(NS, "profile", {"text": "likes green tea"})
            else:
                b.delete(NS, "profile")
            go.set()
            replica_a.join(10)
        finally:
            SyncItemShell.get_items = read
        a.close()
        b.close()
        report = check_items(old, new)
        assert report.clean, [(d.kind, d.detail) for d in report.divergences]
        expected = None if other == "delete" else {"text": "likes green tea"}
        assert [s.get(NS, "profile") and s.get(NS, "profile").value for s in (old, new)] == [expected, expected]
