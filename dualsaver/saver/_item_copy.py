"""The lazy copy of long-term store items: in read-switch, a `get` that new missed and old
answered copies the item into new (as `DualSaver` copies a thread).

For now it goes through the public API: the item's value is put into the target unless the
target holds the key already (insert-if-absent, so a write that landed meanwhile wins),
indexed by the target's own index configuration, with the target's default TTL. The
public API shows neither an item's remaining TTL nor the fields it was indexed with, and
`put` stamps the time of the copy. The lead wires this target to
`dualsaver.items.copy_items` / `acopy_items` (native readers and writers that keep
created_at, updated_at, the TTL and the vectors) once that lands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.store.base import GetOp, PutOp

from dualsaver import sansio
from dualsaver.sansio import Call, Plan
from dualsaver.saver.routing import Role


def copy_plan(keys: Sequence[tuple[tuple[str, ...], str]], ttl: float | None) -> Plan[int]:
    """Copy the items `keys` from target "source" to "target" (absent there only); returns
    how many it put."""
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


class PublicApiItemCopier:
    """The target "copier" of a DualStore's plans."""

    def __init__(self, stores: Mapping[Role, Any]) -> None:
        self.stores = stores

    def copy_items(self, source: Role, target: Role, keys: Sequence[tuple[tuple[str, ...], str]]) -> int:
        io = sansio.Targets(source=self.stores[source], target=self.stores[target])
        return sansio.run(copy_plan(keys, _default_ttl(self.stores[target])), io)

    async def acopy_items(self, source: Role, target: Role, keys: Sequence[tuple[tuple[str, ...], str]]) -> int:
        io = sansio.AsyncTargets(source=self.stores[source], target=self.stores[target])
        return await sansio.arun(copy_plan(keys, _default_ttl(self.stores[target])), io)
