"""The items' backfill: copy every item the target lacks, exactly, resumably, beside live traffic.

The source's items stream in (namespace, key) order (see `record`) into batches the target
inserts if absent, so:

- re-running adds and changes nothing; an item live traffic already wrote is left as it is;
- a run killed at any point and run again ends with an exact copy: a namespace is recorded
  done (in the same progress store as the checkpoints' backfill, `control.progress`) only
  once every batch holding its items committed; an unfinished one is read again;
- each item keeps its value, `created_at`, `updated_at` and TTL; vectors pass as they are
  when both stores index the same fields with the same dimensions, else the target embeds
  (`_vectors`); expired items are not copied;
- a bad item (a value that is not JSON, or one the target refuses on its own) is reported by
  namespace and key; its batch is written again item by item, so every other item copies,
  and its namespace is not marked done (each run reports it until it is repaired).

The decisions are the plans of `ItemJob`; `backfill_items` / `abackfill_items` run them with
blocking or awaited I/O, and `copy_items` / `acopy_items` copy a few named items the same way
(the live DualStore's lazy copy, and repair with ``replace=True``).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from dualsaver.control.progress import open_progress
from dualsaver.control.sources import replica_name
from dualsaver.control.throttle import Throttle
from dualsaver.errors import describe_error
from dualsaver.items._adapters import accepting, aitems_for, items_for
from dualsaver.items._vectors import COPIED, NONE, RECOMPUTED, Embedder, vector_mode, with_vectors
from dualsaver.items.identity import item_store_name
from dualsaver.items.record import (
    EVERYTHING, BadItem, ItemKey, Namespace, Selection, StoredItem, journal_ns, ns_text,
)
from dualsaver.preflight.rules import parse_classes
from dualsaver.sansio import END, AsyncTargets, Call, Next, Plan, Targets, arun, run
from dualsaver.stores.faithful import ascii_safe
from dualsaver.stores.identity import refuse_same_store

BATCH = 500  # items per write
SETTLE_ROUNDS = 3  # times a copy of live writes reads the source again (`ItemJob._settle`)
MAX_BAD_KEPT = 1000
APPROXIMATE = ("{side} has no native item adapter: copied through the public API, so the items get"
               " the time of the copy as created_at/updated_at and the target embeds again (APPROXIMATE)")
DELETED = ("{n} item(s) were deleted from the source while this run copied them (the application deleted"
           " them): deleted from the target too, so the copy does not bring them back")
UNASKED = ("the source was not asked which items it deleted while they were copied: it streams them on its only"
           " connection (opened with open_item_store(url), or over a connection pool, it can be asked); an item"
           " deleted meanwhile is back in the target, and the check reports it")
FORGOTTEN = ("the target lacked the first item of the first namespace the saved progress says an earlier run"
             " copied (emptied or replaced since?): that progress was set aside and every namespace copied again")


@dataclass(frozen=True)
class MissedItems:
    """What a target missed, by operation (from the journal): a repair from it copies only
    the items whose put was missed and deletes only those whose delete was."""

    puts: frozenset[ItemKey]
    deletes: frozenset[ItemKey]


@dataclass
class ItemBackfillResult:
    items: int = 0  # items written to the target
    skipped: int = 0  # items read that the target already held
    expired: int = 0  # expired source items, not copied
    bad: int = 0  # items that could not be copied (reported by namespace and key)
    refused: int = 0  # of those, the ones the target refused by a rule (values it cannot hold)
    namespaces: int = 0  # namespaces finished in this run
    namespaces_resumed: int = 0  # finished in an earlier run, not read again
    exact: bool = True
    vectors: str = NONE  # copied | recomputed | none (the target has no index)
    embeddings_copied: int = 0
    embeddings_recomputed: int = 0
    ttl_dropped: int = 0  # items whose expiry the target cannot hold (InMemoryStore)
    deleted: int = 0  # items the source deleted while they were copied: deleted from the target too
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)
    bad_items: list[dict[str, Any]] = field(default_factory=list)  # namespace, key, error
    throttled_s: float = 0.0
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        return (self.items + self.skipped) / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> str:
        verb = "would copy" if self.dry_run else "copied"
        lines = [
            f"{'dry run: ' if self.dry_run else ''}store: {verb} {self.items} item(s), {self.skipped} already present,"
            f" {self.expired} expired (not copied), {self.bad} bad item(s)"
            f"{f' ({self.refused} refused: values the target cannot hold)' if self.refused else ''};"
            f" {self.namespaces} namespace(s) done,"
            f" {self.namespaces_resumed} done earlier",
            f"vectors {self.vectors}: {self.embeddings_copied} embedding(s) copied,"
            f" {self.embeddings_recomputed} computed again; copy is {'exact' if self.exact else 'APPROXIMATE'};"
            f" {self.elapsed_s:.2f}s ({self.rate:.0f} items/s)",
        ]
        if self.ttl_dropped:
            lines.append(f"{self.ttl_dropped} item(s) lost their TTL: the target store holds none")
        if self.throttled_s:
            lines.append(f"throttled for {self.throttled_s:.1f}s")
        lines += self.notes
        lines += [f"bad item: namespace {b['namespace']}, key {b['key']}: {b['error']}" for b in self.bad_items[:10]]
        return ascii_safe("\n".join(lines))  # a lone surrogate in a named key: the summary is still UTF-8

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate}


class ItemJob:
    """One run's decisions: which items, what is already done, what goes to the target."""

    def __init__(self, source: Any, target: Any, *, selection: Selection = EVERYTHING, batch: int = BATCH,
                 dry_run: bool = False, replace: bool = False, throttle: Throttle | None = None,
                 state: Any = None, on_batch: Any = None) -> None:
        self.source, self.target = source, target
        self.selection, self.batch_size = selection, max(1, batch)
        self.dry_run, self.replace, self.throttle = dry_run, replace, throttle
        self.state, self.on_batch = state, on_batch
        self.mode = vector_mode(source, target)
        self.embedder = Embedder(target.store) if self.mode == RECOMPUTED else None
        r = self.result = ItemBackfillResult(dry_run=dry_run, vectors=self.mode)
        r.exact = bool(source.exact and target.exact)
        for side, store in (("the source", source), ("the target", target)):
            if not store.exact:
                r.notes.append(APPROXIMATE.format(side=side))
        if self.mode == RECOMPUTED:
            r.notes.append("the stores' indexes differ (fields or dimensions): the target computed the vectors again")
        self.now = datetime.now(timezone.utc)
        self._bad_ns: set[Namespace] = set()
        self._held: bool | None = None  # does the target hold what the saved progress says? (`_done_before`)
        inner = getattr(source, "sync", source)  # an async adapter over a sync one asks the sync one
        # by key alone where the store can (SQL), else reading the items (`forget_deleted`)
        self._held_call = "held_items" if hasattr(inner, "held_items") or hasattr(inner, "aheld_items") else "get_items"
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ the backfill

    def backfill_plan(self) -> Plan[ItemBackfillResult]:
        items = yield Call("source", "items", (self.selection.prefix,), stream=True)
        batch: list[StoredItem] = []
        closed: list[Namespace] = []
        current: Namespace | None = None
        skipping = True
        while (item := (yield Next(items))) is not END:
            if item.namespace != current:
                if current is not None and not skipping:
                    closed.append(current)
                current = item.namespace
                skipping = not self.selection.covers(current) or (yield from self._done_before(current, item))
            if skipping:
                continue
            if isinstance(item, BadItem):
                self._bad(item.namespace, item.key, item.error)
            elif item.expired(self.now):
                self.result.expired += 1
            else:
                batch.append(item)
            if len(batch) >= self.batch_size:
                yield from self.flush(batch, closed)
                batch, closed = [], []
        if current is not None and not skipping:
            closed.append(current)
        yield from self.flush(batch, closed)
        return self.finish()

    def _done_before(self, namespace: Namespace, first: Any) -> Plan[bool]:
        """Whether an earlier run finished `namespace` (`first`: its first item). The progress
        is kept apart from the target, which may since have been emptied or replaced: so the
        first finished namespace's first item is asked of the target, once, and if it is not
        there the progress is set aside and everything is copied again (the backfill's
        counterpart for threads: `migrate._backfill.Job._still_held`)."""
        if self.state is None or self._held is False:
            return False
        done = bool(self.state.done_among([journal_ns(namespace)]))
        if done and self._held is None and not isinstance(first, BadItem) and not first.expired(self.now):
            self._held = bool((yield Call("target", "get_items", ([first.ident],))))
            if not self._held:
                if not self.dry_run:
                    self.state.restart()
                self.result.notes.append(FORGOTTEN)
                return False
        self.result.namespaces_resumed += done
        return done

    def flush(self, batch: list[StoredItem], closed: list[Namespace]) -> Plan[None]:
        """Write one batch, then record the namespaces it completed."""
        if batch:
            yield from self.write(batch)
            if not self.dry_run:
                yield from self.forget_deleted(batch)
        finished = [ns for ns in closed if ns not in self._bad_ns]
        self.result.namespaces += len(finished)
        if self.state is not None and not self.dry_run and finished:
            self.state.mark_done_many([journal_ns(ns) for ns in finished])
        if self.on_batch is not None:
            self.on_batch(self.result)

    def write(self, batch: list[StoredItem]) -> Plan[None]:
        r, bad_before = self.result, self.result.bad
        prepared, recomputed = yield from with_vectors(batch, self.mode, self.embedder.fields if self.embedder else ())
        if not self.target.holds_ttl:
            r.ttl_dropped += sum(1 for i in batch if i.expires_at is not None)
        if self.dry_run:
            present = yield Call("target", "get_items", ([i.ident for i in batch],))
            added = len(batch) - len(present)
        else:
            started = time.perf_counter()
            try:
                added = yield Call("target", "write_items", (prepared,), {"replace": self.replace})
            except Exception:  # one item may spoil a batch: find it, copy the rest
                added = yield from self.one_by_one(prepared)
            yield from self.pace(time.perf_counter() - started, len(batch))
        r.items += added
        r.skipped += len(batch) - added - (r.bad - bad_before)
        r.embeddings_recomputed += recomputed
        if self.mode == COPIED:
            r.embeddings_copied += sum(len(i.vectors or ()) for i in prepared)

    def forget_deleted(self, batch: list[StoredItem]) -> Plan[None]:
        """Delete from the target the items of a written batch the source no longer holds: the
        application deleted them while they were copied (DualStore deletes in old, then new; a
        batch read before old's delete and written after new's would bring them back). The
        checkpoints' copies do the same for threads (`migrate._copy.deleted_meanwhile`, where
        the ordering argument is). A source whose one connection carries the stream
        cannot be asked until it ends: the result says so."""
        if not getattr(self.source, "side_queries", True):
            if UNASKED not in self.result.notes:
                self.result.notes.append(UNASKED)
            return
        keys = [item.ident for item in batch]
        held = yield Call("source", self._held_call, (keys,))
        gone = [key for key in keys if key not in held]
        if gone:
            yield Call("target", "delete_items", (gone,))
            self.result.deleted += len(gone)

    def one_by_one(self, items: list[StoredItem]) -> Plan[int]:
        added = 0
        for item in items:
            try:
                added += yield Call("target", "write_items", ([item],), {"replace": self.replace})
            except Exception as exc:
                self._bad(item.namespace, item.key, describe_error(exc), getattr(exc, "rule", None))
        return added

    def pace(self, seconds: float, count: int) -> Plan[None]:
        if self.throttle is None:
            return
        self.throttle.observe(seconds)
        if delay := self.throttle.after(count):
            yield Call("clock", "sleep", (delay,))

    def _bad(self, namespace: Namespace, key: str, error: str, rule: str | None = None) -> None:
        """An item not copied; `rule`: the target refused its value (`LossyValue`), by that rule."""
        self._bad_ns.add(namespace)
        self.result.bad += 1
        self.result.refused += rule is not None
        if len(self.result.bad_items) < MAX_BAD_KEPT:
            self.result.bad_items.append({"namespace": list(namespace), "key": key, "error": error,
                                          **({"rule": rule} if rule else {})})

    # ------------------------------------------------------------------ a few items

    def copy_plan(self, keys: Sequence[ItemKey], delete_missing: bool = False,
                  missed: MissedItems | None = None, settle: bool = False) -> Plan[ItemBackfillResult]:
        """Copy the named items (a lazy copy, a repair, a secondary's copy of a live write);
        with `delete_missing`, an item the source does not hold is deleted from the target.
        With `missed` (a repair from the journal), an item is copied only if the target missed
        its put and deleted only if it missed its delete: one the journal contradicts (a put
        the source does not hold, a delete it still holds) is left, and a note says how many.
        With `settle`, the source is read again afterwards (`_settle`)."""
        keys = list(dict.fromkeys((tuple(ns), k) for ns, k in keys))
        found = yield Call("source", "get_items", (keys,))
        yield from self._copy_found(keys, found, delete_missing, missed)
        if settle and not self.dry_run:
            yield from self._settle(keys, found)
        return self.finish()

    def _copy_found(self, keys: list[ItemKey], found: dict[ItemKey, Any], delete_missing: bool,
                    missed: MissedItems | None = None) -> Plan[None]:
        """Write to the target the items of `keys` the source answered with (`found`); delete
        the rest with `delete_missing` (`copy_plan` says what `missed` changes)."""
        items, left = [], 0
        for ident in keys:
            item = found.get(ident)
            if isinstance(item, BadItem):
                self._bad(item.namespace, item.key, item.error)
            elif item is not None and not item.expired(self.now):
                if missed is None or ident in missed.puts:
                    items.append(item)
                else:
                    left += 1
        for start in range(0, len(items), self.batch_size):
            yield from self.write(items[start : start + self.batch_size])
        gone = [k for k in keys if k not in found or (isinstance(found[k], StoredItem) and found[k].expired(self.now))]
        if missed is not None:
            left += sum(k not in missed.deletes for k in gone)
            gone = [k for k in gone if k in missed.deletes]
        if left:
            self.result.notes.append(f"{left} item(s) left as they are: the journal says the target missed a put the"
                                     " source does not hold (or no longer, expired), or a delete the source still"
                                     " holds: were the stores passed the other way round?")
        if delete_missing and gone and not self.dry_run:
            yield Call("target", "delete_items", (gone,))

    def _settle(self, keys: list[ItemKey], copied: dict[ItemKey, Any]) -> Plan[None]:
        """Read the source again after copying, and copy again what changed meanwhile.

        The copy reads the source, then replaces the target's rows. Another replica's whole
        write of the same key (its primary, then its own copy into this target) may land in
        between, and this copy would then put the older row back, or bring back an item
        deleted meanwhile. Any source change before this second read is seen here and copied
        again; any after it is copied by its own writer, whose copy lands after this one. A
        key still changing after SETTLE_ROUNDS reads is left to the check, and noted."""
        for _ in range(SETTLE_ROUNDS):
            now = yield Call("source", "get_items", (keys,))
            keys = [k for k in keys if now.get(k) != copied.get(k)]
            if not keys:
                return
            yield from self._copy_found(keys, now, delete_missing=True)
            copied = now
        self.result.notes.append(f"{len(keys)} item(s) kept changing in the source while they were copied:"
                                 " the check compares them")

    def finish(self) -> ItemBackfillResult:
        if self.result.deleted:
            self.result.notes.append(DELETED.format(n=self.result.deleted))
        self.result.throttled_s = self.throttle.throttled_s if self.throttle is not None else 0.0
        self.result.elapsed_s = time.perf_counter() - self._t0
        if self.state is not None:
            if not self.dry_run:
                self.state.finish(self.result.summary())
            self.state.close()
        return self.result


def _state(source: Any, target: Any, selection: Selection, *, resume: bool, dry_run: bool, state_path: Any,
           old_name: str | None, new_name: str | None, control: str | None, control_name: str) -> Any:
    scope = f" under {ns_text(selection.prefix)}" if selection.prefix else ""
    old = f"items:{old_name or item_store_name(source)}{scope}"
    new = f"items:{new_name or item_store_name(target)}"
    state = open_progress(state_path, old=old, new=new, shard=selection.shard, control=control,
                          control_name=control_name, runner=replica_name())
    if not resume and not dry_run:
        state.restart()
    return state


def _job(source: Any, target: Any, asynchronous: bool, prefix: Sequence[str], shard: tuple[int, int] | None,
         resume: bool, state_path: Any, old_name: str | None, new_name: str | None, control: str | None,
         control_name: str, allow_lossy: Collection[str] | str | None, **options: Any) -> tuple[ItemJob, Any]:
    refuse_same_store(source, target, "a backfill", item_store_name)
    adapt = aitems_for if asynchronous else items_for
    allowed = parse_classes(allow_lossy)
    src, dst = adapt(source), accepting(adapt(target), allowed)
    selection = Selection(tuple(prefix), shard)
    state = _state(source, target, selection, resume=resume, dry_run=options.get("dry_run", False),
                   state_path=state_path, old_name=old_name, new_name=new_name, control=control,
                   control_name=control_name)
    job = ItemJob(src, dst, selection=selection, state=state, **options)
    if allowed:
        job.result.notes.append(f"accepted as lossy: {', '.join(sorted(allowed))} (the target converts such values)")
    targets = {"source": src, "target": dst, "embed": job.embedder or Embedder(None)}
    return job, (AsyncTargets if asynchronous else Targets)(**targets)


def backfill_items(
    source: Any, target: Any, *, prefix: Sequence[str] = (), shard: tuple[int, int] | None = None,
    resume: bool = True, dry_run: bool = False, batch: int = BATCH, throttle: Throttle | None = None,
    state_path: Any = None, old_name: str | None = None, new_name: str | None = None, control: str | None = None,
    control_name: str = "default", on_batch: Any = None, allow_lossy: Collection[str] | str | None = None,
) -> ItemBackfillResult:
    """Copy `source`'s items into `target` (stores or item adapters); see the module docstring.

    `prefix` limits the run to a namespace prefix, `shard=(i, n)` to the namespaces whose
    stable hash falls in shard i of n; `resume=False` forgets earlier progress; `dry_run`
    writes nothing and counts what would be copied. Progress goes where the checkpoints'
    backfill keeps its own (`control`, else `state_path`). An item the target would change
    (NaN or Infinity, which SQLite's and PostgreSQL's JSON write as null) is refused by name
    as a bad item unless `allow_lossy` names its rule class (`non-finite`)."""
    job, io = _job(source, target, False, prefix, shard, resume, state_path, old_name, new_name, control,
                   control_name, allow_lossy, dry_run=dry_run, batch=batch, throttle=throttle, on_batch=on_batch)
    return run(job.backfill_plan(), io)


async def abackfill_items(
    source: Any, target: Any, *, prefix: Sequence[str] = (), shard: tuple[int, int] | None = None,
    resume: bool = True, dry_run: bool = False, batch: int = BATCH, throttle: Throttle | None = None,
    state_path: Any = None, old_name: str | None = None, new_name: str | None = None, control: str | None = None,
    control_name: str = "default", on_batch: Any = None, allow_lossy: Collection[str] | str | None = None,
) -> ItemBackfillResult:
    """The async form of `backfill_items`: the same plans, awaited."""
    job, io = _job(source, target, True, prefix, shard, resume, state_path, old_name, new_name, control,
                   control_name, allow_lossy, dry_run=dry_run, batch=batch, throttle=throttle, on_batch=on_batch)
    return await arun(job.backfill_plan(), io)


def _copy_job(source: Any, target: Any, asynchronous: bool, replace: bool) -> tuple[ItemJob, Any]:
    adapt = aitems_for if asynchronous else items_for
    src, dst = adapt(source), adapt(target)
    job = ItemJob(src, dst, replace=replace)
    targets = {"source": src, "target": dst, "embed": job.embedder or Embedder(None)}
    return job, (AsyncTargets if asynchronous else Targets)(**targets)


def copy_items(source: Any, target: Any, keys: Iterable[ItemKey], *, replace: bool = False,
               delete_missing: bool = False, missed: MissedItems | None = None,
               settle: bool = False) -> ItemBackfillResult:
    """Copy the items named by (namespace, key) from `source` to `target`, exactly: insert if
    absent, or, with `replace`, overwrite (repair); `delete_missing` deletes from the target
    what the source does not hold; `missed` limits both to what the journal names; `settle`
    reads the source again and copies what changed meanwhile (`ItemJob.copy_plan`)."""
    job, io = _copy_job(source, target, False, replace)
    return run(job.copy_plan(list(keys), delete_missing, missed, settle), io)


async def acopy_items(source: Any, target: Any, keys: Iterable[ItemKey], *, replace: bool = False,
                      delete_missing: bool = False, missed: MissedItems | None = None,
                      settle: bool = False) -> ItemBackfillResult:
    """The async form of `copy_items`."""
    job, io = _copy_job(source, target, True, replace)
    return await arun(job.copy_plan(list(keys), delete_missing, missed, settle), io)
