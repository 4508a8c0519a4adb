"""The item store of `InMemoryStore` (langgraph): its dicts of `Item`s and of vectors per
field. No I/O, so the sync methods serve the async ones. It holds no TTL: an item copied
in keeps its value, times and vectors, and loses its expiry (the result says so)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

from langgraph.store.base import Item

from dualsaver.items.record import BadItem, IndexInfo, ItemKey, Namespace, StoredItem, ns_text, utc


class MemoryItems:
    exact = True
    holds_ttl = False

    def __init__(self, store: Any) -> None:
        self.store = store
        self.index = IndexInfo.of(getattr(store, "index_config", None))

    def _stored(self, namespace: Namespace, key: str, item: Item) -> StoredItem | BadItem:
        if not isinstance(item.value, dict):
            return BadItem(namespace, key, f"the value is a {type(item.value).__name__}, not a JSON object")
        vectors = self.store._vectors.get(namespace, {}).get(key) or None
        return StoredItem(namespace, key, item.value, utc(item.created_at), utc(item.updated_at),
                          vectors={f: list(v) for f, v in vectors.items()} if vectors else None)

    def items(self, prefix: Namespace = ()) -> Iterator[StoredItem | BadItem]:
        found = [(ns_text(ns), key, ns) for ns, items in list(self.store._data.items())
                 if ns[: len(prefix)] == prefix for key in list(items)]
        for _, key, namespace in sorted(found):
            item = self.store._data.get(namespace, {}).get(key)
            if item is not None:
                yield self._stored(namespace, key, item)

    def get_items(self, keys: Sequence[ItemKey]) -> dict[ItemKey, StoredItem | BadItem]:
        found = {}
        for namespace, key in keys:
            item = self.store._data.get(namespace, {}).get(key)
            if item is not None:
                found[(namespace, key)] = self._stored(namespace, key, item)
        return found

    def write_items(self, items: Iterable[StoredItem], *, replace: bool = False) -> int:
        written = 0
        for i in items:
            if not replace and i.key in self.store._data.get(i.namespace, {}):
                continue
            self.store._data[i.namespace][i.key] = Item(value=dict(i.value), key=i.key, namespace=i.namespace,
                                                        created_at=i.created_at, updated_at=i.updated_at)
            self.store._vectors[i.namespace].pop(i.key, None)
            if i.vectors and self.index is not None:
                self.store._vectors[i.namespace][i.key] = {f: list(v) for f, v in i.vectors.items()}
            written += 1
        return written

    def delete_items(self, keys: Sequence[ItemKey]) -> None:
        for namespace, key in keys:
            self.store._data.get(namespace, {}).pop(key, None)
            self.store._vectors.get(namespace, {}).pop(key, None)

    async def aitems(self, prefix: Namespace = ()) -> AsyncIterator[StoredItem | BadItem]:
        for item in self.items(prefix):
            yield item

    async def aget_items(self, keys: Sequence[ItemKey]) -> dict[ItemKey, StoredItem | BadItem]:
        return self.get_items(keys)

    async def awrite_items(self, items: Iterable[StoredItem], *, replace: bool = False) -> int:
        return self.write_items(items, replace=replace)

    async def adelete_items(self, keys: Sequence[ItemKey]) -> None:
        self.delete_items(keys)
