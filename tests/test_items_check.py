"""The check of items names every planted divergence with its kind, and nothing else; a
corrupted source row is reported by namespace and key while every other item copies."""

from __future__ import annotations

import asyncio
import json
from array import array

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dualsaver.checker.findings import (
    ITEM_MISSING_IN_NEW, ITEM_MISSING_IN_OLD, ITEM_TIMESTAMP_MISMATCH, ITEM_TTL_MISMATCH, ITEM_UNREADABLE,
    ITEM_VALUE_MISMATCH, ITEM_VECTOR_MISMATCH,
)
from dualsaver.items import (
    abackfill_items, acheck_items, aopen_item_store, backfill_items, check_items, copy_items, open_item_store,
)
from dualsaver.report import to_html, to_markdown
from tests.items_support import INDEX

COUNT = 14


def _twins():
    old = open_item_store("sqlite:///:memory:", index=INDEX)
    new = open_item_store("sqlite:///:memory:", index=INDEX)
    return old, new


def _fill(store):
    for i in range(COUNT):
        store.put(("team", f"t{i % 3}"), f"k{i:02d}", {"text": f"note {i} apple", "n": i}, ttl=30 if i % 2 else None)


def _where(i):
    return ("team", f"t{i % 3}"), f"k{i:02d}"


def _plant(kind, i, old, new):
    ns, key = _where(i)
    prefix = ".".join(ns)
    if kind == ITEM_MISSING_IN_NEW:
        new.delete(ns, key)
    elif kind == ITEM_MISSING_IN_OLD:
        old.delete(ns, key)
    elif kind == ITEM_VALUE_MISMATCH:  # by meaning: the same JSON written differently is no divergence
        new.conn.execute("UPDATE store SET value = ? WHERE prefix = ? AND key = ?",
                         (json.dumps({"n": i, "text": f"note {i} apple!"}, indent=1), prefix, key))
    elif kind == ITEM_TIMESTAMP_MISMATCH:
        new.conn.execute("UPDATE store SET created_at = '2001-01-01 00:00:00' WHERE prefix = ? AND key = ?",
                         (prefix, key))
    elif kind == ITEM_TTL_MISMATCH:
        new.conn.execute("UPDATE store SET expires_at = '2999-01-01 00:00:00', ttl_minutes = 7"
                         " WHERE prefix = ? AND key = ?", (prefix, key))
    elif kind == ITEM_VECTOR_MISMATCH:
        new.conn.execute("UPDATE store_vectors SET embedding = ? WHERE prefix = ? AND key = ?",
                         (array("f", [0.5] * INDEX["dims"]).tobytes(), prefix, key))
    elif kind == ITEM_UNREADABLE:
        old.conn.execute("UPDATE store SET value = '{not json' WHERE prefix = ? AND key = ?", (prefix, key))


KINDS = [ITEM_MISSING_IN_NEW, ITEM_MISSING_IN_OLD, ITEM_VALUE_MISMATCH, ITEM_TIMESTAMP_MISMATCH,
         ITEM_TTL_MISMATCH, ITEM_VECTOR_MISMATCH, ITEM_UNREADABLE]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.integers(0, COUNT - 1), st.sampled_from(KINDS), max_size=6))
def test_the_check_names_every_planted_divergence_and_nothing_else(plantings):
    old_cm, new_cm = _twins()
    with old_cm as old, new_cm as new:
        _fill(old)
        assert backfill_items(old, new, state_path=":memory:").items == COUNT
        # the same JSON text in another form is not a divergence
        same = json.dumps({"n": 0, "text": "note 0 apple"})
        new.conn.execute("UPDATE store SET value = ? WHERE key = 'k00'", (same,))
        for i, kind in plantings.items():
            _plant(kind, i, old, new)
        report = check_items(old, new)
        found = {(d.kind, d.checkpoint_ns, d.checkpoint_id) for d in report.divergences}
        wanted = {(kind, json.dumps(list(_where(i)[0])), _where(i)[1]) for i, kind in plantings.items()}
        assert found == wanted
        assert report.clean == (not plantings)
        assert report.affected_threads() == []
        for render in (to_markdown, to_html):  # the report shows the item kinds it found
            text = render(report)
            assert "store item" in text


def test_expired_items_are_not_divergences():
    old_cm, new_cm = _twins()
    with old_cm as old, new_cm as new:
        _fill(old)
        backfill_items(old, new, state_path=":memory:")
        old.conn.execute("UPDATE store SET expires_at = '2001-01-01 00:00:00' WHERE key = 'k01'")
        new.delete(("team", "t1"), "k01")
        assert check_items(old, new).clean


@pytest.mark.parametrize(("apart", "reported"), [(0, False), (2, False), (4, False), (60, True), (-60, True)])
def test_expiries_a_few_seconds_apart_are_one(apart, reported):
    """Each store renews a TTL a read asked for by its own clock, the secondary after the
    primary and SQLite in whole seconds: a few seconds apart is no divergence (at a 1 s
    tolerance, one item in twenty read during shadow-write was reported); a renewal one store
    missed, a minute apart, is."""
    old_cm, new_cm = _twins()
    with old_cm as old, new_cm as new:
        old.put(("team",), "k", {"text": "note"}, ttl=30)
        backfill_items(old, new, state_path=":memory:")
        new.conn.execute("UPDATE store SET expires_at = DATETIME(expires_at, ?)", (f"{apart:+d} seconds",))
        report = check_items(old, new)
        assert report.summary["counts"][ITEM_TTL_MISMATCH] == (1 if reported else 0), report.summary["counts"]


def test_a_corrupted_source_row_is_reported_by_namespace_and_key_and_the_others_copy():
    old_cm, new_cm = _twins()
    with old_cm as old, new_cm as new:
        _fill(old)
        old.conn.execute("UPDATE store SET value = 'not json at all' WHERE key = 'k04'")
        result = backfill_items(old, new, state_path=":memory:")
        assert (result.items, result.bad) == (COUNT - 1, 1)
        assert result.bad_items[0]["namespace"] == ["team", "t1"] and result.bad_items[0]["key"] == "k04"
        assert "namespace ['team', 't1'], key k04" in result.summary()
        report = check_items(old, new)
        assert [(d.kind, d.checkpoint_id, d.detail["side"]) for d in report.divergences] == [
            (ITEM_UNREADABLE, "k04", "old")]


def test_a_value_the_target_refuses_is_reported_and_its_batch_still_copies(pg_url):
    old_cm = open_item_store("sqlite:///:memory:", index=INDEX)
    with old_cm as old, open_item_store(pg_url, index=INDEX) as new:
        _fill(old)
        # JSON that SQLite keeps and PostgreSQL's jsonb refuses (a NUL character)
        old.conn.execute("UPDATE store SET value = ? WHERE key = 'k05'", ('{"text": "a\\u0000b"}',))
        result = backfill_items(old, new, state_path=":memory:")
        assert (result.items, result.bad) == (COUNT - 1, 1)
        assert (result.bad_items[0]["namespace"], result.bad_items[0]["key"]) == (["team", "t2"], "k05")
        report = check_items(old, new)
        assert [(d.kind, d.checkpoint_id) for d in report.divergences] == [(ITEM_MISSING_IN_NEW, "k05")]


def test_repair_from_a_report_makes_the_check_clean():
    old_cm, new_cm = _twins()
    with old_cm as old, new_cm as new:
        _fill(old)
        backfill_items(old, new, state_path=":memory:")
        for i, kind in enumerate(KINDS[:-1]):
            _plant(kind, i, old, new)
        report = check_items(old, new)
        assert len(report.divergences) == len(KINDS) - 1
        result = copy_items(old, new, report.affected_items(), replace=True, delete_missing=True)
        assert result.bad == 0
        assert check_items(old, new).clean


LONE = [(("team", "t\udc80"), "in-namespace", {"text": "a"}), (("team", "t1"), "in-key-\ud800", {"text": "b"}),
        (("team", "t1"), "in-value", {"text": "c \ud800 d"})]  # what only the in-memory store can hold


def _target_url(target, request, tmp_path):
    if target == "sqlite":
        return f"sqlite:///{tmp_path}/target.sqlite"
    return request.getfixturevalue({"postgres": "pg_url", "redis": "langgraph_redis_url"}[target])


def _plant_lone(store):
    store.put(("team", "t1"), "plain", {"text": "fine"})
    for namespace, key, value in LONE:
        store.put(namespace, key, value)


def _backfilled_with_lone(result, new, target):
    assert (result.items, result.bad) == (1, 3)
    if target == "redis":  # a refused item leaves nothing behind (Redis runs the rest of a MULTI)
        assert sorted(k.split(b":")[0] for k in new._redis.keys("*")) == [b"store", b"store_vectors"]


def _lone_missing(report):
    assert sorted((d.kind, d.checkpoint_id) for d in report.divergences) == sorted(
        (ITEM_MISSING_IN_NEW, key) for _, key, _ in LONE)


@pytest.mark.parametrize("target", ["sqlite", "postgres", "redis"])
def test_items_a_text_store_cannot_hold_are_reported_missing_not_a_crash(target, request, tmp_path):
    """The in-memory store holds a lone surrogate in a namespace, a key or a value; a store
    that keeps UTF-8 cannot. The backfill names each as bad, copies the rest once and leaves no
    part of a refused item behind; the check and the repair, which ask the target for them by
    key, report them missing instead of failing to encode."""
    with open_item_store("memory://", index=INDEX) as old, open_item_store(
            _target_url(target, request, tmp_path), index=INDEX) as new:
        _plant_lone(old)
        _backfilled_with_lone(backfill_items(old, new, state_path=":memory:"), new, target)
        report = check_items(old, new)
        _lone_missing(report)
        repaired = copy_items(old, new, report.affected_items(), replace=True, delete_missing=True)
        assert (repaired.items, repaired.bad) == (0, 3)
        assert [(i.namespace, i.key) for i in new.search(("team",))] == [(("team", "t1"), "plain")]


@pytest.mark.parametrize("target", ["postgres", "redis"])
def test_the_async_twins_report_them_alike(target, request, tmp_path):
    url = _target_url(target, request, tmp_path)

    async def scenario():
        async with aopen_item_store("memory://", index=INDEX) as old, aopen_item_store(url, index=INDEX) as new:
            await asyncio.to_thread(_plant_lone, old)
            result = await abackfill_items(old, new, state_path=":memory:")
            report = await acheck_items(old, new)
            return result, report

    result, report = asyncio.run(scenario())
    with open_item_store(url) as new:
        _backfilled_with_lone(result, new, target)
    _lone_missing(report)
