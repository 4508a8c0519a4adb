"""Repairing items: what a check report or the journal names is copied again from the source of
truth, replacing the target's copy; an item the source no longer holds is deleted from the
target (from the journal: only as far as the journal says the target missed it). The journal
names an item as the live DualStore writes it: `operation` ``store.put`` / ``store.delete``,
no thread, `checkpoint_ns` the namespace as a JSON list, `checkpoint_id` the key."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from dualsaver.items._backfill import ItemBackfillResult, MissedItems, acopy_items, copy_items
from dualsaver.items.identity import item_store_name
from dualsaver.items.record import ItemKey
from dualsaver.stores.identity import refuse_same_store

STORE_OPERATIONS = ("store.put", "store.delete")


def item_entries(entries: Iterable[Any], target: str) -> list[Any]:
    """The journal entries of items the `target` store missed."""
    return [e for e in entries if e.operation in STORE_OPERATIONS and e.store == target and e.checkpoint_id is not None]


def entry_key(entry: Any) -> ItemKey:
    """The (namespace, key) a journal entry of an item names."""
    return tuple(json.loads(entry.checkpoint_ns or "[]")), entry.checkpoint_id


def keys_from_journal(entries: Iterable[Any], target: str) -> list[ItemKey]:
    return sorted({entry_key(e) for e in item_entries(entries, target)})


def missed_from_journal(entries: Iterable[Any], target: str) -> MissedItems:
    """The items whose put, and those whose delete, the `target` store missed: what a repair
    from the journal may copy to it, and delete from it (`repair_items`)."""
    entries = list(entries)
    return MissedItems(
        puts=frozenset(keys_from_journal((e for e in entries if e.operation == "store.put"), target)),
        deletes=frozenset(keys_from_journal((e for e in entries if e.operation == "store.delete"), target)),
    )


def repair_items(source: Any, target: Any, keys: Iterable[ItemKey], *,
                 missed: MissedItems | None = None) -> ItemBackfillResult:
    """Make the target's copy of each named item the source's (or absent, as in the source).

    `missed` (from the journal: `missed_from_journal`) holds the repair to what the journal
    says the target missed. The journal names roles, not stores, so it cannot tell stores
    passed the other way round; but a missed put is of an item the source accepted, and a
    missed delete of one it deleted. An item the source contradicts is left as it is (the
    result's notes count them) rather than deleted from, or copied into, what may be the
    source of truth. None (a check report's `affected_items()`): the source decides.

    Either way the source is read again after the copy (`settle`), so a live write of a key
    during the repair is not undone in the target by the older row the repair read first.
    What changed meanwhile is copied as the source now holds it, whatever the journal said:
    it changed through a live write, which reaches both stores, so the copy only brings the
    target where that write leaves it (both ways round)."""
    refuse_same_store(source, target, "a repair", item_store_name)
    return copy_items(source, target, keys, replace=True, delete_missing=True, missed=missed, settle=True)


async def arepair_items(source: Any, target: Any, keys: Iterable[ItemKey], *,
                        missed: MissedItems | None = None) -> ItemBackfillResult:
    refuse_same_store(source, target, "a repair", item_store_name)
    return await acopy_items(source, target, keys, replace=True, delete_missing=True, missed=missed, settle=True)
