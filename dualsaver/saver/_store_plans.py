"""Every `DualStore` batch written once, as a plan (see `dualsaver.sansio` and `_plans`).

A batch of the long-term store mixes reads (`GetOp`, `SearchOp`, `ListNamespacesOp`) and
writes (`PutOp`; a `None` value deletes). The plan cuts it into runs of consecutive reads
and consecutive writes and sends each run in op order, so a read that follows a write of
the same key in one batch sees it, and each result lands at its op's position:

- a run of writes is one `_plans.write` of the run (primary first, then the secondary, or
  behind it in shadow-write); a lost write journals one entry per item it named;
- a run of reads goes to the read store; in read-switch each `GetOp` that new missed is
  asked of old, and what old has is copied into new (target "copier": `copy_items`). In
  backfill and read-switch, a read of what the read store missed a write of (journaled)
  goes to the other store (`_steered`): a get of such an item, a search or a listing of
  namespaces that covers one, whole;
- a get or search that renews TTLs (`refresh_ttl`) renews them in the read store only, so
  when both stores renew on such reads (`Context.renews_secondary`, `items.renews_on_read`)
  the secondary is asked to renew what it returned (a get of each, `refresh_ttl=True`), as
  the phase writes it: else the secondary's copy of a memory kept alive by use would
  expire first (in new: gone after the switch, where search does not fall back; in old:
  on a rollback), and the check would report every item read. A renewal the secondary
  misses is journaled as a missed put of the item: its repair copies the item, expiry
  and all.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from langgraph.store.base import GetOp, Item, ListNamespacesOp, MatchCondition, PutOp, SearchOp

from dualsaver.control.journal import item_entry_fields
from dualsaver.items.record import ItemKey
from dualsaver.sansio import Call, Plan
from dualsaver.saver._plans import (
    STEERED_PHASES,
    Context,
    Mark,
    copies_for,
    missed,
    secondary_only,
    settled,
    steered_by,
    write,
)
from dualsaver.saver.routing import Role, other



def item_mark(op: PutOp) -> Mark:
    """What the journal says when a store misses this put (or delete)."""
    operation = "store.delete" if op.value is None else "store.put"
    return operation, item_entry_fields(op.namespace, op.key)


def runs(ops: Sequence[Any]) -> list[tuple[bool, list[int]]]:
    """The positions of `ops` in runs of consecutive writes (True) or reads (False)."""
    found: list[tuple[bool, list[int]]] = []
    for i, op in enumerate(ops):
        writes = isinstance(op, PutOp)
        if found and found[-1][0] == writes:
            found[-1][1].append(i)
        else:
            found.append((writes, [i]))
    return found


def answered_alone(ctx: Context, ops: Sequence[Any], drained: bool) -> Role | None:
    """The store that answers `ops` with one call of its own and nothing else, or None when
    the plan must run: a batch of reads with no fallback to ask (every phase but read-switch)
    and no queued write to land first (write-behind, or `drained`: nothing is queued). The
    shells then call that store directly, sparing the plan's machinery (about 6 us of a
    9 us get over an in-memory store) on the calls a graph's nodes make most. Its two halves
    are apart so that a DualStore can keep the first with the context it belongs to."""
    return reader_alone(ctx) if nothing_else(ctx, ops, drained) else None


def reader_alone(ctx: Context) -> Role | None:
    """The store that answers reads in `ctx` with nothing else to ask, or None: a fallback
    (read-switch), or a secondary whose TTLs a read renews."""
    read, fallback = ctx.reads(None)
    if fallback is not None or (ctx.renews_secondary and ctx.route.secondary is not None):
        return None
    return read


def nothing_else(ctx: Context, ops: Sequence[Any], drained: bool) -> bool:
    """`ops` are reads, and no queued write must land before them."""
    return (ctx.write_behind or drained) and not _writes(ops)


def _writes(ops: Sequence[Any]) -> bool:
    for op in ops:  # noqa: SIM110 - a loop, not any() over a generator: no frame made for a get's one op
        if isinstance(op, PutOp):
            return True
    return False


def batch(ctx: Context, ops: Sequence[Any]) -> Plan[list[Any]]:
    if not _writes(ops):  # one run of reads (a get, a search): no cutting
        return (yield from read_items(ctx, list(ops)))
    results: list[Any] = [None] * len(ops)  # a put's result is None
    for writes, positions in runs(ops):
        chunk = [ops[i] for i in positions]
        if writes:
            yield from put_items(ctx, chunk)
            continue
        found = yield from read_items(ctx, chunk)
        for i, answer in zip(positions, found):
            results[i] = answer
    return results


def put_items(ctx: Context, puts: list[PutOp]) -> Plan[None]:
    # Both stores get the values as they were at call time, even if the caller mutates them.
    (puts,), later = copies_for(ctx, (puts,))
    yield from write(ctx, "batch", (puts,), marks=tuple(item_mark(op) for op in puts), hot=True,
                     secondary_operation="mirror", later=later)


def read_items(ctx: Context, ops: list[Any]) -> Plan[list[Any]]:
    yield from settled(ctx)
    read, fallback = ctx.reads(None)
    apart = _steered(ctx, ops, read)
    if not apart:
        found = list((yield Call(read, "batch", (ops,))))
    else:
        found = [None] * len(ops)
        for role, positions in ((read, [i for i in range(len(ops)) if i not in apart]), (other(read), sorted(apart))):
            if positions:
                for i, answer in zip(positions, (yield Call(role, "batch", ([ops[i] for i in positions],)))):
                    found[i] = answer
    if fallback is not None:
        misses = [i for i, op in enumerate(ops) if isinstance(op, GetOp) and found[i] is None and i not in apart]
        if misses:
            yield from _fall_back(ctx, ops, found, misses, read, fallback)
    secondary = ctx.route.secondary
    if ctx.renews_secondary and secondary is not None and (renewed := _renewed(ops, found)):
        marks = tuple(("store.put", item_entry_fields(ns, key)) for ns, key in renewed)
        renewals = [GetOp(ns, key, refresh_ttl=True) for ns, key in renewed]
        yield from secondary_only(ctx, "store.renew", Call(secondary, "batch", (renewals,)), marks)
    return found


def _steered(ctx: Context, ops: list[Any], read: Role) -> set[int]:
    """The reads the other store answers: a get of an item the read store missed a write of
    and the other did not (journaled, here or on another replica: `_plans.steered`); a
    search or a listing of namespaces that covers an item the read store missed, and none
    the other missed, whole. One that covers what each store missed stays with the read
    store: neither holds it all."""
    old, new = ctx.stale_items_in_old, ctx.stale_items_in_new
    if ctx.route.phase not in STEERED_PHASES or (not old and not new):
        return set()
    apart = set()
    for i, op in enumerate(ops):
        if isinstance(op, GetOp):
            role = steered_by((op.namespace, op.key) in old, (op.namespace, op.key) in new)
        else:
            role = steered_by(_covers(op, old), _covers(op, new))
        if role not in (None, read):
            apart.add(i)
    return apart


def _covers(op: SearchOp | ListNamespacesOp, items: Collection[ItemKey]) -> bool:
    """Whether a search or a listing of namespaces may answer otherwise for one of `items`."""
    items = tuple(items)  # a live view another thread may add to (`_stale`): one C call, the GIL held
    if isinstance(op, SearchOp):
        n = len(op.namespace_prefix)
        return any(namespace[:n] == op.namespace_prefix for namespace, _ in items)
    return any(all(_matches(condition, namespace) for condition in op.match_conditions or ())
               for namespace, _ in items)


def _matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    """A namespace matches a `MatchCondition` (as the stores decide: "*" matches any label)."""
    path = condition.path
    if len(namespace) < len(path):
        return False
    labels = namespace[: len(path)] if condition.match_type == "prefix" else namespace[len(namespace) - len(path):]
    return all(p == "*" or p == label for label, p in zip(labels, path))


def _renewed(ops: list[Any], found: list[Any]) -> list[ItemKey]:
    """The items whose TTL these reads renewed: each one a get or search asking for it
    (`refresh_ttl`) returned."""
    keys: dict[ItemKey, None] = {}
    for op, answer in zip(ops, found):
        if not getattr(op, "refresh_ttl", False) or answer is None:
            continue
        if isinstance(op, GetOp):
            keys[(op.namespace, op.key)] = None
        elif isinstance(op, SearchOp):
            keys.update(dict.fromkeys((item.namespace, item.key) for item in answer))
    return list(keys)


def _fall_back(ctx: Context, ops: list[Any], found: list[Any], misses: list[int], read: Role,
               fallback: Role) -> Plan[None]:
    """Ask the fallback store for the gets the read store missed (one batch), answer with
    what it has, and copy that into the read store. An item the fallback missed a delete
    of stays missing: the application deleted it."""
    asked = []
    for i in misses:
        if not (yield Call("recorder", "missed_item_delete", (fallback, ops[i].namespace, ops[i].key))):
            asked.append(i)
    if not asked:
        return
    answers = yield Call(fallback, "batch", ([ops[i] for i in asked],))
    copied: list[ItemKey] = []
    for i, item in zip(asked, answers):
        if isinstance(item, Item):
            found[i] = item
            copied.append((item.namespace, item.key))
    if copied:
        yield from _lazy_copy(ctx, fallback, read, copied)


def _lazy_copy(ctx: Context, source: Role, target: Role, keys: list[ItemKey]) -> Plan[None]:
    """Bring items the read store missed over from the fallback; never fails the read."""
    try:
        yield Call("copier", "copy_items", (source, target, keys))
    except Exception as exc:
        marks = tuple(("store.put", item_entry_fields(ns, key)) for ns, key in keys)
        yield Call("recorder", "missed", missed(target, marks, exc, ctx.route.phase))
