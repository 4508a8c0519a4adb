"""DualSaver: a checkpointer that wraps the old and the new one and routes by phase.

`graph.compile(checkpointer=DualSaver(old, new))` is the only code change a migration
needs. Every method builds a plan (plans.py) from the current phase's route and hands it
to the sync or the async shell (shells.py).
"""

from __future__ import annotations

import copy
import os
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

from dualsaver import plans
from dualsaver.capabilities import class_with_capabilities
from dualsaver.journal import Journal, JournalEntry
from dualsaver.phase import Phase, resolve_phase
from dualsaver.routing import Role, route_for
from dualsaver.shells import AsyncShell, SyncShell
from dualsaver.versions import next_version

log = structlog.get_logger("dualsaver")


class DualSaver(BaseCheckpointSaver):
    """Writes to old and new, reads from the phase's read store.

    Args:
        old: the checkpointer being left.
        new: the checkpointer being moved to.
        phase: a `Phase` or its name; default `$DUALSAVER_PHASE`, else `shadow-write`.
        strict: raise `SecondaryWriteError` when the secondary fails (after journaling).
        secondary_timeout: seconds a secondary call may take before it counts as failed;
            `None` waits forever.
        journal: a `Journal`, a path for one, or None for `$DUALSAVER_JOURNAL` /
            `.dualsaver/journal.sqlite`.

    Extended capabilities (`delete_for_runs`, `copy_thread`, `prune`) are present on the
    instance only when both wrapped savers implement them.
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
    ) -> None:
        super().__init__(serde=old.serde)
        self.old = old
        self.new = new
        self._phase, self.phase_origin = resolve_phase(phase)
        self.strict = strict
        self.secondary_timeout = secondary_timeout
        self._journal_arg = journal
        self._journal: Journal | None = journal if isinstance(journal, Journal) else None
        self._journal_lock = threading.Lock()
        self.secondary_failures: Counter[str] = Counter()
        self._sync = SyncShell(self)
        self._async = AsyncShell(self)

    # --- phase and stores -------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @phase.setter
    def phase(self, value: Phase | str) -> None:
        self._phase, self.phase_origin = Phase.parse(value), "set at runtime"
        log.info("phase_changed", phase=str(self._phase))

    def store(self, role: Role) -> BaseCheckpointSaver:
        return self.old if role == "old" else self.new

    def _ctx(self) -> plans.Context:
        return plans.Context(route_for(self.phase), self.strict)

    @property
    def journal(self) -> Journal:
        with self._journal_lock:
            if self._journal is None:
                self._journal = Journal(self._journal_arg)  # opened on first failure
            return self._journal

    def record_missed(self, missed: plans.Missed) -> None:
        """Count, log and journal a write a store missed."""
        at = missed.where
        error = f"{type(missed.error).__name__}: {missed.error}"
        self.secondary_failures[missed.operation] += 1
        log.warning(
            "secondary_write_failed",
            store=missed.role,
            operation=missed.operation,
            phase=str(self.phase),
            thread_id=at.get("thread_id"),
            checkpoint_ns=at.get("checkpoint_ns"),
            checkpoint_id=at.get("checkpoint_id"),
            error=error,
        )
        self.journal.record(
            JournalEntry(
                phase=str(self.phase),
                store=missed.role,
                operation=missed.operation,
                thread_id=at.get("thread_id"),
                checkpoint_ns=at.get("checkpoint_ns"),
                checkpoint_id=at.get("checkpoint_id"),
                task_id=at.get("task_id"),
                error=error,
            )
        )

    # --- reads --------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._sync.run(plans.get_tuple(self._ctx(), config))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._async.run(plans.get_tuple(self._ctx(), config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        kwargs = {"filter": filter, "before": before, "limit": limit}
        return self._sync.stream(plans.list_(self._ctx(), config, kwargs))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        kwargs = {"filter": filter, "before": before, "limit": limit}
        async for item in self._async.stream(plans.list_(self._ctx(), config, kwargs)):
            yield item

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._sync.run(plans.delta_history(self._ctx(), config, channels))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self._async.run(plans.delta_history(self._ctx(), config, channels))

    # --- writes -------------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._sync.run(plans.put(self._ctx(), config, checkpoint, metadata, new_versions))

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        plan = plans.put(self._ctx(), config, checkpoint, metadata, new_versions)
        return await self._async.run(plan)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._sync.run(plans.put_writes(self._ctx(), config, writes, task_id, task_path))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        plan = plans.put_writes(self._ctx(), config, writes, task_id, task_path)
        await self._async.run(plan)

    def delete_thread(self, thread_id: str) -> None:
        at = {"thread_id": str(thread_id)}
        self._sync.run(plans.write(self._ctx(), "delete_thread", (thread_id,), at=at))

    async def adelete_thread(self, thread_id: str) -> None:
        at = {"thread_id": str(thread_id)}
        await self._async.run(plans.write(self._ctx(), "delete_thread", (thread_id,), at=at))

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

    def close(self) -> None:
        """Stop the secondary worker threads and close the journal (not the wrapped savers)."""
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
        self.close()

    def __repr__(self) -> str:
        return (
            f"DualSaver(old={type(self.old).__name__}, new={type(self.new).__name__},"
            f" phase={self.phase.value!r})"
        )
