"""The store's items copied exactly between every pair of official stores, both directions:
after a backfill the check is clean, and every item, time, TTL and vector is equal, read back
by the official stores themselves; semantic search answers alike."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dualsaver.items import backfill_items, check_items, items_for
from tests.items_support import KINDS, native, official_items, plant, search_keys, store_of

PAIRS = [(a, b) for a in KINDS for b in KINDS if a != b] + [("postgres", "postgres"), ("sqlite", "sqlite")]
FAST = {("sqlite", "postgres"), ("postgres", "sqlite"), ("memory", "sqlite")}


@pytest.fixture
def servers(tmp_path, pg_url_factory, request):
    found = {"tmp_path": tmp_path, "pg": pg_url_factory, "redis": []}
    if "redis" in request.node.callspec.id:
        found["redis"] = [request.getfixturevalue("langgraph_redis_url"),
                          request.getfixturevalue("langgraph_redis_url_b")]
    return found


def _marks(pair):
    return () if pair in FAST else (pytest.mark.slow,)


@pytest.mark.parametrize("pair", [pytest.param(p, id=f"{p[0]}-{p[1]}", marks=_marks(p)) for p in PAIRS])
def test_backfill_copies_every_item_exactly_and_the_check_is_clean(pair, servers, tmp_path):
    source_kind, target_kind = pair
    with store_of(source_kind, servers) as source, store_of(target_kind, servers) as target:
        plant(source, ttl=items_for(source).holds_ttl and source_kind != "memory")
        result = backfill_items(source, target, state_path=tmp_path / "progress.sqlite")
        assert (result.items, result.bad, result.exact, result.vectors) == (40, 0, True, "copied")
        assert result.embeddings_recomputed == 0 and result.embeddings_copied > 0

        report = check_items(source, target)
        assert report.clean, [d.to_dict() for d in report.divergences]
        assert report.summary["items"]["compared"] == 40

        assert official_items(target) == official_items(source)
        old, new = native(source), native(target)
        assert old.keys() == new.keys()
        holds_ttl = items_for(target).holds_ttl
        for ident, item in old.items():
            copy = new[ident]
            if holds_ttl and item.expires_at is not None:
                assert abs(copy.expires_at - item.expires_at) <= timedelta(seconds=1)
                if item.ttl_minutes is not None and copy.ttl_minutes is not None:
                    assert copy.ttl_minutes == item.ttl_minutes
            elif holds_ttl:
                assert copy.expires_at is None
            assert (copy.vectors or {}).keys() == (item.vectors or {}).keys()
            for name, vector in (item.vectors or {}).items():
                assert copy.vectors[name] == pytest.approx(vector, rel=1e-6)
        for query in ("apple river", "tiger piano lemon", "forest"):
            assert search_keys(target, query) == search_keys(source, query)


@pytest.mark.parametrize("pair", [("sqlite", "postgres"), ("postgres", "sqlite")], ids=lambda p: "-".join(p))
def test_a_second_run_adds_nothing(pair, servers, tmp_path):
    with store_of(pair[0], servers) as source, store_of(pair[1], servers) as target:
        plant(source)
        first = backfill_items(source, target, state_path=tmp_path / "p.sqlite")
        again = backfill_items(source, target, state_path=tmp_path / "p.sqlite", resume=False)
        assert (first.items, again.items, again.skipped) == (40, 0, 40)
        assert check_items(source, target).clean
