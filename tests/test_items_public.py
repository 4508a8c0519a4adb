"""The store's functions from the top-level package, as a user would call them: backfill,
check and repair of items (and their async twins) over stores opened from URLs."""

from __future__ import annotations

import pytest

import dualsaver
from dualsaver import (
    abackfill_items, acheck_items, aopen_item_store, arepair_items, backfill_items, check_items, open_item_store,
    repair_items,
)
from tests.items_support import INDEX, plant


def test_the_store_functions_are_exported():
    for name in ("backfill_items", "abackfill_items", "check_items", "acheck_items", "repair_items",
                 "arepair_items", "keys_from_journal", "open_item_store", "aopen_item_store"):
        assert name in dualsaver.__all__ and callable(getattr(dualsaver, name))


def test_backfill_check_repair_from_the_top_level(tmp_path):
    with open_item_store("memory://", index=INDEX) as old, \
            open_item_store(f"sqlite:///{tmp_path}/new.sqlite", index=INDEX) as new:
        plant(old, count=12, ttl=False)
        assert backfill_items(old, new, state_path=tmp_path / "p.sqlite").items == 12
        assert check_items(old, new).clean
        old.put(("users", "u1"), "k001", {"text": "changed after the backfill"})
        report = check_items(old, new)
        assert report.affected_items() == [(("users", "u1"), "k001")]
        assert repair_items(old, new, report.affected_items()).items == 1
        assert check_items(old, new).clean


@pytest.mark.asyncio
async def test_the_async_twins_from_the_top_level(tmp_path):
    async with aopen_item_store("memory://", index=INDEX) as old, \
            aopen_item_store(f"sqlite:///{tmp_path}/new.sqlite") as new:
        await old.aput(("users", "u1"), "k1", {"text": "tea"})
        assert (await abackfill_items(old, new, state_path=tmp_path / "p.sqlite")).items == 1
        assert (await acheck_items(old, new)).clean
        await old.aput(("users", "u1"), "k1", {"text": "coffee"})
        report = await acheck_items(old, new)
        assert (await arepair_items(old, new, report.affected_items())).items == 1
        assert (await new.aget(("users", "u1"), "k1")).value == {"text": "coffee"}
