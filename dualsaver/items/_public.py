"""Items of a store with no native adapter, through `BaseStore`'s public API (`exact` is
False): `list_namespaces` and `search` to read, `put` to write. What the API cannot carry
is lost: `put` stamps the time of the copy, and the target embeds again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

from dualsaver.items.record import IndexInfo, ItemKey, Namespace, StoredItem, utc

PAGE = 500


def _stored(item: Any) -> StoredItem:
    return StoredItem(tuple(item.namespace), item.key, item.value, utc(item.created_at), utc(item.updated_at))


def _minutes(item: StoredItem) -> float | None:
    return item.ttl_minutes


class PublicItems:
    exact = False
    holds_ttl = False

    def __init__(self, store: Any) -> None:
        self.store = store
        self.index = IndexInfo.of(getattr(store, "index_config", None))

    def items(self, prefix: Namespace = ()) -> Iterator[StoredItem]:
        spaces = self.store.list_namespaces(prefix=prefix or None, limit=1_000_000)
        for namespace in sorted(spaces, key=".".join):
            found, offset = [], 0
            while page := self.store.search(namespace, limit=PAGE, offset=offset):
                found += [_stored(i) for i in page if tuple(i.namespace) == tuple(namespace)]
                offset += len(page)
            yield from sorted(found, key=lambda i: i.key)

    def get_items(self, keys: Sequence[ItemKey]) -> dict[ItemKey, StoredItem]:
        found = {}
        for namespace, key in keys:
            if (item := self.store.get(namespace, key, refresh_ttl=False)) is not None:
                found[(namespace, key)] = _stored(item)
        return found

    def write_items(self, items: Iterable[StoredItem], *, replace: bool = False) -> int:
        written = 0
        for i in items:
            if replace or self.store.get(i.namespace, i.key, refresh_ttl=False) is None:
                self.store.put(i.namespace, i.key, i.value, ttl=_minutes(i) if self.store.supports_ttl else None)
                written += 1
        return written

    def delete_items(self, keys: Sequence[ItemKey]) -> None:
        for namespace, key in keys:
            self.store.delete(namespace, key)

    async def aitems(self, prefix: Namespace = ()) -> AsyncIterator[StoredItem]:
        spaces = await self.store.alist_namespaces(prefix=prefix or None, limit=1_000_000)
        for namespace in sorted(spaces, key=".".join):
            found, offset = [], 0
            while page := await self.store.asearch(namespace, limit=PAGE, offset=offset):
                found += [_stored(i) for i in page if tuple(i.namespace) == tuple(namespace)]
                offset += len(page)
            for item in sorted(found, key=lambda i: i.key):
                yield item

    async def aget_items(self, keys: Sequence[ItemKey]) -> dict[ItemKey, StoredItem]:
        found = {}
        for namespace, key in keys:
            if (item := await self.store.aget(namespace, key, refresh_ttl=False)) is not None:
                found[(namespace, key)] = _stored(item)
        return found

    async def awrite_items(self, items: Iterable[StoredItem], *, replace: bool = False) -> int:
        written = 0
        for i in items:
            if replace or await self.store.aget(i.namespace, i.key, refresh_ttl=False) is None:
                ttl = _minutes(i) if self.store.supports_ttl else None
                await self.store.aput(i.namespace, i.key, i.value, ttl=ttl)
                written += 1
        return written

    async def adelete_items(self, keys: Sequence[ItemKey]) -> None:
        for namespace, key in keys:
            await self.store.adelete(namespace, key)
