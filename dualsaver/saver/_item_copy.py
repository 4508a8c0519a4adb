"""The lazy copy of long-term store items: in read-switch, a `get` that new missed and old
answered copies the item into new (as `DualSaver` copies a thread).

Two ways, chosen per pair of stores (target "copier" of the plans in `_store_plans`):

- **exact**, when both stores have a native item adapter (`dualsaver.items`: InMemoryStore,
  SqliteStore, PostgresStore, RedisStore and their async forms): `copy_items` below the API,
  so the copy keeps the source's created_at, updated_at, TTL (expiry and minutes) and vectors
  (copied as they are when both stores index the same fields with the same dimensions);
- **approximate** otherwise (a store the adapters do not know, a wrapper): the public API. The
  item's value is put into the target unless the target holds the key already, indexed by the
  target's own index configuration, with the target's default TTL; `put` stamps the time of
  the copy. Logged once per DualStore as ``lazy_copy_approximate``.

Both insert if absent, so a write that landed in the target meanwhile wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from langgraph.store.base import GetOp, PutOp

from dualsaver import items, sansio
from dualsaver.control.journal import item_entry_fields
from dualsaver.errors import CopyFailed
from dualsaver.sansio import Call, Plan
from dualsaver.saver.routing import Role, other

log = structlog.get_logger("dualsaver")
ItemKeys = Sequence[tuple[tuple[str, ...], str]]


def copy_plan(keys: ItemKeys, ttl: float | None) -> Plan[int]:
    """Copy the items `keys` from target "source" to "target" through the public API (absent
    there only); returns how many it put."""
    gets = [GetOp(tuple(ns), key, refresh_ttl=False) for ns, key in keys]
    found = yield Call("source", "batch", (gets,))
    present = yield Call("target", "batch", (gets,))
    puts = [PutOp(item.namespace, item.key, item.value, index=None, ttl=ttl)
            for item, there in zip(found, present) if item is not None and there is None]
    if puts:
        yield Call("target", "batch", (puts,))
    return len(puts)


def _default_ttl(store: Any) -> float | None:
    return (getattr(store, "ttl_config", None) or {}).get("default_ttl")


def _copied(result: items.ItemBackfillResult) -> int:
    """An exact copy reports a bad item in its result; the plan records it as a miss. The
    other items of the batch landed: the journal names only the bad ones, when the result
    lists them all (it keeps the first thousand)."""
    if result.bad:
        first = result.bad_items[0] if result.bad_items else {}
        named = len(result.bad_items) == result.bad
        not_copied = [item_entry_fields(b["namespace"], b["key"]) for b in result.bad_items] if named else None
        raise CopyFailed(f"{result.bad} item(s) not copied: {first.get('error', 'unknown error')}",
                         refused=result.refused == result.bad, not_copied=not_copied)
    return result.items


def _keys(puts: Sequence[PutOp]) -> list[tuple[tuple[str, ...], str]]:
    """The distinct items a batch of writes names, in first-written order."""
    return list(dict.fromkeys((tuple(op.namespace), op.key) for op in puts))


class ItemCopier:
    """The target "copier" of a DualStore's plans: exact where both stores have native item
    adapters, through the public API (approximate) where not."""

    def __init__(self, stores: Mapping[Role, Any]) -> None:
        self.stores = stores
        self._adapters: dict[tuple[Role, bool], Any] = {}
        self._warned = False

    def exact(self, source: Role, target: Role, asynchronous: bool = False) -> bool:
        """Whether a copy from `source` to `target` keeps times, TTL and vectors."""
        return self._adapter(source, asynchronous) is not None and self._adapter(target, asynchronous) is not None

    def _adapter(self, role: Role, asynchronous: bool) -> Any:
        """The store's native item adapter, or None when it has none (built once)."""
        if (role, asynchronous) not in self._adapters:
            try:
                adapter = (items.aitems_for if asynchronous else items.items_for)(self.stores[role])
            except TypeError:  # an async-only store asked for its sync adapter
                adapter = None
            self._adapters[role, asynchronous] = adapter if adapter is not None and adapter.exact else None
        return self._adapters[role, asynchronous]

    def _approximate(self, source: Role, target: Role) -> None:
        """Say once that this DualStore's lazy copies are approximate."""
        if not self._warned:
            self._warned = True
            log.warning("lazy_copy_approximate", source=source, target=target,
                        reason="a store without a native item adapter: created_at, updated_at, TTL and"
                               " vectors are the target's own, not the source's")

    def copy_items(self, source: Role, target: Role, keys: ItemKeys) -> int:
        """Read-switch's lazy copy of the items new missed. The source is read again once they
        are written (`settle`): an item another replica deleted meanwhile (in new, then in
        old) is deleted from new too, instead of coming back where reads go. The delete
        reaches new first, so this narrows the window to one delete of old, not closes it."""
        if self.exact(source, target):
            src, dst = self._adapter(source, False), self._adapter(target, False)
            return _copied(items.copy_items(src, dst, keys, settle=True))
        self._approximate(source, target)
        io = sansio.Targets(source=self.stores[source], target=self.stores[target])
        return sansio.run(copy_plan(keys, _default_ttl(self.stores[target])), io)

    async def acopy_items(self, source: Role, target: Role, keys: ItemKeys) -> int:
        if self.exact(source, target, asynchronous=True):
            src, dst = self._adapter(source, True), self._adapter(target, True)
            return _copied(await items.acopy_items(src, dst, keys, settle=True))
        self._approximate(source, target)
        io = sansio.AsyncTargets(source=self.stores[source], target=self.stores[target])
        return await sansio.arun(copy_plan(keys, _default_ttl(self.stores[target])), io)

    # --- the secondary's side of a write ---------------------------------------------------

    def mirror(self, target: Role, puts: Sequence[PutOp]) -> int:
        """How `target`, the secondary, takes a batch of writes the primary (the other store)
        accepted: the primary's stored rows of those keys, copied exactly (replaced; deleted
        where the primary no longer holds the key), so both stores hold one created_at,
        updated_at, TTL and vectors, and a check after shadow-write is clean. Without native
        adapters on both sides, the writes themselves (each store stamps its own times)."""
        source = other(target)
        if self.exact(source, target):
            src, dst = self._adapter(source, False), self._adapter(target, False)
            return _copied(items.copy_items(src, dst, _keys(puts), replace=True, delete_missing=True, settle=True))
        self.stores[target].batch(puts)
        return len(puts)

    async def amirror(self, target: Role, puts: Sequence[PutOp]) -> int:
        source = other(target)
        if self.exact(source, target, asynchronous=True):
            src, dst = self._adapter(source, True), self._adapter(target, True)
            return _copied(await items.acopy_items(src, dst, _keys(puts), replace=True, delete_missing=True,
                                                   settle=True))
        await self.stores[target].abatch(puts)
        return len(puts)


class StoreSide:
    """One store of a DualStore as its plans see it (targets "old" and "new"): its own
    `batch`, and `mirror`, the secondary's side of a write (`ItemCopier.mirror`)."""

    def __init__(self, role: Role, copier: ItemCopier) -> None:
        self.role, self.copier, self.store = role, copier, copier.stores[role]

    def batch(self, ops: Sequence[Any]) -> list[Any]:
        return self.store.batch(ops)

    async def abatch(self, ops: Sequence[Any]) -> list[Any]:
        return await self.store.abatch(ops)

    def mirror(self, puts: Sequence[PutOp]) -> int:
        return self.copier.mirror(self.role, puts)

    async def amirror(self, puts: Sequence[PutOp]) -> int:
        return await self.copier.amirror(self.role, puts)
