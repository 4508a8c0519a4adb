"""What `DualSaver` and `TieredSaver` share: two savers behind the sync and async shells, every
operation as a plan on the route the subclass's `_begin` gives (reads from the subclass's
`_reads` plans); the journal, flushing and closing come from `StorePair`."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)

from dualsaver.saver import _plans as plans
from dualsaver.saver._pair import StorePair
from dualsaver.saver._shells import Operation


class CompositeSaver(StorePair, BaseCheckpointSaver):
    _reads: Any = plans  # the module whose get_tuple / list_ / delta_history plans answer reads
    _wrapped: tuple[str, str] = ("old", "new")  # the attributes holding the two savers, "old" role first

    def _begin(self, name: str, config: Any = None, thread_id: Any = None) -> tuple[plans.Context, Operation]:
        """The context a plan runs in, read once at the start of the call."""
        raise NotImplementedError

    def with_allowlist(self, extra_allowlist: Collection[tuple[str, ...]]) -> Any:
        """A shallow clone whose wrapped savers both carry the derived msgpack allowlist."""
        current = [getattr(self, name) for name in self._wrapped]
        derived = [saver.with_allowlist(extra_allowlist) for saver in current]
        if all(d is c for d, c in zip(derived, current)):
            return self
        clone = copy.copy(self)
        for name, saver in zip(self._wrapped, derived):
            setattr(clone, name, saver)
        clone.serde = derived[0].serde
        clone._shells()
        return clone

    # --- reads --------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        ctx, op = self._begin("get_tuple", config)
        return self._sync.run(self._reads.get_tuple(ctx, config), op)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        ctx, op = self._begin("get_tuple", config)
        return await self._async.run(self._reads.get_tuple(ctx, config), op)

    def list(
        self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None, limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        ctx, op = self._begin("list", config)
        options = {"filter": filter, "before": before, "limit": limit}
        return self._sync.stream(self._reads.list_(ctx, config, options), op)

    async def alist(
        self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None, limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        ctx, op = self._begin("list", config)
        options = {"filter": filter, "before": before, "limit": limit}
        async for item in self._async.stream(self._reads.list_(ctx, config, options), op):
            yield item

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        ctx, op = self._begin("get_delta_channel_history", config)
        return self._sync.run(self._reads.delta_history(ctx, config, channels), op)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        ctx, op = self._begin("get_delta_channel_history", config)
        return await self._async.run(self._reads.delta_history(ctx, config, channels), op)

    # --- writes: the route's primary first, then its secondary ---------------------------

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        ctx, op = self._begin("put", config)
        return self._sync.run(plans.put(ctx, config, checkpoint, metadata, new_versions), op)

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        ctx, op = self._begin("put", config)
        return await self._async.run(plans.put(ctx, config, checkpoint, metadata, new_versions), op)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        ctx, op = self._begin("put_writes", config)
        self._sync.run(plans.put_writes(ctx, config, writes, task_id, task_path), op)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        ctx, op = self._begin("put_writes", config)
        await self._async.run(plans.put_writes(ctx, config, writes, task_id, task_path), op)

    def delete_thread(self, thread_id: str) -> None:
        ctx, op = self._begin("delete_thread", thread_id=thread_id)
        self._sync.run(plans.write(ctx, "delete_thread", (thread_id,), at={"thread_id": str(thread_id)}), op)

    async def adelete_thread(self, thread_id: str) -> None:
        ctx, op = self._begin("delete_thread", thread_id=thread_id)
        await self._async.run(plans.write(ctx, "delete_thread", (thread_id,), at={"thread_id": str(thread_id)}), op)
