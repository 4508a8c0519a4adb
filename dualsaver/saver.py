"""DualSaver: a checkpointer that wraps the old and the new one and routes by phase.

`graph.compile(checkpointer=DualSaver(old, new))` is the only code change a migration
needs. Every method builds a plan (plans.py) from the current phase's route and hands it
to the sync or the async shell (shells.py).
"""

from __future__ import annotations

import copy
import os
import random
import threading
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from typing import Any

import structlog
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)

from dualsaver import plans, telemetry
from dualsaver.capabilities import class_with_capabilities
from dualsaver.journal import Journal, JournalEntry, journal_exists
from dualsaver.phase import Phase, StaticPhase, phase_source
from dualsaver.routing import Role, route_for
from dualsaver.shells import AsyncShell, Operation, SyncShell
from dualsaver.versions import next_version

log = structlog.get_logger("dualsaver")


class DualSaver(BaseCheckpointSaver):
    """Writes to old and new, reads from the phase's read store.

    Args:
        old: the checkpointer being left.
        new: the checkpointer being moved to.
        phase: a `Phase`, its name, or a phase source; when None: `$DUALSAVER_PHASE`, else
            the settings file, else the fleet's shared phase record, else `shadow-write`.
        strict: raise `SecondaryWriteError` when the secondary fails (after journaling).
        secondary_timeout: seconds a secondary call may take before it counts as failed;
            `None` waits forever.
        journal: a `Journal`, a path for one, or None for `$DUALSAVER_JOURNAL` /
            `.dualsaver/journal.sqlite`.
        canary_percent: in read-switch, only this share of threads (by a stable hash of the
            thread id) reads from new; the rest still read from old. None: all threads.
        shadow_read_rate: in shadow-write and backfill, the share of `get_tuple` calls also
            answered by new and compared with old's answer; mismatches are counted and
            journaled, and the caller always gets old's answer.
        write_behind: on by default. In shadow-write, where nobody reads new yet, new's
            copy of each put and put_writes is written in the background (in call order,
            through a bounded queue, in the application's pauses) instead of making the
            caller wait for both stores. New then lags old by the queue, so run the check
            from the backfill phase on (every write is synchronous there). Closing, a normal
            exit or the event loop closing journals what did not land; a crash loses the
            queued copies without a journal entry (the backfill, which read-switch
            requires, copies them). Deletes, copies and prunes are always synchronous, and
            so is everything in strict mode. `flush()` / `aflush()` wait for the queue;
            `False` makes every shadow-write call wait for both stores.

    `phase` may also be a phase source: any object with `current() -> Phase` and an
    `origin` string, asked at the start of every operation (a fleet's shared record).

    Extended capabilities (`delete_for_runs`, `copy_thread`, `prune`) are present on the
    instance only when both wrapped savers implement them.

    In decommission old receives nothing; each `delete_thread` and `prune` of that phase
    is journaled as a tombstone for old, so a rollback (reverse backfill, then repair from
    the journal) does not bring deleted threads back.
    """

    def __new__(cls, old: Any = None, new: Any = None, *args: Any, **kwargs: Any) -> DualSaver:
        # copy.copy() calls __new__ with no arguments: keep the class it already has.
        if old is None or new is None:
            return super().__new__(cls)
        return super().__new__(class_with_capabilities(cls, old, new))

    def __init__(
        self,
        old: BaseCheckpointSaver,
        new: BaseCheckpointSaver,
        phase: Phase | str | None = None,
        *,
        strict: bool = False,
        secondary_timeout: float | None = 5.0,
        journal: Journal | str | os.PathLike[str] | None = None,
        canary_percent: float | None = None,
        shadow_read_rate: float = 0.0,
        write_behind: bool = True,
    ) -> None:
        super().__init__(serde=old.serde)
        self.old = old
        self.new = new
        # The argument, $DUALSAVER_PHASE, the settings file, or the fleet's shared record.
        self.phase_source: Any = phase_source(phase)
        self._owns_phase_source = self.phase_source is not phase
        if canary_percent is not None and not 0 <= canary_percent <= 100:
            raise ValueError(f"canary_percent must be between 0 and 100, got {canary_percent}")
        if not 0 <= shadow_read_rate <= 1:
            raise ValueError(f"shadow_read_rate must be between 0 and 1, got {shadow_read_rate}")
        self.canary_percent = canary_percent
        self.shadow_read_rate = shadow_read_rate
        self.shadow_mismatches: Counter[str] = Counter()
        self.strict = strict
        self.write_behind = write_behind
        self.secondary_timeout = secondary_timeout
        self._journal_arg = journal
        self._journal: Journal | None = journal if isinstance(journal, Journal) else None
        if self._journal is not None:
            telemetry.watch_journal(self._journal)
        self._journal_lock = threading.Lock()
        self.secondary_failures: Counter[str] = Counter()
        self._sync = SyncShell(self)
        self._async = AsyncShell(self)

    @classmethod
    def from_settings(
        cls, old: BaseCheckpointSaver, new: BaseCheckpointSaver, path: Any = None, **overrides: Any
    ) -> DualSaver:
        """A DualSaver configured by the settings file (`path`, else `$DUALSAVER_SETTINGS`):
        strict, secondary timeout, journal, canary and shadow-read rate; keyword arguments win."""
        from dualsaver import settings

        loaded = settings.current(path)
        kwargs = {**loaded.saver_kwargs(), **overrides}
        phase = kwargs.pop("phase", None)
        if phase is None:
            from dualsaver.phase import phase_source as source_for

            phase = source_for(None, settings=loaded)
        return cls(old, new, phase, **kwargs)

    # --- phase and stores -------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.phase_source.current()

    @phase.setter
    def phase(self, value: Phase | str) -> None:
        self._close_phase_source()
        self.phase_source, self._owns_phase_source = StaticPhase(value, "set at runtime"), True
        log.info("phase_changed", phase=str(self.phase))

    @property
    def phase_origin(self) -> str:
        return str(getattr(self.phase_source, "origin", "phase source"))

    def store(self, role: Role) -> BaseCheckpointSaver:
        return self.old if role == "old" else self.new

    def _begin(self, name: str, config: Any = None, thread_id: Any = None) -> tuple[plans.Context, Operation]:
        """The context a plan runs in: the phase is read once, at the start of the call."""
        phase = self.phase
        shadow = self.shadow_read_rate > 0 and random.random() < self.shadow_read_rate
        behind = self.write_behind and phase is Phase.SHADOW_WRITE
        ctx = plans.Context(route_for(phase), self.strict, self.canary_percent, shadow, behind)
        if thread_id is None and config:
            thread_id = config.get("configurable", {}).get("thread_id")
        return ctx, Operation(name, phase.value, None if thread_id is None else str(thread_id))

    @property
    def journal(self) -> Journal:
        with self._journal_lock:
            if self._journal is None:
                self._journal = Journal(self._journal_arg)  # opened on first failure
                telemetry.watch_journal(self._journal)
            return self._journal

    def record_missed(self, missed: plans.Missed) -> None:
        """Count, log and journal a write a store missed."""
        at = missed.where
        error = f"{type(missed.error).__name__}: {missed.error}"
        self.secondary_failures[missed.operation] += 1
        telemetry.secondary_failures.add(1, {"store": missed.role, "operation": missed.operation})
        log.warning(
            "secondary_write_failed",
            store=missed.role,
            operation=missed.operation,
            phase=str(missed.phase),
            thread_id=at.get("thread_id"),
            checkpoint_ns=at.get("checkpoint_ns"),
            checkpoint_id=at.get("checkpoint_id"),
            error=error,
        )
        self.journal.record(
            JournalEntry(
                phase=str(missed.phase),
                store=missed.role,
                operation=missed.operation,
                thread_id=at.get("thread_id"),
                checkpoint_ns=at.get("checkpoint_ns"),
                checkpoint_id=at.get("checkpoint_id"),
                task_id=at.get("task_id"),
                error=error,
            )
        )

    def missed_delete(self, role: Role, thread_id: str) -> bool:
        """Whether `role` missed a delete of this thread that is not repaired yet (see the
        journal); read-switch does not fall back to such a copy. A journal that was never
        written (not open, no file) holds nothing: it is not created just to be asked."""
        if self._journal is None and not journal_exists(self._journal_arg):
            return False
        return self.journal.missed_delete(role, thread_id)

    def record_tombstone(self, tombstone: plans.Tombstone) -> None:
        """Journal a delete the retired store did not receive, for a rollback to apply."""
        log.info("tombstone_journaled", store=tombstone.role, operation=tombstone.operation,
                 phase=str(tombstone.phase), thread_id=tombstone.thread_id)
        self.journal.record(
            JournalEntry(
                phase=str(tombstone.phase), store=tombstone.role, operation=tombstone.operation,
                thread_id=tombstone.thread_id, checkpoint_ns=None, checkpoint_id=None, task_id=None,
                error="not applied: the store is retired; a rollback applies it (repair from the journal)",
            )
        )

    def record_mismatch(self, mismatch: plans.Mismatch) -> None:
        """Count, log and journal a shadow read whose answer differed; never raises."""
        at = mismatch.where
        detail = ", ".join(mismatch.fields)
        if mismatch.error is not None:
            detail = f"shadow read failed: {type(mismatch.error).__name__}: {mismatch.error}"
        for name in mismatch.fields:
            self.shadow_mismatches[name] += 1
        telemetry.shadow_mismatches.add(1, {"field": mismatch.fields[0]})
        log.warning("shadow_read_mismatch", phase=str(mismatch.phase), thread_id=at.get("thread_id"),
                    checkpoint_id=at.get("checkpoint_id"), fields=detail)
        self.journal.record(
            JournalEntry(
                phase=str(mismatch.phase), store="new", operation="shadow_read",
                thread_id=at.get("thread_id"), checkpoint_ns=at.get("checkpoint_ns"),
                checkpoint_id=at.get("checkpoint_id"), task_id=None, error=f"mismatch: {detail}",
            )
        )

    # --- reads --------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        ctx, op = self._begin("get_tuple", config)
        return self._sync.run(plans.get_tuple(ctx, config), op)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        ctx, op = self._begin("get_tuple", config)
        return await self._async.run(plans.get_tuple(ctx, config), op)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        kwargs = {"filter": filter, "before": before, "limit": limit}
        ctx, op = self._begin("list", config)
        return self._sync.stream(plans.list_(ctx, config, kwargs), op)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        kwargs = {"filter": filter, "before": before, "limit": limit}
        ctx, op = self._begin("list", config)
        async for item in self._async.stream(plans.list_(ctx, config, kwargs), op):
            yield item

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        ctx, op = self._begin("get_delta_channel_history", config)
        return self._sync.run(plans.delta_history(ctx, config, channels), op)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        ctx, op = self._begin("get_delta_channel_history", config)
        return await self._async.run(plans.delta_history(ctx, config, channels), op)

    # --- writes -------------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        ctx, op = self._begin("put", config)
        return self._sync.run(plans.put(ctx, config, checkpoint, metadata, new_versions), op)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        ctx, op = self._begin("put", config)
        return await self._async.run(plans.put(ctx, config, checkpoint, metadata, new_versions), op)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        ctx, op = self._begin("put_writes", config)
        self._sync.run(plans.put_writes(ctx, config, writes, task_id, task_path), op)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        ctx, op = self._begin("put_writes", config)
        await self._async.run(plans.put_writes(ctx, config, writes, task_id, task_path), op)

    def delete_thread(self, thread_id: str) -> None:
        ctx, op = self._begin("delete_thread", thread_id=thread_id)
        at = {"thread_id": str(thread_id)}
        self._sync.run(plans.write(ctx, "delete_thread", (thread_id,), at=at), op)

    async def adelete_thread(self, thread_id: str) -> None:
        ctx, op = self._begin("delete_thread", thread_id=thread_id)
        at = {"thread_id": str(thread_id)}
        await self._async.run(plans.write(ctx, "delete_thread", (thread_id,), at=at), op)

    # --- versions, allowlist, lifecycle -------------------------------------------------

    def get_next_version(self, current: Any, channel: None = None) -> Any:
        route = route_for(self.phase)
        primary = self.store(route.primary)
        other = self.old if primary is self.new else self.new
        return next_version(current, primary, other)

    def with_allowlist(self, extra_allowlist: Collection[tuple[str, ...]]) -> DualSaver:
        """A shallow clone whose wrapped savers both carry the derived msgpack allowlist."""
        old = self.old.with_allowlist(extra_allowlist)
        new = self.new.with_allowlist(extra_allowlist)
        if old is self.old and new is self.new:
            return self
        clone = copy.copy(self)
        clone.old, clone.new, clone.serde = old, new, old.serde
        clone._sync, clone._async = SyncShell(clone), AsyncShell(clone)
        return clone

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until secondary writes queued in shadow-write have landed; False on timeout."""
        return self._sync.behind.drain(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        return await self._async.behind.drain(timeout)

    def _close_phase_source(self) -> None:
        """Stop a polling source this saver created (one passed in belongs to the caller)."""
        if self._owns_phase_source and hasattr(self.phase_source, "close"):
            self.phase_source.close()

    def close(self) -> None:
        """Stop the secondary worker threads, a phase poller this saver started, and close
        the journal (not the wrapped savers)."""
        self._close_phase_source()
        self._sync.close()
        if self._journal is not None and not isinstance(self._journal_arg, Journal):
            self._journal.close()
            self._journal = None

    def __enter__(self) -> DualSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> DualSaver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aflush(self.secondary_timeout)
        self.close()

    def __repr__(self) -> str:
        return (
            f"DualSaver(old={type(self.old).__name__}, new={type(self.new).__name__},"
            f" phase={self.phase.value!r})"
        )
