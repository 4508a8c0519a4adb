"""DualStore: LangGraph's long-term store (`BaseStore`) migrated like the checkpointer beside it.

`graph.compile(checkpointer=DualSaver(...), store=DualStore(old_store, new_store, phase=...))`.
Not a second implementation: the same routing table, phase sources, recorder and journal,
circuit breakers, write-behind and sync/async shells as `DualSaver` (`_pair`, `_plans`,
`_shells`); only the plan of a batch is its own (`_store_plans`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from langgraph.store.base import BaseStore, TTLConfig

from dualsaver.control import settings
from dualsaver.control.journal import Journal
from dualsaver.control.phase import Phase
from dualsaver.items import renews_on_read
from dualsaver.observability import telemetry
from dualsaver.saver import _store_plans as store_plans
from dualsaver.saver._item_copy import ItemCopier, StoreSide
from dualsaver.saver._pair import PhasedPair, expect_stores
from dualsaver.saver._plans import STEERED_PHASES, Context
from dualsaver.saver._shells import AsyncShell, Operation, SyncShell
from dualsaver.saver.routing import Role, route_for

# The settings a DualStore takes from the file (the saver's others, canary and shadow
# reads, are about threads).
_STORE_SETTINGS = ("strict", "secondary_timeout", "journal", "write_behind", "circuit_cool_down", "control")


class DualStore(PhasedPair, BaseStore):
    """Writes to the old and the new long-term store, reads from the phase's read store.

    Args:
        old: the store being left (`SqliteStore`, `PostgresStore`, `RedisStore`, ...).
        new: the store being moved to.
        phase: as for `DualSaver`: a `Phase`, its name, or a phase source; None:
            `$DUALSAVER_PHASE`, else the settings file, else the fleet's shared phase record,
            else `shadow-write`. Pass the checkpointer's source, `phase=dual_saver.phase_source`,
            and the two halves of the application's memory read one phase at every moment
            (set a phase on that source or the record, not with `dual_saver.phase = ...`,
            which gives the saver a source of its own).
        strict, secondary_timeout, journal, write_behind, circuit_cool_down, control: as for
            `DualSaver`.

    A batch goes, run by run in op order, to the read store (gets, searches, namespace
    listings) and to the primary then the secondary (puts and deletes), so a get after a put
    of the same key in one batch sees it. In read-switch a get that new misses is asked of
    old, and the item is copied into new; `search` and `list_namespaces` are answered by the
    read store alone (run the store backfill before read-switch). The lazy copy is exact
    (created_at, updated_at, TTL, vectors kept) when both stores have native item adapters
    (`lazy_copy_exact`), through the public API otherwise. A secondary failure is
    journaled per item (`store.put` / `store.delete`, see `control.journal.item_of`); in
    decommission each delete is journaled as a tombstone for old. In shadow-write the
    secondary's copy of each batch of writes goes behind (write-behind), as for DualSaver:
    `flush()` / `aflush()` wait for it, `close()` / `aclose()` / `async with` land or journal it.

    Both stores should carry the same index configuration (dims, fields) and TTL settings:
    each embeds the items it is given through its own.
    """

    def __init__(
        self,
        old: BaseStore,
        new: BaseStore,
        phase: Phase | str | Any | None = None,
        *,
        strict: bool = False,
        secondary_timeout: float | None = 5.0,
        journal: Journal | str | os.PathLike[str] | None = None,
        write_behind: bool = True,
        circuit_cool_down: float | None = 5.0,
        control: str | None = None,
    ) -> None:
        expect_stores(BaseStore, "open_item_store", ("batch",), old=old, new=new)
        self.supports_ttl = bool(old.supports_ttl and new.supports_ttl)
        self._contexts: dict[tuple[Phase, bool, bool], tuple[Context, Any]] = {}
        self._pair(old, new, phase, strict=strict, secondary_timeout=secondary_timeout, journal=journal,
                   write_behind=write_behind, circuit_cool_down=circuit_cool_down, control=control)

    def _shells(self) -> None:
        # The lazy copy of items: exact (times, TTL, vectors) where both stores have native adapters.
        copier = self._copier = ItemCopier({"old": self.old, "new": self.new})
        # A secondary takes each write as the primary's stored rows of its keys (`StoreSide.mirror`).
        sides: dict[Role, Any] = {role: StoreSide(role, copier) for role in ("old", "new")}
        self._sync = SyncShell(sides, self.recorder, self.secondary_timeout, self.breakers, copier)
        self._async = AsyncShell(sides, self.recorder, self.secondary_timeout, self.breakers, copier)

    @classmethod
    def from_settings(cls, old: BaseStore, new: BaseStore, path: Any = None, **overrides: Any) -> DualStore:
        """A DualStore configured by the settings file DualSaver reads (`path`, else
        `$DUALSAVER_SETTINGS`); keyword arguments win."""
        kwargs = settings.current(path).saver_kwargs()
        return cls._from_settings(old, new, path, {k: kwargs[k] for k in _STORE_SETTINGS if k in kwargs}, overrides)

    @property
    def lazy_copy_exact(self) -> bool:
        """Whether read-switch's lazy copy (old -> new) keeps created_at, updated_at, the TTL
        and the vectors: both stores have native item adapters (`dualsaver.items`). When not,
        it goes through the public API (approximate; logged once as ``lazy_copy_approximate``).
        An async-only store (`AsyncPostgresStore`) is copied exactly in async calls."""
        return self._copier.exact("old", "new") or self._copier.exact("old", "new", asynchronous=True)

    @property
    def ttl_config(self) -> TTLConfig | None:  # type: ignore[override]
        """The primary's (it is also the read store): BaseStore's `get` / `put` take their
        default refresh and TTL from it."""
        return self.store(route_for(self.phase).primary).ttl_config

    def _begin(self) -> tuple[Context, Any, bool]:
        """The context a plan runs in (the phase is read once, at the start of the call), the
        store that answers reads alone in it (`_store_plans.reader_alone`; None: the plan
        does), and whether the call is traced. A store's calls share one context per phase
        and setting, made once, so the reads the nodes make most cost next to nothing of
        their own (objects made on each of them cost several microseconds beside a SQLite
        read, more than timed alone: the read's own work evicts them from the caches)."""
        phase = self.phase
        key = (phase, self.strict, self.write_behind)
        begun = self._contexts.get(key)
        if begun is None:
            ctx = self._context(phase, renews_secondary=self._renews(phase))
            role = store_plans.reader_alone(ctx)
            begun = self._contexts[key] = (ctx, None if role is None else self.store(role))
        if phase in STEERED_PHASES:  # what each store missed, as of now (`plans.steered`)
            stale_old, stale_new = self.recorder.stale_items("old"), self.recorder.stale_items("new")
            if stale_old or stale_new:  # the plan steers those gets: no short way for reads
                ctx = dataclasses.replace(begun[0], stale_items_in_old=stale_old, stale_items_in_new=stale_new)
                return ctx, None, telemetry.listening()
        return begun[0], begun[1], telemetry.listening()

    def _renews(self, phase: Phase) -> bool:
        """Whether reads in `phase` renew TTLs in the read store that the secondary, asked,
        renews too (`_store_plans.read_items`). A secondary that would not (SQLite with no
        `refresh_on_read`, Redis with no ttl config) is not asked: the check names what
        differs then."""
        route = route_for(phase)
        return (route.secondary is not None and renews_on_read(self.store(route.read))
                and renews_on_read(self.store(route.secondary)))

    def _operation(self, ctx: Context, traced: bool) -> Operation:
        return Operation("store.batch", ctx.route.phase.value, None, traced)

    def batch(self, ops: Any) -> list[Any]:
        ops = list(ops)
        ctx, reader, traced = self._begin()
        if reader is not None and not traced and store_plans.nothing_else(ctx, ops, self._sync.queue.drained):
            return reader.batch(ops)  # one store's own call, nothing before or after it: no plan to run
        return self._sync.run(store_plans.batch(ctx, ops), self._operation(ctx, traced))

    async def abatch(self, ops: Any) -> list[Any]:
        ops = list(ops)
        ctx, reader, traced = self._begin()
        if reader is not None and not traced and store_plans.nothing_else(ctx, ops, self._async.queue.drained):
            return await reader.abatch(ops)
        return await self._async.run(store_plans.batch(ctx, ops), self._operation(ctx, traced))

    def __repr__(self) -> str:
        return f"DualStore(old={type(self.old).__name__}, new={type(self.new).__name__}, phase={self.phase.value!r})"
