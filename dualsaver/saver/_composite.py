"""What `DualSaver` and `TieredSaver` share: two savers behind the sync and async shells, every
operation as a plan on the route the subclass's `_begin` gives (reads from the subclass's
`_reads` plans), the journal, flushing and closing."""

from __future__ import annotations

import copy
from collections import Counter
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

from dualsaver.control.journal import Journal
from dualsaver.saver import _plans as plans
from dualsaver.saver._recorder import Recorder
from dualsaver.saver._shells import AsyncShell, Operation, SyncShell


class CompositeSaver(BaseCheckpointSaver):
    recorder: Recorder
    _sync: SyncShell
    _async: AsyncShell
    _reads: Any = plans  # the module whose get_tuple / list_ / delta_history plans answer reads
    _wrapped: tuple[str, str] = ("old", "new")  # the attributes holding the two savers, "old" role first

    def _begin(self, name: str, config: Any = None, thread_id: Any = None) -> tuple[plans.Context, Operation]:
        """The context a plan runs in, read once at the start of the call."""
        raise NotImplementedError

    def _release(self) -> None:
        """What a subclass stops or hands over on close (after the shells and the journal)."""

    def _shells(self) -> None:
        """Build the sync and async shells over the wrapped savers."""
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

    @property
    def journal(self) -> Journal:
        return self.recorder.journal

    @property
    def secondary_failures(self) -> Counter[str]:
        return self.recorder.secondary_failures

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

    # --- lifecycle ----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until secondary writes queued behind have landed; False on timeout."""
        return self._sync.queue.drain(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        return await self._async.queue.adrain(timeout)

    def close(self) -> None:
        """Land (within the secondary timeout) or journal the writes queued by sync calls,
        stop the worker threads, close the journal, then what the subclass started; the
        wrapped savers stay open. Writes queued by async calls are closed by `aclose()` (or
        `async with`), which needs the event loop."""
        self._sync.close()
        self.recorder.close()
        self._release()

    async def aclose(self) -> None:
        """`close()`, after landing (within the secondary timeout) or journaling the writes
        queued by async calls."""
        await self._async.aclose()
        self.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
