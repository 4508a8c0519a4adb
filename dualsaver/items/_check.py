"""The check of the store's items: both stores stream in (namespace, key) order and are
merged; each pair is compared by meaning (JSON values, times to the microsecond, expiry within
the coarsest store's precision, vectors within float32 rounding). Expired items are not
divergences. What differs is a *suspect*: it is read again from both stores before it is
reported, so a write landing while the check runs is not reported as a divergence.

Findings are `Divergence`s of the `item_*` kinds (`checker.findings`), named as the journal
names an item: `checkpoint_ns` the namespace as a JSON list, `checkpoint_id` the key.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from dualsaver.checker.canonical import digest
from dualsaver.checker.findings import (
    ITEM_MISSING_IN_NEW, ITEM_MISSING_IN_OLD, ITEM_TIMESTAMP_MISMATCH, ITEM_TTL_MISMATCH, ITEM_UNREADABLE,
    ITEM_VALUE_MISMATCH, ITEM_VECTOR_MISMATCH, Divergence, DivergenceReport,
)
from dualsaver.control.throttle import Throttle
from dualsaver.items._adapters import aitems_for, items_for
from dualsaver.items.identity import item_store_name
from dualsaver.items.record import (
    EVERYTHING, BadItem, ItemKey, Selection, StoredItem, journal_ns, vectors_close, vectors_pass,
)
from dualsaver.sansio import END, AsyncTargets, Call, Next, Plan, Targets, arun, run
from dualsaver.stores.identity import refuse_same_store

# Two expiries this close are one: each store renews a TTL a read asked for by its own clock
# (the secondary after the primary, by write-behind's lag), SQLite keeps whole seconds and Redis
# its documents' times in seconds. At 1 s, one item in twenty read during shadow-write (SQLite
# -> PostgreSQL) was reported as a TTL mismatch. A renewal the secondary missed puts them apart
# by the time since the item's last renewal, and is reported once that passes the tolerance.
EXPIRY_TOLERANCE = timedelta(seconds=5)
RECHECK_PAGE = 500
PACE_EVERY = 500  # items compared between two looks at the throttle

Side = StoredItem | BadItem | None


FLOAT_REL = 1e-6  # float32 storage (pgvector's vector, sqlite-vec, RediSearch) of float64 numbers
HALF_REL = 1e-3  # pgvector's halfvec: float16 keeps 11 significant bits (relative error <= 2**-11)


def _half_precision(items: Any) -> bool:
    """Whether the store keeps its vectors as pgvector's `halfvec`."""
    config = getattr(getattr(items, "store", None), "index_config", None) or {}
    return bool((config.get("ann_index_config") or {}).get("vector_type") == "halfvec")


class ItemCheck:
    """The decisions of one check of items: what to compare and what a difference is."""

    def __init__(self, old: Any, new: Any, *, selection: Selection = EVERYTHING, throttle: Throttle | None = None,
                 recheck: bool = True, show_values: bool = False) -> None:
        refuse_same_store(old, new, "a check", item_store_name)  # it would find a store clean against itself
        self.old, self.new = old, new
        self.selection, self.throttle, self.recheck, self.show_values = selection, throttle, recheck, show_values
        self.ttl = old.holds_ttl and new.holds_ttl
        self.vectors = vectors_pass(old.index, new.index)
        self.vector_rel = HALF_REL if any(_half_precision(side) for side in (old, new)) else FLOAT_REL
        self.now = datetime.now(timezone.utc)
        self.counts = {"compared": 0, "old": 0, "new": 0, "suspects": 0, "cleared": 0}

    def compare(self, old: Side, new: Side) -> list[Divergence]:
        """The divergences of one (namespace, key): none, or one per kind that differs."""
        if any(isinstance(side, StoredItem) and side.expired(self.now) for side in (old, new)):
            return []
        if old is None and new is None:
            return []
        here = (old or new).ident  # type: ignore[union-attr]
        if isinstance(old, BadItem) or isinstance(new, BadItem):
            side = "both" if isinstance(old, BadItem) and isinstance(new, BadItem) else (
                "old" if isinstance(old, BadItem) else "new")
            error = (old if isinstance(old, BadItem) else new).error  # type: ignore[union-attr]
            return [self._found(ITEM_UNREADABLE, here, side=side, error=error)]
        if new is None:
            return [self._found(ITEM_MISSING_IN_NEW, here)]
        if old is None:
            return [self._found(ITEM_MISSING_IN_OLD, here)]
        found = []
        if old.value != new.value:
            found.append(self._found(ITEM_VALUE_MISMATCH, here, fields=[self._value_field(old.value, new.value)]))
        times = [{"field": name, "old": getattr(old, name).isoformat(), "new": getattr(new, name).isoformat()}
                 for name in ("created_at", "updated_at") if getattr(old, name) != getattr(new, name)]
        if times:
            found.append(self._found(ITEM_TIMESTAMP_MISMATCH, here, fields=times))
        if self.ttl and (ttl := _ttl_fields(old, new)):
            found.append(self._found(ITEM_TTL_MISMATCH, here, fields=ttl))
        if self.vectors and not vectors_close(old.vectors, new.vectors, rel=self.vector_rel):
            fields = sorted(set(old.vectors or ()) | set(new.vectors or ()))
            found.append(self._found(ITEM_VECTOR_MISMATCH, here, fields=[
                {"field": f, "old": _dims(old.vectors, f), "new": _dims(new.vectors, f)} for f in fields]))
        return found

    def _value_field(self, old: Any, new: Any) -> dict[str, Any]:
        field = {"field": "value", "old": digest(old), "new": digest(new)}
        if self.show_values:
            field.update(old_value=old, new_value=new)
        return field

    @staticmethod
    def _found(kind: str, here: ItemKey, **detail: Any) -> Divergence:
        return Divergence(kind, "", journal_ns(here[0]), here[1], detail)

    def named_plan(self, keys: Sequence[ItemKey]) -> Plan[DivergenceReport]:
        """Compare only these items, read afresh (the re-check after a repair)."""
        started = time.perf_counter()
        self.counts["compared"] = len(keys)
        found = yield from self._confirm({tuple_key(k): [] for k in keys})
        return self._report(found, time.perf_counter() - started)

    def check_plan(self) -> Plan[DivergenceReport]:
        started = time.perf_counter()
        old = yield Call("old", "items", (self.selection.prefix,), stream=True)
        new = yield Call("new", "items", (self.selection.prefix,), stream=True)
        a, b = (yield Next(old)), (yield Next(new))
        suspects: dict[ItemKey, list[Divergence]] = {}
        while a is not END or b is not END:
            if b is END or (a is not END and a.order < b.order):
                pair: tuple[Side, Side] = (a, None)
                a = yield Next(old)
            elif a is END or b.order < a.order:
                pair = (None, b)
                b = yield Next(new)
            else:
                pair = (a, b)
                a, b = (yield Next(old)), (yield Next(new))
            here = (pair[0] or pair[1]).ident  # type: ignore[union-attr]
            if not self.selection.covers(here[0]):
                continue
            self._count(pair)
            if found := self.compare(*pair):
                suspects[here] = found
            if self.counts["compared"] % PACE_EVERY == 0:
                yield from self._pace()
        found = yield from self._confirm(suspects)
        return self._report(found, time.perf_counter() - started)

    def _count(self, pair: tuple[Side, Side]) -> None:
        self.counts["compared"] += 1
        self.counts["old"] += pair[0] is not None
        self.counts["new"] += pair[1] is not None

    def _pace(self) -> Plan[None]:
        if self.throttle is not None and (delay := self.throttle.after(PACE_EVERY)):
            yield Call("clock", "sleep", (delay,))

    def _confirm(self, suspects: dict[ItemKey, list[Divergence]]) -> Plan[list[Divergence]]:
        """Read each suspect again from both stores; what still differs is reported."""
        self.counts["suspects"] = len(suspects)
        if not self.recheck:
            return [d for found in suspects.values() for d in found]
        found: list[Divergence] = []
        keys = list(suspects)
        for start in range(0, len(keys), RECHECK_PAGE):
            chunk = keys[start : start + RECHECK_PAGE]
            olds = yield Call("old", "get_items", (chunk,))
            news = yield Call("new", "get_items", (chunk,))
            self.now = datetime.now(timezone.utc)
            for key in chunk:
                now_found = self.compare(olds.get(key), news.get(key))
                self.counts["cleared"] += not now_found
                found += now_found
        return found

    def _report(self, found: list[Divergence], seconds: float) -> DivergenceReport:
        report = DivergenceReport(clean=not found, divergences=found, summary={})
        report.summary = {
            "items": dict(self.counts, ttl_compared=self.ttl, vectors_compared=self.vectors),
            "stores": {"old": item_store_name(self.old), "new": item_store_name(self.new)},
            "exact": {"old": self.old.exact, "new": self.new.exact},
            "recheck": {"enabled": self.recheck, "suspect_threads": self.counts["suspects"],
                        "cleared_threads": self.counts["cleared"], "rounds": 1},
            "finished_at": datetime.now(timezone.utc).isoformat(),
            "duration_seconds": round(seconds, 3),
        }
        report.summary["counts"] = report.counts()  # after "items": it lists the item kinds, zeros too
        if self.selection.shard:
            report.summary["shard"] = f"{self.selection.shard[0]}/{self.selection.shard[1]}"
        return report


def tuple_key(key: Any) -> ItemKey:
    return (tuple(key[0]), key[1])


def _ttl_fields(old: StoredItem, new: StoredItem) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = []
    a, b = old.expires_at, new.expires_at
    if (a is None) != (b is None) or (a is not None and b is not None and abs(a - b) > EXPIRY_TOLERANCE):
        fields.append({"field": "expires_at", "old": a.isoformat() if a else None, "new": b.isoformat() if b else None})
    if old.ttl_minutes is not None and new.ttl_minutes is not None and old.ttl_minutes != new.ttl_minutes:
        fields.append({"field": "ttl_minutes", "old": old.ttl_minutes, "new": new.ttl_minutes})
    return fields


def _dims(vectors: dict[str, list[float]] | None, name: str) -> str | None:
    vector = (vectors or {}).get(name)
    return None if vector is None else f"{len(vector)} dims, " + digest([round(x, 5) for x in vector])


def check_items(old: Any, new: Any, *, prefix: Sequence[str] = (), shard: tuple[int, int] | None = None,
                throttle: Throttle | None = None, recheck: bool = True, show_values: bool = False,
                keys: Sequence[ItemKey] | None = None) -> DivergenceReport:
    """Diff the items of two stores (or item adapters); see the module docstring. With
    `keys`, only those items are compared."""
    check = ItemCheck(items_for(old), items_for(new), selection=Selection(tuple(prefix), shard), throttle=throttle,
                      recheck=recheck, show_values=show_values)
    plan = check.check_plan() if keys is None else check.named_plan(keys)
    return run(plan, Targets(old=check.old, new=check.new))


async def acheck_items(old: Any, new: Any, *, prefix: Sequence[str] = (), shard: tuple[int, int] | None = None,
                       throttle: Throttle | None = None, recheck: bool = True, show_values: bool = False,
                       keys: Sequence[ItemKey] | None = None) -> DivergenceReport:
    """The async form of `check_items`."""
    check = ItemCheck(aitems_for(old), aitems_for(new), selection=Selection(tuple(prefix), shard),
                      throttle=throttle, recheck=recheck, show_values=show_values)
    plan = check.check_plan() if keys is None else check.named_plan(keys)
    return await arun(plan, AsyncTargets(old=check.old, new=check.new))
