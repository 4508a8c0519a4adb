"""`AsyncRedisSaver`: the async shell over `BaseRedisSaver`, like langgraph's `aio.py` savers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from dualsaver.redis._io import AsyncRedisIo
from dualsaver.redis.base import BaseRedisSaver
from dualsaver.redis.url import aconnected, for_own_saver, parse_redis_url
from dualsaver.errors import SecondaryTimeout
from dualsaver.sansio import AsyncTargets, arun, astream, bounded


class AsyncRedisSaver(BaseRedisSaver):
    """Async checkpointer on a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.

    Its sync methods may be called from other threads while its event loop runs (as
    graph.invoke does from a worker thread), like AsyncPostgresSaver's."""

    def __init__(
        self, client: Any, *, serde: SerializerProtocol | None = None, prefix: str = "dualsaver",
        ttl: float | None = None, wait: int = 0, wait_timeout: float = 1.0,
    ) -> None:
        from redis.asyncio.cluster import RedisCluster

        super().__init__(serde=serde, prefix=prefix, ttl=ttl, cluster=isinstance(client, RedisCluster),
                         wait=wait, wait_timeout=wait_timeout)
        self.client = client
        self._io = AsyncTargets(redis=AsyncRedisIo(client, self.cluster))
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await arun(self._plan_get_tuple(config), self._io)

    def bounds_reads_within(self, timeout: float | None) -> bool:
        return timeout is not None  # a deadline on the task: it cancels a connect as well as a read

    async def aget_tuple_within(self, config: RunnableConfig, timeout: float | None) -> CheckpointTuple | None:
        """`aget_tuple`, raising `SecondaryTimeout` after `timeout` seconds (None: no bound)."""
        try:
            return await bounded(self.aget_tuple(config), timeout)
        except asyncio.TimeoutError:
            raise SecondaryTimeout(f"no answer within {timeout}s") from None

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        async for tup in astream(self._plan_list(config, filter, before, limit), self._io):
            yield tup

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        return await arun(self._plan_put(config, checkpoint, metadata, new_versions), self._io)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await arun(self._plan_put_writes(config, writes, task_id, task_path), self._io)

    async def adelete_thread(self, thread_id: str) -> None:
        await arun(self._plan_delete_thread(thread_id), self._io)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await arun(self._plan_delete_for_runs(run_ids), self._io)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await arun(self._plan_copy_thread(source_thread_id, target_thread_id), self._io)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await arun(self._plan_prune(thread_ids, strategy), self._io)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await arun(self._plan_delta_history(config, channels), self._io)

    # -- sync bridges, for callers on another thread --------------------------------------

    def _bridge(self, coro: Any) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop is None or running is self.loop:
            coro.close()
            raise asyncio.InvalidStateError(
                "Synchronous calls to AsyncRedisSaver are only allowed from a thread other "
                "than its event loop's; use the async methods (aget_tuple, ainvoke, ...)."
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._bridge(self.aget_tuple(config))

    def get_tuple_within(self, config: RunnableConfig, timeout: float | None) -> CheckpointTuple | None:
        return self._bridge(self.aget_tuple_within(config, timeout))

    def list(self, config: RunnableConfig | None, **options: Any) -> Iterator[CheckpointTuple]:
        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, **options)]

        yield from self._bridge(collect())

    def put(self, config: RunnableConfig, *args: Any) -> RunnableConfig:
        return self._bridge(self.aput(config, *args))

    def put_writes(self, config: RunnableConfig, *args: Any, **kwargs: Any) -> None:
        self._bridge(self.aput_writes(config, *args, **kwargs))

    def delete_thread(self, thread_id: str) -> None:
        self._bridge(self.adelete_thread(thread_id))

    def get_delta_channel_history(self, **kwargs: Any) -> Mapping[str, DeltaChannelHistory]:
        return self._bridge(self.aget_delta_channel_history(**kwargs))


@asynccontextmanager
async def aopen_redis_saver(
    url: str, *, serde: SerializerProtocol | None = None, **options: Any
) -> AsyncIterator[AsyncRedisSaver]:
    """Open an `AsyncRedisSaver` from a URL (forms in the module docstring)."""
    target = for_own_saver(parse_redis_url(url, **options))
    async with aconnected(target) as client:
        yield AsyncRedisSaver(client, serde=serde, wait=target.wait, wait_timeout=target.wait_timeout, **target.saver)
