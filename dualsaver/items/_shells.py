"""The public operations of a native item store, as its plans carried out: one sync shell
and one async shell for every backend (SQL and Redis alike), so a backend writes only its
plans (`ItemPlans`) and the I/O its `db` target answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence

from dualsaver.items.record import BadItem, ItemKey, Namespace, StoredItem
from dualsaver.sansio import AsyncTargets, Plan, Targets, arun, astream, run, stream


class ItemPlans:
    """What a backend plans: every item under a prefix in (prefix, key) order, named items,
    a write, a delete."""

    def _items_plan(self, prefix: Namespace = ()) -> Plan[None]:
        raise NotImplementedError

    def _get_plan(self, keys: Sequence[ItemKey]) -> Plan[dict[ItemKey, StoredItem | BadItem]]:
        raise NotImplementedError

    def _write_plan(self, items: Sequence[StoredItem], replace: bool) -> Plan[int]:
        raise NotImplementedError

    def _delete_plan(self, keys: Sequence[ItemKey]) -> Plan[None]:
        raise NotImplementedError


class SyncItemShell(ItemPlans):
    _io: Targets  # the backend's blocking I/O, as the target "db"

    def items(self, prefix: Namespace = ()) -> Iterator[StoredItem | BadItem]:
        return stream(self._items_plan(prefix), self._io)

    def get_items(self, keys: Sequence[ItemKey]) -> dict[ItemKey, StoredItem | BadItem]:
        return run(self._get_plan(list(keys)), self._io)

    def write_items(self, items: Iterable[StoredItem], *, replace: bool = False) -> int:
        return run(self._write_plan(list(items), replace), self._io)

    def delete_items(self, keys: Sequence[ItemKey]) -> None:
        run(self._delete_plan(list(keys)), self._io)


class AsyncItemShell(ItemPlans):
    _io: AsyncTargets  # the backend's awaited I/O, as the target "db"

    def aitems(self, prefix: Namespace = ()) -> AsyncIterator[StoredItem | BadItem]:
        return astream(self._items_plan(prefix), self._io)

    async def aget_items(self, keys: Sequence[ItemKey]) -> dict[ItemKey, StoredItem | BadItem]:
        return await arun(self._get_plan(list(keys)), self._io)

    async def awrite_items(self, items: Iterable[StoredItem], *, replace: bool = False) -> int:
        return await arun(self._write_plan(list(items), replace), self._io)

    async def adelete_items(self, keys: Sequence[ItemKey]) -> None:
        await arun(self._delete_plan(list(keys)), self._io)
