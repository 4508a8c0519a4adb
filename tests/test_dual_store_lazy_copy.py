"""Read-switch's lazy copy below the API: an item new missed and old answered arrives in new
with old's created_at, updated_at, TTL and vectors (native item adapters on both sides), read
back by the official stores; a store with no adapter is copied through the public API and
says so (`lazy_copy_exact` False: the copy gets the time of the copy)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dualsaver import DualStore, Phase
from dualsaver.items import aitems_for, items_for
from dualsaver.items.record import StoredItem, utc
from tests.store_support import FaultyStore, async_store, embed, sync_store

NS = ("users", "u1")
IDENT = (NS, "history")


def planted(vectors: bool = True) -> StoredItem:
    """An item as old holds it from before the migration: days old, updated since, expiring."""
    created = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    text = "likes tea from before the migration"
    return StoredItem(NS, "history", {"text": text, "n": 1}, created, created + timedelta(days=1, seconds=7),
                      datetime.now(timezone.utc) + timedelta(hours=1), 60.0,
                      {"text": embed([text])[0]} if vectors else None)


def assert_same_item(copy: StoredItem, source: StoredItem) -> None:
    assert (copy.value, copy.created_at, copy.updated_at) == (source.value, source.created_at, source.updated_at)
    assert copy.ttl_minutes == source.ttl_minutes == 60.0
    assert copy.expires_at is not None and source.expires_at is not None
    assert abs(copy.expires_at - source.expires_at) <= timedelta(seconds=1)


def test_a_lazily_copied_item_keeps_its_times_ttl_and_vectors(tmp_path, pg_url):
    with sync_store("sqlite", tmp=tmp_path) as old, sync_store("postgres", pg_url=pg_url) as new:
        items_for(old).write_items([planted()])
        store = DualStore(old, new, Phase.READ_SWITCH, journal=tmp_path / "j.sqlite")
        assert store.lazy_copy_exact

        assert store.get(NS, "history").value == planted().value  # new missed: old answered
        source = items_for(old).get_items([IDENT])[IDENT]  # as the fallback read left it (TTL refreshed)
        copy = items_for(new).get_items([IDENT])[IDENT]
        assert_same_item(copy, source)
        assert copy.vectors is not None and source.vectors is not None
        assert copy.vectors["text"] == pytest.approx(source.vectors["text"], rel=1e-6)

        official = new.get(NS, "history", refresh_ttl=False)  # the official store reads the copy back
        assert (utc(official.created_at), utc(official.updated_at)) == (source.created_at, source.updated_at)
        (best,) = new.search(NS, query=planted().value["text"], limit=1)  # its vector is searchable
        assert best.key == "history"
        assert not store.secondary_failures
        store.close()


@pytest.mark.asyncio
async def test_an_async_lazy_copy_keeps_the_times_and_the_target_embeds_when_indexes_differ(tmp_path, pg_url):
    async with async_store("sqlite", tmp=tmp_path, indexed=False) as old, \
            async_store("postgres", pg_url=pg_url) as new:
        await aitems_for(old).awrite_items([planted(vectors=False)])
        store = DualStore(old, new, Phase.READ_SWITCH, journal=tmp_path / "j.sqlite")
        assert store.lazy_copy_exact
        async with store:
            assert (await store.aget(NS, "history")).value == planted().value
            source = (await aitems_for(old).aget_items([IDENT]))[IDENT]
            copy = (await aitems_for(new).aget_items([IDENT]))[IDENT]
            assert_same_item(copy, source)
            # old has no index, new has one: new embedded the item through its own configuration
            assert copy.vectors is not None
            assert copy.vectors["text"] == pytest.approx(embed([planted().value["text"]])[0], rel=1e-6)
        assert not store.secondary_failures


def test_a_store_without_an_adapter_is_copied_through_the_public_api(tmp_path, pg_url):
    with sync_store("sqlite", tmp=tmp_path) as a, sync_store("postgres", pg_url=pg_url) as new:
        items_for(a).write_items([planted()])
        store = DualStore(FaultyStore(a), new, Phase.READ_SWITCH, journal=tmp_path / "j.sqlite")
        assert not store.lazy_copy_exact  # a wrapper dualsaver has no native reader for

        before = datetime.now(timezone.utc) - timedelta(seconds=5)
        assert store.get(NS, "history").value == planted().value
        copy = new.get(NS, "history", refresh_ttl=False)
        assert copy.value == planted().value
        assert utc(copy.created_at) >= before  # approximate: the time of the copy, not old's
        store.close()


@pytest.mark.asyncio
async def test_a_sync_store_in_async_calls_is_copied_exactly_in_worker_threads(tmp_path, pg_url):
    async with async_store("sqlite", tmp=tmp_path, indexed=False) as old:
        with sync_store("postgres", pg_url=pg_url) as new:  # its async methods run the sync ones in threads
            await aitems_for(old).awrite_items([planted(vectors=False)])
            async with DualStore(old, new, Phase.READ_SWITCH, journal=tmp_path / "j.sqlite") as store:
                assert (await store.aget(NS, "history")).value == planted().value
            source = (await aitems_for(old).aget_items([IDENT]))[IDENT]
            copy = items_for(new).get_items([IDENT])[IDENT]
            assert_same_item(copy, source)
            assert copy.vectors is not None  # new embedded it (old has no index) through its threaded adapter
