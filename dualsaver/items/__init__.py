"""The long-term store's items (LangGraph's `BaseStore`): native readers and writers per
backend, and copying, checking and repairing items between two stores.

- `items_for(store)` / `aitems_for(store)`: the item adapter of an official store
  (`InMemoryStore`, `SqliteStore`, `PostgresStore`, `RedisStore` and their async forms), or the
  public-API one (``exact`` False): every item with its value, times, TTL and vectors;
- `backfill_items` / `abackfill_items`: copy what the target lacks, resumably, by namespace
  prefix or shard, throttled; `copy_items` / `acopy_items`: the same for a few named items;
- `check_items` / `acheck_items`: the streaming diff of two stores' items;
- `repair_items` / `arepair_items`: the target's copy of named items made the source's
  (from a report's `affected_items()`, or the journal's `keys_from_journal`, with
  `missed=missed_from_journal(...)`: only what the target missed);
- `open_item_store` / `aopen_item_store`: a store from a URL and an index configuration.
"""

from dualsaver.items._adapters import aitems_for, items_for, renews_on_read
from dualsaver.items._backfill import (
    ItemBackfillResult, abackfill_items, acopy_items, backfill_items, copy_items,
)
from dualsaver.items._open import aopen_item_store, index_config, open_item_store
from dualsaver.items._threaded import SyncStoreInThreads
from dualsaver.items._repair import (
    arepair_items, entry_key, item_entries, keys_from_journal, missed_from_journal, repair_items,
)
from dualsaver.items._check import ItemCheck, acheck_items, check_items
from dualsaver.items.record import BadItem, IndexInfo, Selection, StoredItem

__all__ = [
    "SyncStoreInThreads",
    "BadItem",
    "IndexInfo",
    "ItemBackfillResult",
    "Selection",
    "StoredItem",
    "ItemCheck",
    "abackfill_items",
    "acheck_items",
    "acopy_items",
    "aitems_for",
    "aopen_item_store",
    "arepair_items",
    "entry_key",
    "item_entries",
    "keys_from_journal",
    "missed_from_journal",
    "repair_items",
    "index_config",
    "open_item_store",
    "backfill_items",
    "check_items",
    "copy_items",
    "items_for",
    "renews_on_read",
]
