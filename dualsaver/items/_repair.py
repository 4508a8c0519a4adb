"""Repairing items: what a check report or the journal names is copied again from the
source of truth, replacing the target's copy; an item the source no longer holds is deleted
from the target. The journal names an item as the live DualStore writes it: `operation`
``store.put`` / ``store.delete``, no thread, `checkpoint_ns` the namespace as a JSON list,
`checkpoint_id` the key."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from dualsaver.items._backfill import ItemBackfillResult, acopy_items, copy_items
from dualsaver.items.identity import item_store_name
from dualsaver.items.record import ItemKey
from dualsaver.stores.identity import refuse_same_store

STORE_OPERATIONS = ("store.put", "store.delete")


def item_entries(entries: Iterable[Any], target: str) -> list[Any]:
    """The journal entries of items the `target` store missed."""
    return [e for e in entries if e.operation in STORE_OPERATIONS and e.store == target and e.checkpoint_id is not None]


def keys_from_journal(entries: Iterable[Any], target: str) -> list[ItemKey]:
    found = {(tuple(json.loads(e.checkpoint_ns or "[]")), e.checkpoint_id) for e in item_entries(entries, target)}
    return sorted(found)


def repair_items(source: Any, target: Any, keys: Iterable[ItemKey]) -> ItemBackfillResult:
    """Make the target's copy of each named item the source's (or absent, as in the source)."""
    refuse_same_store(source, target, "a repair", item_store_name)
    return copy_items(source, target, keys, replace=True, delete_missing=True)


async def arepair_items(source: Any, target: Any, keys: Iterable[ItemKey]) -> ItemBackfillResult:
    refuse_same_store(source, target, "a repair", item_store_name)
    return await acopy_items(source, target, keys, replace=True, delete_missing=True)
